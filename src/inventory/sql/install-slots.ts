import { sql, type Kysely } from 'kysely'
import type { InstallSlot, InstallSlotClaim, InstallSlotLimits, InstallSlotRepository } from '../repositories.js'
import { dialectOf } from './dialect.js'

// Install slots (issue 16, migration 0015): the database, not one instance's view, decides who gets the last of
// provisioning.maxConcurrent / maxPerRack. A claim counts the slots whose machines are in state provisioning (a slot
// whose machine left provisioning, or was left behind by a crash, never counts), overall and in the rack, and
// inserts this machine's slot only if both fit, in one transaction:
// - PostgreSQL: READ COMMITTED, and first a transaction-scoped advisory lock that every claim takes, so claims run
//   one at a time across all instances; each statement after the lock reads what earlier holders committed (a lock
//   is released only once its transaction is visible). Not SERIALIZABLE: its snapshot would be taken at the lock
//   statement, before the wait, and the loser of a race would be aborted and retried rather than just wait its turn.
// - SQLite: `begin immediate` (driver.ts) holds the write lock for the transaction: claims run one at a time.
// A claim made inside a caller's transaction runs in it (on PostgreSQL still under the lock).

interface InstallSlotsTable {
  machine_id: string
  rack: string | null
  holder: string
  taken_at: number | string
}

interface Tables {
  install_slots: InstallSlotsTable
  machines: { id: string; state: string }
}

/** First key of the two-key advisory lock claims take (RowLocks.name uses 0x72620001). */
const CLAIM_LOCK_CLASS = 0x72620002

export function createSqlInstallSlots(database: Kysely<any>): InstallSlotRepository {
  // The table is this module's own (schema.ts need not know it).
  const db = database as Kysely<Tables>
  const postgres = dialectOf(db) === 'postgres'

  const inTransaction = <T>(fn: (trx: Kysely<Tables>) => Promise<T>): Promise<T> => {
    if (db.isTransaction) return fn(db)
    const trx = db.transaction()
    return (postgres ? trx.setIsolationLevel('read committed') : trx).execute(fn)
  }

  return {
    claim(machineId, rack, limits, holder, now) {
      return inTransaction(async (trx): Promise<InstallSlotClaim> => {
        if (postgres) await sql`select pg_advisory_xact_lock(${CLAIM_LOCK_CLASS}::int4, 0)`.execute(trx)
        // Slots that no longer count, swept while nobody else claims.
        await trx.deleteFrom('install_slots')
          .where('machine_id', 'not in', (eb) => eb.selectFrom('machines').select('id').where('state', '=', 'provisioning'))
          .execute()
        const counted = await trx.selectFrom('install_slots as s')
          .innerJoin('machines as m', 'm.id', 's.machine_id')
          .where('m.state', '=', 'provisioning')
          .where('s.machine_id', '!=', machineId)
          .select([
            sql<number | string>`count(*)`.as('n'),
            sql<number | string>`coalesce(sum(case when s.rack = ${rack} then 1 else 0 end), 0)`.as('r'),
          ])
          .executeTakeFirstOrThrow()
        const installing = Number(counted.n)
        const rackInstalling = rack === null ? null : Number(counted.r)
        const mine = await trx.selectFrom('install_slots').select('machine_id').where('machine_id', '=', machineId).executeTakeFirst()
        if (mine) return { ok: true, installing, rackInstalling }
        if (limits.overall > 0 && installing >= limits.overall) return { ok: false, bound: 'overall', installing, rackInstalling }
        if (limits.perRack > 0 && rackInstalling !== null && rackInstalling >= limits.perRack) return { ok: false, bound: 'rack', installing, rackInstalling }
        await trx.insertInto('install_slots').values({ machine_id: machineId, rack, holder, taken_at: now }).execute()
        return { ok: true, installing, rackInstalling }
      })
    },
    async release(machineId) {
      const res = await db.deleteFrom('install_slots').where('machine_id', '=', machineId).executeTakeFirst()
      return Number(res.numDeletedRows) > 0
    },
    async list() {
      const rows = await db.selectFrom('install_slots as s')
        .innerJoin('machines as m', 'm.id', 's.machine_id')
        .where('m.state', '=', 'provisioning')
        .select(['s.machine_id', 's.rack', 's.holder', 's.taken_at'])
        .orderBy('s.taken_at').orderBy('s.machine_id')
        .execute()
      return rows.map((r): InstallSlot => ({ machineId: r.machine_id, rack: r.rack, holder: r.holder, takenAt: Number(r.taken_at) }))
    },
  }
}
