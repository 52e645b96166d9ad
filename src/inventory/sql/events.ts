import type { Kysely } from 'kysely'
import type { EventRepository } from '../repositories.js'
import { parseJson } from './json.js'
import type { Database } from './schema.js'

export function createSqlEvents(db: Kysely<Database>): EventRepository {
  return {
    async append(event) {
      const row = await db
        .insertInto('events')
        .values({ machine_id: event.machineId, type: event.type, at: event.at, message: event.message, data: JSON.stringify(event.data) })
        .returning('seq')
        .executeTakeFirstOrThrow()
      return { ...event, seq: Number(row.seq) }
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
