import { sql, type Kysely, type Selectable } from 'kysely'
import { NotFoundError, RackbootError } from '../../errors.js'
import { isMac, newMachineId, normalizeMac, normalizeUuid } from '../identifiers.js'
import type { MachineAddress, MachineFilter, MachinePage, MachineRepository, MachineScan, MachineScanPage, MachineScanViews, MachineSort, MachineSortKey } from '../repositories.js'
import type { Arch, BmcType, BootMethod, Firmware, HardwareBounds, HardwareFacts, Machine, MachineInput, MachineNetwork, MachineState, Nic } from '../types.js'
import { isUniqueViolation, withoutIndex, dialectOf, type SqlDialectName } from './dialect.js'
import { parseJson } from './json.js'
import { precompile } from './precompiled.js'
import { summarizeFacts } from './migrations/0002-hardware-summary.js'
import type { Database, MachinesTable } from './schema.js'
import { containsPattern, searchMachineIds, type TrigramSampler } from './search-plan.js'

/** The largest page any list answers (machines, allocations). */
export const MAX_PAGE = 1000

/** An id keyset cursor; machines and allocations use the same encoding. */
export function encodeCursor(id: string): string {
  return Buffer.from(id, 'utf8').toString('base64url')
}

export function decodeCursor(cursor: string): string {
  return Buffer.from(cursor, 'base64url').toString('utf8')
}

function conflict(err: unknown, input: MachineInput): never {
  if (isUniqueViolation(err, 'machines', 'name')) {
    throw new RackbootError('RB_ERR_CONFLICT', `a machine named '${input.name}' already exists`, { cause: err })
  }
  if (isUniqueViolation(err, 'machines', 'uuid')) {
    throw new RackbootError('RB_ERR_CONFLICT', `a machine with uuid ${input.uuid} already exists`, { cause: err })
  }
  if (isUniqueViolation(err, 'nics', 'mac')) {
    throw new RackbootError('RB_ERR_CONFLICT', `a MAC address of this machine belongs to another machine`, { cause: err })
  }
  throw new RackbootError('RB_ERR_STORAGE', 'cannot write machine', { cause: err })
}

// A machine and its NICs are written together or not at all (inside a caller's transaction, that one holds).
function atomic<T>(db: Kysely<Database>, fn: (db: Kysely<Database>) => Promise<T>): Promise<T> {
  return db.isTransaction ? fn(db) : db.transaction().execute(fn)
}

/** A NIC as stored (a row, or an element of a page's NICs column) as the domain has it. */
function nicFromRow(n: { mac: string; name: string | null; boot: number }): Nic {
  return { mac: n.mac, name: n.name, boot: n.boot === 1 }
}

export function createSqlMachines(db: Kysely<Database>): MachineRepository {
  async function hydrate(rows: Selectable<MachinesTable>[]): Promise<Machine[]> {
    if (rows.length === 0) return []
    const ids = rows.map((r) => r.id)
    const [nics, hardware] = await Promise.all([
      db.selectFrom('nics').selectAll().where('machine_id', 'in', ids).orderBy('mac').execute(),
      db.selectFrom('hardware').select(['machine_id', 'facts', 'reported_at']).where('machine_id', 'in', ids).execute(),
    ])
    const nicsBy = new Map<string, Nic[]>()
    for (const n of nics) {
      const list = nicsBy.get(n.machine_id) ?? []
      list.push(nicFromRow(n))
      nicsBy.set(n.machine_id, list)
    }
    const hwBy = new Map(hardware.map((h) => [h.machine_id, h]))
    return rows.map((r) => machineFromRow(r, nicsBy.get(r.id) ?? [], hwBy.get(r.id) ?? null))
  }

  // One machine by id, as every boot request asks (get): its three statements compiled once (precompiled.ts).
  const rowById = precompile(db, ['id'] as const, (v) => db.selectFrom('machines').selectAll().where('id', '=', v.id as string))
  const nicsById = precompile(db, ['id'] as const, (v) => db.selectFrom('nics').selectAll().where('machine_id', '=', v.id as string).orderBy('mac'))
  const hardwareById = precompile(db, ['id'] as const, (v) => db.selectFrom('hardware').select(['machine_id', 'facts', 'reported_at']).where('machine_id', '=', v.id as string))
  const nicById = precompile(db, ['mac'] as const, (v) => db.selectFrom('nics').select('machine_id').where('mac', '=', v.mac as string))

  async function byId(id: string): Promise<Machine | null> {
    const row = (await rowById({ id })).rows[0]
    if (!row) return null
    const [nics, hardware] = await Promise.all([nicsById({ id }), hardwareById({ id })])
    return machineFromRow(row, nics.rows.map(nicFromRow), hardware.rows[0] ?? null)
  }

  async function one(rows: Selectable<MachinesTable>[]): Promise<Machine | null> {
    const [m] = await hydrate(rows.slice(0, 1))
    return m ?? null
  }

  async function writeNics(db: Kysely<Database>, id: string, nics: Nic[]): Promise<void> {
    await db.deleteFrom('nics').where('machine_id', '=', id).execute()
    const seen = new Set<string>()
    const rows = nics
      .map((n) => ({ mac: normalizeMac(n.mac), machine_id: id, name: n.name ?? null, boot: n.boot ? 1 : 0 }))
      .filter((n) => (seen.has(n.mac) ? false : (seen.add(n.mac), true)))
    if (rows.length > 0) await db.insertInto('nics').values(rows).execute()
  }

  function columns(input: MachineInput): Partial<MachinesTable> {
    const c: Partial<MachinesTable> = {}
    if (input.name !== undefined) c.name = input.name
    if (input.uuid !== undefined) c.uuid = input.uuid === null ? null : normalizeUuid(input.uuid)
    if (input.serial !== undefined) c.serial = input.serial
    if (input.manufacturer !== undefined) c.manufacturer = input.manufacturer
    if (input.product !== undefined) c.product = input.product
    if (input.arch !== undefined) c.arch = input.arch
    if (input.firmware !== undefined) c.firmware = input.firmware
    if (input.labels !== undefined) c.labels = JSON.stringify(sortKeys(input.labels))
    if (input.rack !== undefined) c.rack = input.rack
    if (input.rackUnit !== undefined) c.rack_unit = input.rackUnit
    if (input.alwaysPxe !== undefined) c.always_pxe = input.alwaysPxe ? 1 : 0
    if (input.profile !== undefined) c.profile = input.profile
    if (input.managedBy !== undefined) c.managed_by = input.managedBy
    if (input.network !== undefined) c.network = input.network === null ? null : JSON.stringify(input.network)
    return c
  }

  function filtered(filter: Omit<MachineFilter, 'after' | 'limit'>) {
    let q = db.selectFrom('machines')
    if (filter.state !== undefined) {
      const states = Array.isArray(filter.state) ? filter.state : [filter.state]
      q = q.where('machines.state', 'in', states)
    }
    if (filter.rack !== undefined) q = q.where('machines.rack', '=', filter.rack)
    if (filter.serial !== undefined) q = q.where('machines.serial', '=', filter.serial)
    for (const [k, v] of Object.entries(filter.labels ?? {})) {
      // The label index rows (migration 0004), the same in both dialects.
      q = q.where((eb) => eb.exists(eb.selectFrom('machine_labels' as any).select(sql.lit(1).as('x'))
        .whereRef('machine_labels.machine_id' as any, '=', 'machines.id').where('machine_labels.key' as any, '=', k).where('machine_labels.value' as any, '=', v)))
    }
    if (filter.text) {
      const like = `%${filter.text.toLowerCase().replace(/[%_\\]/g, (ch) => `\\${ch}`)}%`
      // LIKE ... ESCAPE '\' so a '%' or '_' the user typed is matched literally (SQLite and PostgreSQL alike).
      const matches = (column: string) => sql<boolean>`${sql.ref(column)} like ${like} escape '\\'`
      q = q.where((eb) =>
        eb.or([
          sql<boolean>`lower(machines.name) like ${like} escape '\\'`,
          sql<boolean>`lower(machines.serial) like ${like} escape '\\'`,
          matches('machines.uuid'),
          matches('machines.id'),
          eb.exists(eb.selectFrom('nics').select('nics.mac').whereRef('nics.machine_id', '=', 'machines.id').where(matches('nics.mac'))),
        ]),
      )
    }
    return q
  }

  return {
    get: byId,
    async byName(name) {
      return one(await db.selectFrom('machines').selectAll().where('name', '=', name).execute())
    },
    async byMac(mac) {
      const nic = (await nicById({ mac: normalizeMac(mac) })).rows[0]
      return nic ? byId(nic.machine_id) : null
    },
    async byUuid(uuid) {
      return one(await db.selectFrom('machines').selectAll().where('uuid', '=', normalizeUuid(uuid)).execute())
    },
    async bySerial(serial) {
      // Serials are not unique in the wild ("To Be Filled By O.E.M."): only a single match counts.
      const rows = await db.selectFrom('machines').selectAll().where('serial', '=', serial).limit(2).execute()
      return rows.length === 1 ? one(rows) : null
    },
    async list(filter = {}) {
      const limit = Math.min(Math.max(filter.limit ?? 100, 1), MAX_PAGE)
      let q = filtered(filter).selectAll('machines')
      if (filter.after) q = q.where('machines.id', '>', decodeCursor(filter.after))
      const rows = await q.orderBy('machines.id').limit(limit + 1).execute()
      const page = rows.slice(0, limit)
      return {
        items: await hydrate(page),
        next: rows.length > limit ? encodeCursor(page[page.length - 1]!.id) : null,
      } satisfies MachinePage
    },
    async count(filter = {}) {
      const row = await filtered(filter).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()
      return Number(row.n)
    },
    async create(input, now) {
      const id = newMachineId()
      try {
        await atomic(db, async (db) => {
          await db
            .insertInto('machines')
            .values({
              id,
              name: null, uuid: null, serial: null, manufacturer: null, product: null, arch: null, firmware: null,
              labels: '{}', rack: null, rack_unit: null, always_pxe: 0, profile: null, managed_by: null, network: null,
              ...columns(input),
              state: input.state ?? 'new',
              created_at: now,
              updated_at: now,
              state_changed_at: now,
            })
            .execute()
          if (input.nics) await writeNics(db, id, input.nics)
        })
      } catch (err) {
        if (err instanceof RackbootError) throw err
        conflict(err, input)
      }
      return (await this.get(id))!
    },
    async update(id, input, now) {
      const existing = await db.selectFrom('machines').select('id').where('id', '=', id).executeTakeFirst()
      if (!existing) throw new NotFoundError('machine', id)
      try {
        await atomic(db, async (db) => {
          await db.updateTable('machines').set({ ...columns(input), updated_at: now }).where('id', '=', id).execute()
          if (input.nics) await writeNics(db, id, input.nics)
        })
      } catch (err) {
        if (err instanceof RackbootError) throw err
        conflict(err, input)
      }
      return (await this.get(id))!
    },
    async setState(id, from, to, now) {
      const res = await db
        .updateTable('machines')
        .set({ state: to, state_changed_at: now, updated_at: now })
        .where('id', '=', id)
        .where('state', '=', from)
        .executeTakeFirst()
      return Number(res.numUpdatedRows) === 1
    },
    async setHardware(id, facts, now) {
      const row = { facts: JSON.stringify(facts), reported_at: now, ...summarizeFacts(facts) }
      await db
        .insertInto('hardware')
        .values({ machine_id: id, ...row })
        .onConflict((oc) => oc.column('machine_id').doUpdateSet(row))
        .execute()
    },
    async delete(id) {
      const res = await db.deleteFrom('machines').where('id', '=', id).executeTakeFirst()
      return Number(res.numDeletedRows) === 1
    },
  }
}

/** One machine from its row, its NICs and its hardware row (shared with the query repository). */
export function machineFromRow(
  r: Selectable<MachinesTable>,
  nics: Nic[],
  hw: { facts: string; reported_at: number } | null,
): Machine {
  return {
    id: r.id,
    name: r.name,
    uuid: r.uuid,
    serial: r.serial,
    manufacturer: r.manufacturer,
    product: r.product,
    arch: r.arch as Arch | null,
    firmware: r.firmware as Firmware | null,
    state: r.state as MachineState,
    labels: parseJson<Record<string, string>>(r.labels, {}),
    rack: r.rack,
    rackUnit: r.rack_unit,
    alwaysPxe: r.always_pxe === 1,
    profile: r.profile,
    managedBy: r.managed_by,
    network: parseJson<MachineNetwork | null>(r.network, null),
    nics,
    hardware: hw ? parseJson<HardwareFacts | null>(hw.facts, null) : null,
    hardwareReportedAt: hw ? Number(hw.reported_at) : null,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
    stateChangedAt: Number(r.state_changed_at),
  }
}

export function sortKeys(labels: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)))
}

// ---- Sorted machine pages (the API's `sort`) ----

/** Each sort key's column, whether it can be NULL, and its value in a Machine (for the cursor). */
const SORT_COLUMNS: Record<MachineSortKey, { column: string; nullable: boolean; value: (m: Machine) => string | number | null }> = {
  name: { column: 'machines.name', nullable: true, value: (m) => m.name },
  state: { column: 'machines.state', nullable: false, value: (m) => m.state },
  rack: { column: 'machines.rack', nullable: true, value: (m) => m.rack },
  serial: { column: 'machines.serial', nullable: true, value: (m) => m.serial },
  createdAt: { column: 'machines.created_at', nullable: false, value: (m) => m.createdAt },
  updatedAt: { column: 'machines.updated_at', nullable: false, value: (m) => m.updatedAt },
}

/** Where a sorted page starts: after the machine with this sort value and id. */
interface SortCursor {
  /** Sort key and direction the cursor was made for. */
  k: MachineSortKey
  d: 0 | 1
  v: string | number | null
  i: string
}

const describeSort = (sort: { key: string; desc: boolean | 0 | 1 } | null) => (sort ? `${sort.desc ? '-' : ''}${sort.key}` : 'id')

/**
 * The cursor of the page after `m`: the id alone in id order (as machines.list and scanMachines always made them),
 * or, sorted, the sort key, direction, m's value and id as JSON. Both base64url, opaque to callers.
 */
export function encodeMachineCursor(m: Machine, sort?: MachineSort): string {
  if (!sort) return encodeCursor(m.id)
  const c: SortCursor = { k: sort.key, d: sort.desc ? 1 : 0, v: SORT_COLUMNS[sort.key].value(m), i: m.id }
  return encodeCursor(JSON.stringify(c))
}

/** A sorted page's cursor; RB_ERR_VALIDATION when it is not one, or was made for another order. */
export function decodeSortCursor(cursor: string, sort: MachineSort | null): SortCursor | null {
  const text = decodeCursor(cursor)
  let parsed: SortCursor | null = null
  if (text.startsWith('{')) {
    try {
      const c = JSON.parse(text) as SortCursor
      const value = c.v === null || typeof c.v === 'string' || typeof c.v === 'number'
      if (c && typeof c.i === 'string' && c.k in SORT_COLUMNS && (c.d === 0 || c.d === 1) && value) parsed = c
    } catch {
      // Not JSON: refused below.
    }
    if (!parsed) throw new RackbootError('RB_ERR_VALIDATION', 'cursor: not a cursor this server made', { details: { field: 'cursor' } })
  }
  const made = parsed ? { key: parsed.k, desc: parsed.d } : null
  if (describeSort(made) !== describeSort(sort)) {
    throw new RackbootError('RB_ERR_VALIDATION', `cursor: it continues a list sorted by ${describeSort(made)}, not by ${describeSort(sort)}; ask again with the same sort`, {
      details: { field: 'cursor', cursorSort: describeSort(made), sort: describeSort(sort) },
    })
  }
  return parsed
}

/**
 * Above this many machines without a value, their run is walked in id order; below, read through the column's index
 * and sorted (measured at 100,000 machines: sorting 10,000 such rows costs ~20 ms a page, walking ~1 ms; with one
 * such machine the walk reads the whole table, ~60 ms, and the index 0.02 ms).
 */
const NULL_RUN_SORT_MAX = 2000

/** How many machines have no value in `column` (a count over the column's index; the caller may cache it). */
export async function countNullColumn(db: Kysely<Database>, column: string): Promise<number> {
  const row = await sql<{ n: number }>`select count(*) as n from machines where ${sql.ref(column)} is null`.execute(db)
  return Number(row.rows[0]?.n ?? 0)
}

/**
 * One page of `q` (machine rows, filtered, not yet ordered) in `sort` order after `after`, at most `count` rows, and
 * whether there were `count` (more may follow).
 *
 * Keyset pagination on (column, id). A column that can be NULL is read as two runs, one query each, so each can walk
 * an index instead of the whole table being sorted: ascending the machines without a value (by id) and then those
 * with one (by value, id); descending the reverse. Inside a run the condition is written `col >= v AND (col > v OR
 * id > i)`, so SQLite seeks to v on the column's index (name and serial are indexed, state with id) rather than
 * scanning from the start.
 */
export async function sortedMachineRows<R extends { id: string }>(q: any, sort: MachineSort, after: SortCursor | null, count: number, countNulls: (column: string) => Promise<number>, dialect: SqlDialectName): Promise<{ rows: R[]; more: boolean }> {
  const { column, nullable } = SORT_COLUMNS[sort.key]
  const col = sql.ref(column)
  const id = sql.ref('machines.id')
  const dir = sort.desc ? 'desc' : 'asc'
  type Run = { nulls: boolean; where: ReturnType<typeof sql> | null }
  const runs: Run[] = []
  const valued = (): Run | null => {
    if (!after) return { nulls: false, where: null }
    if (after.v === null) return sort.desc ? null : { nulls: false, where: null }
    return { nulls: false, where: sort.desc ? sql`${col} <= ${after.v} and (${col} < ${after.v} or ${id} < ${after.i})` : sql`${col} >= ${after.v} and (${col} > ${after.v} or ${id} > ${after.i})` }
  }
  const empty = (): Run | null => {
    if (!nullable) return null
    if (!after) return { nulls: true, where: null }
    if (after.v === null) return { nulls: true, where: sort.desc ? sql`${id} < ${after.i}` : sql`${id} > ${after.i}` }
    return sort.desc ? { nulls: true, where: null } : null
  }
  for (const run of sort.desc ? [valued(), empty()] : [empty(), valued()]) if (run) runs.push(run)
  // Each run picks ids only (a sort that cannot walk an index then sorts small rows, not whole machines: measured
  // 3-4x faster at 100,000 machines); the page's rows are read by id afterwards.
  const ids: string[] = []
  for (const run of runs) {
    if (ids.length >= count) break
    let nulls = sql`${col} is null`
    if (run.nulls && (await countNulls(column)) > NULL_RUN_SORT_MAX) {
      // Many machines without a value: walk them in id order (the unary + keeps SQLite off the column's index,
      // which would hand them over unordered and sort every one of them for each page).
      nulls = sql`${withoutIndex(dialect, col, false)} is null`
    }
    let r = q.where(run.nulls ? nulls : nullable ? sql`${col} is not null` : sql`1 = 1`)
    if (run.where) r = r.where(run.where)
    r = run.nulls ? r.orderBy('machines.id', dir) : r.orderBy(column, dir).orderBy('machines.id', dir)
    const picked = (await r.clearSelect().select('machines.id as id').limit(count - ids.length).execute()) as { id: string }[]
    ids.push(...picked.map((p) => p.id))
  }
  if (ids.length === 0) return { rows: [], more: false }
  const byId = new Map(((await q.where('machines.id', 'in', ids).execute()) as R[]).map((row) => [row.id, row]))
  // A machine deleted between the two reads is left out; `more` still says whether the runs went on.
  return { rows: ids.flatMap((id) => byId.get(id) ?? []), more: ids.length >= count }
}

/** See QueryRepository.addresses. */
export async function machineAddresses(db: Kysely<Database>, machineIds: readonly string[], now: number): Promise<Map<string, MachineAddress>> {
  const out = new Map<string, MachineAddress>()
  if (machineIds.length === 0) return out
  const ids = [...new Set(machineIds)]
  // SQLite takes at most 32,766 bound values a statement; a page is 1000 machines (bound twice below).
  for (let start = 0; start < ids.length; start += 1000) {
    const chunk = ids.slice(start, start + 1000)
    // Live leases and reservations in one statement (one round trip): a lease wins, a reservation stands in.
    const rows = await db.selectFrom('nics').innerJoin('leases', 'leases.mac', 'nics.mac')
      .select((eb) => ['nics.machine_id', 'nics.boot', 'leases.ip', eb.ref('leases.state').$castTo<string | null>().as('state'), eb.ref('leases.expires_at').$castTo<number | null>().as('expires_at')])
      .where('nics.machine_id', 'in', chunk).where('leases.state', 'in', ['bound', 'offered']).where('leases.expires_at', '>', now)
      .unionAll(db.selectFrom('nics').innerJoin('reservations', 'reservations.mac', 'nics.mac')
        .select(['nics.machine_id', 'nics.boot', 'reservations.ip', sql<string | null>`null`.as('state'), sql<number | null>`null`.as('expires_at')])
        .where('nics.machine_id', 'in', chunk))
      .execute()
    const leases = rows.filter((r) => r.state !== null)
    leases.sort((a, b) => (a.state === b.state ? 0 : a.state === 'bound' ? -1 : 1) || b.boot - a.boot || Number(b.expires_at) - Number(a.expires_at))
    for (const l of leases) if (!out.has(l.machine_id)) out.set(l.machine_id, { ip: l.ip, source: 'lease' })
    const reserved = rows.filter((r) => r.state === null)
    reserved.sort((a, b) => b.boot - a.boot || a.ip.localeCompare(b.ip))
    for (const r of reserved) if (!out.has(r.machine_id)) out.set(r.machine_id, { ip: r.ip, source: 'reservation' })
  }
  return out
}

// ---- The machine scan (QueryRepository.scanMachines) ----

/** Above this many free-text hits, walk machines in order instead of sorting the hits. */
const SEARCH_CAP = 2000

const HARDWARE_COLUMNS = {
  cpuCores: 'hardware.cpu_cores',
  memoryBytes: 'hardware.memory_bytes',
  diskCount: 'hardware.disk_count',
  nvmeCount: 'hardware.nvme_count',
} as const

type ScanRow = Selectable<MachinesTable> & {
  facts: string | null
  reported_at: number | null
  nics: string | null
  // With `views` only:
  bmc_type?: string | null
  bmc_address?: string | null
  bmc_boot_method?: string | null
  bmc_power_state?: string | null
  bmc_power_checked_at?: number | null
  bmc_power_error?: string | null
  lease_ip?: string | null
  reserved_ip?: string | null
}

/**
 * The address columns: as machineAddresses answers (a live lease, bound before offered, the boot NIC's, the newest;
 * else a reservation, the boot NIC's), one correlated lookup each through nics_machine and leases_mac/the
 * reservations' mac.
 */
function addressColumns(now: number) {
  return [
    sql<string | null>`(select l.ip from nics n join leases l on l.mac = n.mac where n.machine_id = machines.id and l.state in ('bound', 'offered') and l.expires_at > ${now}
      order by case when l.state = 'bound' then 0 else 1 end, n.boot desc, l.expires_at desc limit 1)`.as('lease_ip'),
    sql<string | null>`(select r.ip from nics n join reservations r on r.mac = n.mac where n.machine_id = machines.id order by n.boot desc, r.ip limit 1)`.as('reserved_ip'),
  ]
}

function viewOf(r: ScanRow): MachineScanViews {
  return {
    bmc: r.bmc_type == null ? null : {
      type: r.bmc_type as BmcType, address: r.bmc_address!, bootMethod: (r.bmc_boot_method ?? 'pxe') as BootMethod,
      power: r.bmc_power_checked_at == null ? null : { state: r.bmc_power_state as 'on' | 'off' | null, checkedAt: Number(r.bmc_power_checked_at), error: r.bmc_power_error ?? null },
    },
    address: r.lease_ip != null ? { ip: r.lease_ip, source: 'lease' } : r.reserved_ip != null ? { ip: r.reserved_ip, source: 'reservation' } : null,
  }
}

/**
 * A machine's NICs as a JSON array ordered by MAC, read with its row: a page is one statement instead of a scan and
 * then a NIC read (on PostgreSQL a round trip each; on SQLite one less statement to prepare and step).
 */
function nicsColumn(dialect: SqlDialectName) {
  return dialect === 'postgres'
    ? sql<string>`(select json_agg(json_build_object('mac', n.mac, 'name', n.name, 'boot', n.boot) order by n.mac)::text from nics n where n.machine_id = machines.id)`
    : sql<string>`(select json_group_array(json_object('mac', n.mac, 'name', n.name, 'boot', n.boot) order by n.mac) from nics n where n.machine_id = machines.id)`
}

function scannedMachine(r: ScanRow): Machine {
  const nics = r.nics ? (JSON.parse(r.nics) as { mac: string; name: string | null; boot: number }[]) : []
  return machineFromRow(r, nics.map(nicFromRow), r.facts === null ? null : { facts: r.facts, reported_at: r.reported_at ?? 0 })
}

/**
 * QueryRepository.scanMachines. `lockMode`: in a PostgreSQL transaction with row locks, how a scan asked to lock
 * treats machines another transaction holds: skipped (a first attempt) or waited for (a retry, which runs alone).
 * Null: scans never lock. `sampler`: PostgreSQL, the inventory's sample of search documents.
 */
export function createMachineScan(base: Kysely<Database>, lockMode: 'skip' | 'wait' | null, sampler: TrigramSampler | null): (scan: MachineScan) => Promise<MachineScanPage> {
  const dialect = dialectOf(base)
  const any = base as unknown as Kysely<any>
  return async (scan) => {
    const page = await scanPage(scan)
    const now = scan.views?.now
    if (now === undefined || scan.lock) return { items: page.items, next: page.next }
    return { items: page.items, next: page.next, views: new Map(page.rows.map((r) => [r.id, viewOf(r)])) }
  }

  async function scanPage(scan: MachineScan): Promise<MachineScanPage & { rows: ScanRow[] }> {
    const now = scan.views?.now
    const limit = Math.min(Math.max(scan.limit ?? 100, 1), MAX_PAGE)
    const labels = Object.entries(scan.labels ?? {})
    // With a label, walk that label's index rows in machine id order (CROSS JOIN keeps SQLite from reordering):
    // a rare label costs its few rows, a common one stops after a page. Without, walk machines in id order.
    let q = labels.length > 0
      ? any.selectFrom('machine_labels as l0').crossJoin('machines').whereRef('machines.id', '=', 'l0.machine_id')
        .where('l0.key', '=', labels[0]![0]).where('l0.value', '=', labels[0]![1])
      : any.selectFrom('machines')
    const order = labels.length > 0 ? 'l0.machine_id' : 'machines.id'
    // An id-ordered page after a cursor starts every table joined by machine id at the cursor. PostgreSQL carries
    // only equalities across a join, not `id > cursor`, and may merge-join a table by its primary key from its
    // first row: at 100,000 machines a page near the end then read 97,000 hardware rows (~30-110 ms) for 101.
    // (A sorted list's cursor is checked, and refused, below; it is never run with this.)
    const afterId = scan.after && !scan.sort ? decodeCursor(scan.after) : null
    const joined = (table: 'hardware' | 'bmcs') => (join: any) => {
      const on = join.onRef(`${table}.machine_id`, '=', 'machines.id')
      return afterId === null ? on : on.on(`${table}.machine_id`, '>', afterId)
    }
    q = q.leftJoin('hardware', joined('hardware')).selectAll('machines')
      .select(['hardware.facts', 'hardware.reported_at', nicsColumn(dialect).as('nics')])
    if (now !== undefined && !scan.lock) {
      q = q.leftJoin('bmcs', joined('bmcs')).select([
        'bmcs.type as bmc_type', 'bmcs.address as bmc_address', 'bmcs.boot_method as bmc_boot_method', 'bmcs.power_state as bmc_power_state',
        'bmcs.power_checked_at as bmc_power_checked_at', 'bmcs.power_error as bmc_power_error', ...addressColumns(now),
      ])
    }
    if (scan.state !== undefined) {
      const states = Array.isArray(scan.state) ? scan.state : [scan.state]
      q = q.where('machines.state', 'in', states)
    }
    if (scan.rack !== undefined) q = q.where('machines.rack', '=', scan.rack)
    if (scan.serial !== undefined) q = q.where('machines.serial', '=', scan.serial)
    labels.slice(1).forEach(([k, v], i) => {
      q = q.where((eb: any) => eb.exists(eb.selectFrom(`machine_labels as l${i + 1}`).select(sql.lit(1).as('x'))
        .whereRef(`l${i + 1}.machine_id`, '=', 'machines.id').where(`l${i + 1}.key`, '=', k).where(`l${i + 1}.value`, '=', v)))
    })
    if (scan.text) {
      const text = scan.text.toLowerCase().trim()
      const needle = isMac(text) ? normalizeMac(text) : text
      // The trigram index answers substring queries of three characters or more, fast when few machines match;
      // a substring that thousands of machines share is found sooner by walking machines in order.
      const hits = [...needle].length >= 3 ? await searchMachineIds(base, dialect, needle, SEARCH_CAP + 1, sampler) : null
      if (hits && hits.length <= SEARCH_CAP) {
        if (hits.length === 0) return { items: [], next: null, rows: [] }
        q = q.where('machines.id', 'in', hits)
      } else {
        const like = containsPattern(needle)
        q = q.where(sql<boolean>`(lower(machines.name) LIKE ${like} ESCAPE '\\' OR lower(machines.serial) LIKE ${like} ESCAPE '\\'
          OR machines.uuid LIKE ${like} ESCAPE '\\' OR machines.id LIKE ${like} ESCAPE '\\'
          OR EXISTS (SELECT 1 FROM nics WHERE nics.machine_id = machines.id AND nics.mac LIKE ${like} ESCAPE '\\'))`)
      }
    }
    for (const [key, range] of Object.entries(scan.hardware ?? {}) as [keyof HardwareBounds, { min?: number; max?: number }][]) {
      // Machines that never reported disks count 0 disks (as the selector sees them). The unary + keeps SQLite
      // from driving the query by a hardware index and sorting thousands of rows by id afterwards.
      const counted = key === 'diskCount' || key === 'nvmeCount'
      const col = counted ? sql`coalesce(${sql.ref(HARDWARE_COLUMNS[key])}, 0)` : sql`+${sql.ref(HARDWARE_COLUMNS[key])}`
      if (range.min !== undefined) q = q.where(col, '>=', range.min)
      if (range.max !== undefined) q = q.where(col, '<=', range.max)
    }
    if (scan.sort) {
      // The cursor is checked first: one made for another order is refused, not misread.
      const after = scan.after ? decodeSortCursor(scan.after, scan.sort) : null
      const { rows, more } = await sortedMachineRows<ScanRow>(q, scan.sort, after, limit + 1, (column) => countNullColumn(base, column), dialect)
      const items = rows.slice(0, limit).map(scannedMachine)
      return { items, next: more && items.length > 0 ? encodeMachineCursor(items[items.length - 1]!, scan.sort) : null, rows }
    }
    if (scan.after) {
      decodeSortCursor(scan.after, null) // refuses a sorted list's cursor
      q = q.where(order, '>', afterId)
      // By label: the machines joined to the label rows start there too (as above).
      if (order !== 'machines.id') q = q.where('machines.id', '>', afterId)
    }
    if (scan.lock && lockMode) {
      // FOR UPDATE OF machines: the hardware side of the outer join is not locked (and cannot be). Locked rows are
      // re-read at their newest version and must still match (READ COMMITTED), skipped or waited for ones do not
      // count towards the LIMIT: a short page is the end. No look-ahead row, which would be locked for nothing.
      q = q.orderBy(order).limit(limit).forUpdate('machines')
      if (lockMode === 'skip') q = q.skipLocked()
      const rows = (await q.execute()) as ScanRow[]
      return { items: rows.map(scannedMachine), next: rows.length === limit ? encodeCursor(rows[rows.length - 1]!.id) : null, rows }
    }
    const rows = (await q.orderBy(order).limit(limit + 1).execute()) as ScanRow[]
    const page = rows.slice(0, limit)
    return { items: page.map(scannedMachine), next: rows.length > limit ? encodeCursor(page[page.length - 1]!.id) : null, rows: page }
  }
}
