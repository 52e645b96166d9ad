import { Migrator, type Kysely } from 'kysely'
import { RackbootError } from '../../errors.js'
import { migrationProvider } from './migrations/index.js'
import type { Database } from './schema.js'

/**
 * Applies the migrations (up to `target`, else all) and returns the names applied now. On PostgreSQL Kysely's
 * migrator takes a row lock first, so instances starting together apply each migration once.
 */
export async function migrateDatabase(db: Kysely<Database>, target?: string): Promise<string[]> {
  const migrator = new Migrator({ db, provider: migrationProvider })
  const { error, results } = target ? await migrator.migrateTo(target) : await migrator.migrateToLatest()
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName
    throw new RackbootError('RB_ERR_STORAGE', `database migration ${failed ?? ''} failed: ${(error as Error).message}`, { cause: error })
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName)
}
