// The `database` settings section reaches SQLite: synchronous (normal | full), the WAL limit, the busy wait.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { sql } from 'kysely'
import { DATABASE_DEFAULTS, openSqliteInventory, type SqliteInventoryOptions } from '../../src/inventory/sqlite/open.js'
import { loadSettings } from '../../src/settings/index.js'

const pragma = async (inv: Awaited<ReturnType<typeof openSqliteInventory>>, name: string) =>
  Object.values((await sql.raw(`pragma ${name}`).execute(inv.db)).rows[0] as Record<string, unknown>)[0]

test('database settings: defaults, validation, and what open() makes of them', async (t) => {
  const env = {}
  const defaults = loadSettings({ env, cwd: tmpdir() }).database
  assert.deepEqual(defaults, { ...DATABASE_DEFAULTS, poolSize: 10, connectTimeoutMs: 0 })
  assert.equal(defaults.url, undefined, 'SQLite unless a PostgreSQL URL is given')
  assert.throws(() => loadSettings({ env, cwd: tmpdir(), overrides: ['database.url=mysql://db'] }), /url/)
  const full = loadSettings({ env, cwd: tmpdir(), overrides: ['database.synchronous=full', 'database.walLimitMiB=4'] }).database
  assert.equal(full.synchronous, 'full')
  assert.throws(() => loadSettings({ env, cwd: tmpdir(), overrides: ['database.synchronous=off'] }), /synchronous/)

  const dir = mkdtempSync(join(tmpdir(), 'rb-dbset-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  // The settings section is what open() takes (serve and the CLI pass settings.database as is).
  const options: SqliteInventoryOptions = { file: join(dir, 'a.db'), database: full }
  const a = await openSqliteInventory(options)
  assert.equal(await pragma(a, 'synchronous'), 2, 'FULL')
  assert.equal(await pragma(a, 'journal_size_limit'), 4 * 1024 * 1024)
  assert.equal(await pragma(a, 'busy_timeout'), 0, 'SQLite never waits on the event loop; the driver retries')
  assert.equal(await pragma(a, 'journal_mode'), 'wal')
  await a.close()
  const b = await openSqliteInventory({ file: join(dir, 'b.db'), database: defaults })
  assert.equal(await pragma(b, 'synchronous'), 1, 'NORMAL')
  assert.equal(await pragma(b, 'journal_size_limit'), 16 * 1024 * 1024)
  await b.close()
})
