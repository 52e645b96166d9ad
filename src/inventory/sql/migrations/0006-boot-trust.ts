import type { Kysely } from 'kysely'
import { textType } from '../dialect.js'

// Issue 13: tokens that mean one boot, and a check on the secrets key.
// - boot_tokens: the machine state a token was issued for (an agent token is good for that state only), the
//   address that first fetched with it (a config token then serves that address only), how many times it served,
//   and when it was voided (a newer boot, the report it was for, or `installed`).
// - meta: small named values the server keeps beside its tables; the first is the secrets key's check value.
export async function up(db: Kysely<any>): Promise<void> {
  const text = textType(db)
  await db.schema.alterTable('boot_tokens').addColumn('machine_state', text).execute()
  await db.schema.alterTable('boot_tokens').addColumn('fetch_ip', text).execute()
  await db.schema.alterTable('boot_tokens').addColumn('uses', 'integer', (c) => c.notNull().defaultTo(0)).execute()
  await db.schema.alterTable('boot_tokens').addColumn('revoked_at', 'bigint').execute()
  await db.schema.createIndex('boot_tokens_fetch_ip').on('boot_tokens').column('fetch_ip').execute()
  await db.schema
    .createTable('meta')
    .addColumn('key', text, (c) => c.primaryKey())
    .addColumn('value', text, (c) => c.notNull())
    .execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('meta').execute()
  await db.schema.dropIndex('boot_tokens_fetch_ip').execute()
  for (const c of ['revoked_at', 'uses', 'fetch_ip', 'machine_state']) await db.schema.alterTable('boot_tokens').dropColumn(c).execute()
}
