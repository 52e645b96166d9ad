// Classes and profiles cached per PostgreSQL instance (issue 16): two inventories on one database (two pools, as two
// rackboot processes have) each keep what they read, a write through either (or straight into the tables) is seen
// by the other's next read within a bounded time, and while an instance's listening connection is away nothing is
// served from its cache. Statements are counted on the client: the cache is really used. PostgreSQL only: skipped
// (loudly) where no private cluster can be started.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import pg from 'pg'
import { sql } from 'kysely'
import type { MachineClass, PostgresInventory, Profile } from '../../src/inventory/index.js'
import { inventoryBackends, skipped } from '../support/backends.js'

const postgres = inventoryBackends().find((b) => b.name === 'postgres')!
/** How long another instance's change may take to be seen (a notification on a loopback socket takes ~1 ms). */
const BOUND_MS = 2000

/** Statements sent to PostgreSQL that read `table`, by every pg client of this process. */
function counting(t: { after(fn: () => void): void }) {
  const original = pg.Client.prototype.query
  const counts = new Map<string, number>()
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    const text = typeof args[0] === 'string' ? args[0] : (args[0] as { text?: string } | undefined)?.text ?? ''
    const m = /^select .* from "(classes|profiles)"/i.exec(text)
    if (m) counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1)
    return (original as (...a: unknown[]) => unknown).apply(this, args)
  } as typeof original
  t.after(() => {
    pg.Client.prototype.query = original
  })
  return (table: 'classes' | 'profiles') => counts.get(table) ?? 0
}

const cls = (name: string, selectors: string[]): Omit<MachineClass, 'createdAt' | 'updatedAt'> => ({ name, description: null, selectors, profile: null, patches: [], managedBy: null })
const profile = (name: string, version: string): Omit<Profile, 'createdAt' | 'updatedAt'> => ({ name, description: null, talosVersion: version, arch: 'amd64', schematic: null, kernelArgs: [], baseConfig: null, patches: [], installDisk: null, deadlines: null, managedBy: null })

/** Polls `check` until it holds, at most `ms`; how long it took. */
async function within(ms: number, check: () => Promise<boolean>): Promise<number> {
  const start = performance.now()
  for (;;) {
    if (await check()) return performance.now() - start
    if (performance.now() - start > ms) assert.fail(`not seen within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

test('two instances on one database: each caches classes and profiles, and sees the other\'s writes within a bound', async (t) => {
  if (await skipped(t, postgres)) return
  const a = (await postgres.open()) as PostgresInventory & { url: string }
  const b = (await postgres.open({ url: a.url })) as PostgresInventory & { url: string }
  t.after(() => Promise.all([a.close(), b.close()]))
  const reads = counting(t)
  const names = async (inv: PostgresInventory) => (await inv.classes.list()).map((c) => `${c.name}:${c.selectors.join(',')}`)

  await a.classes.put(cls('big', ['cpu.cores >= 64']), 1)
  await a.profiles.put(profile('w', 'v1.13.9'), 1)
  // Once b listens (its connection is opened at start-up), a second read comes from its cache.
  await within(BOUND_MS, async () => {
    await b.classes.list()
    const before = reads('classes')
    await b.classes.list()
    return reads('classes') === before
  })
  let before = reads('classes')
  for (let i = 0; i < 20; i++) assert.deepEqual(await names(b), ['big:cpu.cores >= 64'])
  assert.equal(reads('classes'), before, 'twenty lists, no statement: served from the cache')
  await b.profiles.get('w')
  before = reads('profiles')
  for (let i = 0; i < 20; i++) assert.equal((await b.profiles.get('w'))?.talosVersion, 'v1.13.9')
  assert.equal(reads('profiles'), before)

  // A class written through a: a sees it at once (its own write), b within the bound.
  await a.classes.list()
  await a.classes.put(cls('big', ['cpu.cores >= 96']), 2)
  assert.deepEqual(await names(a), ['big:cpu.cores >= 96'])
  const seenAfter = await within(BOUND_MS, async () => (await names(b)).includes('big:cpu.cores >= 96'))
  t.diagnostic(`b saw a's class after ${seenAfter.toFixed(1)} ms`)
  // ...and b caches again afterwards.
  await b.classes.list()
  before = reads('classes')
  await b.classes.list()
  assert.equal(reads('classes'), before)

  // A profile, inside a transaction of b's: b's next read outside sees it at once, a's within the bound.
  await a.profiles.get('w')
  await b.transaction(async (tx) => {
    await tx.profiles.put(profile('w', 'v1.14.0'), 3)
  })
  assert.equal((await b.profiles.get('w'))?.talosVersion, 'v1.14.0')
  await within(BOUND_MS, async () => (await a.profiles.get('w'))?.talosVersion === 'v1.14.0')

  // Written by neither repository (another tool on the database): the trigger alone tells both.
  await sql`insert into classes (name, description, selectors, profile, patches, managed_by, created_at, updated_at) values ('gpu', null, '[]', null, '[]', null, 4, 4)`.execute(b.db)
  await within(BOUND_MS, async () => (await names(a)).includes('gpu:'))
  await within(BOUND_MS, async () => (await names(b)).includes('gpu:'))

  // b's listening connection killed: until it is back, every read of b's reads; a change made meanwhile is seen.
  await sql`select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'rackboot-definitions' and datname = current_database()`.execute(a.db)
  await a.classes.delete('gpu')
  await within(BOUND_MS, async () => !(await names(b)).includes('gpu:'))
  await within(BOUND_MS * 5, async () => {
    await b.classes.list()
    const n = reads('classes')
    await b.classes.list()
    return reads('classes') === n
  })
  assert.deepEqual(await names(b), ['big:cpu.cores >= 96'])
})
