import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs'
import { dirname } from 'node:path'
import SQLite from 'better-sqlite3'
import { Kysely, type Transaction } from 'kysely'
import { RackbootError } from '../../errors.js'
import type { Inventory } from '../repositories.js'
import { createSecretBox, type SecretBox } from '../secret-box.js'
import { sqlRepositories } from '../sql/inventory.js'
import { createSqlLeases, type RawLeaseWrites, type SqlLeaseRepository } from '../sql/leases.js'
import type { Lease } from '../types.js'
import { migrateDatabase as migrate } from '../sql/migrate.js'
import type { Database } from '../sql/schema.js'
import { startCheckpointer, type CheckpointResult, type CheckpointStats } from './checkpointer.js'
import { BusyRetryingSqliteDialect, BusyRetryingSqliteDriver, DEFAULT_BUSY_TIMEOUT_MS, retryWhileBusy, SYNC_BUSY_MS, type BusyGate, type BusyStats } from './driver.js'
import { openCheckedSecretBox } from '../sql/secret-key.js'
import { definitionVersions, withDefinitionCaches, type DefinitionVersions } from './definitions-cache.js'
import { randomBytes } from 'node:crypto'

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
  /** The `database` settings section (settings/schema.ts); every field has the same default there. */
  database?: DatabaseOptions
  /** Tests only: SQLite's synchronous busy wait per attempt (default SYNC_BUSY_MS). */
  syncBusyMs?: number
  /** Tests only: checkpointer knobs (see checkpointer.ts). */
  checkpoints?: { intervalMs?: number; tickMs?: number; escalate?: boolean; onCheckpoint?: (r: CheckpointResult) => void }
}

export interface DatabaseOptions {
  /**
   * PRAGMA synchronous. normal: a committed transaction survives a crash of the process, but the last ones may be
   * lost on power loss or an OS crash (the database stays consistent). full: they survive power loss too, at the
   * cost of an fsync of the WAL per commit.
   */
  synchronous?: 'normal' | 'full'
  /** WAL size (MiB) past which the checkpointer restarts the log (background checkpoints); also its journal_size_limit. */
  walLimitMiB?: number
  /** How long a statement waits in all, asynchronously, for another process's write lock before failing (ms). */
  busyTimeoutMs?: number
}

export const DATABASE_DEFAULTS: Required<DatabaseOptions> = { synchronous: 'normal', walLimitMiB: 16, busyTimeoutMs: DEFAULT_BUSY_TIMEOUT_MS }

export interface SqliteInventory extends Inventory {
  /** The Kysely handle, for migration tests and benchmarks only: callers use the repositories. */
  readonly db: Kysely<Database>
  /** What the background checkpointer did so far; null without one. */
  checkpointStats(): CheckpointStats | null
  /** How often this process waited for another connection's lock (driver.ts). */
  busyStats(): BusyStats
}

/** What a retry outside the driver needs (driver.ts retryWhileBusy). */
interface BusyContext {
  file: string
  timeoutMs: number
  stats: BusyStats
  gate: BusyGate
}

/**
 * Outside a transaction the lease writes run on the better-sqlite3 handle (leases.ts), beside Kysely's driver and its
 * retries: a write that met another process's lock (SQLITE_BUSY) rolled back whole and is tried again
 * asynchronously, as the driver does (an upsert of the same rows is safe to repeat).
 */
function retryingLeases(leases: SqlLeaseRepository, busy: BusyContext): SqlLeaseRepository {
  const retry = <T>(fn: () => Promise<T>): Promise<T> => retryWhileBusy(fn, { deadline: performance.now() + busy.timeoutMs, file: busy.file, stats: busy.stats, gate: busy.gate })
  return Object.assign(leases, {
    put: ((put) => (lease: Lease) => retry(() => put(lease)))(leases.put.bind(leases)),
    putMany: ((putMany) => (list: Lease[]) => retry(() => putMany(list)))(leases.putMany.bind(leases)),
  })
}

function repositories(db: Kysely<Database>, raw: RawLeaseWrites, box: SecretBox, tx: Inventory['transaction'], close: () => Promise<void>, busy: BusyContext, versions: DefinitionVersions): Inventory {
  const leases = createSqlLeases(db, raw)
  const inventory = sqlRepositories(db, box, { leases: raw.inTransaction ? leases : retryingLeases(leases, busy), transaction: tx, close })
  return withDefinitionCaches(inventory, versions, raw.inTransaction)
}

export { migrateDatabase as migrate } from '../sql/migrate.js'

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
  const settings = { ...DATABASE_DEFAULTS, ...options.database }
  const walLimitBytes = Math.max(1, settings.walLimitMiB) * 1024 * 1024
  let sqlite: SQLite.Database
  try {
    if (options.file !== ':memory:') {
      mkdirSync(dirname(options.file), { recursive: true, mode: 0o700 })
      restrictDatabaseFiles(options.file, warn)
    }
    sqlite = new SQLite(options.file)
    sqlite.pragma('journal_mode = WAL')
    sqlite.pragma(`synchronous = ${settings.synchronous === 'full' ? 'FULL' : 'NORMAL'}`)
    sqlite.pragma('foreign_keys = ON')
    // SQLite's busy handler would sleep on the event loop: no wait here, all of it asynchronous (driver.ts).
    sqlite.pragma(`busy_timeout = ${options.syncBusyMs ?? SYNC_BUSY_MS}`)
    // A log that restarted is cut back to this size at the next commit (else the file keeps its largest size).
    sqlite.pragma(`journal_size_limit = ${walLimitBytes}`)
  } catch (cause) {
    throw new RackbootError('RB_ERR_STORAGE', `cannot open database ${options.file}: ${(cause as Error).message}`, { cause })
  }
  const driver = new BusyRetryingSqliteDriver(sqlite, options.file, settings.busyTimeoutMs)
  const db = new Kysely<Database>({ dialect: new BusyRetryingSqliteDialect(driver) })
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
  const checkpointer = options.backgroundCheckpoints && options.file !== ':memory:'
    ? startCheckpointer(sqlite, options.file, {
        pause: (fn) => driver.exclusive(fn),
        walLimitBytes,
        synchronous: settings.synchronous,
        warn,
        ...options.checkpoints,
      })
    : null
  if (checkpointer) driver.onAcquire = checkpointer.poll
  const close = async () => {
    await checkpointer?.stop()
    await db.destroy()
  }
  const busy: BusyContext = { file: options.file, timeoutMs: settings.busyTimeoutMs, stats: driver.busyStats, gate: driver.gate }
  const versions = definitionVersions(sqlite)

  // Kysely's SQLite dialect runs on one connection behind a mutex: a transaction excludes every other query,
  // which is what makes allocation and import atomic.
  const transaction: Inventory['transaction'] = (fn) =>
    db.transaction().execute((trx: Transaction<Database>) => {
      const inner = repositories(trx, { handle: sqlite, inTransaction: true }, box, () => {
        throw new RackbootError('RB_ERR_INTERNAL', 'nested inventory transactions are not supported')
      }, close, busy, versions)
      return fn(inner)
    })
  return Object.assign(repositories(db, { handle: sqlite, inTransaction: false }, box, transaction, close, busy, versions), {
    db,
    checkpointStats: () => checkpointer?.stats() ?? null,
    busyStats: () => ({ ...driver.busyStats }),
  })
}
