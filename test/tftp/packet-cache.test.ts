import assert from 'node:assert/strict'
import { readFile, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { createPacketCache, packetize } from '../../src/tftp/packet-cache.js'
import { findProgram, metricValue, run, startServer, tempDir } from './support.js'

const block = (p: Buffer) => p.readUInt16BE(2)

test('packetize: a final short block always ends the file, block numbers wrap like the wire', () => {
  assert.deepEqual(packetize(Buffer.alloc(0), 512).map((p) => p.length), [4], 'empty file: one empty DATA')
  assert.deepEqual(packetize(Buffer.alloc(512), 512).map((p) => p.length), [516, 4], 'exactly one block: then an empty one')
  const data = Buffer.from(Array.from({ length: 1300 }, (_, i) => i & 0xff))
  const ps = packetize(data, 512)
  assert.deepEqual(ps.map((p) => p.length), [516, 516, 280])
  assert.deepEqual(ps.map(block), [1, 2, 3])
  assert.ok(ps.every((p) => p.readUInt16BE(0) === 3), 'opcode DATA')
  assert.deepEqual(Buffer.concat(ps.map((p) => p.subarray(4))), data)
  const big = packetize(Buffer.alloc(8 * 70_000), 8)
  assert.equal(block(big[65534]!), 65535)
  assert.equal(block(big[65535]!), 0, 'block 65536 goes out as 0 (rollover)')
  assert.equal(block(big[65536]!), 1)
})

test('cache: shared per file and blksize, one read for concurrent requests, bounded with least recently used out', async () => {
  const cache = createPacketCache({ maxBytes: 3000, maxFileBytes: 1500 })
  let reads = 0
  const reader = (n: number) => async () => {
    reads++
    await new Promise((r) => setTimeout(r, 5))
    return Buffer.alloc(n, 7)
  }
  const [a, b] = await Promise.all([cache.packets('f1', 1000, 512, reader(1000)), cache.packets('f1', 1000, 512, reader(1000))])
  assert.equal(reads, 1, 'concurrent requests share one read')
  assert.equal(a, b, 'the same packets are shared')
  assert.notEqual(await cache.packets('f1', 1000, 1024, reader(1000)), a, 'another blksize is another entry')
  assert.equal(reads, 2)
  assert.equal(await cache.packets('big', 2000, 512, reader(2000)), null, 'over the per-file bound: not cached')
  await cache.packets('f1', 1000, 512, reader(1000)) // f1/512 is now the most recently used
  await cache.packets('f2', 1000, 512, reader(1000)) // 3000 bytes: at the bound
  await cache.packets('f3', 1000, 512, reader(1000)) // over: the least recently used (f1/1024) goes
  assert.equal(cache.bytes, 3000)
  reads = 0
  await cache.packets('f1', 1000, 512, reader(1000))
  assert.equal(reads, 0, 'f1/512 was kept')
  await cache.packets('f1', 1000, 1024, reader(1000))
  assert.equal(reads, 1, 'f1/1024 had been evicted')
  // A failed read is not remembered; a short read (file changed) is a failure.
  await assert.rejects(cache.packets('bad', 100, 512, async () => Buffer.alloc(50)), /read 50 of 100/)
  assert.ok((await cache.packets('bad', 100, 512, reader(100))) !== null)
  assert.equal(await createPacketCache({ maxBytes: 0 }).packets('x', 1, 512, reader(1)), null, 'off')
})

test('a replaced or rewritten file is served new, never from a stale cache entry', { skip: findProgram('curl') ? false : 'curl not installed' }, async (t) => {
  const curl = findProgram('curl')!
  const dir = await tempDir(t, 'rb-tftp-cache-')
  const srv = await startServer(t, { root: dir, settings: { cacheMiB: 16 } })
  const file = join(dir, 'boot.bin')
  const out = join(dir, 'out.bin')
  const fetch = async () => {
    const r = await run(curl, ['-s', '--tftp-blksize', '1024', '-o', out, `tftp://127.0.0.1:${srv.port}/boot.bin`])
    assert.equal(r.code, 0, r.stderr)
    return readFile(out)
  }
  await writeFile(file, Buffer.alloc(5000, 1))
  assert.deepEqual(await fetch(), Buffer.alloc(5000, 1))
  assert.deepEqual(await fetch(), Buffer.alloc(5000, 1), 'second fetch (from the cache) is the same')
  assert.equal(await metricValue(srv.metrics, 'rackboot_tftp_cache_lookups_total', { result: 'miss' }), 1)
  assert.equal(await metricValue(srv.metrics, 'rackboot_tftp_cache_lookups_total', { result: 'hit' }), 1)
  // Same size, contents rewritten in place, even with the old mtime put back: ctime still changes.
  await writeFile(file, Buffer.alloc(5000, 2))
  await utimes(file, new Date(2020, 0, 1), new Date(2020, 0, 1))
  assert.deepEqual(await fetch(), Buffer.alloc(5000, 2))
})

test('cache lookup: a miss starts the build and answers at once; later requests share it; a failed build is dropped', async () => {
  const cache = createPacketCache({ maxBytes: 1 << 20 })
  let release!: () => void
  const gate = new Promise<void>((r) => (release = r))
  let reads = 0
  const slow = async () => {
    reads++
    await gate
    return Buffer.alloc(1000, 3)
  }
  const first = cache.lookup('f', 1000, 512, slow)
  assert.equal(first.packets, null, 'the request that misses streams instead of waiting')
  assert.ok(first.built !== null)
  const second = cache.lookup('f', 1000, 512, slow)
  assert.ok(second.packets !== null, 'a later request waits for the build under way')
  assert.equal(second.built, null)
  release()
  assert.equal(await first.built, null, 'built: no error')
  assert.deepEqual((await second.packets!).map((p) => p.length), [516, 492])
  assert.equal(reads, 1)
  // Packets already cut (source.ts readPackets) are taken as they are, and checked against the size.
  const cut = packetize(Buffer.alloc(600, 4), 512)
  assert.equal(await cache.packets('g', 600, 512, async () => cut), cut)
  await assert.rejects(cache.packets('h', 700, 512, async () => cut), /read 600 of 700/)
  const failed = cache.lookup('bad', 10, 512, async () => Buffer.alloc(5))
  assert.match(String(await failed.built), /read 5 of 10/)
  assert.equal(cache.lookup('bad', 10, 512, async () => Buffer.alloc(10)).packets, null, 'not remembered: a miss again')
})
