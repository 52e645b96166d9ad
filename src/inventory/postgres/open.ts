import pg from 'pg'
import {
  Kysely, PostgresDialect, sql, type KyselyPlugin, type PluginTransformQueryArgs, type PluginTransformResultArgs, type PostgresPool, type PostgresPoolClient,
  type QueryResult, type RootOperationNode, type Transaction, type UnknownRow,
} from 'kysely'
import { RackbootError } from '../../errors.js'
import type { Inventory, RowLocks } from '../repositories.js'
import { createSecretBox, type SecretBox } from '../secret-box.js'
import { randomBytes } from 'node:crypto'
import { createSqlLeases } from '../sql/leases.js'
import { sqlRepositories } from '../sql/inventory.js'
import type { Database } from '../sql/schema.js'
import { openCheckedSecretBox } from '../sql/secret-key.js'
import { migrateDatabase } from '../sql/migrate.js'
import { createTrigramSampler, type TrigramSampler } from '../sql/search-plan.js'
import { isUnavailable, redactUrl, waitForPostgres } from './connect.js'
import { createEventWatcher } from './listen.js'
import { watchDefinitions, type DefinitionsWatch } from './definitions-cache.js'
import { withDefinitionCaches } from '../sqlite/definitions-cache.js'

// The inventory on PostgreSQL: the same repositories as SQLite (sql/), over a connection pool several rackboot
// instances share a database through. What SQLite gets from its single connection, PostgreSQL gets here:
// - a transaction runs SERIALIZABLE and is retried whole when PostgreSQL aborts it for a conflict with another
//   instance's (40001/40P01): an import or a release sees a consistent inventory.
// - allocations and replacements (TransactionOptions.rowLocks) run READ COMMITTED instead: they lock the ready
//   machines they take as they read them, FOR UPDATE SKIP LOCKED, so sixteen callers take sixteen different machines
//   at once rather than all reading the same first ones and all but one being aborted (measured: bench api). Their
//   UPDATEs still check `state = 'ready'`; calls with one idempotency key take an advisory lock on it in turn.
// - the first attempt runs alongside everything else; a transaction that lost a conflict (or an allocation that
//   found too few machines because others held some: it cannot tell yet whether they will keep them) is tried again
//   one at a time (this process's in turn, and across instances under an advisory lock, which first attempts hold
//   shared), so fifty callers racing for the last ready machines cost about fifty transactions, not fifty squared,
//   none runs out of attempts, and a refusal for too few machines is only given by an attempt that ran alone;
// - a transaction that wrote thousands of rows (an import) analyzes the tables it changed once it commits;
// - classes and profiles are kept once read until this or another instance writes them (definitions-cache.ts);
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
  /** A transaction that wrote at least this many rows of a table analyzes it once committed (default 5000). */
  analyzeAfterRows?: number
  /** Called after such an ANALYZE (tests, logs): the tables and how long it took. */
  onAnalyze?: (tables: string[], ms: number) => void
}

export interface PostgresInventory extends Inventory {
  readonly db: Kysely<Database>
  readonly pool: pg.Pool
  /** Serialization failures retried so far (metrics, tests). */
  retryStats(): { retries: number; failures: number }
  /** ANALYZEs run after large transactions so far. */
  analyzeCount(): number
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
const ANALYZE_AFTER_ROWS = 5000

/** Counts the rows the statements it sees insert, update or delete. */
class RowsWritten implements KyselyPlugin {
  rows = 0
  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    return args.node
  }
  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    this.rows += Number(args.result.numAffectedRows ?? 0)
    return args.result
  }
}

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
    if (e.code === '40001' || e.code === '40P01' || e instanceof ContendedError) return true
  }
  return false
}

/** Thrown by a row-locked transaction that found too few machines free because others held them (RowLocks.contended). */
class ContendedError extends RackbootError {
  constructor(message: string) {
    super('RB_ERR_CONFLICT', message, { statusCode: 503 })
  }
}

/** The advisory lock (a session lock, 64-bit key) that retried transactions of every instance take in turn. */
const RETRY_LOCK = 0x7261636b626f6f74n // 'rackboot'
/** The first key of the two-key advisory locks RowLocks.name takes (the second is the name's hash). */
const NAME_LOCK_CLASS = 0x72620001

type LockMode = 'skip' | 'wait'

/** The row locks of one attempt of a row-locked transaction: a first attempt skips held machines, a retry waits. */
function rowLocks(trx: Kysely<Database>, mode: LockMode): { locks: RowLocks; mode: LockMode } {
  return {
    mode,
    locks: {
      async name(name) {
        // A hash collision only makes two names wait for each other.
        await sql`select pg_advisory_xact_lock(${NAME_LOCK_CLASS}::int4, hashtext(${name}))`.execute(trx)
      },
      async machines(ids) {
        if (ids.length === 0) return
        await sql`select id from machines where id = any(${[...ids]}::text[]) order by id for update`.execute(trx)
      },
      contended: (message) => new ContendedError(message),
    },
  }
}

function repositories(db: Kysely<Database>, box: SecretBox, sampler: TrigramSampler, definitions: DefinitionsWatch, tx: Inventory['transaction'], close: () => Promise<void>, locks?: { locks: RowLocks; mode: LockMode }): Inventory {
  const inventory = sqlRepositories(db, box, { leases: createSqlLeases(db, null), transaction: tx, close, trigramSampler: sampler, ...(locks ? { rowLocks: locks } : {}) })
  return withDefinitionCaches(inventory, definitions, db.isTransaction)
}

export async function openPostgresInventory(options: PostgresInventoryOptions): Promise<PostgresInventory> {
  const warn = options.warn ?? (() => {})
  const where = redactUrl(options.url)
  await waitForPostgres(options.url, { timeoutMs: options.connectTimeoutMs ?? 0, warn })
  const max = options.poolSize ?? 10
  // A new connection costs a backend process and cold catalog caches on the server (several ms on a first API call
  // after a quiet spell): the few a request uses at once (a machine page reads two or three statements side by side)
  // stay open, the rest close after a minute unused rather than pg's 10 s.
  const pool = new pg.Pool({ connectionString: options.url, max, min: Math.min(max, 4), idleTimeoutMillis: 60_000, types, application_name: 'rackboot' })
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
  const stats = { retries: 0, failures: 0, analyzed: 0 }
  const analyzeAfterRows = options.analyzeAfterRows ?? ANALYZE_AFTER_ROWS
  const onAnalyze = options.onAnalyze
  const sampler = createTrigramSampler()
  const maxAttempts = options.transactionAttempts ?? DEFAULT_ATTEMPTS
  const watcher = createEventWatcher({ url: options.url, warn: (m) => warn(m) })
  let definitions: DefinitionsWatch
  try {
    definitions = await watchDefinitions(db, { url: options.url, warn: (m) => warn(m) })
  } catch (err) {
    await watcher.close()
    await db.destroy()
    throw err
  }
  const close = async () => {
    await watcher.close()
    await definitions.close()
    await db.destroy()
  }
  // A row-locked transaction (TransactionOptions.rowLocks) runs READ COMMITTED: it locks the rows it decides on and
  // its writes re-check what they read, so nothing it does can be undone by another's commit, and PostgreSQL has no
  // reason to abort it (a deadlock aside). Every other transaction runs SERIALIZABLE.
  // `after.analyze`: the tables a large transaction changed many rows of (an import), for ANALYZE once it commits.
  const once = <T>(on: Kysely<Database>, fn: (inventory: Inventory) => Promise<T>, locks: LockMode | null, after: { analyze: string[] }): Promise<T> =>
    on.transaction().setIsolationLevel(locks ? 'read committed' : 'serializable').execute(async (trx: Transaction<Database>) => {
      const written = new RowsWritten()
      const counted = trx.withPlugin(written)
      const inner = repositories(counted, box, sampler, definitions, () => {
        throw new RackbootError('RB_ERR_INTERNAL', 'nested inventory transactions are not supported')
      }, close, locks ? rowLocks(counted, locks) : undefined)
      const result = await fn(inner)
      // The statements' own row counts say whether to look; this transaction's per-table counts (rows its triggers
      // wrote included) say which tables, read before it commits.
      after.analyze = written.rows < analyzeAfterRows ? [] : (await sql<{ relname: string }>`
        select relname from pg_stat_xact_user_tables where n_tup_ins + n_tup_upd + n_tup_del >= ${analyzeAfterRows} order by relname`.execute(trx)).rows.map((r) => r.relname)
      return result
    })
  // This process's retries, one after the other: a retry waiting its turn holds no pooled connection.
  let retries: Promise<unknown> = Promise.resolve()
  const inTurn = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = retries.then(fn, fn)
    retries = run.catch(() => {})
    return run
  }
  // PostgreSQL plans from table statistics that autovacuum gathers once a tenth of a table changed, a minute or more
  // later: after an import of thousands of machines, searches and lists would meanwhile be planned for the inventory
  // as it was (a machine list that reads every NIC). The transaction that made the change gathers them itself.
  const transaction: Inventory['transaction'] = async (fn, options) => {
    const after = { analyze: [] as string[] }
    const wrote = definitions.local()
    let result: Awaited<ReturnType<typeof fn>>
    try {
      result = await attempts(fn, options?.rowLocks === true, after)
    } finally {
      // Classes or profiles written in it: a read outside between its statement and its commit kept the old rows.
      if (definitions.local() !== wrote) definitions.bumpAll()
    }
    if (after.analyze.length > 0) {
      const started = performance.now()
      await sql`analyze ${sql.join(after.analyze.map((t) => sql.id(t)))}`.execute(db)
        .then(() => stats.analyzed++)
        .catch((err: Error) => warn(`PostgreSQL ${where}: cannot analyze ${after.analyze.join(', ')} after a large change (${err.message}); autovacuum will`))
      onAnalyze?.(after.analyze, performance.now() - started)
    }
    return result
  }
  const attempts = async <T>(fn: (inventory: Inventory) => Promise<T>, locked: boolean, after: { analyze: string[] }): Promise<T> => {
    try {
      // First attempts hold the retry lock shared (a session lock, before BEGIN) and a retry holds it alone: a
      // retry then runs with no first attempt in flight, so it cannot collide again, and a busy instance never
      // starves its retries (measured: 16 callers allocating from 100,000 analysed machines exhausted 10 attempts).
      return await db.connection().execute(async (conn) => {
        await sql`select pg_advisory_lock_shared(${RETRY_LOCK})`.execute(conn)
        try {
          return await once(conn, fn, locked ? 'skip' : null, after)
        } finally {
          await sql`select pg_advisory_unlock_shared(${RETRY_LOCK})`.execute(conn).catch((e: Error) => warn(`PostgreSQL ${where}: cannot release the retry lock (${e.message})`))
        }
      })
    } catch (err) {
      if (!isSerializationFailure(err)) throw err
      if (maxAttempts <= 1) {
        stats.failures++
        throw new RackbootError('RB_ERR_CONFLICT', `the database kept refusing this change for conflicting with others (${maxAttempts} attempts); try again`, { cause: err, statusCode: 503 })
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
            // Alone, a row-locked transaction waits for a machine held by a single statement rather than skip it.
            return await once(conn, fn, locked ? 'wait' : null, after)
          } catch (err) {
            if (!isSerializationFailure(err)) throw err
            if (attempt >= maxAttempts) {
              stats.failures++
              throw new RackbootError('RB_ERR_CONFLICT', `the database kept refusing this change for conflicting with others (${maxAttempts} attempts); try again`, { cause: err, statusCode: 503 })
            }
            stats.retries++
          }
        }
      } finally {
        await sql`select pg_advisory_unlock(${RETRY_LOCK})`.execute(conn).catch((err: Error) => warn(`PostgreSQL ${where}: cannot release the retry lock (${err.message})`))
      }
    }))
  }
  return Object.assign(repositories(db, box, sampler, definitions, transaction, close), {
    db,
    pool,
    retryStats: () => ({ retries: stats.retries, failures: stats.failures }),
    analyzeCount: () => stats.analyzed,
    watchEvents: watcher.watch,
  })
}
