import type { Kysely } from 'kysely'
import { textType } from '../dialect.js'

// Per-boot tokens: the boot script hands one to the discovery agent and one to Talos's config fetch; each is
// good for one machine, one purpose and a limited time. Only a hash is stored.
export async function up(db: Kysely<any>): Promise<void> {
  const text = textType(db)
  await db.schema
    .createTable('boot_tokens')
    .addColumn('hash', text, (c) => c.primaryKey())
    .addColumn('machine_id', text, (c) => c.notNull().references('machines.id').onDelete('cascade'))
    .addColumn('purpose', text, (c) => c.notNull())
    .addColumn('client_ip', text)
    .addColumn('issued_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('used_at', 'bigint')
    .execute()
  await db.schema.createIndex('boot_tokens_machine').on('boot_tokens').columns(['machine_id', 'purpose']).execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('boot_tokens').execute()
}
