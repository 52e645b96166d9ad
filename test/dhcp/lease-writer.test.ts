import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createLeaseWriter, DEFAULT_COMMIT_INTERVAL_MS } from '../../src/dhcp/lease-writer.js'
import type { Lease } from '../../src/inventory/types.js'
import type { LeaseRepository } from '../../src/inventory/repositories.js'
import { memoryLeases } from './fakes.js'

const lease = (ip: string, state: Lease['state'] = 'bound'): Lease => ({
  ip, mac: '02:00:00:00:00:01', clientId: null, subnet: '198.18.0.0/24', state, hostname: null, expiresAt: 1, updatedAt: 1,
})

test('writes arriving together share one transaction; each resolves only once stored', async () => {
  const leases = memoryLeases()
  const batches: number[] = []
  const w = createLeaseWriter({
    leases,
    transaction: async (fn) => {
      const before = leases.puts
      const r = await fn(leases)
      batches.push(leases.puts - before)
      return r
    },
  })
  const writes = Array.from({ length: 50 }, (_, i) => w.write(lease(`198.18.0.${i + 1}`)))
  assert.equal(leases.rows.size, 0, 'nothing is written synchronously')
  await Promise.all(writes)
  assert.equal(leases.rows.size, 50)
  assert.deepEqual(batches, [50])
  // A lone write is a batch of one (no transaction needed).
  await w.write(lease('198.18.0.99'))
  assert.deepEqual(batches, [50])
  assert.equal(leases.rows.size, 51)
})

test('a later write of the same address replaces the queued one; both callers are answered', async () => {
  const leases = memoryLeases()
  const w = createLeaseWriter({ leases })
  await Promise.all([w.write(lease('198.18.0.5', 'bound')), w.write(lease('198.18.0.5', 'released'))])
  assert.equal(leases.puts, 1)
  assert.equal(leases.rows.get('198.18.0.5')?.state, 'released')
})

test('a failed batch rejects its writers and the writer keeps working', async () => {
  let fail = true
  const inner = memoryLeases()
  const leases: LeaseRepository = { ...inner, put: async (l) => { if (fail) throw new Error('disk full'); await inner.put(l) } }
  const w = createLeaseWriter({ leases })
  await assert.rejects(w.write(lease('198.18.0.1')), /disk full/)
  fail = false
  await w.write(lease('198.18.0.2'))
  await w.flush()
  assert.equal(inner.rows.size, 1)
})

test('writes queued while a commit runs go out in the next batch, and flush waits for all', async () => {
  const leases = memoryLeases()
  const sizes: number[] = []
  let release!: () => void
  const gate = new Promise<void>((r) => (release = r))
  let first = true
  const w = createLeaseWriter({
    leases,
    maxBatch: 3,
    transaction: async (fn) => {
      if (first) {
        first = false
        await gate
      }
      const before = leases.puts
      const r = await fn(leases)
      sizes.push(leases.puts - before)
      return r
    },
  })
  const a = [w.write(lease('198.18.0.1')), w.write(lease('198.18.0.2'))]
  await new Promise((r) => setImmediate(r))
  await new Promise((r) => setImmediate(r))
  const b = Array.from({ length: 5 }, (_, i) => w.write(lease(`198.18.0.${10 + i}`)))
  release()
  const flushed = w.flush()
  await Promise.all([...a, ...b, flushed])
  assert.deepEqual(sizes, [2, 3, 2])
  assert.equal(leases.rows.size, 7)
})

test('a store with putMany gets one call per batch', async () => {
  const inner = memoryLeases()
  const calls: number[] = []
  const w = createLeaseWriter({
    leases: { ...inner, putMany: async (ls: Lease[]) => { calls.push(ls.length); for (const l of ls) await inner.put(l) } },
  })
  await Promise.all(Array.from({ length: 20 }, (_, i) => w.write(lease(`198.18.0.${i + 1}`))))
  assert.deepEqual(calls, [20])
  assert.equal(inner.rows.size, 20)
})

/**
 * Time for the writer's spacing that moves only in advance(): due timers fire in order, and promise chains and
 * setImmediate turns settle between them, so the tests below never race a real timer.
 */
function fakeTime() {
  let t = 0
  const timers: { at: number; fn: () => void; cancelled: boolean }[] = []
  const settle = async () => {
    for (let i = 0; i < 10; i++) await new Promise<void>((r) => setImmediate(r))
  }
  return {
    clock: { now: () => t },
    setTimer(fn: () => void, ms: number) {
      const timer = { at: t + ms, fn, cancelled: false }
      timers.push(timer)
      return { cancel: () => { timer.cancelled = true } }
    },
    get now() { return t },
    settle,
    async advance(ms: number) {
      const target = t + ms
      for (;;) {
        await settle()
        const due = timers.filter((x) => !x.cancelled && x.at <= target).sort((a, b) => a.at - b.at)[0]
        if (!due) break
        due.cancelled = true
        t = due.at
        due.fn()
      }
      t = target
      await settle()
    },
  }
}

/** Whether the promise has settled (after letting pending turns run). */
async function done(p: Promise<unknown>, time: { settle(): Promise<void> }): Promise<boolean> {
  let settled = false
  void p.then(() => { settled = true }, () => { settled = true })
  await time.settle()
  return settled
}

/** A writer on a fake clock over in-memory leases, recording when each commit went out and how many it held. */
function timedWriter(options: { maxBatch?: number } = {}) {
  const time = fakeTime()
  const inner = memoryLeases()
  const commits: { at: number; size: number }[] = []
  const w = createLeaseWriter({
    leases: {
      ...inner,
      put: async (l: Lease) => { commits.push({ at: time.now, size: 1 }); await inner.put(l) },
      putMany: async (ls: Lease[]) => { commits.push({ at: time.now, size: ls.length }); for (const l of ls) await inner.put(l) },
    },
    ...options,
    clock: time.clock,
    setTimer: time.setTimer,
  })
  return { time, commits, w }
}

test('back-to-back commits are spaced by the default interval, and writes arriving meanwhile share the next one', async () => {
  const { time, commits, w } = timedWriter()
  // An idle writer commits at once: no time passes.
  assert.equal(await done(w.write(lease('198.18.0.1')), time), true)
  assert.deepEqual(commits, [{ at: 0, size: 1 }])
  // Right after that commit: one write now, one 3 ms later; neither goes out before the interval has passed since
  // the first commit started, and then both go out together.
  const a = w.write(lease('198.18.0.10'))
  await time.advance(3)
  const b = w.write(lease('198.18.0.11'))
  await time.advance(DEFAULT_COMMIT_INTERVAL_MS - 3 - 1)
  assert.equal(await done(Promise.race([a, b]), time), false, `nothing is committed before ${DEFAULT_COMMIT_INTERVAL_MS} ms`)
  assert.equal(commits.length, 1)
  await time.advance(1)
  assert.deepEqual(await Promise.all([a, b]), [true, true])
  assert.deepEqual(commits, [{ at: 0, size: 1 }, { at: DEFAULT_COMMIT_INTERVAL_MS, size: 2 }])
  // Long after: idle again, so the next write commits at once.
  await time.advance(100)
  assert.equal(await done(w.write(lease('198.18.0.12')), time), true)
  assert.deepEqual(commits.at(-1), { at: DEFAULT_COMMIT_INTERVAL_MS + 100, size: 1 })
})

test('a full batch does not wait for the spacing', async () => {
  const { time, commits, w } = timedWriter({ maxBatch: 3 })
  assert.equal(await done(w.write(lease('198.18.0.1')), time), true)
  // Five writes right after a commit: the first three fill a batch and go out now; the other two wait their turn.
  const writes = Array.from({ length: 5 }, (_, i) => w.write(lease(`198.18.0.${10 + i}`)))
  await time.settle()
  assert.deepEqual(commits.map((c) => c.size), [1, 3])
  assert.equal(await done(Promise.race(writes.slice(3)), time), false)
  await time.advance(DEFAULT_COMMIT_INTERVAL_MS)
  assert.deepEqual(await Promise.all(writes), [true, true, true, true, true])
  assert.deepEqual(commits, [{ at: 0, size: 1 }, { at: 0, size: 3 }, { at: DEFAULT_COMMIT_INTERVAL_MS, size: 2 }])
})
