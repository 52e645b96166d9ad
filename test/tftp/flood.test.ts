// Issue 13, "Cheap denial of service on the boot path": RRQs that never ACK must not lock real firmware out. The
// bounds: maxTransfersPerClient per address, unackedRetries for a client that never answers, and eviction of such
// a transfer when every slot is taken. Loopback only: the flood sends from 127.0.13.0/24 (Linux binds any
// 127.0.0.0/8 address without configuration).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createSocket, type Socket } from 'node:dgram'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Opcode, encodeAck, encodeError, encodeRequest } from '../../src/tftp/packet.js'
import { createFileSource, type TftpSource } from '../../src/tftp/index.js'
import { EVICT_GRACE_MS } from '../../src/tftp/server.js'
import type { TransferClock } from '../../src/tftp/transfer.js'
import { RawClient, expectError, findProgram, makeFiles, metricValue, run, sha256File, startServer, tempDir, waitFor } from './support.js'

const tftpHpa = findProgram('tftp')
const curl = findProgram('curl')

test('one address gets at most maxTransfersPerClient transfers while another address is served', async (t) => {
  const root = await tempDir(t, 'rb-tftp-flood-')
  const data = Buffer.alloc(3000, 7)
  await writeFile(join(root, 'f.bin'), data)
  let opens = 0
  const files = createFileSource({ root })
  const source: TftpSource = { open: (path, client) => (opens++, files.open(path, client)) }
  const srv = await startServer(t, { source, settings: { maxTransfersPerClient: 4, retransmitMs: 10_000 } })

  const held: { c: RawClient; tid: number }[] = []
  for (let i = 0; i < 4; i++) {
    const c = await RawClient.open(t, '127.0.0.1')
    c.send(encodeRequest(Opcode.RRQ, 'f.bin', 'octet', { tsize: '0' }), srv.port)
    const r = await c.next()
    assert.equal(r.packet.op, Opcode.OACK)
    held.push({ c, tid: r.rinfo.port })
  }
  const fifth = await RawClient.open(t, '127.0.0.1')
  fifth.send(encodeRequest(Opcode.RRQ, 'f.bin', 'octet'), srv.port)
  expectError(await fifth.next(), 0, /too many transfers from your address/)
  assert.equal(opens, 4, 'the refused request opened nothing')
  assert.equal(await metricValue(srv.metrics, 'rackboot_tftp_requests_total', { result: 'per_client' }), 1)

  const other = await RawClient.open(t, '127.0.0.2')
  const got = await other.download(srv.port, 'f.bin', { blksize: '1024' })
  assert.ok(got.data.equals(data), 'another address is served while the first is at its limit')

  // One of the four ends: the address has room again.
  held[0]!.c.send(encodeError(8, 'User aborted the transfer'), held[0]!.tid)
  await waitFor(() => srv.server.stats().activeTransfers === 3)
  const again = await fifth.download(srv.port, 'f.bin')
  assert.ok(again.data.equals(data))
  assert.equal(await metricValue(srv.metrics, 'rackboot_tftp_requests_total', { result: 'per_client' }), 1)
})

test('a transfer that never gets an ACK is gone after retransmitMs * (unackedRetries + 1), slot and all', async (t) => {
  const root = await tempDir(t, 'rb-tftp-flood-')
  await writeFile(join(root, 'f.bin'), Buffer.alloc(3000, 1))
  const retransmitMs = 300
  const srv = await startServer(t, { root, settings: { maxTransfers: 1, retransmitMs, unackedRetries: 1, maxRetries: 5 } })
  const silent = await RawClient.open(t)
  const t0 = performance.now()
  // timeout 255: a client-chosen timeout must not stretch how long a silent client holds the slot.
  silent.send(encodeRequest(Opcode.RRQ, 'f.bin', 'octet', { tsize: '0', timeout: '255' }), srv.port)
  await waitFor(() => srv.finished.length === 1, 5000)
  const ms = performance.now() - t0
  // 2 * 300 ms; maxRetries at a fixed interval would take 6 * 300, the old code 255 s per retransmission.
  assert.ok(ms >= 2 * retransmitMs - 20 && ms < 2 * retransmitMs + 500, `dropped after ${Math.round(ms)} ms`)
  assert.equal(srv.finished[0]!.ok, false)
  assert.match(srv.finished[0]!.error ?? '', /no acknowledgement/)
  assert.equal(srv.server.stats().activeTransfers, 0)
  assert.equal(await metricValue(srv.metrics, 'rackboot_tftp_transfers_finished_total', { result: 'no_ack' }), 1)
  // The OACK and one retransmission, then silence: no ERROR to a peer that never answered.
  const ops: number[] = []
  for (;;) {
    try {
      ops.push((await silent.next(100)).packet.op)
    } catch {
      break
    }
  }
  assert.deepEqual(ops, [Opcode.OACK, Opcode.OACK])
  // maxTransfers is 1: the freed slot serves the next client at once.
  const next = await RawClient.open(t)
  const got = await next.download(srv.port, 'f.bin')
  assert.equal(got.data.length, 3000)
})

/** Real timers, but a now() the test moves: a transfer's age is then exactly what the test says. */
function steppedClock(): TransferClock & { advance(ms: number): void } {
  let now = 0
  return {
    now: () => now,
    setTimer: (fn, ms) => setTimeout(fn, ms),
    clearTimer: (h) => clearTimeout(h as NodeJS.Timeout),
    advance(ms) {
      now += ms
    },
  }
}

test('when all slots are taken, a new request evicts the oldest silent transfer, never an acknowledged one', async (t) => {
  const root = await tempDir(t, 'rb-tftp-flood-')
  const data = Buffer.alloc(3000, 9)
  await writeFile(join(root, 'f.bin'), data)
  const clock = steppedClock()
  // Retransmissions far off: only eviction can free a slot here.
  const srv = await startServer(t, { root, clock, settings: { maxTransfers: 2, retransmitMs: 30_000 } })
  const acked = await RawClient.open(t)
  acked.send(encodeRequest(Opcode.RRQ, 'f.bin', 'octet', { tsize: '0' }), srv.port)
  const oa = await acked.next()
  assert.equal(oa.packet.op, Opcode.OACK)
  acked.send(encodeAck(0), oa.rinfo.port)
  const d1 = await acked.next()
  assert.equal(d1.packet.op, Opcode.DATA)
  const silent = await RawClient.open(t)
  silent.send(encodeRequest(Opcode.RRQ, 'f.bin', 'octet', { tsize: '0' }), srv.port)
  assert.equal((await silent.next()).packet.op, Opcode.OACK)

  const newcomer = await RawClient.open(t)
  newcomer.send(encodeRequest(Opcode.RRQ, 'f.bin', 'octet'), srv.port)
  expectError(await newcomer.next(), 0, /busy/)
  assert.equal(await metricValue(srv.metrics, 'rackboot_tftp_requests_total', { result: 'busy' }), 1, 'a silent transfer younger than the grace keeps its slot')

  clock.advance(EVICT_GRACE_MS)
  const got = await newcomer.download(srv.port, 'f.bin')
  assert.ok(got.data.equals(data))
  assert.equal(await metricValue(srv.metrics, 'rackboot_tftp_transfers_finished_total', { result: 'evicted' }), 1)
  const evicted = srv.finished.find((f) => f.error?.includes('evicted'))
  assert.equal(evicted?.client.port, silent.port, 'the silent transfer went')
  assert.ok(await silent.nothingWithin(100), 'quietly')

  // The acknowledged transfer was older, yet it runs on to the end.
  let block = 1
  acked.send(encodeAck(block), oa.rinfo.port)
  for (;;) {
    const r = await acked.next()
    assert.equal(r.packet.op, Opcode.DATA)
    if (r.packet.op !== Opcode.DATA) return
    block = r.packet.block
    acked.send(encodeAck(block), oa.rinfo.port)
    if (r.packet.data.length < 512) break
  }
  await waitFor(() => srv.finished.filter((f) => f.ok).length === 2)
})

test('issue 13: a flood of silent RRQs from many addresses does not lock a real client out', { skip: tftpHpa || curl ? false : 'needs tftp (tftp-hpa) or curl as the real client; neither is installed', timeout: 60_000 }, async (t) => {
  const root = await tempDir(t, 'rb-tftp-flood-')
  const out = await tempDir(t, 'rb-tftp-flood-out-')
  const sums = await makeFiles(root, { 'boot.bin': 128 * 1024 })
  const settings = { maxTransfers: 200, maxTransfersPerClient: 4, unackedRetries: 1, retransmitMs: 1000 }
  const ADDRESSES = 100
  const PORTS = 5
  // More addresses than maxTransfers / maxTransfersPerClient and more ports per address than its cap: both bite.
  assert.ok(ADDRESSES > settings.maxTransfers / settings.maxTransfersPerClient && PORTS > settings.maxTransfersPerClient)
  let realStarted: () => void = () => {}
  const realClientOpened = new Promise<void>((r) => (realStarted = r))
  const files = createFileSource({ root })
  const source: TftpSource = {
    open(path, client) {
      if (client.address === '127.0.0.1') realStarted()
      return files.open(path, client)
    },
  }
  const srv = await startServer(t, { source, settings })

  // 500 sockets that send an RRQ (with options, as firmware does) and never answer what comes back.
  const flood: Socket[] = []
  t.after(() => Promise.all(flood.map((s) => new Promise<void>((r) => s.close(() => r())))).then(() => {}))
  for (let a = 1; a <= ADDRESSES; a++) {
    for (let p = 0; p < PORTS; p++) {
      const s = createSocket('udp4')
      s.on('message', () => {})
      await new Promise<void>((r) => s.bind(0, `127.0.13.${a}`, r))
      flood.push(s)
    }
  }
  const rrq = encodeRequest(Opcode.RRQ, 'boot.bin', 'octet', { tsize: '0', blksize: '1468' })
  const handled = () => metricValue(srv.metrics, 'rackboot_tftp_requests_total') // every RRQ ends up in it once
  /**
   * Sends every flood socket's RRQ in bursts of 50. The server shares this process: 500 datagrams at once would
   * overflow its socket's receive buffer (the kernel default, ~200 KiB, holds about 250) before it reads any, and
   * what this test is about is what the server does with the RRQs it gets. `paced`: each burst waits until the
   * server has answered everything sent so far, so none is lost.
   */
  let peak = 0
  const wave = async (paced: boolean) => {
    const before = await handled()
    for (let i = 0; i < flood.length; i += 50) {
      for (const s of flood.slice(i, i + 50)) s.send(rrq, srv.port, '127.0.0.1')
      const sent = before + Math.min(i + 50, flood.length)
      const end = Date.now() + 2000 // a lost datagram fails the count below instead of hanging here
      do {
        await new Promise((r) => setTimeout(r, 1))
        peak = Math.max(peak, srv.server.stats().activeTransfers)
      } while (paced && (await handled()) < sent && Date.now() < end)
    }
  }

  const w0 = Date.now()
  await wave(true)
  t.diagnostic(`first wave of ${flood.length} RRQs handled in ${Date.now() - w0} ms`)
  const requests = (result: string) => metricValue(srv.metrics, 'rackboot_tftp_requests_total', { result })
  assert.equal((await requests('accepted')) + (await requests('per_client')) + (await requests('busy')), flood.length, 'every RRQ of the wave was answered')
  // The fifth port of each address that got four transfers is refused. Addresses late in the wave find the table
  // full: refused as busy, or (if the wave took longer than the eviction grace, as on a loaded machine) let in by
  // evicting the wave's own first transfers.
  const evicted = () => metricValue(srv.metrics, 'rackboot_tftp_transfers_finished_total', { result: 'evicted' })
  assert.ok((await requests('per_client')) >= 1, 'the per-client bound refused')
  assert.ok((await requests('busy')) + (await evicted()) >= 1, 'the global bound refused or evicted')
  assert.equal(peak, settings.maxTransfers, 'the flood held every slot')

  // The flood's transfers hold their slots for 2 s; a firmware arriving after the first moments must get in.
  await new Promise((r) => setTimeout(r, EVICT_GRACE_MS + 100))
  // And the flood goes on during the real download: the real client's transfer, once acknowledged, is not evicted.
  let waves: NodeJS.Timeout | undefined
  let sending: Promise<void> = Promise.resolve()
  let during = 0
  const floodOn = () => {
    during++
    sending = wave(false)
  }
  void realClientOpened.then(() => {
    floodOn()
    waves = setInterval(floodOn, 250)
  })
  t.after(() => clearInterval(waves))
  const dest = join(out, 'boot.bin')
  const t0 = Date.now()
  const r = tftpHpa
    ? await run(tftpHpa, ['127.0.0.1', String(srv.port), '-m', 'binary', '-c', 'get', 'boot.bin', dest], 20_000)
    : await run(curl!, ['-sS', '--tftp-blksize', '1468', '-o', dest, `tftp://127.0.0.1:${srv.port}/boot.bin`], 20_000)
  const ms = Date.now() - t0
  clearInterval(waves)
  await sending
  const stopped = Date.now()
  t.diagnostic(`${tftpHpa ? 'tftp-hpa' : 'curl'} fetched 128 KiB (undionly.kpxe is ~70) in ${ms} ms, during ${during} more waves`)
  assert.equal(r.code, 0, `the real client failed after ${ms} ms: ${r.stderr}${r.stdout}`)
  // tftp-hpa exits 0 even after an ERROR ("server busy"); the file says whether it got through.
  assert.equal(await sha256File(dest), sums['boot.bin'], `the real client got no intact file: ${r.stderr}${r.stdout}`)
  assert.ok(ms < 5000, `the real client took ${ms} ms`)
  assert.ok(during >= 1, 'the flood went on during the download')

  // Once the flood stops, its transfers are gone within retransmitMs * (unackedRetries + 1), not half a minute.
  await waitFor(() => srv.server.stats().activeTransfers === 0, 10_000)
  const drainMs = Date.now() - stopped
  t.diagnostic(`flood transfers drained ${drainMs} ms after the last wave`)
  // The slack covers a loaded 2-core machine (4 s seen with other work running); the old fault held them ~30 s.
  assert.ok(drainMs < settings.retransmitMs * (settings.unackedRetries + 1) + 5000, `drained after ${drainMs} ms`)
  assert.ok((await metricValue(srv.metrics, 'rackboot_tftp_transfers_finished_total', { result: 'no_ack' })) > 0)
  assert.ok((await evicted()) > 0, 'the flood went on evicting its own stale transfers')
  assert.equal(await metricValue(srv.metrics, 'rackboot_tftp_transfers_finished_total', { result: 'timeout' }), 0)
  assert.equal(srv.finished.filter((f) => f.ok && f.client.address === '127.0.0.1').length, 1)
})
