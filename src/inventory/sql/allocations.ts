import { sql, type Kysely, type Selectable } from 'kysely'
import { RackbootError } from '../../errors.js'
import { isMac, normalizeMac } from '../identifiers.js'
import type { AllocationRepository, ClusterRepository, MachineScan, QueryRepository } from '../repositories.js'
import type { SecretBox } from '../secret-box.js'
import type {
  AllocatedMachine, Allocation, Cluster, HardwareBounds, Machine, MachineAllocation, MachineRole, Nic,
} from '../types.js'
import { dialectOf, isUniqueViolation, type SqlDialectName } from './dialect.js'
import { parseJson } from './json.js'
import { countNullColumn, decodeSortCursor, encodeMachineCursor, machineAddresses, machineFromRow, sortedMachineRows } from './machines.js'
import type { Database, MachinesTable } from './schema.js'
import { containsPattern, postgresSearchIds, type TrigramSampler } from './search-plan.js'

// Storage for the cluster API (issue 8): machine scans with hardware pre-filters, allocations, clusters.

interface AllocationsTable {
  id: string
  idempotency_key: string | null
  request_hash: string
  class: string | null
  selector: string | null
  count: number
  cluster: string | null
  role: string | null
  profile: string | null
  patches: string
  machines: string
  created_at: number
}

interface AllocationMachinesTable {
  allocation_id: string
  machine_id: string
  class: string | null
  cluster: string | null
  role: string | null
  profile: string | null
  previous_profile: string | null
  patches: string
  allocated_at: number
  released_at: number | null
}

interface ClustersTable {
  name: string
  endpoint: string
  talos_version: string
  kubernetes_version: string | null
  secrets_sealed: string
  created_at: number
  updated_at: number
}

export interface ApiTables extends Database {
  allocations: AllocationsTable
  allocation_machines: AllocationMachinesTable
  clusters: ClustersTable
}

const MAX_PAGE = 1000
/** Above this many free-text hits, walk machines in order instead of sorting the hits. */
const SEARCH_CAP = 2000

/** Same cursor encoding as machines.list, so either kind of page continues the other. */
function encodeCursor(id: string): string {
  return Buffer.from(id, 'utf8').toString('base64url')
}

function decodeCursor(cursor: string): string {
  return Buffer.from(cursor, 'base64url').toString('utf8')
}

const COLUMNS = {
  cpuCores: 'hardware.cpu_cores',
  memoryBytes: 'hardware.memory_bytes',
  diskCount: 'hardware.disk_count',
  nvmeCount: 'hardware.nvme_count',
} as const

type MachineRow = Selectable<MachinesTable> & { facts: string | null; reported_at: number | null }

/**
 * Ids of machines whose search document (id, name, serial, uuid, MACs; migration 0004) contains `needle`, at most
 * `cap`: SQLite's FTS5 trigram index, PostgreSQL's pg_trgm index, asked as search-plan.ts says.
 */
async function searchMachineIds(db: Kysely<Database>, dialect: SqlDialectName, needle: string, cap: number, sampler: TrigramSampler | null): Promise<string[]> {
  const any = db as unknown as Kysely<any>
  if (dialect === 'postgres') return postgresSearchIds(any, needle, cap, sampler)
  const rows = await any.selectFrom('machine_search_ids').select('machine_id')
    .where('key', 'in', (eb: any) => eb.selectFrom('machine_search').select(sql<number>`rowid`.as('key'))
      .where(sql`machine_search`, 'match', `"${needle.replaceAll('"', '""')}"`).limit(cap))
    .execute()
  return rows.map((r: { machine_id: string }) => r.machine_id)
}

/**
 * `lockMode`: in a PostgreSQL transaction with row locks, how a scan asked to lock treats machines another
 * transaction holds: skipped (a first attempt) or waited for (a retry, which runs alone). Null: scans never lock.
 * `sampler`: PostgreSQL, the inventory's sample of search documents (which trigrams of a needle are rare).
 */
export function createSqlQueries(base: Kysely<Database>, lockMode: 'skip' | 'wait' | null = null, sampler: TrigramSampler | null = null): QueryRepository {
  const db = base as unknown as Kysely<ApiTables>
  const dialect = dialectOf(base)

  async function hydrate(rows: MachineRow[]): Promise<Machine[]> {
    if (rows.length === 0) return []
    const nics = await db.selectFrom('nics').selectAll().where('machine_id', 'in', rows.map((r) => r.id)).orderBy('mac').execute()
    const nicsBy = new Map<string, Nic[]>()
    for (const n of nics) {
      const list = nicsBy.get(n.machine_id) ?? []
      list.push({ mac: n.mac, name: n.name, boot: n.boot === 1 })
      nicsBy.set(n.machine_id, list)
    }
    return rows.map((r) => machineFromRow(r, nicsBy.get(r.id) ?? [], r.facts === null ? null : { facts: r.facts, reported_at: r.reported_at ?? 0 }))
  }

  return {
    async scanMachines(scan: MachineScan) {
      const limit = Math.min(Math.max(scan.limit ?? 100, 1), MAX_PAGE)
      const labels = Object.entries(scan.labels ?? {})
      // With a label, walk that label's index rows in machine id order (CROSS JOIN keeps SQLite from reordering):
      // a rare label costs its few rows, a common one stops after a page. Without, walk machines in id order.
      const any = db as unknown as Kysely<any>
      let q = labels.length > 0
        ? any.selectFrom('machine_labels as l0').crossJoin('machines').whereRef('machines.id', '=', 'l0.machine_id')
          .where('l0.key', '=', labels[0]![0]).where('l0.value', '=', labels[0]![1])
        : any.selectFrom('machines')
      const order = labels.length > 0 ? 'l0.machine_id' : 'machines.id'
      q = q.leftJoin('hardware', 'hardware.machine_id', 'machines.id').selectAll('machines').select(['hardware.facts', 'hardware.reported_at'])
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
          if (hits.length === 0) return { items: [], next: null }
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
        const col = counted ? sql`coalesce(${sql.ref(COLUMNS[key])}, 0)` : sql`+${sql.ref(COLUMNS[key])}`
        if (range.min !== undefined) q = q.where(col, '>=', range.min)
        if (range.max !== undefined) q = q.where(col, '<=', range.max)
      }
      if (scan.sort) {
        // The cursor is checked first: one made for another order is refused, not misread.
        const after = scan.after ? decodeSortCursor(scan.after, scan.sort) : null
        const { rows, more } = await sortedMachineRows<MachineRow>(q, scan.sort, after, limit + 1, (column) => countNullColumn(base, column), dialect)
        const items = await hydrate(rows.slice(0, limit))
        return { items, next: more && items.length > 0 ? encodeMachineCursor(items[items.length - 1]!, scan.sort) : null }
      }
      if (scan.after) {
        decodeSortCursor(scan.after, null) // refuses a sorted list's cursor
        q = q.where(order, '>', decodeCursor(scan.after))
      }
      if (scan.lock && lockMode) {
        // FOR UPDATE OF machines: the hardware side of the outer join is not locked (and cannot be). Locked rows are
        // re-read at their newest version and must still match (READ COMMITTED), skipped or waited for ones do not
        // count towards the LIMIT: a short page is the end. No look-ahead row, which would be locked for nothing.
        q = q.orderBy(order).limit(limit).forUpdate('machines')
        if (lockMode === 'skip') q = q.skipLocked()
        const rows = (await q.execute()) as MachineRow[]
        return { items: await hydrate(rows), next: rows.length === limit ? encodeCursor(rows[rows.length - 1]!.id) : null }
      }
      const rows = (await q.orderBy(order).limit(limit + 1).execute()) as MachineRow[]
      const page = rows.slice(0, limit)
      return {
        items: await hydrate(page),
        next: rows.length > limit ? encodeCursor(page[page.length - 1]!.id) : null,
      }
    },
    machineCursor(machine, sort) {
      return encodeMachineCursor(machine, sort)
    },
    addresses(machineIds, now) {
      return machineAddresses(base, machineIds, now)
    },
    async latestEventSeq() {
      const row = await db.selectFrom('events').select('seq').orderBy('seq', 'desc').limit(1).executeTakeFirst()
      return row ? Number(row.seq) : 0
    },
  }
}

function toAllocation(r: Selectable<AllocationsTable>): Allocation {
  return {
    id: r.id,
    idempotencyKey: r.idempotency_key,
    requestHash: r.request_hash,
    class: r.class,
    selector: r.selector,
    count: Number(r.count),
    cluster: r.cluster,
    role: r.role as MachineRole | null,
    profile: r.profile,
    patches: parseJson<unknown[]>(r.patches, []),
    machines: parseJson<AllocatedMachine[]>(r.machines, []),
    createdAt: Number(r.created_at),
  }
}

function toMachineAllocation(r: Selectable<AllocationMachinesTable>): MachineAllocation {
  return {
    machineId: r.machine_id,
    allocationId: r.allocation_id,
    class: r.class,
    cluster: r.cluster,
    role: r.role as MachineRole | null,
    profile: r.profile,
    previousProfile: r.previous_profile,
    patches: parseJson<unknown[]>(r.patches, []),
    allocatedAt: Number(r.allocated_at),
  }
}

export function createSqlAllocations(base: Kysely<Database>): AllocationRepository {
  const db = base as unknown as Kysely<ApiTables>
  // NULL-safe equality: SQLite's IS takes any value; PostgreSQL's IS only NULL, TRUE or FALSE (a value there is a
  // syntax error), its NULL-safe equality is IS NOT DISTINCT FROM.
  const sameAs = dialectOf(base) === 'postgres' ? 'is not distinct from' as const : 'is' as const
  const current = (machineId: string) =>
    db
      .selectFrom('allocation_machines')
      .selectAll()
      .where('machine_id', '=', machineId)
      .where('released_at', 'is', null)
      .orderBy('allocated_at', 'desc')
      .limit(1)
      .executeTakeFirst()

  return {
    async byId(id) {
      const r = await db.selectFrom('allocations').selectAll().where('id', '=', id).executeTakeFirst()
      return r ? toAllocation(r) : null
    },
    async byKey(key) {
      const r = await db.selectFrom('allocations').selectAll().where('idempotency_key', '=', key).executeTakeFirst()
      return r ? toAllocation(r) : null
    },
    async list(filter = {}) {
      const limit = Math.min(Math.max(filter.limit ?? 100, 1), MAX_PAGE)
      let q = db.selectFrom('allocations').selectAll()
      if (filter.cluster !== undefined) q = q.where('cluster', '=', filter.cluster)
      if (filter.after) q = q.where('id', '>', decodeCursor(filter.after))
      const rows = await q.orderBy('id').limit(limit + 1).execute()
      const page = rows.slice(0, limit)
      return { items: page.map(toAllocation), next: rows.length > limit ? encodeCursor(page[page.length - 1]!.id) : null }
    },
    async create(a, machines) {
      try {
        await db
          .insertInto('allocations')
          .values({
            id: a.id, idempotency_key: a.idempotencyKey, request_hash: a.requestHash, class: a.class, selector: a.selector,
            count: a.count, cluster: a.cluster, role: a.role, profile: a.profile, patches: JSON.stringify(a.patches),
            machines: JSON.stringify(a.machines), created_at: a.createdAt,
          })
          .execute()
      } catch (cause) {
        if (isUniqueViolation(cause, 'allocations', 'idempotency_key')) {
          throw new RackbootError('RB_ERR_CONFLICT', `an allocation with idempotency key '${a.idempotencyKey}' already exists`, { cause })
        }
        throw new RackbootError('RB_ERR_STORAGE', 'cannot record allocation', { cause })
      }
      if (machines.length === 0) return
      // A machine that came back to the pool without a release (maintenance) still has an open row: close it.
      await db
        .updateTable('allocation_machines')
        .set({ released_at: a.createdAt })
        .where('machine_id', 'in', machines.map((m) => m.machineId))
        .where('released_at', 'is', null)
        .execute()
      await db
        .insertInto('allocation_machines')
        .values(machines.map((m) => ({
          allocation_id: a.id, machine_id: m.machineId, class: m.class, cluster: m.cluster, role: m.role, profile: m.profile,
          previous_profile: m.previousProfile, patches: JSON.stringify(m.patches), allocated_at: a.createdAt, released_at: null,
        })))
        .execute()
      // The machines install the allocation's profile (one statement per profile, not a read-modify-write each).
      const byProfile = new Map<string | null, string[]>()
      for (const m of machines) byProfile.set(m.profile, [...(byProfile.get(m.profile) ?? []), m.machineId])
      for (const [profile, ids] of byProfile) {
        await db.updateTable('machines').set({ profile, updated_at: a.createdAt }).where('id', 'in', ids).execute()
      }
    },
    async setMachines(id, machines) {
      await db.updateTable('allocations').set({ machines: JSON.stringify(machines) }).where('id', '=', id).execute()
    },
    async current(machineId) {
      const r = await current(machineId)
      return r ? toMachineAllocation(r) : null
    },
    async release(machineId, now) {
      const r = await current(machineId)
      if (!r) return null
      await db
        .updateTable('allocation_machines')
        .set({ released_at: now })
        .where('machine_id', '=', machineId)
        .where('released_at', 'is', null)
        .execute()
      // The profile the machine had before comes back, unless someone changed it meanwhile.
      await db
        .updateTable('machines')
        .set({ profile: r.previous_profile, updated_at: now })
        .where('id', '=', machineId)
        .where('profile', sameAs, r.profile)
        .execute()
      return toMachineAllocation(r)
    },
    async countByCluster(cluster) {
      // A machine that went back to the pool without a release (through maintenance) no longer counts.
      const r = await db
        .selectFrom('allocation_machines')
        .innerJoin('machines', 'machines.id', 'allocation_machines.machine_id')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('allocation_machines.cluster', '=', cluster)
        .where('allocation_machines.released_at', 'is', null)
        .where('machines.state', 'in', ['provisioning', 'installed', 'maintenance'])
        .executeTakeFirstOrThrow()
      return Number(r.n)
    },
  }
}

function toCluster(r: Selectable<ClustersTable>): Cluster {
  return {
    name: r.name,
    endpoint: r.endpoint,
    talosVersion: r.talos_version,
    kubernetesVersion: r.kubernetes_version,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  }
}

export function createSqlClusters(base: Kysely<Database>, box: SecretBox): ClusterRepository {
  const db = base as unknown as Kysely<ApiTables>
  return {
    async get(name) {
      const r = await db.selectFrom('clusters').selectAll().where('name', '=', name).executeTakeFirst()
      return r ? toCluster(r) : null
    },
    async list() {
      return (await db.selectFrom('clusters').selectAll().orderBy('name').execute()).map(toCluster)
    },
    async create(c, secrets, now) {
      try {
        await db
          .insertInto('clusters')
          .values({
            name: c.name, endpoint: c.endpoint, talos_version: c.talosVersion, kubernetes_version: c.kubernetesVersion,
            secrets_sealed: box.seal(secrets), created_at: now, updated_at: now,
          })
          .execute()
      } catch (cause) {
        if (isUniqueViolation(cause, 'clusters', 'name')) {
          throw new RackbootError('RB_ERR_CONFLICT', `a cluster named '${c.name}' already exists`, { cause, details: { name: c.name } })
        }
        throw new RackbootError('RB_ERR_STORAGE', 'cannot write cluster', { cause })
      }
      return (await this.get(c.name))!
    },
    async secrets(name) {
      const r = await db.selectFrom('clusters').select('secrets_sealed').where('name', '=', name).executeTakeFirst()
      return r ? box.open(r.secrets_sealed) : null
    },
    async delete(name) {
      const res = await db.deleteFrom('clusters').where('name', '=', name).executeTakeFirst()
      return Number(res.numDeletedRows) === 1
    },
  }
}
