// The inventory backends a test runs against: SQLite always, PostgreSQL when a private cluster can be started
// (test/support/postgres.ts), else a loud skip saying why. One cluster per test file, started on first use, a fresh
// database per open(), torn down when the file's tests end.
import { after, test, type TestContext } from 'node:test'
import { openPostgresInventory, type PostgresInventory } from '../../src/inventory/postgres/open.js'
import { openSqliteInventory, type SqliteInventory, type SqliteInventoryOptions } from '../../src/inventory/sqlite/open.js'
import type { Inventory } from '../../src/inventory/repositories.js'
import { startPostgres, type PgCluster } from './postgres.js'

export type BackendName = 'sqlite' | 'postgres'

export interface OpenOptions {
  secretKeyFile?: string
  warn?: (message: string) => void
  migrateTo?: string
  /** SQLite: a file instead of ':memory:'. PostgreSQL: reuse this database URL instead of a fresh one. */
  file?: string
  url?: string
}

export interface Backend {
  name: BackendName
  /** Why this backend cannot run here (the test is skipped with this), or null. */
  skip(): Promise<string | null>
  /** A fresh, empty, migrated inventory. */
  open(options?: OpenOptions): Promise<((SqliteInventory & { url?: string }) | (PostgresInventory & { url?: string })) & Inventory>
}

let cluster: Promise<PgCluster | { skip: string }> | null = null
let registered = false

/** The file's PostgreSQL cluster, started on first use. */
export function pgCluster(): Promise<PgCluster | { skip: string }> {
  if (!cluster) cluster = startPostgres()
  return cluster
}

function registerTeardown(): void {
  if (registered) return
  registered = true
  after(async () => {
    if (!cluster) return
    const c = await cluster
    if (!('skip' in c)) await c.stop()
  })
}

const sqlite: Backend = {
  name: 'sqlite',
  async skip() {
    return null
  },
  async open(options = {}) {
    const o: SqliteInventoryOptions = { file: options.file ?? ':memory:' }
    if (options.secretKeyFile) o.secretKeyFile = options.secretKeyFile
    if (options.warn) o.warn = options.warn
    if (options.migrateTo) o.migrateTo = options.migrateTo
    return openSqliteInventory(o)
  },
}

const postgres: Backend = {
  name: 'postgres',
  async skip() {
    const c = await pgCluster()
    return 'skip' in c ? `PostgreSQL backend not tested: ${c.skip}` : null
  },
  async open(options = {}) {
    const c = await pgCluster()
    if ('skip' in c) throw new Error(c.skip)
    const url = options.url ?? (await c.createDatabase())
    const inv = await openPostgresInventory({
      url, connectTimeoutMs: 30_000,
      ...(options.secretKeyFile ? { secretKeyFile: options.secretKeyFile } : {}),
      ...(options.warn ? { warn: options.warn } : {}),
      ...(options.migrateTo ? { migrateTo: options.migrateTo } : {}),
    })
    return Object.assign(inv, { url })
  },
}

/**
 * Both backends. Call at a test file's top level: `for (const backend of inventoryBackends()) test(`... [${backend.name}]`,
 * async (t) => { if (await skipped(t, backend)) return; const inv = await backend.open() ... })`.
 */
export function inventoryBackends(): Backend[] {
  registerTeardown()
  return [sqlite, postgres]
}

/** The shared test cluster, or null after skipping `t` loudly when PostgreSQL cannot run here. */
export async function pgClusterOrSkip(t: { name: string; skip(message?: string): void }): Promise<PgCluster | null> {
  const c = await pgCluster()
  if (!('skip' in c)) return c
  t.skip(`PostgreSQL not available: ${c.skip}`)
  console.warn(`# SKIPPED (loudly): ${t.name}: PostgreSQL not available: ${c.skip}`)
  return null
}

/** Skips `t` loudly when the backend cannot run here; true when skipped. */
export async function skipped(t: { skip(message?: string): void }, backend: Backend): Promise<boolean> {
  const why = await backend.skip()
  if (why) {
    t.skip(why)
    console.error(`SKIP: ${why}`)
  }
  return why !== null
}

/** Declares test `name` once per backend (SQLite, PostgreSQL), suffixed with the backend's name; skips loudly where one cannot run. */
export function eachBackend(name: string, fn: (t: TestContext, backend: Backend) => Promise<void>): void {
  for (const backend of inventoryBackends()) {
    test(`${name} [${backend.name}]`, async (t) => {
      if (await skipped(t, backend)) return
      await fn(t, backend)
    })
  }
}
