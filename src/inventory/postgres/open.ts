import pg from 'pg'
import { Kysely, PostgresDialect, sql, type PostgresPool, type PostgresPoolClient, type Transaction } from 'kysely'
import { RackbootError } from '../../errors.js'
import type { Inventory } from '../repositories.js'
import { createSecretBox, type SecretBox } from '../secret-box.js'
import { randomBytes } from 'node:crypto'
import { createSqlLeases } from '../sql/leases.js'
import { sqlRepositories } from '../sql/inventory.js'
import type { Database } from '../sql/schema.js'
import { openCheckedSecretBox } from '../sql/secret-key.js'
import { migrateDatabase } from '../sql/migrate.js'
import { isUnavailable, redactUrl, waitForPostgres } from './connect.js'
import { createEventWatcher } from './listen.js'

// The inventory on PostgreSQL: the same repositories as SQLite (sql/), over a connection pool several rackboot
// instances share a database through. What SQLite gets from its single connection, PostgreSQL gets here:
// - a transaction runs SERIALIZABLE and is retried whole when PostgreSQL aborts it for a conflict with another
//   instance's (40001/40P01): an allocation or import sees a consistent inventory and no machine is taken twice.
//   The first attempt runs alongside everything else; a transaction that lost a conflict is tried again one at a
//   time (this process's in turn, and across instances under an advisory lock), so fifty callers racing for the same
//   ready machines cost about fifty transactions, not fifty squared, and none runs out of attempts;
// - 64-bit integers (timestamps in ms, counts) read back as numbers, as better-sqlite3 gives them.

export interface PostgresInventoryOptions {
  url: string
  /** Connections kept at most. */
  poolSize?: number
  /** Start-up wait for the server (ms); 0: for ever. */
  connectTimeoutMs?: number
  secretKeyFile?: string
  warn?: (message: string) => void
  migrateTo?: string
  /** Tests only: transaction attempts before a serialization failure is returned. */
  transactionAttempts?: number
}

export interface PostgresInventory extends Inventory {
  readonly db: Kysely<Database>
  readonly pool: pg.Pool
  /** Serialization failures retried so far (metrics, tests). */
  retryStats(): { retries: number; failures: number }
  /**
   * Calls `onEvent` when any instance on this database commits an event (LISTEN/NOTIFY, migration 0010), with its
   * seq, or null after the listening connection came back (events may have gone unannounced). Returns what stops it.
   */
  watchEvents(onEvent: (seq: number | null) => void): () => void
}

/**
 * The pool as Kysely sees it, with "cannot reach the database" turned into RB_ERR_STORAGE 503 naming the server:
 * an API caller is told to retry, DHCP stays silent, nothing reads like an internal error.
 */
function guardedPool(pool: pg.Pool, where: string): PostgresPool {
  const unavailable = (err: unknown) =>
    isUnavailable(err) ? new RackbootError('RB_ERR_STORAGE', `PostgreSQL ${where} is unavailable: ${(err as Error).message}`, { cause: err, statusCode: 503 }) : err
  return {
    async connect() {
      let client: pg.PoolClient
      try {
        client = await pool.connect()
      } catch (err) {
        throw unavailable(err)
      }
      return {
        query: ((text: string, values: unknown[]) => client.query(text, values).catch((err: unknown) => {
          throw unavailable(err)
        })) as unknown as PostgresPoolClient['query'],
        release: () => client.release(),
      }
    },
    end: () => pool.end(),
  }
}

const INT8_OID = 20
const DEFAULT_ATTEMPTS = 10

/** int8 as a JS number: our bigints are millisecond timestamps and counts, far below 2^53. */
const types = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === INT8_OID ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
}

/**
 * A serialization failure or deadlock, also when repository code wrapped it (a RackbootError whose `cause` is the
 * driver's error: a create that maps unique violations, say, must not turn a retryable conflict into a final one).
 */
export function isSerializationFailure(err: unknown): boolean {
  for (let e = err as { code?: unknown; cause?: unknown } | null, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (e.code === '40001' || e.code === '40P01') return true
  }
  return false
}

/** The advisory lock (a session lock, 64-bit key) that retried transactions of every instance take in turn. */
const RETRY_LOCK = 0x7261636b626f6f74n // 'rackboot'

function repositories(db: Kysely<Database>, box: SecretBox, tx: Inventory['transaction'], close: () => Promise<void>): Inventory {
  return sqlRepositories(db, box, { leases: createSqlLeases(db, null), transaction: tx, close })
}

export async function openPostgresInventory(options: PostgresInventoryOptions): Promise<PostgresInventory> {
  const warn = options.warn ?? (() => {})
  const where = redactUrl(options.url)
  await waitForPostgres(options.url, { timeoutMs: options.connectTimeoutMs ?? 0, warn })
  const pool = new pg.Pool({ connectionString: options.url, max: options.poolSize ?? 10, types, application_name: 'rackboot' })
  // An idle connection the server closed (restart, failover) must not take the process down; the pool replaces it.
  pool.on('error', (err) => warn(`PostgreSQL ${where}: an idle connection failed (${err.message}); it will be replaced`))
  // A connection checked out with no query running (between a transaction's statements) has no listener of the
  // pool's: its error (the server shutting down, 57P01) would be an unhandled 'error' event and end the process.
  // The query that uses it next fails on its own and is answered as unavailable.
  pool.on('connect', (client) => client.on('error', (err) => warn(`PostgreSQL ${where}: a connection failed (${err.message})`)))
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: guardedPool(pool, where) }) })
  let box: SecretBox
  try {
    await migrateDatabase(db, options.migrateTo)
    box = options.secretKeyFile
      ? await openCheckedSecretBox(db, { keyFile: options.secretKeyFile, dbFile: where, warn })
      : createSecretBox(randomBytes(32))
  } catch (err) {
    await db.destroy()
    if (isUnavailable(err)) throw new RackbootError('RB_ERR_STORAGE', `PostgreSQL ${where} went away during start-up: ${(err as Error).message}`, { cause: err, statusCode: 503 })
    throw err
  }
  const stats = { retries: 0, failures: 0 }
  const attempts = options.transactionAttempts ?? DEFAULT_ATTEMPTS
  const watcher = createEventWatcher({ url: options.url, warn: (m) => warn(m) })
  const close = async () => {
    await watcher.close()
    await db.destroy()
  }
  const once = <T>(on: Kysely<Database>, fn: (inventory: Inventory) => Promise<T>): Promise<T> =>
    on.transaction().setIsolationLevel('serializable').execute((trx: Transaction<Database>) => {
      const inner = repositories(trx, box, () => {
        throw new RackbootError('RB_ERR_INTERNAL', 'nested inventory transactions are not supported')
      }, close)
      return fn(inner)
    })
  // This process's retries, one after the other: a retry waiting its turn holds no pooled connection.
  let retries: Promise<unknown> = Promise.resolve()
  const inTurn = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = retries.then(fn, fn)
    retries = run.catch(() => {})
    return run
  }
  const transaction: Inventory['transaction'] = async (fn) => {
    try {
      // First attempts hold the retry lock shared (a session lock, before BEGIN) and a retry holds it alone: a
      // retry then runs with no first attempt in flight, so it cannot collide again, and a busy instance never
      // starves its retries (measured: 16 callers allocating from 100,000 analysed machines exhausted 10 attempts).
      return await db.connection().execute(async (conn) => {
        await sql`select pg_advisory_lock_shared(${RETRY_LOCK})`.execute(conn)
        try {
          return await once(conn, fn)
        } finally {
          await sql`select pg_advisory_unlock_shared(${RETRY_LOCK})`.execute(conn).catch((e: Error) => warn(`PostgreSQL ${where}: cannot release the retry lock (${e.message})`))
        }
      })
    } catch (err) {
      if (!isSerializationFailure(err)) throw err
      if (attempts <= 1) {
        stats.failures++
        throw new RackbootError('RB_ERR_CONFLICT', `the database kept refusing this change for conflicting with others (${attempts} attempts); try again`, { cause: err, statusCode: 503 })
      }
      stats.retries++
    }
    // Retried in turn, on one connection holding the retry lock alone (taken before BEGIN: a transaction's snapshot
    // is taken at its first statement, and one taken before the wait would be stale after it).
    return inTurn(() => db.connection().execute(async (conn) => {
      await sql`select pg_advisory_lock(${RETRY_LOCK})`.execute(conn)
      try {
        for (let attempt = 2; ; attempt++) {
          try {
            return await once(conn, fn)
          } catch (err) {
            if (!isSerializationFailure(err)) throw err
            if (attempt >= attempts) {
              stats.failures++
              throw new RackbootError('RB_ERR_CONFLICT', `the database kept refusing this change for conflicting with others (${attempts} attempts); try again`, { cause: err, statusCode: 503 })
            }
            stats.retries++
          }
        }
      } finally {
        await sql`select pg_advisory_unlock(${RETRY_LOCK})`.execute(conn).catch((err: Error) => warn(`PostgreSQL ${where}: cannot release the retry lock (${err.message})`))
      }
    }))
  }
  return Object.assign(repositories(db, box, transaction, close), {
    db,
    pool,
    retryStats: () => ({ ...stats }),
    watchEvents: watcher.watch,
  })
}
