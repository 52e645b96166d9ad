// The leader lease (leader.ts over sql/leader-leases.ts, migration 0014), on SQLite with a fake clock: one holder at a
// time; a holder stops counting itself leader before its row expires (so before anyone may take it over); a holder
// that cannot renew lapses by itself; a released lease is taken at once, an abandoned one once it has expired. Then on
// PostgreSQL with real time and hosts' clocks 120 s apart: the database's clock decides expiry, so the instance whose
// clock is ahead never takes a live lease (never two leaders), and the one behind takes over once the real TTL is up.
import assert from 'node:assert/strict'
import { performance } from 'node:perf_hooks'
import { test, type TestContext } from 'node:test'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { openPostgresInventory, type PostgresInventory } from '../../src/inventory/postgres/open.js'
import { createSqlLeaderLeases, type LeaderLeaseStore } from '../../src/inventory/sql/leader-leases.js'
import { createLeadership, type Leadership } from '../../src/lifecycle/leader.js'
import { silentLogger } from '../../src/log.js'
import { pgClusterOrSkip } from '../support/backends.js'

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

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

const TTL = 1_500
const RENEW = 300
const MARGIN = 300

/**
 * Two instances on one PostgreSQL database, each with its own pool and a host clock `offsetMs` off the real one (time
 * runs at the real rate: timers and the database are real). Each granted renewal is kept with when it was sent and
 * answered (performance.now()); a sampler counts the moments both count themselves leader.
 */
async function skewedPair(t: TestContext, offsets: { A: number; B: number }) {
  const c = await pgClusterOrSkip(t)
  if (!c) return null
  const url = await c.createDatabase()
  const grants: Record<'A' | 'B', { sent: number; answered: number }[]> = { A: [], B: [] }
  const led: Record<'A' | 'B', number | null> = { A: null, B: null }
  let first: PostgresInventory | null = null
  const make = async (name: 'A' | 'B'): Promise<Leadership> => {
    const inventory = await openPostgresInventory({ url, connectTimeoutMs: 30_000 })
    first ??= inventory
    const sql = createSqlLeaderLeases(inventory.db)
    const store: Pick<LeaderLeaseStore, 'acquire' | 'release'> = {
      async acquire(...args) {
        const sent = performance.now()
        const r = await sql.acquire(...args)
        if (r.held) grants[name].push({ sent, answered: performance.now() })
        return r
      },
      release: (...args) => sql.release(...args),
    }
    const leadership = createLeadership({
      store, name: 'repair', holder: name, clock: { now: () => Date.now() + offsets[name] }, log: silentLogger(),
      ttlMs: TTL, renewMs: RENEW, marginMs: MARGIN,
    })
    t.after(async () => {
      await leadership.stop({ release: false })
      await inventory.close()
    })
    return leadership
  }
  const a = await make('A')
  const b = await make('B')
  const rows = createSqlLeaderLeases(first!.db)
  let both = 0
  const sampler = setInterval(() => {
    const now = performance.now()
    if (a.isLeader()) led.A ??= now
    if (b.isLeader()) led.B ??= now
    if (a.isLeader() && b.isLeader()) both++
  }, 2)
  t.after(() => clearInterval(sampler))
  /** Waits (up to `ms`) until `l` leads; when it does, from the other's last granted renewal's sending to its own grant. */
  const takeover = async (l: Leadership, from: 'A' | 'B', ms: number): Promise<number | null> => {
    const until = performance.now() + ms
    while (!l.isLeader() && performance.now() < until) await sleep(5)
    if (!l.isLeader()) return null
    const last = grants[from].at(-1)!
    const first = grants[l === a ? 'A' : 'B'].find((g) => g.answered > last.sent)!
    console.log(`${l.holder} took over ${Math.round(first.answered - last.sent)} ms after ${from}'s last renewal was sent (TTL ${TTL} ms)`)
    return first.answered - last.sent
  }
  /** The longest gap between two granted renewals of `name` (a loaded machine stalling the holder shows here). */
  const gap = (name: 'A' | 'B') => Math.max(0, ...grants[name].slice(1).map((g, i) => g.sent - grants[name][i]!.sent))
  return { a, b, rows, grants, led, both: () => both, takeover, gap }
}

test('leader lease on PostgreSQL: an instance whose clock is 120 s ahead of the holder\'s never takes the live lease; it takes over once the real TTL is up', { timeout: 60_000 }, async (t) => {
  const w = await skewedPair(t, { A: -60_000, B: 60_000 })
  if (!w) return
  await w.a.start()
  assert.equal(w.a.isLeader(), true)
  await w.b.start()
  await sleep(3_000) // ten renewals of each
  assert.equal(w.both(), 0, 'never two leaders at once')
  assert.equal(w.led.B, null, `B (clock ahead) never led while A renewed (A's longest renewal gap ${Math.round(w.gap('A'))} ms)`)
  assert.equal(w.a.isLeader(), true)
  // Read with B's now, the row's times are on B's clock: A's lease runs out within a TTL of B's now.
  const bNow = Date.now() + 60_000
  const row = await w.rows.get('repair', bNow)
  assert.ok(row && row.holder === 'A' && row.expiresAt > bNow && row.expiresAt <= bNow + TTL + 50, `on B's clock: ${JSON.stringify(row)}, now ${bNow}`)

  // A stops renewing without letting go (killed): B takes over once A's row has expired, by real time.
  await w.a.stop({ release: false })
  const after = await w.takeover(w.b, 'A', 5_000)
  assert.ok(after !== null, 'B took over')
  assert.ok(after >= TTL - 5 && after <= TTL + RENEW + 700, `taken over ${Math.round(after)} ms after A's last renewal was sent (TTL ${TTL} ms)`)
  assert.equal(w.both(), 0)
})

test('leader lease on PostgreSQL: an instance whose clock is 120 s behind the holder\'s takes over once the real TTL is up, not minutes later', { timeout: 60_000 }, async (t) => {
  const w = await skewedPair(t, { A: -60_000, B: 60_000 })
  if (!w) return
  await w.b.start()
  assert.equal(w.b.isLeader(), true)
  await w.a.start()
  await sleep(2_000)
  assert.equal(w.both(), 0, 'never two leaders at once')
  assert.equal(w.led.A, null, `A (clock behind) never led while B renewed (B's longest renewal gap ${Math.round(w.gap('B'))} ms)`)

  await w.b.stop({ release: false })
  const after = await w.takeover(w.a, 'B', 5_000)
  assert.ok(after !== null, 'A took over within 5 s of B\'s stopping')
  assert.ok(after >= TTL - 5 && after <= TTL + RENEW + 700, `taken over ${Math.round(after)} ms after B's last renewal was sent (TTL ${TTL} ms)`)
  assert.equal(w.both(), 0)
})
