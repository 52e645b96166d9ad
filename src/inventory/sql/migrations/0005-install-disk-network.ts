import type { Kysely } from 'kysely'
import { textType } from '../dialect.js'

// Issue 6's two per-machine values: a profile's install-disk selector and a machine's static network settings,
// each a JSON text column (null: none), read and written whole by the repositories. Plain ALTER TABLE, the same in
// PostgreSQL (which may make them jsonb).
export async function up(db: Kysely<any>): Promise<void> {
  const text = textType(db)
  await db.schema.alterTable('profiles').addColumn('install_disk', text).execute()
  await db.schema.alterTable('machines').addColumn('network', text).execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('machines').dropColumn('network').execute()
  await db.schema.alterTable('profiles').dropColumn('install_disk').execute()
}
