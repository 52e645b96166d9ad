import Type, { type Static, type TSchema, type TUnsafe } from 'typebox'
import { RackbootError } from '../../../errors.js'
import { DiskSelectorSchema, MACHINE_STATES, MachineNetworkSchema, PhaseDeadlinesSchema, type ValueProblem } from '../../../inventory/index.js'
import type {
  Allocation, Bmc, BmcPowerState, Cluster, Lease, Machine, MachineAddress, MachineAllocation, MachineClass, MachineState, Profile, StoredEvent,
} from '../../../inventory/index.js'

// The API's shapes (TypeBox → JSON Schema): request validation, response serialization and the OpenAPI document
// all come from these. Times are RFC 3339 strings; ids are opaque strings.

/**
 * T or null. Written as `type: [T, 'null']` where T has a single type (rather than anyOf), which JSON Schema 2020-12
 * and OpenAPI 3.1 read the same way and fast-json-stringify serializes without trying each branch.
 */
export function Nullable<T extends TSchema>(t: T): TUnsafe<Static<T> | null> {
  const schema = t as unknown as Record<string, unknown>
  if (typeof schema.type === 'string' && schema.type !== 'null') return Type.Unsafe<Static<T> | null>({ ...schema, type: [schema.type, 'null'] })
  return Type.Unsafe<Static<T> | null>(Type.Union([t, Type.Null()]))
}
const Time = Type.String({ format: 'date-time', description: 'RFC 3339 time' })

/**
 * The API's named schemas, by name. registerOpenApi adds each once to the API's context (app.addSchema, `$id` = the
 * name) and routes refer to it as `{ $ref: 'Name#' }`: fastify serializes with it, and the OpenAPI document lists it
 * under components.schemas, so a generated client has one `Machine` type rather than a copy per route. Answers only:
 * the request validators (plain Ajv instances, index.ts) are not given the shared schemas, so request schemas stay
 * inline.
 */
const NAMED = new Map<string, Record<string, unknown>>()

/**
 * Registers `schema` under `name` and returns a reference to it, typed as the schema (Type.Ref's static type would
 * be unknown, and the handlers' answers would go unchecked). Call at module scope: registerOpenApi adds them before
 * any route is defined.
 */
export function Named<T extends TSchema>(name: string, schema: T): TUnsafe<Static<T>> {
  if (NAMED.has(name)) throw new Error(`schema ${name} is named twice`)
  NAMED.set(name, { ...(schema as unknown as Record<string, unknown>), $id: name })
  return Type.Unsafe<Static<T>>({ $ref: `${name}#` })
}

/** Every named schema, for app.addSchema. */
export function namedSchemas(): Record<string, unknown>[] {
  return [...NAMED.values()]
}

const iso = (ms: number) => new Date(ms).toISOString()
const isoOrNull = (ms: number | null) => (ms === null ? null : iso(ms))

export const ErrorSchema = Named('Error', Type.Object({
  error: Type.String({ description: 'Error code (RB_ERR_...): branch on this, not on the message' }),
  message: Type.String(),
  details: Type.Unknown({ description: 'Code-specific details, or null' }),
}, { description: 'Error' }))

/** The error answers a route can give, each with the common shape. */
export function errors(...codes: number[]): Record<number, TSchema> {
  const text: Record<number, string> = {
    400: 'Malformed request (validation failed)',
    401: 'Missing, unknown, revoked or expired API token',
    403: 'The token lacks the scope this route needs',
    404: 'Not found',
    409: 'Conflict with the current state (or a serial that several machines have: details.candidates)',
    413: 'The request body is larger than this route accepts',
    422: 'Well-formed but refers to something that cannot be used',
    501: 'The BMC cannot do this (no such reset type, boot device or virtual media)',
    502: 'The BMC refused or answered wrongly (its address and answer in the message)',
    503: 'Unavailable',
    504: 'The BMC did not answer, or never showed the result, in time (details.kind: timeout, unknown-outcome, not-verified)',
  }
  // The description next to the $ref is the response's (the schema itself is the shared Error).
  return Object.fromEntries([401, 403, ...codes].map((c) => [c, { ...ErrorSchema, description: text[c] ?? 'Error' }]))
}

/** A string from a fixed set (one `enum`, which reads better in the OpenAPI document than an anyOf of constants). */
export function StringEnum<const T extends readonly string[]>(values: T, options: { description?: string; default?: T[number] } = {}): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options })
}

/** As StringEnum, or null (null is listed in the enum too, or the enum would refuse it). */
export function StringEnumOrNull<const T extends readonly string[]>(values: T, options: { description?: string } = {}): TUnsafe<T[number] | null> {
  return Type.Unsafe<T[number] | null>({ type: ['string', 'null'], enum: [...values, null], ...options })
}

/** The last power state read from a machine's BMC (by an operation or the status poller). */
export const BmcPowerSchema = Named('LastPowerState', Type.Object({
  state: StringEnumOrNull(['on', 'off'], { description: 'null when the last read failed' }),
  checkedAt: Time,
  error: Nullable(Type.String({ description: 'Why the last read failed' })),
}, { description: 'The last power state read from the BMC' }))

/** What a machine list shows of its BMC. */
export const BmcSummarySchema = Named('BmcSummary', Type.Object({
  type: StringEnum(['ipmi', 'redfish']),
  address: Type.String(),
  bootMethod: StringEnum(['pxe', 'uefi-http', 'virtual-media']),
}, { description: 'The machine\'s BMC, in short' }))

/** Inline, for query strings (validated without the named schemas); answers use MachineStateRef. */
export const StateSchema = Type.Unsafe<MachineState>({ type: 'string', enum: [...MACHINE_STATES] })
export const MachineStateRef = Named('MachineState', Type.Unsafe<MachineState>({ ...StateSchema, description: 'Where the machine is in its life' }))
const Labels = Type.Record(Type.String(), Type.String())

export const NicSchema = Named('Nic', Type.Object({ mac: Type.String(), name: Nullable(Type.String()), boot: Type.Boolean() }))

export const HardwareSummarySchema = Named('HardwareSummary', Type.Object({
  cpuCores: Nullable(Type.Number()),
  memoryBytes: Nullable(Type.Number()),
  diskCount: Type.Integer(),
  nvmeCount: Type.Integer(),
}))

/** A machine's static network, as answers show it (request bodies use MachineNetworkSchema inline). */
const MachineNetworkRef = Named('MachineNetwork', MachineNetworkSchema)

/** Machine's fields, which MachineDetail extends. */
const MachineFields = Type.Object({
  id: Type.String(),
  name: Nullable(Type.String()),
  uuid: Nullable(Type.String()),
  serial: Nullable(Type.String()),
  manufacturer: Nullable(Type.String()),
  product: Nullable(Type.String()),
  arch: Nullable(Type.String()),
  firmware: Nullable(Type.String()),
  state: MachineStateRef,
  labels: Labels,
  rack: Nullable(Type.String()),
  rackUnit: Nullable(Type.Integer()),
  alwaysPxe: Type.Boolean(),
  profile: Nullable(Type.String()),
  managedBy: Nullable(Type.String()),
  network: Nullable(MachineNetworkRef),
  nics: Type.Array(NicSchema),
  hardware: Nullable(HardwareSummarySchema),
  hardwareReportedAt: Nullable(Time),
  createdAt: Time,
  updatedAt: Time,
  stateChangedAt: Time,
  bmc: Nullable(BmcSummarySchema),
  power: Nullable(BmcPowerSchema),
  ip: Nullable(Type.String({ description: 'The address the machine has now: an offered or bound DHCP lease of one of its NICs that has not expired, else the reservation of one of its MACs; null when neither' })),
  ipSource: StringEnumOrNull(['lease', 'reservation'], { description: 'Where `ip` comes from' }),
  class: Nullable(Type.String({ description: 'The class the machine matches now (every selector holds; the most selectors wins, a tie by name), as `GET /machines/{id}/class-match` explains; null when none' })),
  effectiveProfile: Nullable(Type.String({ description: 'The profile the machine installs: its own (`profile`), else its class\'s; null when neither names one' })),
}, { description: 'A machine (list view: hardware and BMC summarized)' })
export const MachineSchema = Named('Machine', MachineFields)

/** What a machine answer shows beyond the machine's own record (machineViews computes them for a page at once). */
export interface MachineExtras {
  address: MachineAddress | null
  /** The class it matches now, and that class's profile. */
  class: { name: string; profile: string | null } | null
}

/**
 * A machine as the API shows it; `bmc` is its BMC record (or null), which gives the summary and last power state,
 * `extras` its address and class (views.ts machineViews).
 */
export function machineView(m: Machine, bmc: Bmc | null, extras: MachineExtras) {
  const disks = m.hardware?.disks ?? []
  return {
    id: m.id, name: m.name, uuid: m.uuid, serial: m.serial, manufacturer: m.manufacturer, product: m.product,
    arch: m.arch, firmware: m.firmware, state: m.state, labels: m.labels, rack: m.rack, rackUnit: m.rackUnit,
    alwaysPxe: m.alwaysPxe, profile: m.profile, managedBy: m.managedBy, network: m.network, nics: m.nics,
    hardware: m.hardware
      ? {
          cpuCores: typeof m.hardware.cpu?.cores === 'number' ? m.hardware.cpu.cores : null,
          memoryBytes: typeof m.hardware.memory?.totalBytes === 'number' ? m.hardware.memory.totalBytes : null,
          diskCount: disks.length,
          nvmeCount: disks.filter((d) => d.type === 'nvme').length,
        }
      : null,
    hardwareReportedAt: isoOrNull(m.hardwareReportedAt),
    createdAt: iso(m.createdAt),
    updatedAt: iso(m.updatedAt),
    stateChangedAt: iso(m.stateChangedAt),
    bmc: bmc ? { type: bmc.type, address: bmc.address, bootMethod: bmc.bootMethod } : null,
    power: bmcPowerView(bmc?.power ?? null),
    ip: extras.address?.ip ?? null,
    ipSource: extras.address?.source ?? null,
    class: extras.class?.name ?? null,
    effectiveProfile: m.profile ?? extras.class?.profile ?? null,
  }
}

const BmcFields = Type.Object({
  type: StringEnum(['ipmi', 'redfish']),
  address: Type.String({ description: 'Host or IP; Redfish also https://host[:port]' }),
  port: Nullable(Type.Integer()),
  username: Nullable(Type.String()),
  hasPassword: Type.Boolean({ description: 'A password is stored (it is never returned)' }),
  hasKg: Type.Boolean({ description: 'An IPMI K_G is stored (it is never returned)' }),
  insecure: Type.Boolean({ description: 'Redfish TLS: certificate not verified' }),
  fingerprint: Nullable(Type.String({ description: 'Redfish TLS: sha256 of the pinned certificate, 64 hex digits' })),
  systemId: Nullable(Type.String({ description: 'Redfish: the system driven (Id or /redfish/v1/Systems/<id>); null: the only one' })),
  ca: Nullable(Type.String({ description: 'Redfish TLS: CA certificate(s), PEM, trusted for this BMC besides the system store' })),
  auth: StringEnum(['auto', 'session', 'basic'], { description: 'Redfish: session (X-Auth-Token), basic, or auto (session, basic where there is no SessionService)' }),
  cipherSuites: Nullable(Type.Array(Type.Integer(), { description: 'IPMI: cipher suites in the order tried; null: the settings\' default' })),
  privilege: StringEnumOrNull(['user', 'operator', 'administrator'], { description: 'IPMI: session privilege; null: administrator' }),
  bootVerify: StringEnumOrNull(['strict', 'device'], { description: 'IPMI: boot override read-back; null: the settings\' default' }),
  bootMethod: StringEnum(['pxe', 'uefi-http', 'virtual-media'], { description: 'How the lifecycle network-boots the machine through this BMC' }),
}, { description: 'BMC access and settings, without secrets' })
export const BmcSchema = Named('BmcSettings', BmcFields)

export function bmcView(b: Bmc) {
  return {
    type: b.type, address: b.address, port: b.port, username: b.username, hasPassword: b.hasPassword, hasKg: b.hasKg,
    insecure: b.insecure, fingerprint: b.fingerprint, systemId: b.systemId, ca: b.caPem, auth: b.auth,
    cipherSuites: b.cipherSuites, privilege: b.privilege, bootVerify: b.bootVerify, bootMethod: b.bootMethod,
  }
}

export function bmcPowerView(p: BmcPowerState | null) {
  return p ? { state: p.state, checkedAt: iso(p.checkedAt), error: p.error } : null
}

/** The BMC's record with its last power state, as GET /machines/{id}/bmc answers. */
export const BmcStateSchema = Named('Bmc', Type.Object({
  machineId: Type.String(),
  ...BmcFields.properties,
  power: Nullable(BmcPowerSchema),
}, { description: 'A machine\'s BMC: access, settings (no secrets) and the last power state read' }))

export function bmcStateView(b: Bmc) {
  return { machineId: b.machineId, ...bmcView(b), power: bmcPowerView(b.power) }
}

export const LeaseSchema = Named('Lease', Type.Object({
  ip: Type.String(), mac: Type.String(), subnet: Type.String(), state: Type.String(), hostname: Nullable(Type.String()), expiresAt: Time,
}, { description: 'A DHCP lease' }))

export function leaseView(l: Lease) {
  return { ip: l.ip, mac: l.mac, subnet: l.subnet, state: l.state, hostname: l.hostname, expiresAt: iso(l.expiresAt) }
}

export const EventSchema = Named('Event', Type.Object({
  seq: Type.Integer({ description: 'Position in the event log: the stream cursor' }),
  machineId: Nullable(Type.String()),
  type: Type.String({ description: 'machine.state, machine.created, machine.updated, machine.deleted, boot.*, power, ...' }),
  at: Time,
  message: Type.String(),
  data: Type.Record(Type.String(), Type.Unknown()),
}, { description: 'An event of the event log (a machine\'s timeline)' }))

export function eventView(e: StoredEvent) {
  return { seq: e.seq, machineId: e.machineId, type: e.type, at: iso(e.at), message: e.message, data: e.data }
}

const RoleRef = Named('Role', StringEnum(['controlplane', 'worker'], { description: 'Talos machine type' }))

export const MachineAllocationSchema = Named('MachineAllocation', Type.Object({
  allocationId: Type.String(),
  class: Nullable(Type.String()),
  cluster: Nullable(Type.String()),
  role: Nullable(RoleRef),
  profile: Nullable(Type.String()),
  patches: Type.Array(Type.Unknown()),
  allocatedAt: Time,
}, { description: 'The allocation that holds a machine' }))

export function machineAllocationView(a: MachineAllocation) {
  return { allocationId: a.allocationId, class: a.class, cluster: a.cluster, role: a.role, profile: a.profile, patches: a.patches, allocatedAt: iso(a.allocatedAt) }
}

export const MachineDetailSchema = Named('MachineDetail', Type.Object({
  ...MachineFields.properties,
  facts: Nullable(Type.Record(Type.String(), Type.Unknown(), { description: 'Hardware facts as reported by the discovery agent' })),
  bmc: Nullable(BmcSchema),
  power: Nullable(BmcPowerSchema),
  leases: Type.Array(LeaseSchema),
  allocation: Nullable(MachineAllocationSchema),
  timeline: Type.Array(EventSchema),
  repair: Type.Optional(Nullable(Type.Object({
    phase: Type.String({ description: 'What the provisioning machine waits for next: boot, download, config, installing, installed' }),
    phaseSince: Type.String({ format: 'date-time' }),
    deadlineAt: Type.String({ format: 'date-time' }),
    failures: Type.Integer({ description: 'Failures in this provisioning attempt' }),
    phaseFailures: Type.Integer(),
    repairing: Type.Boolean(),
  }, { description: 'A provisioning machine\'s boot phase, its deadline and the failures counted so far' }))),
}, { description: 'A machine with its hardware facts, BMC, leases, allocation and recent timeline' }))

export const PowerOutcomeSchema = Named('PowerOutcome', Type.Object({
  status: StringEnum(['requested', 'done', 'failed', 'skipped']),
  message: Type.String(),
}, { description: 'What became of the power action that came with a request' }))

export const AllocatedMachineSchema = Named('AllocatedMachine', Type.Object({
  id: Type.String(),
  name: Nullable(Type.String()),
  uuid: Nullable(Type.String()),
  serial: Nullable(Type.String()),
  macs: Type.Array(Type.String()),
  role: Nullable(RoleRef),
  power: Nullable(PowerOutcomeSchema),
}, { description: 'A machine as an allocation handed it out' }))

export const AllocationSchema = Named('Allocation', Type.Object({
  id: Type.String(),
  idempotencyKey: Nullable(Type.String()),
  class: Nullable(Type.String()),
  selector: Nullable(Type.String()),
  count: Type.Integer(),
  cluster: Nullable(Type.String()),
  role: Nullable(RoleRef),
  profile: Nullable(Type.String()),
  patches: Type.Array(Type.Unknown()),
  machines: Type.Array(AllocatedMachineSchema),
  createdAt: Time,
}, { description: 'Machines taken together for a cluster' }))

export function allocationView(a: Allocation) {
  return {
    id: a.id, idempotencyKey: a.idempotencyKey, class: a.class, selector: a.selector, count: a.count, cluster: a.cluster,
    role: a.role, profile: a.profile, patches: a.patches, machines: a.machines, createdAt: iso(a.createdAt),
  }
}

export const ClassSchema = Named('Class', Type.Object({
  name: Type.String(),
  description: Nullable(Type.String()),
  selectors: Type.Array(Type.String()),
  profile: Nullable(Type.String()),
  patches: Type.Array(Type.Unknown()),
  managedBy: Nullable(Type.String()),
  createdAt: Time,
  updatedAt: Time,
}, { description: 'A machine class: which machines are which' }))

export function classView(c: MachineClass) {
  return { ...c, createdAt: iso(c.createdAt), updatedAt: iso(c.updatedAt) }
}

export const ProfileSchema = Named('Profile', Type.Object({
  name: Type.String(),
  description: Nullable(Type.String()),
  talosVersion: Nullable(Type.String()),
  arch: Nullable(Type.String()),
  schematic: Nullable(Type.String()),
  kernelArgs: Type.Array(Type.String()),
  baseConfig: Nullable(Type.String()),
  patches: Type.Array(Type.Unknown()),
  installDisk: Nullable(Named('DiskSelector', DiskSelectorSchema)),
  deadlines: Type.Optional(Nullable(Named('PhaseDeadlines', PhaseDeadlinesSchema))),
  managedBy: Nullable(Type.String()),
  createdAt: Time,
  updatedAt: Time,
}, { description: 'A profile: what machines install' }))

export function profileView(p: Profile) {
  return { ...p, createdAt: iso(p.createdAt), updatedAt: iso(p.updatedAt) }
}

export const ClusterSchema = Named('Cluster', Type.Object({
  name: Type.String(),
  endpoint: Type.String(),
  talosVersion: Type.String(),
  kubernetesVersion: Nullable(Type.String()),
  machines: Type.Integer({ description: 'Machines currently allocated to the cluster' }),
  createdAt: Time,
  updatedAt: Time,
}, { description: 'A cluster (its secrets are never returned)' }))

export function clusterView(c: Cluster, machines: number) {
  return { name: c.name, endpoint: c.endpoint, talosVersion: c.talosVersion, kubernetesVersion: c.kubernetesVersion, machines, createdAt: iso(c.createdAt), updatedAt: iso(c.updatedAt) }
}

/** Refuses a value the inventory's checks found wrong: 400, naming the field (e.g. installDisk.size) and why. */
export function refuseValue(field: string, problems: readonly ValueProblem[]): void {
  if (problems.length === 0) return
  const name = (p: ValueProblem) => p.path.reduce<string>((acc, part) => (typeof part === 'number' ? `${acc}[${part}]` : `${acc}.${part}`), field)
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''
  throw new RackbootError('RB_ERR_VALIDATION', `${name(problems[0]!)}: ${problems[0]!.message}${more}`, {
    details: problems.map((p) => ({ field: name(p), message: p.message })),
  })
}

/** Names of classes, profiles and clusters: DNS-label-like, so they read well in URLs and configs. */
export const NameSchema = Type.String({ pattern: '^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$', description: 'Letters, digits, . _ -; up to 63 characters' })
export const NameParams = Type.Object({ name: NameSchema })
export const MachineParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128, description: 'Machine id, or its name, a MAC (any spelling; URL-encode the colons or not), the SMBIOS UUID, or a serial only one machine has (409 naming the candidates when several have it)' }) })
