import type { Kysely } from 'kysely'

// Leader leases (issue 16, migration 0014): which instance holds a role that only one may hold at a time. Taking or
// renewing is one conditional upsert, as for BMC leases (bmc-leases.ts): granted when there is no row, the row
// expired (expires_at <= now), or `holder` holds it already; PostgreSQL's `on conflict do update ... where` locks the
// row and re-checks the condition against its newest version, so of two instances racing exactly one gets a row back.

interface LeaderLeasesTable {
  name: string
  holder: string
  acquired_at: number | string
  expires_at: number | string
}

export interface LeaderLease {
  holder: string
  acquiredAt: number
  expiresAt: number
}

export interface LeaderLeaseStore {
  /** Takes or extends `name` for `holder` until now + ttlMs. held: false with who holds it when refused. */
  acquire(name: string, holder: string, ttlMs: number, now: number): Promise<{ held: boolean; lease: LeaderLease | null }>
  /** Gives it up (only `holder`'s own), so another instance need not wait for it to expire. */
  release(name: string, holder: string): Promise<boolean>
  get(name: string): Promise<LeaderLease | null>
}

const toLease = (r: LeaderLeasesTable): LeaderLease => ({ holder: r.holder, acquiredAt: Number(r.acquired_at), expiresAt: Number(r.expires_at) })

export function createSqlLeaderLeases(database: Kysely<any>): LeaderLeaseStore {
  // The table is this module's own (schema.ts need not know it).
  const db = database as Kysely<{ leader_leases: LeaderLeasesTable }>
  const get = async (name: string): Promise<LeaderLease | null> => {
    const r = await db.selectFrom('leader_leases').selectAll().where('name', '=', name).executeTakeFirst()
    return r ? toLease(r) : null
  }
  return {
    get,
    async acquire(name, holder, ttlMs, now) {
      const row = await db.insertInto('leader_leases')
        .values({ name, holder, acquired_at: now, expires_at: now + ttlMs })
        .onConflict((oc) => oc.column('name').doUpdateSet((eb) => ({
          holder: eb.ref('excluded.holder'),
          // A holder renewing keeps the time it took the role.
          acquired_at: eb.case().when('leader_leases.holder', '=', eb.ref('excluded.holder')).then(eb.ref('leader_leases.acquired_at'))
            .else(eb.ref('excluded.acquired_at')).end(),
          expires_at: eb.ref('excluded.expires_at'),
        })).where((eb) => eb.or([
          eb('leader_leases.expires_at', '<=', now),
          eb('leader_leases.holder', '=', eb.ref('excluded.holder')),
        ])))
        .returningAll()
        .executeTakeFirst()
      if (row) return { held: true, lease: toLease(row) }
      return { held: false, lease: await get(name) }
    },
    async release(name, holder) {
      const res = await db.deleteFrom('leader_leases').where('name', '=', name).where('holder', '=', holder).executeTakeFirst()
      return Number(res.numDeletedRows) === 1
    },
  }
}
