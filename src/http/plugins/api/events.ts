import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { RackbootError } from '../../../errors.js'
import type { Logger } from '../../../log.js'
import type { PostgresInventory } from '../../../inventory/index.js'
import type { ApiDeps } from './context.js'
import { createEventHub } from './event-hub.js'
import { seesBootTokens } from '../../redact.js'
import { ErrorSchema, errors } from './schemas.js'

const EventsQuery = Type.Object({
  since: Type.Optional(Type.Integer({ minimum: 0, description: 'Stream events after this seq (exclusive); 0 for all kept. Default: from now. Last-Event-ID wins when both are given.' })),
  types: Type.Optional(Type.String({ maxLength: 512, pattern: '^[a-z.*,]+$', description: 'Comma-separated event types; `boot.*` for a family' })),
  machine: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'Only this machine\'s events (its id)' })),
}, { additionalProperties: false })

export const eventRoutes: FastifyPluginAsync<ApiDeps> = async (app0, deps) => {
  const app = app0.withTypeProvider<TypeBoxTypeProvider>()
  const hub = createEventHub({
    inventory: deps.inventory, bus: deps.bus, log: app.log as unknown as Logger, registry: deps.registry,
    ...(deps.flushTimeline ? { flush: deps.flushTimeline } : {}),
    // PostgreSQL: other instances' events wake the hub at once (LISTEN/NOTIFY) rather than at its next poll.
    ...('watchEvents' in deps.inventory ? { remoteWake: (deps.inventory as PostgresInventory).watchEvents } : {}),
    options: { ...deps.events, ...(deps.maxEventStreamsPerToken !== undefined ? { maxStreamsPerToken: deps.maxEventStreamsPerToken } : {}) },
  })
  // Streams never end on their own: end them before the server waits for its connections to close.
  app.addHook('preClose', async () => hub.close())
  app.addHook('onClose', async () => hub.close())

  app.get('/events', {
    config: { scope: 'read' },
    schema: {
      tags: ['events'], operationId: 'streamEvents',
      summary: 'Server-sent events: machine state changes and boot timeline events, in order, resumable',
      description: 'Each event is `id: <seq>`, `event: <type>`, `data: <JSON event>`. Reconnect with Last-Event-ID (or since=) '
        + 'to resume without gaps. Comment lines keep idle streams alive; a final `shutdown` event precedes a server stop.',
      querystring: EventsQuery,
      headers: Type.Object({ 'last-event-id': Type.Optional(Type.String({ pattern: '^\\d{1,15}$' })) }),
      response: {
        200: { description: 'text/event-stream', content: { 'text/event-stream': { schema: Type.String() } } },
        ...errors(400, 503),
        429: { ...ErrorSchema, description: 'This token holds as many event streams as one token may (http.maxEventStreamsPerToken)' },
      },
    },
  }, async (request, reply) => {
    const lastId = request.headers['last-event-id']
    const since = lastId !== undefined ? Number(lastId) : (request.query.since ?? null)
    const token = request.apiToken!
    const refusal = hub.admit(token.id)
    if (refusal === 'total') {
      throw new RackbootError('RB_ERR_INTERNAL', `too many event streams (${hub.maxStreams}); try again later`, { statusCode: 503 })
    }
    if (refusal === 'per-token') {
      // 429 as power's too-soon: a limit of this client's, which other tokens (the web UI's) do not share.
      reply.header('retry-after', '10')
      throw new RackbootError('RB_ERR_CONFLICT', `token '${token.name}' already holds ${hub.countFor(token.id)} event streams, the most one token may `
        + `hold (http.maxEventStreamsPerToken = ${hub.maxStreamsPerToken}); close one, or give this client its own token`, {
        statusCode: 429, details: { limit: hub.maxStreamsPerToken, open: hub.countFor(token.id) },
      })
    }
    // No await from admit() to open(): the slot admit() granted is taken before another request can ask.
    reply.hijack()
    reply.raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
      connection: 'keep-alive',
    })
    try {
      await hub.open(reply.raw, since, {
        types: request.query.types ? request.query.types.split(',').filter(Boolean) : null,
        machineId: request.query.machine ?? null,
        redactTokens: !seesBootTokens(request.apiToken),
      }, token.id)
    } catch (err) {
      request.log.error({ err }, 'event stream failed')
      reply.raw.end('event: error\ndata: {}\n\n')
    }
  })
}
