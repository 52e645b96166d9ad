import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import SQLite from 'better-sqlite3'
import { sql, type Kysely } from 'kysely'
import { openSqliteInventory } from './helpers.js'
import { StatementCache } from '../../src/inventory/sqlite/driver.js'
import { PROFILES_KEPT } from '../../src/inventory/sqlite/definitions-cache.js'
import type { MachineClass } from '../../src/inventory/index.js'

// The SQLite driver's prepared statements, and the class and profile reads kept between writes: reused while
// nothing changed, read again after any change (this process, a transaction, another connection), bounded.

const NOW = 1_700_000_000_000

test('statement cache: one prepared statement per SQL text, least recently used dropped past the bound', () => {
  const db = new SQLite(':memory:')
  const cache = new StatementCache(db, 3)
  const texts = [1, 2, 3, 4].map((n) => `select ${n} as n`)
  const first = cache.get(texts[0]!)
  assert.equal(cache.get(texts[0]!), first, 'the same text reuses its statement')
  cache.get(texts[1]!)
  cache.get(texts[2]!)
  cache.get(texts[0]!) // most recently used now: texts[1] is the oldest
  cache.get(texts[3]!)
  assert.equal(cache.size, 3)
  assert.equal(cache.get(texts[0]!), first, 'a recently used statement stays')
  const misses = cache.misses
  cache.get(texts[1]!)
  assert.equal(cache.misses, misses + 1, 'the least recently used one was dropped')
  assert.equal(cache.size, 3)
  db.close()
})

test('statement cache: DDL is never kept and empties it, so `select *` sees a new column', () => {
  const db = new SQLite(':memory:')
  const cache = new StatementCache(db, 8)
  cache.get('create table t (a integer)').run()
  cache.get('insert into t (a) values (1)').run()
  const select = 'select * from t'
  assert.deepEqual(cache.get(select).all(), [{ a: 1 }])
  const size = cache.size
  cache.get('alter table t add column b integer default 2').run()
  assert.equal(cache.size, 0, `DDL emptied the cache (it held ${size})`)
  assert.deepEqual(cache.get(select).all(), [{ a: 1, b: 2 }])
  db.close()
})

test('statements through the driver: reads and RETURNING give rows, writes their counts; the same query again', async () => {
  const inv = await openSqliteInventory({ file: ':memory:' })
  await sql`create table k (id integer primary key, v text)`.execute(inv.db)
  const ins = await inv.db.insertInto('k' as never).values({ v: 'a' } as never).executeTakeFirst()
  assert.equal(Number(ins.numInsertedOrUpdatedRows), 1)
  const upd = await inv.db.updateTable('k' as never).set({ v: 'b' } as never).where('id' as never, '=', 1 as never).returningAll().execute()
  assert.deepEqual(upd, [{ id: 1, v: 'b' }])
  const plain = await inv.db.updateTable('k' as never).set({ v: 'c' } as never).executeTakeFirst()
  assert.equal(Number(plain.numUpdatedRows), 1)
  for (let i = 0; i < 3; i++) assert.deepEqual(await inv.db.selectFrom('k' as never).selectAll().execute(), [{ id: 1, v: 'c' }])
  await inv.close()
})

async function withFile<T>(fn: (file: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'rb-caches-'))
  try {
    return await fn(join(dir, 'rackboot.db'))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const cls = (name: string, selectors: string[], patches: unknown[] = []): Omit<MachineClass, 'createdAt' | 'updatedAt'> =>
  ({ name, description: null, selectors, profile: null, patches, managedBy: null })

const profile = (name: string, talosVersion: string) =>
  ({ name, description: null, talosVersion, arch: 'amd64' as const, schematic: null, kernelArgs: [], baseConfig: null, patches: [], managedBy: null })

test('class list: kept between writes, read again after a put, a delete, or a write inside a transaction', async () => {
  const inv = await openSqliteInventory({ file: ':memory:' })
  await inv.classes.put(cls('a', ['serial =~ "^A"']), NOW)
  assert.deepEqual((await inv.classes.list()).map((c) => c.name), ['a'])
  // A write that bypasses the repositories (raw SQL on the same connection) is not seen: the list is the cached one.
  await sql`update classes set description = 'raw'`.execute(inv.db)
  assert.equal((await inv.classes.list())[0]!.description, null, 'the second list came from the cache')
  await inv.classes.put(cls('b', ['serial =~ "^B"']), NOW)
  assert.deepEqual((await inv.classes.list()).map((c) => c.name), ['a', 'b'], 'a put is seen by the next list')
  await inv.classes.delete('a')
  assert.deepEqual((await inv.classes.list()).map((c) => c.name), ['b'], 'a delete is seen by the next list')
  await inv.transaction(async (tx) => {
    await tx.classes.put(cls('c', ['rack = "r1"']), NOW)
  })
  assert.deepEqual((await inv.classes.list()).map((c) => c.name), ['b', 'c'], 'a write in a transaction is seen after it commits')
  await inv.close()
})

test('class list and profiles: a commit by another connection (the CLI) is seen by the next read', async () => {
  await withFile(async (file) => {
    const server = await openSqliteInventory({ file })
    const cli = await openSqliteInventory({ file })
    try {
      await server.classes.put(cls('a', ['serial =~ "^A"'], [{ machine: { sysctls: { a: '1' } } }]), NOW)
      await server.profiles.put(profile('w', 'v1.13.9'), NOW)
      assert.equal((await server.classes.list()).length, 1)
      assert.equal((await server.profiles.get('w'))?.talosVersion, 'v1.13.9')
      await cli.classes.put(cls('a', ['serial =~ "^A"'], [{ machine: { sysctls: { a: '2' } } }]), NOW)
      await cli.profiles.put(profile('w', 'v1.12.11'), NOW)
      assert.deepEqual((await server.classes.list())[0]!.patches, [{ machine: { sysctls: { a: '2' } } }])
      assert.equal((await server.profiles.get('w'))?.talosVersion, 'v1.12.11')
      await cli.profiles.delete('w')
      assert.equal(await server.profiles.get('w'), null)
    } finally {
      await cli.close()
      await server.close()
    }
  })
})

test('profiles: kept between writes, read again after a put, a delete or a transaction; a missing one too', async () => {
  const inv = await openSqliteInventory({ file: ':memory:' })
  assert.equal(await inv.profiles.get('w'), null)
  await inv.profiles.put(profile('w', 'v1.13.9'), NOW)
  assert.equal((await inv.profiles.get('w'))?.talosVersion, 'v1.13.9', 'a put replaces a cached miss')
  await sql`update profiles set talos_version = 'raw'`.execute(inv.db)
  assert.equal((await inv.profiles.get('w'))?.talosVersion, 'v1.13.9', 'the second get came from the cache')
  await inv.transaction(async (tx) => {
    await tx.profiles.put(profile('w', 'v1.14.0'), NOW)
  })
  assert.equal((await inv.profiles.get('w'))?.talosVersion, 'v1.14.0')
  await inv.profiles.delete('w')
  assert.equal(await inv.profiles.get('w'), null)
  await inv.close()
})

test('profiles: the cache holds at most PROFILES_KEPT names', async () => {
  const inv = await openSqliteInventory({ file: ':memory:' })
  for (let i = 0; i <= PROFILES_KEPT; i++) await inv.profiles.put(profile(`p${i}`, 'v1.13.9'), NOW)
  for (let i = 0; i <= PROFILES_KEPT; i++) assert.equal((await inv.profiles.get(`p${i}`))?.name, `p${i}`)
  // Reaching the bound started the cache over: a raw change to p0 is seen (read again), p256 stays cached.
  await sql`update profiles set talos_version = 'raw'`.execute(inv.db)
  assert.equal((await inv.profiles.get('p0'))?.talosVersion, 'raw')
  assert.equal((await inv.profiles.get(`p${PROFILES_KEPT}`))?.talosVersion, 'v1.13.9')
  await inv.close()
})

test('cached classes and profiles are frozen: a caller cannot change what later readers get', async () => {
  const inv = await openSqliteInventory({ file: ':memory:' })
  await inv.classes.put(cls('a', ['serial =~ "^A"'], [{ machine: { sysctls: { a: '1' } } }]), NOW)
  await inv.profiles.put(profile('w', 'v1.13.9'), NOW)
  const list = await inv.classes.list()
  assert.throws(() => { (list[0]!.patches[0] as { machine: unknown }).machine = null }, TypeError)
  assert.throws(() => { (list[0]!.selectors as string[]).push('x') }, TypeError)
  list.pop()
  assert.equal((await inv.classes.list()).length, 1, 'each list is a new array')
  const p = (await inv.profiles.get('w'))!
  assert.throws(() => { (p as { talosVersion: string }).talosVersion = 'x' }, TypeError)
  await inv.close()
})

test('SQLite statements carry integer LIMIT and OFFSET in their text (a bound LIMIT makes SQLite prepare again at every run); other values stay parameters', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rb-limit-'))
  const inv = await openSqliteInventory({ file: join(dir, 'inv.db') })
  try {
    const db = inv.db as Kysely<any>
    const q = db.selectFrom('machines').select('id').orderBy('id').limit(3).offset(7).compile()
    assert.match(q.sql, / limit 3 offset 7$/)
    assert.deepEqual(q.parameters, [])
    const odd = db.selectFrom('machines').select('id').limit(2.5 as number).compile()
    assert.match(odd.sql, / limit \?$/, 'not an integer: bound as before')
    assert.deepEqual((await db.selectFrom('machines').select('id').limit(1).execute()), [])
  } finally {
    await inv.close()
    rmSync(dir, { recursive: true, force: true })
  }
})
