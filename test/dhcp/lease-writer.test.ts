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

test('back-to-back commits are spaced by the default interval, and writes arriving meanwhile share the next one', async () => {
  const inner = memoryLeases()
  const commits: { at: number; size: number }[] = []
  const w = createLeaseWriter({
    leases: {
      ...inner,
      put: async (l: Lease) => { commits.push({ at: performance.now(), size: 1 }); await inner.put(l) },
      putMany: async (ls: Lease[]) => { commits.push({ at: performance.now(), size: ls.length }); for (const l of ls) await inner.put(l) },
    },
  })
  await w.write(lease('198.18.0.1'))
  // Right after that commit: one write now, one 3 ms later (a timer that expires before the writer's), and both
  // go out in the second commit, no sooner than the interval after the first.
  const a = w.write(lease('198.18.0.10'))
  await new Promise((r) => setTimeout(r, 3))
  const b = w.write(lease('198.18.0.11'))
  await Promise.all([a, b])
  assert.deepEqual(commits.map((c) => c.size), [1, 2])
  assert.ok(commits[1]!.at - commits[0]!.at >= DEFAULT_COMMIT_INTERVAL_MS - 1, `commits ${(commits[1]!.at - commits[0]!.at).toFixed(1)} ms apart`)
})
