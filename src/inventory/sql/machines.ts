import { sql, type Kysely, type Selectable } from 'kysely'
import { NotFoundError, RackbootError } from '../../errors.js'
import { newMachineId, normalizeMac, normalizeUuid } from '../identifiers.js'
import type { MachineAddress, MachineFilter, MachinePage, MachineRepository, MachineSort, MachineSortKey } from '../repositories.js'
import type { Arch, Firmware, HardwareFacts, Machine, MachineInput, MachineNetwork, MachineState, Nic } from '../types.js'
import { isUniqueViolation, withoutIndex, dialectOf, type SqlDialectName } from './dialect.js'
import { parseJson } from './json.js'
import { summarizeFacts } from './migrations/0002-hardware-summary.js'
import type { Database, MachinesTable } from './schema.js'

const MAX_PAGE = 1000

function encodeCursor(id: string): string {
  return Buffer.from(id, 'utf8').toString('base64url')
}

function decodeCursor(cursor: string): string {
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
      list.push({ mac: n.mac, name: n.name, boot: n.boot === 1 })
      nicsBy.set(n.machine_id, list)
    }
    const hwBy = new Map(hardware.map((h) => [h.machine_id, h]))
    return rows.map((r) => machineFromRow(r, nicsBy.get(r.id) ?? [], hwBy.get(r.id) ?? null))
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
    async get(id) {
      return one(await db.selectFrom('machines').selectAll().where('id', '=', id).execute())
    },
    async byName(name) {
      return one(await db.selectFrom('machines').selectAll().where('name', '=', name).execute())
    },
    async byMac(mac) {
      const nic = await db.selectFrom('nics').select('machine_id').where('mac', '=', normalizeMac(mac)).executeTakeFirst()
      return nic ? this.get(nic.machine_id) : null
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
