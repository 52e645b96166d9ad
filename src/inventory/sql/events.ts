import { sql, type Kysely } from 'kysely'
import type { EventRepository } from '../repositories.js'
import { dialectOf } from './dialect.js'
import { parseJson } from './json.js'
import { precompile } from './precompiled.js'
import type { Database } from './schema.js'

/**
 * PostgreSQL: the transaction lock event appends take in turn (see append). 64-bit key, 'rb:event' in ASCII.
 */
const EVENT_APPEND_LOCK = 0x72623a6576656e74n

export function createSqlEvents(db: Kysely<Database>): EventRepository {
  const postgres = dialectOf(db) === 'postgres'
  const insert = precompile(db, ['machineId', 'type', 'at', 'message', 'data'] as const, (v) => db
    .insertInto('events')
    .values({ machine_id: v.machineId as string | null, type: v.type as string, at: v.at as number, message: v.message as string, data: v.data as string })
    .returning('seq'))
  return {
    async append(event) {
      if (postgres) {
        // Readers follow the log by seq (`since`: the API's event stream, its hub). SQLite writes one transaction at a
        // time, so seqs commit in order; on PostgreSQL two appends (two connections, two instances) could commit out
        // of order, and a reader that saw seq n+1 before n committed would never see n. So appends take a transaction
        // lock before their seq is drawn and hold it until they commit: seqs become visible in order. One statement,
        // one round trip: the lock is taken while `turn` yields its row, before the insert draws the seq.
        const r = await sql<{ seq: number }>`with turn as (select pg_advisory_xact_lock(${EVENT_APPEND_LOCK}))
          insert into events (machine_id, type, at, message, data)
          select ${event.machineId}::text, ${event.type}::text, ${event.at}::bigint, ${event.message}::text, ${JSON.stringify(event.data)}::text from turn
          returning seq`.execute(db)
        return { ...event, seq: Number(r.rows[0]!.seq) }
      }
      const { rows } = await insert({ machineId: event.machineId, type: event.type, at: event.at, message: event.message, data: JSON.stringify(event.data) })
      return { ...event, seq: Number(rows[0]!.seq) }
    },
    async list(filter = {}) {
      let q = db.selectFrom('events').selectAll()
      if (filter.machineId) q = q.where('machine_id', '=', filter.machineId)
      if (filter.since !== undefined) q = q.where('seq', '>', filter.since)
      if (filter.types && filter.types.length > 0) q = q.where('type', 'in', filter.types)
      const limit = Math.min(filter.limit ?? 1000, 10000)
      const rows = filter.newest
        ? (await q.orderBy('seq', 'desc').limit(limit).execute()).reverse()
        : await q.orderBy('seq').limit(limit).execute()
      return rows.map((r) => ({
        seq: Number(r.seq),
        machineId: r.machine_id,
        type: r.type,
        at: Number(r.at),
        message: r.message,
        data: parseJson<Record<string, unknown>>(r.data, {}),
      }))
    },
    async trim(machineId, keep) {
      const cutoff = await db
        .selectFrom('events')
        .select('seq')
        .where('machine_id', '=', machineId)
        .orderBy('seq', 'desc')
        .offset(keep)
        .limit(1)
        .executeTakeFirst()
      if (!cutoff) return 0
      const res = await db.deleteFrom('events').where('machine_id', '=', machineId).where('seq', '<=', cutoff.seq).executeTakeFirst()
      return Number(res.numDeletedRows)
    },
  }
}
