import { sql, type Kysely } from 'kysely'
import { databaseNow, onCallerClock, type CallerClock } from './dialect.js'

// Leader leases (issue 16, migration 0014): which instance holds a role that only one may hold at a time. Taking or
// renewing is one conditional upsert, as for BMC leases (bmc-leases.ts): granted when there is no row, the row
// expired (expires_at <= the database's now), or `holder` holds it already; PostgreSQL's `on conflict do update ...
// where` locks the row and re-checks the condition against its newest version, so of two instances racing exactly one
// gets a row back. As there, rows hold the database's times and expiry is decided by the database's clock alone, so
// hosts whose clocks disagree never both hold the role; the caller's `now` only puts returned times on its clock.

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
  /**
   * Takes or extends `name` for `holder` for ttlMs from the database's now. held: false with who holds it when
   * refused. `now` is the caller's clock: the lease's times come back on it.
   */
  acquire(name: string, holder: string, ttlMs: number, now: number): Promise<{ held: boolean; lease: LeaderLease | null }>
  /** Gives it up (only `holder`'s own), so another instance need not wait for it to expire. */
  release(name: string, holder: string): Promise<boolean>
  /** The lease; with `now`, its times on the caller's clock (else the database's). */
  get(name: string, now?: number): Promise<LeaderLease | null>
}

const toLease = (r: LeaderLeasesTable, clock?: CallerClock): LeaderLease =>
  ({ holder: r.holder, acquiredAt: onCallerClock(r.acquired_at, clock), expiresAt: onCallerClock(r.expires_at, clock) })

export function createSqlLeaderLeases(database: Kysely<any>): LeaderLeaseStore {
  // The table is this module's own (schema.ts need not know it).
  const db = database as Kysely<{ leader_leases: LeaderLeasesTable }>
  const get = async (name: string, now?: number): Promise<LeaderLease | null> => {
    const r = await db.selectFrom('leader_leases').selectAll().select(databaseNow(db, now ?? 0).as('db_now'))
      .where('name', '=', name).executeTakeFirst()
    return r ? toLease(r, now === undefined ? undefined : { now, dbNow: r.db_now }) : null
  }
  return {
    get,
    async acquire(name, holder, ttlMs, now) {
      const at = databaseNow(db, now)
      const row = await db.insertInto('leader_leases')
        .values({ name, holder, acquired_at: at, expires_at: sql<number>`${at} + ${ttlMs}` })
        .onConflict((oc) => oc.column('name').doUpdateSet((eb) => ({
          holder: eb.ref('excluded.holder'),
          // A holder renewing keeps the time it took the role.
          acquired_at: eb.case().when('leader_leases.holder', '=', eb.ref('excluded.holder')).then(eb.ref('leader_leases.acquired_at'))
            .else(eb.ref('excluded.acquired_at')).end(),
          expires_at: eb.ref('excluded.expires_at'),
        })).where((eb) => eb.or([
          eb('leader_leases.expires_at', '<=', at),
          eb('leader_leases.holder', '=', eb.ref('excluded.holder')),
        ])))
        .returningAll()
        .returning(at.as('db_now'))
        .executeTakeFirst()
      if (row) return { held: true, lease: toLease(row, { now, dbNow: row.db_now }) }
      return { held: false, lease: await get(name, now) }
    },
    async release(name, holder) {
      const res = await db.deleteFrom('leader_leases').where('name', '=', name).where('holder', '=', holder).executeTakeFirst()
      return Number(res.numDeletedRows) === 1
    },
  }
}
