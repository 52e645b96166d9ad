// What an IPMI completion code says about the request it answers: the error kind, and whether it proves the BMC
// did not carry the request out (PowerError `notRun`), which is what allows the manager to send it again.
import { PowerError, toPowerError } from '../errors.js'
import { COMPLETION_CODES } from './constants.js'

export function describeCompletionCode(cc: number): string {
  const text = COMPLETION_CODES[cc] ?? (cc >= 0x80 && cc <= 0xbe ? 'command-specific error' : 'unknown error')
  return `${text} (0x${cc.toString(16).padStart(2, '0')})`
}

/**
 * Generic codes (IPMI v2.0 table 5-2) that refuse a request before it is carried out: busy, invalid command or
 * data, insufficient privilege, not in this state, ... Not in the list, because they do not prove that:
 * - 0xC3 "timeout while processing command": the BMC started it and did not finish in time.
 * - 0xCE "command response could not be provided": the response failed, not necessarily the command.
 * - 0xCF "cannot execute duplicated request": some copy of it was carried out.
 * - 0xFF "unspecified error": ipmi_sim answers 0xFF after calling its chassis-control handler (soft-off and
 *   identify when the handler fails, bmc.md §1), i.e. after it acted; pyghmi answers 0xFF for an exception thrown
 *   while it handles the request. Either may have done it.
 * - command-specific (0x80-0xBE) and unknown codes: their meaning is the vendor's, so they prove nothing.
 */
const PROVES_NOT_RUN = new Set([
  0xc0, 0xc1, 0xc2, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd,
  0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6,
])

export function provesNotRun(cc: number): boolean {
  return PROVES_NOT_RUN.has(cc)
}

/** The PowerError for a non-zero completion code the BMC at `label` answered to `step`. */
export function completionError(label: string, step: string, cc: number): PowerError {
  const kind = cc === 0xc0 || cc === 0xd2 ? 'busy'
    : cc === 0xc3 ? 'timeout'
      : cc === 0xc1 || cc === 0xd6 ? 'unsupported'
        : cc === 0xd4 ? 'auth'
          : 'rejected'
  const notRun = provesNotRun(cc)
  const why = cc === 0xd5 ? ' (the chassis cannot do it in its present state)'
    : cc === 0xd4 ? ' (the session privilege or the user\'s limit is too low)'
      : notRun ? '' : '; it may have been carried out'
  return new PowerError(kind, `BMC ${label} refused ${step}: ${describeCompletionCode(cc)}${why}`, {
    details: { bmc: label, step, completionCode: cc }, notRun,
  })
}

/**
 * The same error marked `notRun`: for failures before the request that changes the machine left (session
 * set-up, an abort or a spent budget before sending), which prove the BMC cannot have carried it out.
 */
export function asNotRun(err: unknown, context: string): PowerError {
  const e = toPowerError(err, context)
  if (e.notRun) return e
  const { kind: _kind, ...details } = (e.details ?? {}) as Record<string, unknown>
  const copy = new PowerError(e.kind, e.message, {
    cause: e.cause, details, retryable: e.retryable, notRun: true, retryAfterMs: e.retryAfterMs ?? undefined,
  })
  copy.stack = e.stack
  return copy
}
