import type { Kysely } from 'kysely'

// Issue 14: a profile may override the boot phase deadlines (seconds per phase, JSON; null: the settings' own).
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('profiles').addColumn('deadlines', 'text').execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('profiles').dropColumn('deadlines').execute()
}
