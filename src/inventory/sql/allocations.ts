import { sql, type Kysely, type Selectable } from 'kysely'
import { RackbootError } from '../../errors.js'
import type { AllocationRepository, ClusterRepository, QueryRepository } from '../repositories.js'
import type { SecretBox } from '../secret-box.js'
import type {
  AllocatedMachine, Allocation, Cluster, MachineAllocation, MachineRole,
} from '../types.js'
import { dialectOf, isUniqueViolation } from './dialect.js'
import { parseJson } from './json.js'
import { precompile } from './precompiled.js'
import { MAX_PAGE, createMachineScan, decodeCursor, encodeCursor, encodeMachineCursor, machineAddresses } from './machines.js'
import type { Database } from './schema.js'
import type { TrigramSampler } from './search-plan.js'

// Storage for the cluster API (issue 8): the read-side queries (the machine scan itself is in machines.ts),
// allocations, clusters.

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

/**
 * The read-side queries. The machine scan lives beside the machines (machines.ts: a page, its NICs and the list's
 * views in one statement). `lockMode`: in a PostgreSQL transaction with row locks, how a scan asked to lock treats
 * machines another transaction holds: skipped (a first attempt) or waited for (a retry, which runs alone). Null:
 * scans never lock. `sampler`: PostgreSQL, the inventory's sample of search documents (which trigrams are rare).
 */
export function createSqlQueries(base: Kysely<Database>, lockMode: 'skip' | 'wait' | null = null, sampler: TrigramSampler | null = null): QueryRepository {
  const db = base as unknown as Kysely<ApiTables>
  return {
    scanMachines: createMachineScan(base, lockMode, sampler),
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
  // Every config fetch asks (lifecycle/config.ts): compiled once (precompiled.ts), and answered from the index on
  // (machine_id, released_at, allocated_at) without a sort (migration 0016). The limit is written into the SQL, not
  // bound: with `limit ?` SQLite prepares the statement again at every run (the bound value feeds its planner), ~6 µs
  // a run against ~1 µs for the same read with `limit 1` (and 35-60 µs against ~11 µs within a config fetch).
  const currentRow = precompile(db, ['machineId'] as const, (v) => db
    .selectFrom('allocation_machines')
    .selectAll()
    .where('machine_id', '=', v.machineId as string)
    .where('released_at', 'is', null)
    .orderBy('allocated_at', 'desc')
    .limit(sql.lit(1)))
  const current = async (machineId: string): Promise<Selectable<AllocationMachinesTable> | undefined> => (await currentRow({ machineId })).rows[0]

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
