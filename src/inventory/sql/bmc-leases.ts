import { sql, type Kysely, type Selectable } from 'kysely'
import type { BmcLease, BmcLeaseRepository } from '../repositories.js'
import { databaseNow, onCallerClock, type CallerClock } from './dialect.js'
import type { BmcLeasesTable, Database } from './schema.js'

// BMC leases (issue 16): which rackboot instance may send commands to a machine's BMC now. Taking a lease is one
// conditional upsert, atomic on both backends: SQLite runs it under its single writer lock; PostgreSQL's
// `insert ... on conflict do update ... where` locks the conflicting row and re-checks the condition against its
// newest committed version, so of two instances racing for one lease exactly one gets a row back.
//
// Rows hold the database's times (databaseNow: PostgreSQL's clock, not the writing host's), and every expiry is
// decided against the database's now in the same statement: instances on hosts whose clocks disagree still agree on
// whether a lease has expired. What callers pass in and get back is on their own clock (`now`): a row's time is
// returned as far from `now` as it is from the database's now, and a reboot at `at` is recorded `now - at` before it.

function toLease(r: Selectable<BmcLeasesTable>, clock?: CallerClock): BmcLease {
  const local = (t: number | string) => onCallerClock(t, clock)
  return {
    machineId: r.machine_id,
    holder: r.holder,
    operation: r.operation,
    acquiredAt: r.acquired_at === null ? null : local(r.acquired_at),
    expiresAt: local(r.expires_at),
  }
}

export function createSqlBmcLeases(db: Kysely<Database>): BmcLeaseRepository {
  const get = async (machineId: string, now?: number): Promise<BmcLease | null> => {
    const r = await db.selectFrom('bmc_leases').selectAll().select(databaseNow(db, now ?? 0).as('db_now'))
      .where('machine_id', '=', machineId).executeTakeFirst()
    return r ? toLease(r, now === undefined ? undefined : { now, dbNow: r.db_now }) : null
  }
  return {
    get,
    async acquire(machineId, holder, operation, ttlMs, now) {
      const at = databaseNow(db, now)
      const row = await db.insertInto('bmc_leases')
        .values({ machine_id: machineId, holder, operation, acquired_at: at, expires_at: sql<number>`${at} + ${ttlMs}` })
        .onConflict((oc) => oc.column('machine_id').doUpdateSet((eb) => ({
          holder: eb.ref('excluded.holder'),
          operation: eb.ref('excluded.operation'),
          // A holder extending its own lease keeps the time it first took it.
          acquired_at: eb.case().when('bmc_leases.holder', '=', eb.ref('excluded.holder')).then(eb.ref('bmc_leases.acquired_at'))
            .else(eb.ref('excluded.acquired_at')).end(),
          expires_at: eb.ref('excluded.expires_at'),
        })).where((eb) => eb.or([
          eb('bmc_leases.expires_at', '<=', at),
          eb('bmc_leases.holder', '=', eb.ref('excluded.holder')),
        ])))
        .returningAll()
        .returning(at.as('db_now'))
        .executeTakeFirst()
      if (row) return { granted: true, lease: toLease(row, { now, dbNow: row.db_now }) }
      // Refused: who holds it (it may have been released since; then null, and the caller simply tries again).
      return { granted: false, lease: await get(machineId, now) }
    },
    async renew(machineId, holder, ttlMs, now) {
      const res = await db.updateTable('bmc_leases').set({ expires_at: sql<number>`${databaseNow(db, now)} + ${ttlMs}` })
        .where('machine_id', '=', machineId).where('holder', '=', holder).executeTakeFirst()
      return Number(res.numUpdatedRows) === 1
    },
    async release(machineId, holder) {
      const res = await db.deleteFrom('bmc_leases').where('machine_id', '=', machineId).where('holder', '=', holder).executeTakeFirst()
      return Number(res.numDeletedRows) === 1
    },
    async recordReboot(machineId, at, holder, now = at) {
      const rebootedAt = sql<number>`${databaseNow(db, now)} - ${Math.round(now - at)}`
      await db.insertInto('machine_reboots').values({ machine_id: machineId, rebooted_at: rebootedAt, holder })
        .onConflict((oc) => oc.column('machine_id').doUpdateSet((eb) => ({
          rebooted_at: eb.ref('excluded.rebooted_at'), holder: eb.ref('excluded.holder'),
        })).where((eb) => eb('machine_reboots.rebooted_at', '<', eb.ref('excluded.rebooted_at'))))
        .execute()
    },
    async lastReboot(machineId, now) {
      const r = await db.selectFrom('machine_reboots').select(['rebooted_at', databaseNow(db, now ?? 0).as('db_now')])
        .where('machine_id', '=', machineId).executeTakeFirst()
      return r ? onCallerClock(r.rebooted_at, now === undefined ? undefined : { now, dbNow: r.db_now }) : null
    },
  }
}
