import { PostgresAdapter, sql, type Kysely, type RawBuilder } from 'kysely'

// The few places where SQLite and PostgreSQL differ under the same repository code: which one a handle talks to,
// how each reports a broken unique constraint, and the SQL that only one of them has.

export type SqlDialectName = 'sqlite' | 'postgres'

export function dialectOf(db: Kysely<any>): SqlDialectName {
  return db.getExecutor().adapter instanceof PostgresAdapter ? 'postgres' : 'sqlite'
}

/**
 * The table and column of a broken unique constraint, or null for any other error. SQLite says "UNIQUE constraint
 * failed: machines.name"; PostgreSQL gives code 23505 with the table and "Key (name)=(...) already exists".
 */
export function uniqueViolation(err: unknown): { table: string; column: string } | null {
  const e = err as { code?: unknown; table?: unknown; detail?: unknown; message?: unknown } | null
  if (e?.code === '23505' && typeof e.table === 'string') {
    const column = /^Key \(([^)]+)\)=/.exec(String(e.detail ?? ''))?.[1] ?? ''
    return { table: e.table, column }
  }
  const m = /UNIQUE constraint failed: (\w+)\.(\w+)/.exec(String(e?.message ?? ''))
  return m ? { table: m[1]!, column: m[2]! } : null
}

export function isUniqueViolation(err: unknown, table: string, column: string): boolean {
  const v = uniqueViolation(err)
  return v !== null && v.table === table && v.column === column
}

/**
 * `col` in a form the planner cannot serve from an index on it (SQLite's unary plus; PostgreSQL accepts it on
 * numbers only, and its planner needs no such hint: a text column is returned as is there).
 */
export function withoutIndex(dialect: SqlDialectName, col: RawBuilder<unknown> | ReturnType<typeof sql.ref>, numeric: boolean): RawBuilder<unknown> {
  return dialect === 'sqlite' || numeric ? sql`+${col}` : sql`${col}`
}

/**
 * The column type for text in migrations. PostgreSQL: text in the "C" collation, whatever the database's default:
 * text then compares and sorts by code point, as SQLite's BINARY does (machine lists sorted by name, serial or rack,
 * ids, addresses; lower() folds ASCII only, as SQLite's does), where a database made with, say, en_US.UTF-8 would
 * ignore case and punctuation ('B' < 'a' on SQLite, 'a' < 'B' there). SQLite: plain text.
 */
export function textType(db: Kysely<any>): 'text' | RawBuilder<unknown> {
  return dialectOf(db) === 'postgres' ? sql`text collate "C"` : 'text'
}

/** Whether a table exists (migration-aware code: upgrade tests stop before some tables are made). */
export async function hasTable(db: Kysely<any>, name: string): Promise<boolean> {
  const r = dialectOf(db) === 'postgres'
    ? await sql<{ n: number }>`select count(*) as n from information_schema.tables where table_schema = current_schema() and table_name = ${name}`.execute(db)
    : await sql<{ n: number }>`select count(*) as n from sqlite_master where type = 'table' and name = ${name}`.execute(db)
  return Number(r.rows[0]?.n ?? 0) > 0
}

const callerClocks = new WeakSet<Kysely<any>>()

/**
 * The database's "now" (ms since the epoch) for times that instances on different hosts write and compare: leases and
 * the shared reboot record. PostgreSQL: its statement_timestamp(), so that whether a lease has expired never depends
 * on the hosts' clocks agreeing (one statement, one value; it is when the statement began, never later than when it
 * writes). SQLite has one host, whose clock is the database's: the caller's `now`, which fake clocks in tests drive.
 */
export function databaseNow(db: Kysely<any>, now: number): RawBuilder<number> {
  return dialectOf(db) === 'postgres' && !callerClocks.has(db)
    ? sql<number>`(extract(epoch from statement_timestamp()) * 1000)::bigint`
    : sql<number>`cast(${Math.round(now)} as bigint)` // typed: PostgreSQL cannot infer `$1 + $2`
}

/**
 * For tests that drive one fake clock for every instance on a PostgreSQL database: statements on this handle (not
 * its transactions) take the caller's `now` as the database's, as on SQLite.
 */
export function useCallerClock(db: Kysely<any>): void {
  callerClocks.add(db)
}

/** A row's time, read with the database's now of the same statement (`dbNow`), on the clock of a caller whose time is `now`. */
export interface CallerClock {
  now: number
  dbNow: number | string
}

/** `t` moved onto the caller's clock: as far from `clock.now` as from the database's now (no clock: as stored). */
export function onCallerClock(t: number | string, clock?: CallerClock): number {
  return clock ? clock.now + Number(t) - Number(clock.dbNow) : Number(t)
}
