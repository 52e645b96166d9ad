import { sql, type Kysely, type Selectable } from 'kysely'
import { NotFoundError, RackbootError } from '../../errors.js'
import { newMachineId, normalizeMac, normalizeUuid } from '../identifiers.js'
import type { MachineFilter, MachinePage, MachineRepository } from '../repositories.js'
import type { Arch, Firmware, HardwareFacts, Machine, MachineInput, MachineNetwork, MachineState, Nic } from '../types.js'
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
  const msg = String((err as Error)?.message ?? err)
  if (/UNIQUE constraint failed: machines\.name/.test(msg)) {
    throw new RackbootError('RB_ERR_CONFLICT', `a machine named '${input.name}' already exists`, { cause: err })
  }
  if (/UNIQUE constraint failed: machines\.uuid/.test(msg)) {
    throw new RackbootError('RB_ERR_CONFLICT', `a machine with uuid ${input.uuid} already exists`, { cause: err })
  }
  if (/UNIQUE constraint failed: nics\.mac/.test(msg)) {
    throw new RackbootError('RB_ERR_CONFLICT', `a MAC address of this machine belongs to another machine`, { cause: err })
  }
  throw new RackbootError('RB_ERR_STORAGE', 'cannot write machine', { cause: err })
}

// A machine and its NICs are written together or not at all (inside a caller's transaction, that one holds).
function atomic<T>(db: Kysely<Database>, fn: (db: Kysely<Database>) => Promise<T>): Promise<T> {
  return db.isTransaction ? fn(db) : db.transaction().execute(fn)
}

export function createSqliteMachines(db: Kysely<Database>): MachineRepository {
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
    for (const [k, v] of Object.entries(filter.labels ?? {})) {
      q = q.where((eb) => eb(eb.fn('json_extract', ['machines.labels', eb.val(`$."${k.replaceAll('"', '')}"`)]), '=', v))
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
