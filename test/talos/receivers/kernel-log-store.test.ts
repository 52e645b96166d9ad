// The kernel log store's byte bound (issue 13): whatever unauthenticated peers send, the store holds at most
// maxBytes by its own count, that count is an upper bound of the heap it really holds, and what goes first is the
// least recently written peer's oldest lines.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import v8 from 'node:v8'
import vm from 'node:vm'
import { createMetricsRegistry } from '../../../src/metrics.js'
import {
  createKernelLogStore,
  lineCost,
  parseKernelLogLine,
  PEER_OVERHEAD_BYTES,
  STRING_OVERHEAD_BYTES,
  type KernelLogLine,
} from '../../../src/talos/receivers/index.js'

// A full collection before each heap reading, without asking the test runner for --expose-gc.
v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void

function heapUsed(): number {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

const peerCost = (peer: string) => PEER_OVERHEAD_BYTES + STRING_OVERHEAD_BYTES + 2 * peer.length

test('10,000 peers sending the largest lines the receiver lets through stay under maxBytes, in the heap too', () => {
  const MiB = 1024 * 1024
  const maxBytes = 8 * MiB
  // Generous per-peer limits so that only the byte bound holds (before issue 13: 1024 peers × 2000 lines × 4096 chars).
  const store = createKernelLogStore({ perMachineLines: 2000, maxPeers: 100_000, maxBytes })
  const before = heapUsed()
  let worst = 0
  for (let p = 0; p < 10_000; p++) {
    const peer = `10.${p >> 8}.${p & 255}.7`
    for (let seq = 0; seq < 2; seq++) {
      // Just under the default 16 KiB line limit: msg and fields far past what is kept, so every one is cut. A cut
      // that kept a view of the original string would pin all of it and the heap check below would fail.
      const text = JSON.stringify({
        msg: `${p}:${seq} ${'x'.repeat(14_000)}`, facility: 'f'.repeat(500), priority: 'p'.repeat(500),
        'talos-level': 'l'.repeat(500), 'talos-time': 't'.repeat(500), seq, clock: seq,
      })
      const parsed = parseKernelLogLine(text, 1_787_000_000_000 + p)
      assert.ok(parsed.ok)
      store.append(peer, parsed.record, p % 2 === 0 ? 'tcp' : 'udp')
      worst = Math.max(worst, store.stats().bytes)
    }
  }
  const stats = store.stats()
  assert.ok(worst <= maxBytes, `store held ${worst} bytes, bound ${maxBytes}`)
  // Each line is about 9 KB by the store's count: the bound keeps the newest ~900, from the most recent peers.
  assert.ok(stats.lines > 800 && stats.lines < 1000, `${stats.lines} lines kept`)
  assert.equal(stats.evictedLines, 20_000 - stats.lines)
  assert.ok(stats.evictedBytes > 19_000 * 9000)
  assert.equal(stats.peers, Math.ceil(stats.lines / 2))
  assert.deepEqual(store.lines('10.39.15.7').map((l) => [l.msg.slice(0, 12), l.transport]), [['9999:0 xxxxx', 'udp'], ['9999:1 xxxxx', 'udp']])
  assert.deepEqual(store.lines('10.0.0.7'), [])
  assert.equal(store.lines('10.39.15.7')[0]?.msg.length, 4096)
  // The count is an upper bound of the heap really held (0.5 of it for ASCII lines like these), plus some slack
  // for what the collector leaves.
  const held = heapUsed() - before
  assert.ok(held < maxBytes, `heap grew by ${(held / MiB).toFixed(1)} MiB for a store bounded at ${maxBytes / MiB} MiB`)
  assert.ok(store.lines('10.39.15.7').length === 2) // keeps the store alive past the heap reading
})

test('byte bound: the least recently written peer loses its oldest lines first, then goes; the writer goes last', () => {
  const line = (msg: string) => ({ receivedAt: 1, msg })
  const cost = lineCost(line('a0')) // every message below has 2 characters
  const peers = ['198.18.0.1', '198.18.0.2', '198.18.0.3']
  const fixed = peerCost(peers[0]!) // same length for all three
  // room for two peers of three lines each, plus one peer more
  const maxBytes = 2 * (fixed + 3 * cost) + fixed + cost
  const registry = createMetricsRegistry()
  const store = createKernelLogStore({ perMachineLines: 100, maxBytes, metrics: registry })
  for (let i = 0; i < 3; i++) store.append(peers[0]!, line(`a${i}`), 'tcp')
  for (let i = 0; i < 3; i++) store.append(peers[1]!, line(`b${i}`), 'tcp')
  assert.equal(store.stats().bytes, 2 * (fixed + 3 * cost))
  store.append(peers[0]!, line('a3'), 'tcp') // .1 is now the most recent; .2 goes first
  store.append(peers[2]!, line('c0'), 'tcp')
  assert.deepEqual(store.lines(peers[1]!).map((l) => l.msg), ['b1', 'b2'])
  assert.deepEqual(store.lines(peers[0]!).map((l) => l.msg), ['a0', 'a1', 'a2', 'a3'])
  assert.equal(store.stats().evictedLines, 1)
  store.append(peers[2]!, line('c1'), 'tcp')
  store.append(peers[2]!, line('c2'), 'tcp')
  // .2 lost its last line: gone, its bookkeeping freed with it
  assert.deepEqual(store.lines(peers[1]!), [])
  assert.deepEqual(store.peers().map((p) => p.peer), [peers[0], peers[2]])
  assert.deepEqual(
    (({ lines, evictedLines, evictedPeers, evictedBytes }) => ({ lines, evictedLines, evictedPeers, evictedBytes }))(store.stats()),
    { lines: 7, evictedLines: 3, evictedPeers: 1, evictedBytes: 3 * cost },
  )
  assert.ok(store.stats().bytes <= maxBytes)
  // one peer alone past the bound keeps its newest lines
  for (let i = 3; i < 40; i++) store.append(peers[2]!, line(`c${i % 10}`), 'tcp')
  assert.deepEqual(store.peers().map((p) => p.peer), [peers[2]])
  assert.equal(store.lines(peers[2]!).length, Math.floor((maxBytes - fixed) / cost))
  assert.equal(store.lines(peers[2]!).at(-1)?.cursor, 47)
  // forgetting gives everything back
  store.forget(peers[2]!)
  assert.equal(store.stats().bytes, 0)
  assert.equal(store.stats().lines, 0)
})

test('a line larger than the whole bound is handed to listeners but not kept', () => {
  const store = createKernelLogStore({ maxBytes: 1000 })
  const heard: KernelLogLine[] = []
  store.subscribe((_peer, l) => heard.push(l))
  const kept = store.append('198.18.0.9', { receivedAt: 1, msg: 'y'.repeat(600) }, 'tcp')
  assert.equal(heard[0], kept)
  assert.deepEqual(store.lines('198.18.0.9'), [])
  assert.deepEqual((({ bytes, peers, evictedLines }) => ({ bytes, peers, evictedLines }))(store.stats()), { bytes: 0, peers: 0, evictedLines: 1 })
})

test('listeners and readers learn the transport of every line', () => {
  const store = createKernelLogStore()
  const heard: string[] = []
  // the lifecycle's two-argument listener still compiles and runs
  store.subscribe((peer, line) => heard.push(`${peer} ${line.transport} ${line.msg}`))
  store.append('198.18.0.1', { receivedAt: 1, msg: 'over tcp' }, 'tcp')
  store.append('198.18.0.1', { receivedAt: 2, msg: 'over udp' }, 'udp')
  assert.deepEqual(heard, ['198.18.0.1 tcp over tcp', '198.18.0.1 udp over udp'])
  assert.deepEqual(store.lines('198.18.0.1').map((l) => l.transport), ['tcp', 'udp'])
})

test('store metrics: bytes, lines and peers held; evictions counted', async () => {
  const registry = createMetricsRegistry()
  const store = createKernelLogStore({ perMachineLines: 100, maxBytes: 5000, metrics: registry })
  for (let i = 0; i < 30; i++) store.append(`198.18.1.${i % 3}`, { receivedAt: i, msg: `line ${i}` }, 'udp')
  const stats = store.stats()
  assert.ok(stats.evictedLines > 0)
  const text = await registry.metrics()
  assert.match(text, new RegExp(`rackboot_talos_kernel_log_store_bytes ${stats.bytes}\\n`))
  assert.match(text, new RegExp(`rackboot_talos_kernel_log_store_lines ${stats.lines}\\n`))
  assert.match(text, new RegExp(`rackboot_talos_kernel_log_store_peers ${stats.peers}\\n`))
  assert.match(text, new RegExp(`rackboot_talos_kernel_log_evicted_lines_total ${stats.evictedLines}\\n`))
  assert.match(text, new RegExp(`rackboot_talos_kernel_log_evicted_bytes_total ${stats.evictedBytes}\\n`))
})
