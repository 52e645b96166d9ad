import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { MACHINE_STATES, type MachineState } from '../../../inventory/index.js'
import type { ApiDeps } from './context.js'
import { commaList, machineFilter } from './query.js'
import { errors, EventSchema, eventView, Nullable } from './schemas.js'
import { redactBootTokensDeep, seesBootTokens } from '../../redact.js'

// Two reads the web UI's inventory page needs and the machine list cannot give without walking every page:
// machines per state (the counts over a filtered inventory of 100,000), and each listed machine's newest event
// (where it is in its boot). Both are bounded: seven counts, and at most one page of machines.

const CountsQuery = Type.Object({
  label: Type.Optional(Type.Array(Type.String({ pattern: '^[^=]+=.*$' }), { description: 'key=value, repeatable; all must match' })),
  rack: Type.Optional(Type.String({ maxLength: 128 })),
  q: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'Free text over id, name, serial, UUID and MACs' })),
}, { additionalProperties: false })

const CountsResponse = Type.Object({
  total: Type.Integer(),
  states: Type.Record(Type.String(), Type.Integer(), { description: 'Machines per state (every state, zeros included)' }),
})

const LatestQuery = Type.Object({
  machine: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 200, description: 'Machine ids, repeat or comma-separate' }),
}, { additionalProperties: false })

const QueueResponse = Type.Object({
  items: Type.Array(Type.Object({ machineId: Type.String(), rack: Nullable(Type.String()), since: Type.String({ format: 'date-time' }), position: Type.Integer() })),
})

const LatestResponse = Type.Object({
  items: Type.Array(Type.Object({ machineId: Type.String(), event: Nullable(EventSchema) })),
})

export const overviewRoutes: FastifyPluginAsync<ApiDeps> = async (base, deps) => {
  const app = base.withTypeProvider<TypeBoxTypeProvider>()
  const { inventory } = deps

  app.get('/overview/counts', {
    config: { scope: 'read' },
    schema: {
      tags: ['machines'], operationId: 'countMachines', summary: 'How many machines are in each state (with the list filters except state)',
      querystring: CountsQuery, response: { 200: CountsResponse, ...errors(400) },
    },
  }, async (request) => {
    const q = request.query
    const filter = machineFilter(q)
    const counts = await Promise.all(MACHINE_STATES.map((state) => inventory.machines.count({ ...filter, state })))
    const states = Object.fromEntries(MACHINE_STATES.map((s, i) => [s, counts[i]!])) as Record<MachineState, number>
    return { total: counts.reduce((a, b) => a + b, 0), states }
  })

  app.get('/overview/latest-events', {
    config: { scope: 'read' },
    preValidation: commaList('machine'),
    schema: {
      tags: ['events'], operationId: 'latestEvents', summary: "Each machine's newest timeline event (a page of machines at most)",
      querystring: LatestQuery, response: { 200: LatestResponse, ...errors(400) },
    },
  }, async (request) => {
    const ids = [...new Set(request.query.machine)]
    const redact = !seesBootTokens(request.apiToken)
    const items = []
    for (const machineId of ids) {
      // One indexed lookup (machine_id, seq) per machine.
      const [last] = await inventory.events.list({ machineId, limit: 1, newest: true })
      items.push({ machineId, event: last ? eventView(redact ? redactBootTokensDeep(last) : last) : null })
      // SQLite answers synchronously: let DHCP and TFTP packets in between machines, not after the whole page.
      await new Promise((resolve) => setImmediate(resolve))
    }
    return { items }
  })

  app.get('/overview/queue', {
    config: { scope: 'read' },
    schema: {
      tags: ['overview'], operationId: 'installQueue',
      summary: 'Machines waiting for an install slot (provisioning.maxConcurrent, provisioning.maxPerRack), in order',
      response: { 200: QueueResponse },
    },
  }, async () => ({ items: (deps.repair?.queue() ?? []).map((q) => ({ ...q, since: new Date(q.since).toISOString() })) }))
}
