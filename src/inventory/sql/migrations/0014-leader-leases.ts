import type { Kysely } from 'kysely'

// Issue 16: one instance among several on one database does the work only one may do (the repair ladder: deadlines,
// power cycles, quarantine). A row per role says which instance holds it and until when; the holder renews it every
// few seconds, and a holder that stops renewing (killed, stalled, cut off) is taken over once it has expired. Plain
// columns on both dialects: SQLite (one process) never contends for it.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createTable('leader_leases')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('holder', 'text', (c) => c.notNull())
    .addColumn('acquired_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('leader_leases').execute()
}
