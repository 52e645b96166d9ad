import { RackbootError, type ErrorCode } from '../errors.js'

// Why a BMC operation failed, as a value callers can branch on. Messages name the BMC and the cause, never a
// username's password, a session token or a key.
export type PowerErrorKind =
  | 'auth' // the BMC rejected the credentials
  | 'timeout' // no (complete) answer within the time allowed
  | 'unreachable' // connection refused, no route, name not found
  | 'tls' // certificate not trusted, or not the pinned one
  | 'session-limit' // the BMC has no free session
  | 'busy' // the BMC said "try again" (IPMI 0xC0, HTTP 503)
  | 'unsupported' // the BMC cannot do this (no such reset type, no boot override)
  | 'rejected' // the BMC refused the request (a completion code, an HTTP 4xx)
  | 'not-applied' // the BMC accepted a change and the readback shows it did not stick
  | 'protocol' // an answer rackboot cannot make sense of
  | 'too-soon' // the power manager's minimum interval between reboots
  | 'no-bmc' // the machine has no BMC (or no credentials) in the inventory
  | 'invalid' // a caller's request that cannot be valid
  | 'unknown-outcome' // the request left and no answer says whether the BMC carried it out; not re-sent
  | 'not-verified' // the BMC answered, and its read-back never showed the expected state in the time allowed

const RETRYABLE = new Set<PowerErrorKind>(['timeout', 'unreachable', 'busy', 'session-limit', 'protocol', 'not-applied'])

// BMC failures are the BMC's (502: it answered wrongly or refused; 504: it did not answer in time), never ours.
const CODES: Record<PowerErrorKind, { code: ErrorCode; status: number }> = {
  auth: { code: 'RB_ERR_BMC', status: 502 },
  timeout: { code: 'RB_ERR_BMC', status: 504 },
  unreachable: { code: 'RB_ERR_BMC', status: 502 },
  tls: { code: 'RB_ERR_BMC', status: 502 },
  'session-limit': { code: 'RB_ERR_BMC', status: 503 },
  busy: { code: 'RB_ERR_BMC', status: 503 },
  unsupported: { code: 'RB_ERR_BMC', status: 501 },
  rejected: { code: 'RB_ERR_BMC', status: 502 },
  'not-applied': { code: 'RB_ERR_BMC', status: 502 },
  protocol: { code: 'RB_ERR_BMC', status: 502 },
  'unknown-outcome': { code: 'RB_ERR_BMC', status: 504 },
  'not-verified': { code: 'RB_ERR_BMC', status: 504 },
  'too-soon': { code: 'RB_ERR_CONFLICT', status: 429 },
  'no-bmc': { code: 'RB_ERR_NOT_FOUND', status: 404 },
  invalid: { code: 'RB_ERR_VALIDATION', status: 400 },
}

export interface PowerErrorOptions {
  cause?: unknown
  details?: Record<string, unknown>
  /** Overrides the default for the kind. */
  retryable?: boolean
  /**
   * The BMC's answer proves the request was not carried out (an IPMI completion code, HTTP 4xx, 503/429, a
   * vendor's "try again" message): a state-changing request may then be sent again.
   */
  notRun?: boolean
  /** The BMC asked to wait this long before trying again (Retry-After, a vendor's temporary error). */
  retryAfterMs?: number
}

export class PowerError extends RackbootError {
  readonly kind: PowerErrorKind
  readonly retryable: boolean
  readonly notRun: boolean
  readonly retryAfterMs: number | null

  constructor(kind: PowerErrorKind, message: string, options: PowerErrorOptions = {}) {
    const { code, status } = CODES[kind]
    super(code, message, { cause: options.cause, details: { kind, ...options.details }, statusCode: status })
    this.name = 'PowerError'
    this.kind = kind
    this.retryable = options.retryable ?? RETRYABLE.has(kind)
    this.notRun = options.notRun ?? false
    this.retryAfterMs = options.retryAfterMs ?? null
  }
}

export function isPowerError(value: unknown, kind?: PowerErrorKind): value is PowerError {
  return value instanceof PowerError && (kind === undefined || value.kind === kind)
}

/** Turns anything thrown into a PowerError (unknown faults become `protocol`, keeping the original as cause). */
export function toPowerError(err: unknown, context: string): PowerError {
  if (err instanceof PowerError) return err
  const message = err instanceof Error ? err.message : String(err)
  return new PowerError('protocol', `${context}: ${message}`, { cause: err })
}
