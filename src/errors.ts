// One catalogue of rackboot's error codes (fastify's lib/errors.js shape): callers branch on `code`, never on text.
export const ErrorCodes = {
  RB_ERR_SETTINGS: 400,
  RB_ERR_VALIDATION: 400,
  RB_ERR_INVENTORY_FILE: 400,
  RB_ERR_NOT_FOUND: 404,
  RB_ERR_MACHINE_NOT_FOUND: 404,
  RB_ERR_CONFLICT: 409,
  RB_ERR_INVALID_TRANSITION: 409,
  RB_ERR_UNAUTHORIZED: 401,
  RB_ERR_FORBIDDEN: 403,
  RB_ERR_STORAGE: 500,
  RB_ERR_CRYPTO: 500,
  RB_ERR_INTERNAL: 500,
  /** The request is fine but what it asks for cannot be served as the inventory stands (a user's to fix): 503, logged at warn. */
  RB_ERR_NOT_SERVABLE: 503,
  /** A BMC failed, refused or did not answer (502/504; the message names the BMC and its answer). */
  RB_ERR_BMC: 502,
} as const

export type ErrorCode = keyof typeof ErrorCodes

export interface RackbootErrorOptions extends ErrorOptions {
  details?: unknown
  statusCode?: number
}

export class RackbootError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number
  readonly details: unknown

  constructor(code: ErrorCode, message: string, options: RackbootErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'RackbootError'
    this.code = code
    this.statusCode = options.statusCode ?? ErrorCodes[code]
    this.details = options.details
  }
}

export function isRackbootError(value: unknown, code?: ErrorCode): value is RackbootError {
  return value instanceof RackbootError && (code === undefined || value.code === code)
}

export class NotFoundError extends RackbootError {
  constructor(entity: string, key: string) {
    super(entity === 'machine' ? 'RB_ERR_MACHINE_NOT_FOUND' : 'RB_ERR_NOT_FOUND', `${entity} not found: ${key}`, {
      details: { entity, key },
    })
  }
}
