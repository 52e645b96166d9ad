import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { RackbootError } from '../../../errors.js'
import {
  checkMachineNetwork, MachineNetworkSchema, normalizeMachineNetwork, type Bmc, type Inventory, type Machine, type MachineInput, type MachineScan, type MachineScanPage, type MachineScanViews,
  type MachineSort, type MachineSortKey, type MachineState,
} from '../../../inventory/index.js'
import { andSelectors, compileSelector, type Selector } from '../../../matching/index.js'
import { redactBootTokensDeep, seesBootTokens } from '../../redact.js'
import { actor, machineOf, type ApiDeps } from './context.js'
import { commaList, machineFilter } from './query.js'
import { classMatcher, machineExtras, machineViews, oneMachineView } from './views.js'
import {
  bmcView, errors, eventView, leaseView, machineAllocationView, MachineDetailSchema, MachineParams, MachineSchema,
  machineView, Named, Nullable, PowerOutcomeSchema, refuseValue, StateSchema, StringEnum, AllocationSchema, allocationView,
} from './schemas.js'

const LABEL_KEY = '^[A-Za-z0-9]([A-Za-z0-9._/-]{0,251}[A-Za-z0-9])?$'
/** Rows a list request examines at most when a selector filters in JS; the page then ends early with a cursor. */
const SCAN_BUDGET = 5000

const SORT_KEYS = ['name', 'state', 'rack', 'serial', 'createdAt', 'updatedAt'] as const satisfies readonly MachineSortKey[]
const SORTS = [...SORT_KEYS, ...SORT_KEYS.map((k) => `-${k}` as const)] as const

/** `-name` → name, descending. */
export function parseSort(sort: string | undefined): MachineSort | undefined {
  if (!sort) return undefined
  const desc = sort.startsWith('-')
  return { key: (desc ? sort.slice(1) : sort) as MachineSortKey, desc }
}

const ListQuery = Type.Object({
  state: Type.Optional(Type.Array(StateSchema, { description: 'Repeat or comma-separate: state=ready&state=discovered' })),
  class: Type.Optional(Type.String({ minLength: 1, maxLength: 63, description: "Machines matching this class's selectors" })),
  selector: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, description: 'A selector expression, e.g. cpu.cores >= 32 and labels.rack in [r12, r13]' })),
  label: Type.Optional(Type.Array(Type.String({ pattern: '^[^=]+=.*$' }), { description: 'key=value, repeatable; all must match' })),
  rack: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: "Exact rack (the machine's rack field, not a label)" })),
  serial: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'Exact serial' })),
  sort: Type.Optional(StringEnum(SORTS, {
    description: 'Page order: by this field then id; a leading - for descending. Default: id order. Machines without a name, rack or serial come first ascending, last descending. A cursor continues the order it was made in (400 for another sort).',
  })),
  q: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'Free text over id, name, serial, UUID and MACs' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  cursor: Type.Optional(Type.String({ maxLength: 512, description: 'The `next` of the previous page' })),
}, { additionalProperties: false })

const ListResponse = Named('MachinePage', Type.Object({
  items: Type.Array(MachineSchema),
  next: Nullable(Type.String({ description: 'Cursor of the next page; null at the end. A page may hold fewer than `limit` items.' })),
}, { description: 'A page of machines' }))

const PatchBody = Type.Object({
  labels: Type.Optional(Type.Record(Type.String({ pattern: LABEL_KEY }), Nullable(Type.String({ maxLength: 256 })), {
    additionalProperties: false, maxProperties: 128,
    description: 'Merged into the labels (JSON merge patch): a null value removes the label',
  })),
  rack: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 128 }))),
  rackUnit: Type.Optional(Nullable(Type.Integer({ minimum: 0, maximum: 1000 }))),
  network: Type.Optional(Nullable(MachineNetworkSchema)),
}, { additionalProperties: false, minProperties: 1 })

const MaintenanceBody = Type.Object({
  on: Type.Boolean({ description: 'true: into maintenance (nothing boots); false: back to new or discovered' }),
  reason: Type.Optional(Type.String({ maxLength: 256 })),
}, { additionalProperties: false })

const ReleaseBody = Type.Object({
  pxeBoot: Type.Optional(Type.Boolean({ default: true, description: 'PXE-boot the machine now through its BMC so the wipe starts' })),
}, { additionalProperties: false })

const RetryBody = Type.Object({
  reason: Type.Optional(Type.String({ maxLength: 256 })),
  pxeBoot: Type.Optional(Type.Boolean({ default: true, description: 'PXE-boot the machine now through its BMC' })),
}, { additionalProperties: false })

const RetryResponse = Named('RetryResult', Type.Object({ machine: MachineSchema, power: Nullable(PowerOutcomeSchema) }, { description: 'The machine back in provisioning' }))

const ReplaceBody = Type.Object({
  idempotencyKey: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'A retried call with the same key returns the first result' })),
  powerOn: Type.Optional(Type.Boolean({ default: false, description: 'PXE-boot the replacement now through its BMC' })),
}, { additionalProperties: false })

const ReplaceResponse = Named('ReplaceResult', Type.Object({
  allocation: AllocationSchema,
  replayed: Type.Boolean(),
  replaced: Nullable(Type.Object({ id: Type.String(), action: StringEnum(['released', 'quarantined']) })),
}, { description: 'The allocation holding the replacement, and what became of the replaced machine' }))

const ReleaseResponse = Named('ReleaseResult', Type.Object({
  machine: MachineSchema,
  released: Type.Boolean({ description: 'false when the machine was already released' }),
  allocationId: Nullable(Type.String()),
  power: Nullable(PowerOutcomeSchema),
}, { description: 'The released machine' }))

const DetailQuery = Type.Object({
  timeline: Type.Optional(Type.Integer({ minimum: 0, maximum: 500, default: 50, description: 'Newest timeline events to include' })),
}, { additionalProperties: false })

const DeleteQuery = Type.Object({
  force: Type.Optional(Type.Boolean({ default: false, description: 'Also delete a machine that is provisioning or installed' })),
}, { additionalProperties: false })

type ViewedPage = MachineScanPage

/** One page of machines matching SQL filters plus a selector evaluated in JS (pre-filtered by its bounds). */
export async function listMachines(inventory: Inventory, scan: MachineScan, selector: Selector | null, views?: { now: number }): Promise<ViewedPage> {
  const limit = scan.limit ?? 100
  const ask = (s: MachineScan) => inventory.queries.scanMachines(views ? { ...s, views } : s)
  if (!selector) return ask({ ...scan })
  const items: Machine[] = []
  let seen: Map<string, MachineScanViews> | undefined = views ? new Map() : undefined
  let after = scan.after
  let examined = 0
  // The SQL bounds usually leave only matches: ask for a page's worth, more when the selector weeds rows out.
  let size = limit
  for (;;) {
    const page = await ask({ ...scan, hardware: selector.bounds, limit: size, ...(after ? { after } : {}) })
    if (!page.views) seen = undefined
    size = Math.min(1000, size * 2)
    for (const m of page.items) {
      examined++
      if (selector.matches(m)) {
        items.push(m)
        const v = page.views?.get(m.id)
        if (v) seen?.set(m.id, v)
        if (items.length === limit) return { items, next: inventory.queries.machineCursor(m, scan.sort), ...(seen ? { views: seen } : {}) }
      }
    }
    if (!page.next) return { items, next: null, ...(seen ? { views: seen } : {}) }
    after = page.next
    if (examined >= SCAN_BUDGET) return { items, next: page.next, ...(seen ? { views: seen } : {}) }
  }
}

export const machineRoutes: FastifyPluginAsync<ApiDeps> = async (base, deps) => {
  const app = base.withTypeProvider<TypeBoxTypeProvider>()
  const { inventory, lifecycle } = deps
  /** A machine with its BMC summary, last power state, address and class, as every machine answer has them. */
  const view = (m: Machine) => oneMachineView(inventory, m)

  app.get('/machines', {
    config: { scope: 'read' },
    // state=ready,discovered as well as state=ready&state=discovered.
    preValidation: commaList('state'),
    schema: {
      tags: ['machines'], operationId: 'listMachines', summary: 'List machines',
      description: 'Filters combine (and). Pages follow the machine id order, or `sort`; pass `next` back as `cursor` (with the same filters and sort).',
      querystring: ListQuery, response: { 200: ListResponse, ...errors(400, 422) },
    },
  }, async (request) => {
    const q = request.query
    // The classes are read once, beside the scan rather than after it: the page's machines are matched against
    // them, and a `class` filter takes its selectors from them (only then does the scan wait for them).
    const classes = inventory.classes.list()
    const selector = async (): Promise<Selector | null> => {
      const own = q.selector ? compileSelector(q.selector) : null
      if (!q.class) return own
      const cls = (await classes).find((c) => c.name === q.class)
      if (!cls) throw new RackbootError('RB_ERR_VALIDATION', `no class named '${q.class}'`, { statusCode: 422, details: { class: q.class } })
      const classSelector = compileSelector(cls.selectors)
      return own ? andSelectors(classSelector, own) : classSelector
    }
    const scan: MachineScan = {
      ...(q.state ? { state: q.state as MachineState[] } : {}),
      ...machineFilter(q),
      ...(q.serial ? { serial: q.serial } : {}),
      ...(q.sort ? { sort: parseSort(q.sort)! } : {}),
      ...(q.cursor ? { after: q.cursor } : {}),
      limit: q.limit ?? 100,
    }
    const [all, page] = await Promise.all([classes, selector().then((s) => listMachines(inventory, scan, s, { now: Date.now() }))])
    const views = page.views
    if (!views || page.items.some((m) => !views.has(m.id))) return { items: await machineViews(inventory, page.items, all), next: page.next }
    // Everything came with the page (one statement): only the class is matched here.
    const match = classMatcher(all)
    return {
      items: page.items.map((m) => {
        const v = views.get(m.id)!
        return machineView(m, v.bmc as Bmc | null, { address: v.address, class: match(m) })
      }),
      next: page.next,
    }
  })

  app.get('/machines/:id', {
    config: { scope: 'read' },
    schema: {
      tags: ['machines'], operationId: 'getMachine', summary: 'One machine with hardware, BMC (no secrets), leases, allocation and timeline',
      params: MachineParams, querystring: DetailQuery, response: { 200: MachineDetailSchema, ...errors(400, 404, 409) },
    },
  }, async (request) => {
    const m = machineOf(request)
    const n = request.query.timeline ?? 50
    const [{ bmcs, extras }, allocation, events, leases] = await Promise.all([
      machineExtras(inventory, [m]),
      inventory.allocations.current(m.id),
      n > 0 ? inventory.events.list({ machineId: m.id, limit: n, newest: true }) : Promise.resolve([]),
      Promise.all(m.nics.map((nic) => inventory.leases.list({ mac: nic.mac }))),
    ])
    const now = Date.now()
    const bmc = bmcs.get(m.id) ?? null
    return {
      ...machineView(m, bmc, extras(m)),
      facts: m.hardware,
      bmc: bmc ? bmcView(bmc) : null,
      leases: leases.flat().filter((l) => (l.state === 'bound' || l.state === 'offered') && l.expiresAt > now).map(leaseView),
      allocation: allocation ? machineAllocationView(allocation) : null,
      // Events can quote a boot's token (a config URL in a Talos error): not for read-only tokens.
      timeline: seesBootTokens(request.apiToken) ? events.map(eventView) : events.map((e) => redactBootTokensDeep(eventView(e))),
      repair: ((r) => r && { ...r, phaseSince: new Date(r.phaseSince).toISOString(), deadlineAt: new Date(r.deadlineAt).toISOString() })(deps.repair?.status(m.id) ?? null),
    }
  })

  app.patch('/machines/:id', {
    config: { scope: 'provision' },
    schema: {
      tags: ['machines'], operationId: 'updateMachine', summary: 'Change labels (merge), rack location and static network (replace; null: DHCP)',
      params: MachineParams, body: PatchBody, response: { 200: MachineSchema, ...errors(400, 404, 409) },
    },
  }, async (request) => {
    const m = machineOf(request)
    const b = request.body
    const input: MachineInput = {}
    if (b.labels) {
      const labels = { ...m.labels }
      for (const [k, v] of Object.entries(b.labels)) {
        if (v === null) delete labels[k]
        else labels[k] = v
      }
      input.labels = labels
    }
    if (b.rack !== undefined) input.rack = b.rack
    if (b.rackUnit !== undefined) input.rackUnit = b.rackUnit
    if (b.network !== undefined) {
      if (b.network !== null) refuseValue('network', checkMachineNetwork(b.network))
      input.network = b.network === null ? null : normalizeMachineNetwork(b.network)
    }
    return view(await lifecycle.update(m.id, input, `${Object.keys(input).join(', ')} changed by ${actor(request)}`))
  })

  app.post('/machines/:id/accept', {
    config: { scope: 'provision' },
    schema: {
      tags: ['machines'], operationId: 'acceptMachine', summary: 'Accept a discovered machine into the pool (ready)',
      params: MachineParams, response: { 200: MachineSchema, ...errors(400, 404, 409) },
    },
  }, async (request) => {
    const m = machineOf(request)
    if (m.state === 'ready') return view(m)
    return view(await lifecycle.accept(m.id, `accepted by ${actor(request)}`))
  })

  app.post('/machines/:id/maintenance', {
    config: { scope: 'provision' },
    schema: {
      tags: ['machines'], operationId: 'setMaintenance', summary: 'Maintenance on or off',
      params: MachineParams, body: MaintenanceBody, response: { 200: MachineSchema, ...errors(400, 404, 409) },
    },
  }, async (request) => {
    const m = machineOf(request)
    const { on, reason } = request.body
    if (on && m.state === 'maintenance') return view(m)
    const cause = `maintenance ${on ? 'on' : 'off'} by ${actor(request)}${reason ? `: ${reason}` : ''}`
    return view(await lifecycle.setMaintenance(m.id, on, cause))
  })

  app.post('/machines/:id/release', {
    config: { scope: 'provision' },
    // A release needs no body: no body means the defaults.
    preValidation: async (request) => {
      if (request.body === undefined || request.body === null) request.body = {}
    },
    schema: {
      tags: ['allocations'], operationId: 'releaseMachine',
      summary: 'Release an allocated machine: the discovery agent wipes its disks, then it is ready again',
      params: MachineParams, body: ReleaseBody, response: { 200: ReleaseResponse, ...errors(400, 404, 409) },
    },
  }, async (request) => {
    const m = machineOf(request)
    const r = await deps.allocator.release(m.id, { cause: `released by ${actor(request)}`, pxeBoot: request.body?.pxeBoot ?? true })
    return { machine: await view(r.machine), released: r.released, allocationId: r.allocation?.allocationId ?? null, power: r.power }
  })

  app.post('/machines/:id/retry', {
    config: { scope: 'provision' },
    schema: {
      tags: ['machines'], operationId: 'retryMachine',
      summary: 'Take a failed (quarantined) machine back to provisioning, its failure counts reset; a machine with a BMC is PXE-booted now',
      params: MachineParams, body: Type.Optional(RetryBody), response: { 200: RetryResponse, ...errors(400, 404, 409) },
    },
  }, async (request) => {
    const m = machineOf(request)
    if (m.state !== 'failed') {
      throw new RackbootError('RB_ERR_INVALID_TRANSITION', `machine ${m.id} is ${m.state}: only a failed machine is retried`, { details: { id: m.id, state: m.state } })
    }
    if (!(await inventory.allocations.current(m.id))) {
      throw new RackbootError('RB_ERR_INVALID_TRANSITION', `machine ${m.id} left its cluster (it was replaced): nothing to retry; send it to maintenance to look at it`, { details: { id: m.id, state: m.state, reason: 'not-allocated' } })
    }
    const reason = request.body?.reason
    const after = await lifecycle.transition(m.id, 'provisioning', `retry by ${actor(request)}${reason ? `: ${reason}` : ''}`, { from: 'failed' })
    let power = null
    if ((request.body?.pxeBoot ?? true) && deps.power && (await inventory.bmcs.get(m.id))) {
      try {
        await deps.power.netbootNow(m.id, { ...(m.firmware ? { mode: m.firmware } : {}), ifTooSoon: 'defer' })
        power = { status: 'done' as const, message: 'PXE boot started through the BMC' }
      } catch (err) {
        power = { status: 'failed' as const, message: `PXE boot through the BMC failed: ${(err as Error).message}` }
      }
    }
    return { machine: await view(after), power }
  })

  app.post('/machines/:id/replace', {
    config: { scope: 'provision' },
    preValidation: async (request) => {
      if (request.body === undefined || request.body === null) request.body = {}
    },
    schema: {
      tags: ['allocations'], operationId: 'replaceMachine',
      summary: 'Atomically allocate a ready machine of the same class and role into the same cluster (same profile and patches) and release this one, or keep it quarantined if it failed',
      params: MachineParams, body: ReplaceBody, response: { 201: ReplaceResponse, 200: ReplaceResponse, ...errors(400, 404, 409, 422) },
    },
  }, async (request, reply) => {
    const m = machineOf(request)
    const r = await deps.allocator.replace(m.id, { idempotencyKey: request.body.idempotencyKey ?? null, powerOn: request.body.powerOn ?? false, cause: `replacement by ${actor(request)}` })
    reply.status(r.replayed ? 200 : 201)
    return { allocation: allocationView(r.allocation), replayed: r.replayed, replaced: r.replaced }
  })

  app.delete('/machines/:id', {
    config: { scope: 'admin' },
    schema: {
      tags: ['machines'], operationId: 'deleteMachine', summary: 'Delete a machine from the inventory',
      params: MachineParams, querystring: DeleteQuery,
      response: { 204: Type.Null({ description: 'Deleted' }), ...errors(400, 404, 409) },
    },
  }, async (request, reply) => {
    const m = machineOf(request)
    if ((m.state === 'provisioning' || m.state === 'installed') && !request.query.force) {
      throw new RackbootError('RB_ERR_CONFLICT', `machine ${m.id} is ${m.state}: release it first, or pass force=true`, { details: { id: m.id, state: m.state } })
    }
    await lifecycle.remove(m.id, `deleted by ${actor(request)}`)
    return reply.status(204).send(null)
  })
}
