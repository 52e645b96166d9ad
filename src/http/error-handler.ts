import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { isRackbootError } from '../errors.js'

/** Every error answer has the shape {error, message, details}; 5xx internals stay in the log. */
export function errorHandler(err: FastifyError | Error, request: FastifyRequest, reply: FastifyReply): void {
  if (isRackbootError(err)) {
    // A user's to fix (a profile with no disk that fits, no base config): a warning with the reason, no stack trace.
    // A BMC's failure is its own answer to show (502/504, the BMC's address and message), not our internal error.
    if (err.code === 'RB_ERR_NOT_SERVABLE' || err.code === 'RB_ERR_BMC') {
      request.log.warn({ code: err.code, url: request.url.split('?')[0] }, err.message)
      reply.status(err.statusCode).send({ error: err.code, message: err.message, details: err.details ?? null })
      return
    }
    if (err.statusCode >= 500) request.log.error({ err }, 'request failed')
    reply.status(err.statusCode).send({
      error: err.code,
      message: err.statusCode >= 500 ? 'internal error' : err.message,
      details: err.statusCode >= 500 ? null : (err.details ?? null),
    })
    return
  }
  const fe = err as FastifyError
  if (fe.validation) {
    reply.status(400).send({ error: 'RB_ERR_VALIDATION', message: fe.message, details: fe.validation })
    return
  }
  const status = typeof fe.statusCode === 'number' && fe.statusCode >= 400 ? fe.statusCode : 500
  if (status >= 500) request.log.error({ err }, 'request failed')
  reply.status(status).send({
    error: fe.code ?? (status >= 500 ? 'RB_ERR_INTERNAL' : 'RB_ERR_REQUEST'),
    message: status >= 500 ? 'internal error' : fe.message,
    details: null,
  })
}
