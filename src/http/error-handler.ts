import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { isRackbootError } from '../errors.js'

/** Every error answer has the shape {error, message, details}; 5xx internals stay in the log. */
export function errorHandler(err: FastifyError | Error, request: FastifyRequest, reply: FastifyReply): void {
  // The path only: a query can carry a boot token (?t=).
  const url = request.url.split('?')[0]
  if (isRackbootError(err)) {
    // A user's to fix (a bad request, an unknown machine, a missing scope, a profile with no disk that fits): a
    // warning with the code and the reason, no stack trace. A BMC's failure (502/504, the BMC's address and message)
    // and RB_ERR_NOT_SERVABLE (503) are answers to show too, not our internal errors.
    // So is a database that cannot be reached or stays locked (RB_ERR_STORAGE 503: a restart, a failover, a long
    // write by another process): the message says what to wait for.
    if (err.statusCode < 500 || err.code === 'RB_ERR_NOT_SERVABLE' || err.code === 'RB_ERR_BMC' || err.statusCode === 503) {
      // Refused credentials (401, 403) at debug: anyone on the network can send them as fast as they like; they are
      // counted (rackboot_api_auth_denied_total, rackboot_security_events_total), boot-token refusals warned once a window.
      const refused = err.statusCode === 401 || err.statusCode === 403
      request.log[refused ? 'debug' : 'warn']({ code: err.code, status: err.statusCode, url }, err.message)
      reply.status(err.statusCode).send({ error: err.code, message: err.message, details: err.details ?? null })
      return
    }
    request.log.error({ err, url }, 'request failed')
    reply.status(err.statusCode).send({ error: err.code, message: 'internal error', details: null })
    return
  }
  const fe = err as FastifyError
  if (fe.validation) {
    request.log.warn({ code: 'RB_ERR_VALIDATION', status: 400, url }, fe.message)
    reply.status(400).send({ error: 'RB_ERR_VALIDATION', message: fe.message, details: fe.validation })
    return
  }
  const status = typeof fe.statusCode === 'number' && fe.statusCode >= 400 ? fe.statusCode : 500
  // fastify's own 4xx (a body too large, malformed JSON) are the client's too; anything else is ours, with its stack.
  if (status >= 500) request.log.error({ err, url }, 'request failed')
  else request.log.warn({ code: fe.code ?? 'RB_ERR_REQUEST', status, url }, fe.message)
  reply.status(status).send({
    error: fe.code ?? (status >= 500 ? 'RB_ERR_INTERNAL' : 'RB_ERR_REQUEST'),
    message: status >= 500 ? 'internal error' : fe.message,
    details: null,
  })
}
