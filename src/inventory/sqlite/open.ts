import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs'
import { dirname } from 'node:path'
import SQLite from 'better-sqlite3'
import { Kysely, Migrator, SqliteDialect, type Transaction } from 'kysely'
import { RackbootError } from '../../errors.js'
import type { Inventory } from '../repositories.js'
import { createSecretBox, type SecretBox } from '../secret-box.js'
import { createSqliteBmcs } from './bmcs.js'
import { createSqliteClasses, createSqliteProfiles } from './classes-profiles.js'
import { createSqliteEvents } from './events.js'
import { createSqliteLeases, createSqliteReservations, type RawLeaseWrites } from './leases.js'
import { createSqliteMachines } from './machines.js'
import { migrationProvider } from './migrations/index.js'
import type { Database } from './schema.js'
import { createSqliteTokens } from './tokens.js'
import { startCheckpointer } from './checkpointer.js'
import { createSqliteBootTokens } from './boot-tokens.js'
import { openCheckedSecretBox } from './secret-key.js'
import { randomBytes } from 'node:crypto'
import { createSqliteAllocations, createSqliteClusters, createSqliteQueries } from './allocations.js'

export interface SqliteInventoryOptions {
  /** Database file, or ':memory:'. */
  file: string
  /**
   * Key file for secrets at rest, checked against the database (secret-key.ts): a missing or different key is
   * refused, never replaced. A throwaway in-memory key when absent (tests).
   */
  secretKeyFile?: string
  /** Told what open() corrected or could not (file modes, secrets the key cannot open). */
  warn?: (message: string) => void
  /** Apply migrations up to this one only (tests of upgrades). Default: all. */
  migrateTo?: string
  /** Run WAL checkpoints in a worker thread (the server: keeps fsyncs off the event loop). See checkpointer.ts. */
  backgroundCheckpoints?: boolean
}

export interface SqliteInventory extends Inventory {
  /** The Kysely handle, for migration tests and benchmarks only: callers use the repositories. */
  readonly db: Kysely<Database>
}

function repositories(db: Kysely<Database>, raw: RawLeaseWrites, box: SecretBox, tx: Inventory['transaction'], close: () => Promise<void>): Inventory {
  return {
    machines: createSqliteMachines(db),
    bmcs: createSqliteBmcs(db, box),
    classes: createSqliteClasses(db),
    profiles: createSqliteProfiles(db),
    leases: createSqliteLeases(db, raw),
    reservations: createSqliteReservations(db),
    events: createSqliteEvents(db),
    tokens: createSqliteTokens(db),
    bootTokens: createSqliteBootTokens(db),
    queries: createSqliteQueries(db),
    allocations: createSqliteAllocations(db),
    clusters: createSqliteClusters(db, box),
    transaction: tx,
    close,
  }
}

export async function migrate(db: Kysely<Database>, target?: string): Promise<string[]> {
  const migrator = new Migrator({ db, provider: migrationProvider })
  const { error, results } = target ? await migrator.migrateTo(target) : await migrator.migrateToLatest()
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName
    throw new RackbootError('RB_ERR_STORAGE', `database migration ${failed ?? ''} failed: ${(error as Error).message}`, { cause: error })
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName)
}

/** The database and the files SQLite keeps beside it in WAL mode. */
function databaseFiles(file: string): string[] {
  return [file, `${file}-wal`, `${file}-shm`]
}

/**
 * Owner-only database files. The file is made 0600 before SQLite opens it, and SQLite gives its -wal and -shm the
 * database file's mode; files from before this (0644 under the usual umask) are tightened.
 */
function restrictDatabaseFiles(file: string, warn: (message: string) => void): void {
  for (const f of databaseFiles(file)) {
    if (f === file) closeSync(openSync(f, 'a', 0o600))
    else if (!existsSync(f)) continue
    try {
      chmodSync(f, 0o600)
    } catch (err) {
      warn(`cannot make ${f} readable by its owner only: ${(err as Error).message}`)
    }
  }
}

export async function openSqliteInventory(options: SqliteInventoryOptions): Promise<SqliteInventory> {
  const warn = options.warn ?? (() => {})
  let sqlite: SQLite.Database
  try {
    if (options.file !== ':memory:') {
      mkdirSync(dirname(options.file), { recursive: true, mode: 0o700 })
      restrictDatabaseFiles(options.file, warn)
    }
    sqlite = new SQLite(options.file)
    sqlite.pragma('journal_mode = WAL')
    sqlite.pragma('synchronous = NORMAL')
    sqlite.pragma('foreign_keys = ON')
    sqlite.pragma('busy_timeout = 5000')
  } catch (cause) {
    throw new RackbootError('RB_ERR_STORAGE', `cannot open database ${options.file}: ${(cause as Error).message}`, { cause })
  }
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) })
  let box: SecretBox
  try {
    await migrate(db, options.migrateTo)
    box = options.secretKeyFile
      ? await openCheckedSecretBox(db, { keyFile: options.secretKeyFile, dbFile: options.file, warn })
      : createSecretBox(randomBytes(32))
  } catch (err) {
    await db.destroy()
    throw err
  }
  const checkpointer = options.backgroundCheckpoints && options.file !== ':memory:' ? startCheckpointer(sqlite, options.file) : null
  const close = async () => {
    await checkpointer?.stop()
    await db.destroy()
  }

  // Kysely's SQLite dialect runs on one connection behind a mutex: a transaction excludes every other query,
  // which is what makes allocation and import atomic.
  const transaction: Inventory['transaction'] = (fn) =>
    db.transaction().execute((trx: Transaction<Database>) => {
      const inner = repositories(trx, { handle: sqlite, inTransaction: true }, box, () => {
        throw new RackbootError('RB_ERR_INTERNAL', 'nested inventory transactions are not supported')
      }, close)
      return fn(inner)
    })
  return Object.assign(repositories(db, { handle: sqlite, inTransaction: false }, box, transaction, close), { db })
}
