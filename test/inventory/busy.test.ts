// Another process holding the write lock (a CLI write while `serve` runs) must not freeze the server: its writes wait
// asynchronously and complete once the lock is released; reads go on meanwhile; a lock held past the busy timeout
// fails a write with a clear error instead of a multi-second stall.
//
// Before: busy_timeout = 5000 on the server's connection, so every statement that met the lock slept in SQLite's busy
// handler on the event loop (`inventory import` while serving: /healthz took 6.8 s, a DHCP reply was lost).
// RACKBOOT_BUSY_TEST_SYNC_MS=5000 puts that back (SQLite's synchronous wait per attempt), to see this test fail.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { openSqliteInventory, type SqliteInventory } from '../../src/inventory/index.js'
import { isRackbootError } from '../../src/errors.js'
import { describeStalls, watchEventLoop } from './loop-stall.js'

const SQLITE_MODULE = createRequire(import.meta.url).resolve('better-sqlite3')
const SYNC_MS = process.env.RACKBOOT_BUSY_TEST_SYNC_MS ? Number(process.env.RACKBOOT_BUSY_TEST_SYNC_MS) : undefined

/** A process that opens `file`, takes the write lock (BEGIN IMMEDIATE plus a write), holds it `ms`, commits. */
function holdLock(file: string, ms: number): { locked: Promise<number>; released: Promise<number> } {
  const script = `
    const Database = require(${JSON.stringify(SQLITE_MODULE)})
    const db = new Database(${JSON.stringify(file)}, { timeout: 10000 })
    db.exec('begin immediate')
    db.prepare("insert into meta (key, value) values ('busy-test', 'held') on conflict (key) do update set value = excluded.value").run()
    process.stdout.write('locked\\n')
    setTimeout(() => { db.exec('commit'); db.close(); process.stdout.write('released\\n') }, ${ms})
  `
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  const seen = (word: string) => new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', () => out.includes(word) && resolve(performance.now()))
    child.on('exit', (code) => (out.includes(word) ? resolve(performance.now()) : reject(new Error(`lock holder exited (${code}) before '${word}': ${out}`))))
  })
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d))
  return { locked: seen('locked'), released: seen('released') }
}

const mac = (k: number) => `02:0c:${[3, 2, 1, 0].map((b) => ((k >>> (8 * b)) & 255).toString(16).padStart(2, '0')).join(':')}`

async function serverInventory(t: { after(fn: () => unknown): void }, extra: Partial<Parameters<typeof openSqliteInventory>[0]> = {}): Promise<{ inv: SqliteInventory; file: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'rb-busy-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'rackboot.db')
  const inv = await openSqliteInventory({ file, backgroundCheckpoints: true, ...(SYNC_MS !== undefined ? { syncBusyMs: SYNC_MS } : {}), ...extra })
  t.after(() => inv.close())
  return { inv, file }
}

test('a 3 s write lock in another process: the event loop is never held 100 ms, reads go on, every write lands after the release', { timeout: 60_000 }, async (t) => {
  const { inv, file } = await serverInventory(t)
  const seed = await inv.machines.create({ serial: 'SEED' }, Date.now())

  const holder = holdLock(file, 3000)
  await holder.locked
  const stop = watchEventLoop()
  // What the server does meanwhile, every 20 ms: a machine with its event (Kysely, transactions), a lease (the raw
  // better-sqlite3 path DHCP uses), and a read.
  const writes: Promise<{ doneAt: number }>[] = []
  const reads: { issuedAt: number; doneAt: number }[] = []
  const started = performance.now()
  let k = 0
  while (performance.now() - started < 3600) {
    const i = k++
    writes.push((async () => {
      const m = await inv.machines.create({ serial: `B${i}`, nics: [{ mac: mac(i), name: 'eth0', boot: true }] }, Date.now())
      await inv.events.append({ machineId: m.id, type: 'test.busy', at: Date.now(), message: 'x', data: { i } })
      return { doneAt: performance.now() }
    })())
    writes.push(inv.leases.put({ ip: `10.9.${i >> 8}.${i & 255}`, mac: mac(i), clientId: null, subnet: '10.9.0.0/16', state: 'bound', hostname: null, expiresAt: Date.now() + 60_000, updatedAt: Date.now() }).then(() => ({ doneAt: performance.now() })))
    const issuedAt = performance.now()
    void inv.machines.get(seed.id).then(() => reads.push({ issuedAt, doneAt: performance.now() }))
    await new Promise((r) => setTimeout(r, 20))
  }
  const releasedAt = await holder.released
  const results = await Promise.allSettled(writes)
  const loop = stop()
  const failed = results.filter((r) => r.status === 'rejected')
  const busy = inv.busyStats()
  const lockedAt = await holder.locked
  const issuedDuring = reads.filter((r) => r.issuedAt > lockedAt && r.issuedAt < releasedAt - 300)
  const answered = issuedDuring.filter((r) => r.doneAt < releasedAt)
  t.diagnostic(`${k} rounds; lock met ${busy.retries} times, released after ${(releasedAt - lockedAt).toFixed(0)} ms; `
    + `${answered.length} of ${issuedDuring.length} reads issued while it was held answered before the release; ${describeStalls(loop)}`)

  assert.ok(loop.maxHeldMs < 100, `the event loop was never held 100 ms (${describeStalls(loop)})`)
  assert.equal(failed.length, 0, `no write was lost: ${failed.map((f) => (f as PromiseRejectedResult).reason).slice(0, 3).join('; ')}`)
  assert.ok(busy.retries > 0, 'the server did meet the lock')
  const during = results.filter((r) => r.status === 'fulfilled' && r.value.doneAt < releasedAt - 50)
  assert.ok(during.length <= 2, `writes waited for the release (${during.length} finished while the lock was held)`)
  assert.equal(await inv.machines.count(), k + 1)
  assert.equal((await inv.leases.list({ subnet: '10.9.0.0/16' })).length, k)
  assert.equal(reads.length, k, 'every read was answered')
  assert.ok(answered.length >= 0.9 * issuedDuring.length, `reads were answered while the writes waited (${answered.length} of ${issuedDuring.length})`)
})

test('a lock held past database.busyTimeoutMs fails the write with a clear storage error, and the server writes again after', { timeout: 60_000 }, async (t) => {
  const { inv, file } = await serverInventory(t, { database: { busyTimeoutMs: 500 } })
  const holder = holdLock(file, 2500)
  await holder.locked
  const stop = watchEventLoop()
  const t0 = performance.now()
  const err = await inv.machines.create({ serial: 'LATE' }, Date.now()).then(() => null, (e: unknown) => e)
  const waited = performance.now() - t0
  const leaseErr = await inv.leases.put({ ip: '10.9.9.9', mac: mac(1), clientId: null, subnet: '10.9.0.0/16', state: 'bound', hostname: null, expiresAt: Date.now() + 60_000, updatedAt: Date.now() }).then(() => null, (e: unknown) => e)
  const loop = stop()
  assert.ok(loop.maxHeldMs < 100, `the event loop was never held 100 ms (${describeStalls(loop)})`)
  assert.ok(isRackbootError(err, 'RB_ERR_STORAGE'), `a storage error (${String(err)})`)
  assert.equal(err.statusCode, 503)
  assert.match(err.message, /stayed locked by another process for \d+ ms/)
  assert.ok(waited >= 450 && waited < 1500, `after about the busy timeout (${waited.toFixed(0)} ms)`)
  assert.ok(isRackbootError(leaseErr, 'RB_ERR_STORAGE'), `the lease path too (${String(leaseErr)})`)
  assert.equal(inv.busyStats().failures, 2)
  await holder.released
  await inv.machines.create({ serial: 'AFTER' }, Date.now())
  assert.equal(await inv.machines.count(), 1)
})
