// Random, truncated and mutated datagrams at the server port and at live transfer ports: nothing crashes or stalls,
// drops are counted, and real downloads running alongside arrive intact.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createSocket, type Socket } from 'node:dgram'
import { join } from 'node:path'
import { Opcode, encodeAck, encodeError, encodeOack, encodeRequest } from '../../src/tftp/packet.js'
import { findProgram, makeFiles, run, sha256File, startServer, tempDir, waitFor } from './support.js'

function prng(seed: number) {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let x = s
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

async function udp(t: { after(fn: () => Promise<void>): void }): Promise<Socket> {
  const s = createSocket('udp4')
  s.on('error', () => {})
  s.on('message', () => {}) // answers are not the point here
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r))
  t.after(() => new Promise<void>((r) => s.close(() => r())))
  return s
}

function fuzzDatagram(rnd: () => number): Buffer {
  const valid = [
    () => encodeRequest(Opcode.RRQ, rnd() < 0.5 ? 'f2m.bin' : `x${Math.floor(rnd() * 1e6)}`, rnd() < 0.8 ? 'octet' : 'NETASCII', { blksize: String(Math.floor(rnd() * 70000)), tsize: '0', windowsize: String(Math.floor(rnd() * 100)) }),
    () => encodeRequest(Opcode.WRQ, 'w.bin', 'octet'),
    () => encodeAck(Math.floor(rnd() * 65536)),
    () => encodeError(Math.floor(rnd() * 10), 'fuzz'),
    () => encodeOack(new Map([['blksize', '512']])),
    () => Buffer.from([0, 3, 0, 1, 1, 2, 3]),
  ]
  const kind = rnd()
  if (kind < 0.3) {
    const len = Math.floor(rnd() * 600)
    const b = Buffer.alloc(len)
    for (let i = 0; i < len; i++) b[i] = Math.floor(rnd() * 256)
    return b
  }
  const base = valid[Math.floor(rnd() * valid.length)]!()
  if (kind < 0.6) return base.subarray(0, Math.floor(rnd() * (base.length + 1))) // truncated
  const b = Buffer.from(base)
  const flips = 1 + Math.floor(rnd() * 4)
  for (let i = 0; i < flips && b.length > 0; i++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256)
  return b
}

test('fuzzed datagrams: the server keeps answering and real transfers complete', { timeout: 300_000 }, async (t) => {
  const root = await tempDir(t, 'rb-tftp-fuzz-')
  const out = await tempDir(t, 'rb-tftp-fuzz-out-')
  const sums = await makeFiles(root, { 'f2m.bin': 2 * 1024 * 1024 })
  // Fuzzers, the held transfer and the real clients all send from 127.0.0.1, so the per-address limit is out of the
  // way here (flood.test.ts tests it).
  const srv = await startServer(t, { root, settings: { retransmitMs: 100, maxRetries: 2, maxTransfers: 2000, maxTransfersPerClient: 2000 } })
  const rnd = prng(0x7f7f1234)
  const senders = await Promise.all([udp(t), udp(t), udp(t), udp(t)])
  const curl = findProgram('curl')
  const atftp = findProgram('atftp')

  // A slow lock-step transfer kept alive through the storm so its port can be fuzzed too (from foreign ports,
  // and with short datagrams from its own client), while real clients download.
  const holder = await udp(t)
  let holding = true
  const transferPort = await new Promise<number>((resolve) => {
    let first = true
    holder.on('message', (m, rinfo) => {
      if (first) {
        first = false
        resolve(rinfo.port)
      }
      if (m.length >= 4 && m[1] === Opcode.DATA && holding) {
        const ack = encodeAck(m.readUInt16BE(2))
        setTimeout(() => holding && holder.send(ack, rinfo.port, '127.0.0.1'), 20)
      }
    })
    holder.send(encodeRequest(Opcode.RRQ, 'f2m.bin', 'octet'), srv.port, '127.0.0.1')
  })

  const downloads: Promise<void>[] = []
  for (let i = 0; i < 4; i++) {
    const dest = join(out, `d${i}.bin`)
    if (curl && i % 2 === 0) {
      downloads.push(run(curl, ['-sS', '--tftp-blksize', '1468', '-o', dest, `tftp://127.0.0.1:${srv.port}/f2m.bin`]).then(async (r) => {
        assert.equal(r.code, 0, r.stderr)
        assert.equal(await sha256File(dest), sums['f2m.bin'])
      }))
    } else if (atftp) {
      downloads.push(run(atftp, ['--option', 'blksize 1468', '--option', 'windowsize 8', '-g', '-r', 'f2m.bin', '-l', dest, '127.0.0.1', String(srv.port)]).then(async (r) => {
        assert.equal(r.code, 0, r.stderr)
        assert.equal(await sha256File(dest), sums['f2m.bin'])
      }))
    }
  }

  let sent = 0
  for (let round = 0; round < 40; round++) {
    for (let i = 0; i < 250; i++) {
      const s = senders[Math.floor(rnd() * senders.length)]!
      const toTransfer = rnd() < 0.3
      s.send(fuzzDatagram(rnd), toTransfer ? transferPort : srv.port, '127.0.0.1')
      sent++
    }
    // Short datagrams from the transfer's own client, and the classic crashers (1 byte, empty) to both ports.
    holder.send(Buffer.alloc(Math.floor(rnd() * 4), 4), transferPort, '127.0.0.1')
    senders[1]!.send(Buffer.from([1]), srv.port, '127.0.0.1')
    senders[1]!.send(Buffer.alloc(0), transferPort, '127.0.0.1')
    await new Promise((r) => setTimeout(r, 5)) // let the server and the downloads breathe
  }
  assert.equal(srv.server.stats().activeTransfers > 0, true, 'the held transfer is still running')
  holding = false
  holder.send(encodeError(0, 'done'), transferPort, '127.0.0.1')

  await Promise.all(downloads)
  const stats = srv.server.stats()
  const droppedTotal = Object.values(stats.dropped).reduce((a, b) => a + b, 0)
  assert.ok(droppedTotal > sent / 10, `drops counted: ${JSON.stringify(stats.dropped)}`)
  assert.ok((stats.dropped.short ?? 0) > 0)
  assert.ok((stats.dropped.unknown_tid ?? 0) > 0)

  // Still answering after the storm: a fresh download is intact, and every fuzz-started transfer winds down.
  const dest = join(out, 'after.bin')
  if (curl) {
    const r = await run(curl, ['-sS', '--tftp-blksize', '1468', '-o', dest, `tftp://127.0.0.1:${srv.port}/f2m.bin`])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(await sha256File(dest), sums['f2m.bin'])
  }
  await waitFor(() => srv.server.stats().activeTransfers === 0, 60_000)
  t.diagnostic(`sent ${sent} fuzz datagrams; dropped ${JSON.stringify(stats.dropped)}; transfers started ${stats.started}`)
})
