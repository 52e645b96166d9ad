import type SQLite from 'better-sqlite3'
import {
  CompiledQuery, SelectQueryNode, SqliteAdapter, SqliteIntrospector, SqliteQueryCompiler, ValueNode,
  type DatabaseConnection, type Dialect, type Driver, type Kysely, type LimitNode, type OffsetNode, type QueryResult,
} from 'kysely'
import { RackbootError } from '../../errors.js'

// Kysely's SQLite driver, made safe against another process's write lock. better-sqlite3 is synchronous: with
// SQLite's busy timeout at 5 s, a statement that met the lock of a CLI write (`inventory import` while `serve` runs)
// slept in SQLite's busy handler on the event loop, and the whole server (HTTP, DHCP, TFTP) froze for those seconds.
//
// Here SQLite never waits (busy_timeout 0: even 20 ms adds up, a few hundred queued writes each waiting 20 ms per
// attempt held the event loop most of the time while another process held the lock). A statement that meets the
// lock fails with SQLITE_BUSY at once and is retried asynchronously, until `busyTimeoutMs` after the query was issued,
// when it fails with a clear RB_ERR_STORAGE (503):
// - one of the waiting queries probes the lock with a back-off (1, 2, 4 ... 100 ms); the others wait for the probe to
//   get through (BusyGate) instead of each polling (hundreds of waiters polling cost thousands of attempts a second);
// - a waiting query gives the connection up, so reads (the WAL lets them through) and other work go on;
// - a transaction starts with BEGIN IMMEDIATE, retried the same way: once it holds the write lock its statements
//   cannot meet another writer, so nothing inside a transaction is ever retried (one that would need to be fails);
// - when the lock goes, the backlog drains in slices of SLICE_MS with the event loop turning in between (Mutex).

/** SQLite's own (synchronous) busy wait per attempt on the server's connection: none. */
export const SYNC_BUSY_MS = 0
/** Default total wait for another process's lock, asynchronous, before a query fails. */
export const DEFAULT_BUSY_TIMEOUT_MS = 10_000
const MAX_BACKOFF_MS = 100
/** Longest run of connection owners served one after another without the event loop turning, ms. */
const SLICE_MS = 20

export function isBusyError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && code.startsWith('SQLITE_BUSY')
}

/** Resolves after `ms`, or when `until` resolves, whichever is first (and leaves no timer behind). */
function sleep(ms: number, until?: Promise<void>): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms)
    until?.then(() => {
      clearTimeout(timer)
      resolve()
    })
  })
}

/** The error a query gets when the lock stayed taken for the whole wait. */
export function lockedError(file: string, waitedMs: number, cause: unknown): RackbootError {
  return new RackbootError(
    'RB_ERR_STORAGE',
    `database ${file} stayed locked by another process for ${Math.round(waitedMs)} ms (another rackboot command, a backup or an sqlite3 shell holding a write transaction); gave up`,
    { cause, statusCode: 503 },
  )
}

/** How often this process met another connection's lock (metrics, tests). */
export interface BusyStats {
  /** Attempts that failed with SQLITE_BUSY and were tried again. */
  retries: number
  /** Time spent waiting between those attempts, summed over the queries, ms (the event loop ran meanwhile). */
  waitedMs: number
  /** Queries that gave up: the lock stayed taken for the whole busy timeout. */
  failures: number
}

/** Closed while another connection holds the lock: one query probes it, the others wait here for the probe. */
export class BusyGate {
  #opened: Promise<void> | null = null
  #open: (() => void) | null = null
  get closed(): boolean {
    return this.#opened !== null
  }
  /** Closes the gate; the caller is the prober and must open it again (on success, on giving up). */
  close(): void {
    if (this.#opened) return
    this.#opened = new Promise((resolve) => (this.#open = resolve))
  }
  open(): void {
    const open = this.#open
    this.#opened = null
    this.#open = null
    open?.()
  }
  get opened(): Promise<void> {
    return this.#opened ?? Promise.resolve()
  }
}

export interface RetryOptions {
  /** performance.now() time after which the lock is reported instead of waited for. */
  deadline: number
  /** The database file, named in the error. */
  file: string
  /** When the caller started waiting (the error says how long it waited). */
  started?: number
  stats?: BusyStats
  gate?: BusyGate
  /** Given up while waiting between attempts (the connection, so that other queries run meanwhile) and taken back. */
  release?: { unlock(): void; lock(): Promise<void> }
}

/**
 * Runs `attempt` until it does not fail with SQLITE_BUSY, waiting asynchronously between tries, until the deadline.
 * Only for work that is safe to repeat: a statement outside a transaction, BEGIN, or a whole write that rolled back
 * (better-sqlite3's transaction functions roll back on the error).
 */
export async function retryWhileBusy<T>(attempt: () => T | Promise<T>, options: RetryOptions): Promise<T> {
  const { gate, stats, release } = options
  const started = options.started ?? performance.now()
  let backoff = 1
  let prober = false
  for (;;) {
    try {
      const result = await attempt()
      if (prober) gate?.open()
      return result
    } catch (err) {
      const busy = isBusyError(err)
      const now = performance.now()
      if (!busy || now >= options.deadline) {
        if (prober) gate?.open() // someone else probes from now on
        if (!busy) throw err
        if (stats) stats.failures++
        throw lockedError(options.file, now - started, err)
      }
      if (stats) stats.retries++
      const waitFrom = performance.now()
      release?.unlock()
      try {
        if (gate?.closed && !prober) await sleep(options.deadline - now, gate.opened)
        else {
          if (gate) {
            gate.close()
            prober = true
          }
          await sleep(Math.min(backoff, options.deadline - now))
          backoff = Math.min(backoff * 2, MAX_BACKOFF_MS)
        }
      } finally {
        if (stats) stats.waitedMs += performance.now() - waitFrom
        await release?.lock()
      }
    }
  }
}

/**
 * A FIFO lock: the single connection's owner (a query, a transaction, a raw write, or the checkpointer's pause).
 * Handing it over is a resolved promise, so a queue would drain in one turn of the event loop: after a backlog (the
 * lock of another process released, hundreds of writes waiting) one long stall. Once owners have been served for
 * SLICE_MS in one turn, the next one is served after setImmediate, and I/O in between.
 */
class Mutex {
  #held = false
  #waiters: (() => void)[] = []
  /** When this turn of the event loop began serving owners (-1: not yet). */
  #turnStart = -1
  #deferred = false

  #mark(): void {
    if (this.#turnStart >= 0) return
    this.#turnStart = performance.now()
    setImmediate(() => (this.#turnStart = -1))
  }

  #overdue(): boolean {
    return this.#turnStart >= 0 && performance.now() - this.#turnStart >= SLICE_MS
  }

  lock(): Promise<void> {
    if (!this.#held && this.#waiters.length === 0 && !this.#overdue()) {
      this.#held = true
      this.#mark()
      return Promise.resolve()
    }
    const queued = new Promise<void>((resolve) => this.#waiters.push(resolve))
    this.#next()
    return queued
  }

  unlock(): void {
    this.#held = false
    this.#next()
  }

  #next(): void {
    if (this.#held || this.#waiters.length === 0) return
    if (this.#overdue()) {
      if (!this.#deferred) {
        this.#deferred = true
        setImmediate(() => {
          this.#deferred = false
          this.#next()
        })
      }
      return
    }
    this.#held = true
    this.#mark()
    this.#waiters.shift()!()
  }
}

/** Statements kept prepared, by SQL text (an IN list of another length is another text). */
export const STATEMENT_CACHE_SIZE = 256
const DDL = /^\s*(create|alter|drop)\b/i

/**
 * Prepared statements by SQL text, least recently used dropped first. Kysely hands the driver SQL text on every
 * query, and preparing it again was the largest single cost of a hot lookup (a config fetch runs ~10 queries).
 * A dropped statement is finalized when collected, the rest when the database closes. DDL is never kept and
 * empties the cache: a `select *` prepared before a schema change is not reused after it.
 */
export class StatementCache {
  readonly #map = new Map<string, SQLite.Statement>()
  /** Statements prepared (tests). */
  misses = 0
  constructor(readonly db: SQLite.Database, readonly maxEntries = STATEMENT_CACHE_SIZE) {}

  get(sql: string): SQLite.Statement {
    const hit = this.#map.get(sql)
    if (hit) {
      // Most recently used last: Map keeps insertion order, so the first key is the one to drop.
      this.#map.delete(sql)
      this.#map.set(sql, hit)
      return hit
    }
    this.misses++
    if (DDL.test(sql)) {
      this.#map.clear()
      return this.db.prepare(sql)
    }
    const stmt = this.db.prepare(sql)
    this.#map.set(sql, stmt)
    if (this.#map.size > this.maxEntries) this.#map.delete(this.#map.keys().next().value!)
    return stmt
  }

  get size(): number {
    return this.#map.size
  }

  clear(): void {
    this.#map.clear()
  }
}

class BusyRetryingConnection implements DatabaseConnection {
  /** When the current owner asked for the connection: its busy wait counts from there. */
  queuedAt = 0
  inTransaction = false
  constructor(readonly db: SQLite.Database, readonly file: string, readonly busyTimeoutMs: number, readonly stats: BusyStats, readonly gate: BusyGate, readonly mutex: Mutex, readonly statements: StatementCache) {}

  #run<R>(compiledQuery: CompiledQuery): QueryResult<R> {
    const { sql, parameters } = compiledQuery
    const stmt = this.statements.get(sql)
    if (stmt.reader) return { rows: stmt.all(parameters) as R[] }
    const { changes, lastInsertRowid } = stmt.run(parameters)
    return {
      numAffectedRows: changes !== undefined && changes !== null ? BigInt(changes) : undefined,
      insertId: lastInsertRowid !== undefined && lastInsertRowid !== null ? BigInt(lastInsertRowid) : undefined,
      rows: [],
    }
  }

  async executeQuery<R>(compiledQuery: CompiledQuery): Promise<QueryResult<R>> {
    if (this.inTransaction || this.db.inTransaction) return this.#run<R>(compiledQuery)
    // Outside a transaction the connection holds nothing between statements: while this one waits for another
    // process's write lock, reads and the checkpointer's pause use the connection.
    const started = this.queuedAt
    return retryWhileBusy(() => this.#run<R>(compiledQuery), {
      deadline: started + this.busyTimeoutMs, file: this.file, started, stats: this.stats, gate: this.gate, release: this.mutex,
    })
  }

  async *streamQuery<R>(compiledQuery: CompiledQuery): AsyncIterableIterator<QueryResult<R>> {
    const { sql, parameters, query } = compiledQuery
    if (!SelectQueryNode.is(query)) throw new Error('Sqlite driver only supports streaming of select queries')
    // A statement of its own: a cached one would be busy for any other query while this iterates.
    const stmt = this.db.prepare(sql)
    for (const row of stmt.iterate(parameters)) yield { rows: [row as R] }
  }
}

function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`
}

export class BusyRetryingSqliteDriver implements Driver {
  readonly #mutex = new Mutex()
  readonly #connection: BusyRetryingConnection
  readonly busyStats: BusyStats = { retries: 0, waitedMs: 0, failures: 0 }
  readonly gate = new BusyGate()
  readonly statements: StatementCache
  /** Called each time a query or transaction asks for the connection (the checkpointer grants its pause there). */
  onAcquire: (() => void) | null = null

  constructor(readonly db: SQLite.Database, file: string, busyTimeoutMs: number) {
    this.statements = new StatementCache(db)
    this.#connection = new BusyRetryingConnection(db, file, busyTimeoutMs, this.busyStats, this.gate, this.#mutex, this.statements)
  }

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    const queuedAt = performance.now()
    this.onAcquire?.()
    await this.#mutex.lock()
    this.#connection.queuedAt = queuedAt
    return this.#connection
  }

  async beginTransaction(connection: DatabaseConnection): Promise<void> {
    // IMMEDIATE: the write lock is taken here, where waiting for it is safe to retry, never by a later statement.
    await connection.executeQuery(CompiledQuery.raw('begin immediate'))
    ;(connection as BusyRetryingConnection).inTransaction = true
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    try {
      await connection.executeQuery(CompiledQuery.raw('commit'))
    } finally {
      ;(connection as BusyRetryingConnection).inTransaction = this.db.inTransaction
    }
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    try {
      if (this.db.inTransaction) await connection.executeQuery(CompiledQuery.raw('rollback'))
    } finally {
      ;(connection as BusyRetryingConnection).inTransaction = false
    }
  }

  async savepoint(connection: DatabaseConnection, name: string): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw(`savepoint ${quoteIdentifier(name)}`))
  }

  async rollbackToSavepoint(connection: DatabaseConnection, name: string): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw(`rollback to ${quoteIdentifier(name)}`))
  }

  async releaseSavepoint(connection: DatabaseConnection, name: string): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw(`release ${quoteIdentifier(name)}`))
  }

  async releaseConnection(): Promise<void> {
    this.#mutex.unlock()
  }

  /**
   * Runs `fn` while no query, transaction or raw write of this process uses the connection (queued ones wait,
   * asynchronously): the checkpointer's TRUNCATE, which takes SQLite's write lock in another connection.
   */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    await this.#mutex.lock()
    try {
      return await fn()
    } finally {
      this.#mutex.unlock()
    }
  }

  async destroy(): Promise<void> {
    this.statements.clear()
    this.db.close()
  }
}

/**
 * Integer LIMIT and OFFSET values go into the SQL text instead of as parameters: SQLite prepares a statement whose
 * LIMIT is bound again at every run (the value feeds its planner), ~6 µs a run against ~1.5 µs for `limit 1`
 * (better-sqlite3, an indexed read). Page sizes then make distinct statement texts, which the statement cache holds
 * like any other (StatementCache, least recently used out). Anything but a safe integer stays a parameter.
 */
class LiteralLimitQueryCompiler extends SqliteQueryCompiler {
  protected override visitLimit(node: LimitNode): void {
    if (ValueNode.is(node.limit) && Number.isSafeInteger(node.limit.value)) this.append(`limit ${node.limit.value as number}`)
    else super.visitLimit(node)
  }
  protected override visitOffset(node: OffsetNode): void {
    if (ValueNode.is(node.offset) && Number.isSafeInteger(node.offset.value)) this.append(`offset ${node.offset.value as number}`)
    else super.visitOffset(node)
  }
}

export class BusyRetryingSqliteDialect implements Dialect {
  constructor(readonly driver: BusyRetryingSqliteDriver) {}
  createAdapter() {
    return new SqliteAdapter()
  }
  createDriver(): Driver {
    return this.driver
  }
  createQueryCompiler() {
    return new LiteralLimitQueryCompiler()
  }
  createIntrospector(db: Kysely<any>) {
    return new SqliteIntrospector(db)
  }
}
