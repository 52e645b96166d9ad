// The leader lease (leader.ts over sql/leader-leases.ts, migration 0014), on SQLite with a fake clock: one holder at a
// time; a holder stops counting itself leader before its row expires (so before anyone may take it over); a holder
// that cannot renew lapses by itself; a released lease is taken at once, an abandoned one once it has expired.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { createSqlLeaderLeases, type LeaderLeaseStore } from '../../src/inventory/sql/leader-leases.js'
import { createLeadership } from '../../src/lifecycle/leader.js'
import { silentLogger } from '../../src/log.js'

test('leader lease: one holder; lapses before its expiry, when renewals fail, and is taken over only once expired', async (t) => {
  const inventory = await openSqliteInventory({ file: ':memory:' })
  t.after(() => inventory.close())
  const sql = createSqlLeaderLeases(inventory.db)
  let now = 1_800_000_000_000
  const clock = { now: () => now }
  let broken = false
  const store: LeaderLeaseStore = {
    get: (name) => sql.get(name),
    acquire: (...args) => (broken ? Promise.reject(new Error('database unreachable')) : sql.acquire(...args)),
    release: (...args) => sql.release(...args),
  }
  const changes: string[] = []
  const make = (holder: string) => createLeadership({
    store, name: 'repair', holder, clock, log: silentLogger(), ttlMs: 15_000, marginMs: 3_000,
    onChange: (leader) => changes.push(`${holder} ${leader ? 'leads' : 'follows'}`),
    setTimer: () => ({ cancel() {} }),
  })
  const a = make('A')
  const b = make('B')
  assert.equal(await a.tick(), true)
  assert.equal(await b.tick(), false, 'one holder at a time')
  assert.equal((await sql.get('repair'))?.holder, 'A')

  // A's renewals fail: it stays leader on what its last renewal bought, and lapses 3 s before its row expires.
  broken = true
  now += 11_000
  assert.equal(await a.tick(), true)
  now += 1_001
  assert.equal(a.isLeader(), false, 'lapsed at sentAt + ttl - margin, without hearing from the database')
  assert.equal(await a.tick(), false)
  broken = false
  // Nobody may take the row before it expires (15 s after A's last renewal), though A has stopped already.
  assert.equal(await b.tick(), false)
  now += 3_000
  assert.equal(await b.tick(), true, 'taken over once expired')
  assert.equal(await a.tick(), false)
  // B steps down cleanly: released, A takes it at once.
  await b.stop()
  assert.equal(await a.tick(), true)
  assert.deepEqual(changes, ['A leads', 'A follows', 'B leads', 'B follows', 'A leads'])
})
