import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import type { KernelLogStore } from '../../../talos/receivers/index.js'
import { redactBootTokens, seesBootTokens } from '../../redact.js'
import { machineOf, type ApiDeps } from './context.js'
import { errors, MachineParams, Named } from './schemas.js'

const Query = Type.Object({
  since: Type.Optional(Type.Integer({ minimum: 0, description: 'Cursor: lines after this one (exclusive)' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 2000, default: 200 })),
}, { additionalProperties: false })

const LineSchema = Named('KernelLogLine', Type.Object({
  cursor: Type.Integer(), peer: Type.String(), receivedAt: Type.String(), msg: Type.String(),
  priority: Type.Union([Type.String(), Type.Null()]), facility: Type.Union([Type.String(), Type.Null()]), talosTime: Type.Union([Type.String(), Type.Null()]),
}, { description: 'A kernel log line Talos sent' }))

/**
 * `GET /api/v1/machines/{id}/logs`: the kernel log Talos streamed to rackboot (talos.logging.kernel), newest lines
 * (or those after `since`), from every address the machine used (its leases and the addresses its boots came from).
 * The kernel command line in it carries the boot's config token: a read-only token sees it redacted.
 */
export const logRoutes: FastifyPluginAsync<ApiDeps & { logStore: KernelLogStore; peersOf: (machineId: string) => Promise<string[]> }> = async (base, deps) => {
  const app = base.withTypeProvider<TypeBoxTypeProvider>()
  app.get('/machines/:id/logs', {
    config: { scope: 'read' },
    schema: {
      tags: ['machines'], operationId: 'machineLogs', summary: 'Kernel log lines Talos sent for this machine (bounded, in memory)',
      params: MachineParams, querystring: Query,
      response: { 200: Type.Object({ machineId: Type.String(), peers: Type.Array(Type.String()), lines: Type.Array(LineSchema), next: Type.Union([Type.Integer(), Type.Null()]) }), ...errors(400, 404, 409) },
    },
  }, async (request) => {
    const m = machineOf(request)
    const peers = await deps.peersOf(m.id)
    const limit = request.query.limit ?? 200
    const lines = peers
      .flatMap((peer) => deps.logStore.lines(peer, { ...(request.query.since !== undefined ? { since: request.query.since } : {}), limit }).map((l) => ({ ...l, peer })))
      .sort((a, b) => a.cursor - b.cursor)
    const page = request.query.since !== undefined ? lines.slice(0, limit) : lines.slice(-limit)
    const text = seesBootTokens(request.apiToken) ? (msg: string) => msg : redactBootTokens
    return {
      machineId: m.id,
      peers,
      lines: page.map((l) => ({ cursor: l.cursor, peer: l.peer, receivedAt: new Date(l.receivedAt).toISOString(), msg: text(l.msg), priority: l.priority ?? null, facility: l.facility ?? null, talosTime: l.talosTime ?? null })),
      next: page.length > 0 ? page[page.length - 1]!.cursor : null,
    }
  })
}
