import type { Kysely } from 'kysely'
import { textType } from '../dialect.js'

// Issue 14: a profile may override the boot phase deadlines (seconds per phase, JSON; null: the settings' own).
export async function up(db: Kysely<any>): Promise<void> {
  const text = textType(db)
  await db.schema.alterTable('profiles').addColumn('deadlines', text).execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('profiles').dropColumn('deadlines').execute()
}
