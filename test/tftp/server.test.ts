// Protocol behaviour of the server, driven by a raw UDP client: TIDs, errors, limits, duplicates, the observer.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Opcode, encodeAck, encodeError, encodeRequest } from '../../src/tftp/packet.js'
import { bufferContent, createFileSource, createRoutingSource } from '../../src/tftp/index.js'
import { RawClient, expectError, metricValue, startServer, tempDir, waitFor } from './support.js'
import type { Settings } from '../../src/settings/schema.js'
import type { TftpServerSettings } from '../../src/tftp/index.js'

// The server takes the settings slice as loaded, unchanged.
const _settingsFit = (s: Settings): TftpServerSettings => s.tftp
void _settingsFit

test('a datagram from a foreign TID gets ERROR 5 and leaves the transfer alone; junk is dropped and counted', async (t) => {
  const root = await tempDir(t, 'rb-tftp-srv-')
  const data = Buffer.alloc(5000, 0x5a)
  await writeFile(join(root, 'f.bin'), data)
  const srv = await startServer(t, { root })
  const c = await RawClient.open(t)
  const intruder = await RawClient.open(t)

  c.send(encodeRequest(Opcode.RRQ, 'f.bin', 'octet', { blksize: '1024', tsize: '0' }), srv.port)
  const oack = await c.next()
  assert.equal(oack.packet.op, Opcode.OACK)
  if (oack.packet.op !== Opcode.OACK) return
  assert.equal(oack.packet.options.get('tsize'), '5000')
  assert.equal(oack.packet.options.get('blksize'), '1024')
  assert.notEqual(oack.rinfo.port, srv.port, 'the transfer has a port of its own')
  const tid = oack.rinfo.port

  intruder.send(encodeAck(0), tid)
  expectError(await intruder.next(), 5, /unknown transfer id/i)
  intruder.send(Buffer.from([1]), tid)
  expectError(await intruder.next(), 5)
  c.send(Buffer.from([0]), tid) // a 1-byte datagram from the client itself
  c.send(Buffer.from([7]), srv.port) // and one to the server port
  c.send(Buffer.from([0, 9, 1, 2, 3]), srv.port)

  c.send(encodeAck(0), tid)
  const parts: Buffer[] = []
  for (;;) {
    const r = await c.next()
    assert.equal(r.rinfo.port, tid)
    assert.equal(r.packet.op, Opcode.DATA)
    if (r.packet.op !== Opcode.DATA) return
    parts.push(Buffer.from(r.packet.data))
    c.send(encodeAck(r.packet.block), tid)
    if (r.packet.data.length < 1024) break
  }
  assert.ok(Buffer.concat(parts).equals(data))
  await waitFor(() => srv.finished.length === 1)
  assert.equal(srv.finished[0]!.ok, true)
  assert.equal(srv.finished[0]!.bytes, 5000)
  assert.equal(srv.finished[0]!.blksize, 1024)
  assert.equal(await metricValue(srv.metrics, 'rackboot_tftp_dropped_datagrams_total', { reason: 'unknown_tid' }), 2)
  assert.equal(await metricValue(srv.metrics, 'rackboot_tftp_dropped_datagrams_total', { reason: 'short' }), 2)
  assert.equal(await metricValue(srv.metrics, 'rackboot_tftp_dropped_datagrams_total', { reason: 'bad_opcode' }), 1)
  // And the server still answers.
  const again = await c.download(srv.port, 'f.bin')
  assert.ok(again.data.equals(data))
})

test('refusals: write requests, unknown modes, missing files, escapes', async (t) => {
  const root = await tempDir(t, 'rb-tftp-srv-')
  await writeFile(join(root, 'f.bin'), 'x')
  const srv = await startServer(t, { root })
  const c = await RawClient.open(t)
  c.send(encodeRequest(Opcode.WRQ, 'f.bin', 'octet'), srv.port)
  expectError(await c.next(), 2, /write/)
  c.send(encodeRequest(Opcode.RRQ, 'f.bin', 'mail'), srv.port)
  expectError(await c.next(), 4, /mode/)
  c.send(encodeRequest(Opcode.RRQ, 'missing.bin', 'octet'), srv.port)
  expectError(await c.next(), 1, /not found/i)
  c.send(encodeRequest(Opcode.RRQ, '../../etc/passwd', 'octet'), srv.port)
  expectError(await c.next(), 2)
  c.send(encodeRequest(Opcode.RRQ, '/etc/passwd', 'octet'), srv.port)
  expectError(await c.next(), 1)
  await waitFor(() => srv.finished.length === 5)
  assert.deepEqual(srv.finished.map((f) => f.ok), [false, false, false, false, false])
  assert.equal(await metricValue(srv.metrics, 'rackboot_tftp_requests_total', { result: 'not_found' }), 2)
  assert.equal(await metricValue(srv.metrics, 'rackboot_tftp_requests_total', { result: 'denied' }), 1)
  assert.equal(await metricValue(srv.metrics, 'rackboot_tftp_requests_total', { result: 'write_refused' }), 1)
})

test('the concurrent transfer limit answers with a clear ERROR, and frees up again', async (t) => {
  const root = await tempDir(t, 'rb-tftp-srv-')
  await writeFile(join(root, 'f.bin'), Buffer.alloc(3000, 1))
  const srv = await startServer(t, { root, settings: { maxTransfers: 2 } })
  const a = await RawClient.open(t)
  const b = await RawClient.open(t)
  const c = await RawClient.open(t)
  a.send(encodeRequest(Opcode.RRQ, 'f.bin', 'octet', { tsize: '0' }), srv.port)
  b.send(encodeRequest(Opcode.RRQ, 'f.bin', 'octet', { tsize: '0' }), srv.port)
  const oa = await a.next()
  const ob = await b.next()
  assert.equal(oa.packet.op, Opcode.OACK)
  assert.equal(ob.packet.op, Opcode.OACK)
  // Acknowledged, so neither is a candidate for eviction (flood.test.ts) however slow this run is.
  a.send(encodeAck(0), oa.rinfo.port)
  b.send(encodeAck(0), ob.rinfo.port)
  assert.equal((await a.next()).packet.op, Opcode.DATA)
  assert.equal((await b.next()).packet.op, Opcode.DATA)
  c.send(encodeRequest(Opcode.RRQ, 'f.bin', 'octet'), srv.port)
  expectError(await c.next(), 0, /busy.*2 transfers/)
  assert.equal(await metricValue(srv.metrics, 'rackboot_tftp_requests_total', { result: 'busy' }), 1)
  // The clients abort, as OVMF does after its tsize probe.
  a.send(encodeError(8, 'User aborted the transfer'), oa.rinfo.port)
  b.send(encodeError(8, 'User aborted the transfer'), ob.rinfo.port)
  await waitFor(() => srv.server.stats().activeTransfers === 0)
  const aborted = srv.finished.filter((f) => f.aborted)
  assert.equal(aborted.length, 2)
  for (const f of aborted) {
    assert.equal(f.ok, false)
    assert.match(f.error ?? '', /User aborted/)
  }
  assert.equal(await metricValue(srv.metrics, 'rackboot_tftp_transfers_finished_total', { result: 'aborted' }), 2)
  const got = await c.download(srv.port, 'f.bin')
  assert.equal(got.data.length, 3000)
})

test('a repeated RRQ from the same port while the first waits for its ACK starts no second transfer', async (t) => {
  const root = await tempDir(t, 'rb-tftp-srv-')
  await writeFile(join(root, 'f.bin'), Buffer.alloc(100, 1))
  const srv = await startServer(t, { root })
  const c = await RawClient.open(t)
  const rrq = encodeRequest(Opcode.RRQ, 'f.bin', 'octet', { tsize: '0' })
  c.send(rrq, srv.port)
  c.send(rrq, srv.port)
  c.send(rrq, srv.port)
  const first = await c.next()
  assert.equal(first.packet.op, Opcode.OACK)
  await waitFor(() => srv.server.stats().dropped.duplicate_request === 2)
  assert.equal(srv.server.stats().started, 1)
  c.send(encodeAck(0), first.rinfo.port)
  const d = await c.next()
  assert.equal(d.packet.op, Opcode.DATA)
  c.send(encodeAck(1), first.rinfo.port)
  await waitFor(() => srv.finished.length === 1)
  assert.equal(srv.finished[0]!.ok, true)
})

test('a client that stops answering mid-transfer is retransmitted to, then gets a timeout ERROR', async (t) => {
  const root = await tempDir(t, 'rb-tftp-srv-')
  await writeFile(join(root, 'f.bin'), Buffer.alloc(1000, 1))
  const srv = await startServer(t, { root, settings: { retransmitMs: 100, maxRetries: 2 } })
  const c = await RawClient.open(t)
  c.send(encodeRequest(Opcode.RRQ, 'f.bin', 'octet'), srv.port)
  const first = await c.next()
  assert.equal(first.packet.op, Opcode.DATA)
  // One ACK: from here on maxRetries applies, not unackedRetries (flood.test.ts).
  c.send(encodeAck(1), first.rinfo.port)
  const seen: number[] = []
  for (;;) {
    const r = await c.next()
    seen.push(r.packet.op === Opcode.DATA ? r.packet.block : -r.packet.op)
    if (r.packet.op === Opcode.ERROR) break
  }
  assert.deepEqual(seen, [2, 2, 2, -Opcode.ERROR])
  await waitFor(() => srv.finished.length === 1)
  assert.equal(srv.finished[0]!.ok, false)
  assert.match(srv.finished[0]!.error ?? '', /timed out/)
  assert.equal(await metricValue(srv.metrics, 'rackboot_tftp_transfers_finished_total', { result: 'timeout' }), 1)
  assert.equal(await metricValue(srv.metrics, 'rackboot_tftp_retransmissions_total'), 2)
})

test('blksize is capped by the MTU; generated content by path sees the client', async (t) => {
  const routes = createRoutingSource()
  routes.register('boot.ipxe', (_path, client) => bufferContent(`#!ipxe\nchain http://198.18.0.1/boot?ip=${client.address}\n`))
  const srv = await startServer(t, { source: routes, settings: { mtu: 1000, maxBlockSize: 65464 } })
  const c = await RawClient.open(t)
  const got = await c.download(srv.port, '/boot.ipxe', { blksize: '65464', tsize: '0' })
  assert.equal(got.oack?.get('blksize'), '968')
  assert.equal(got.data.toString(), '#!ipxe\nchain http://198.18.0.1/boot?ip=127.0.0.1\n')
  assert.equal(got.oack?.get('tsize'), String(got.data.length))
})

test('stop() ends running transfers with an ERROR to their clients', async (t) => {
  const root = await tempDir(t, 'rb-tftp-srv-')
  await writeFile(join(root, 'f.bin'), Buffer.alloc(10000, 1))
  const srv = await startServer(t, { root })
  const c = await RawClient.open(t)
  c.send(encodeRequest(Opcode.RRQ, 'f.bin', 'octet'), srv.port)
  const d1 = await c.next()
  assert.equal(d1.packet.op, Opcode.DATA)
  await srv.server.stop()
  expectError(await c.next(), 0, /shutting down/)
  assert.equal(srv.finished.length, 1)
  assert.equal(srv.finished[0]!.ok, false)
})

test('listening on 0.0.0.0 answers from the address the request was sent to', async (t) => {
  const root = await tempDir(t, 'rb-tftp-srv-')
  await writeFile(join(root, 'f.bin'), Buffer.alloc(700, 3))
  const srv = await startServer(t, { root, settings: { listen: '0.0.0.0' } })
  const c = await RawClient.open(t)
  c.send(encodeRequest(Opcode.RRQ, 'f.bin', 'octet'), srv.port, '127.0.0.1')
  const r = await c.next()
  assert.equal(r.packet.op, Opcode.DATA)
  assert.equal(r.rinfo.address, '127.0.0.1')
  c.send(encodeAck(1), r.rinfo.port)
  const r2 = await c.next()
  assert.equal(r2.packet.op, Opcode.DATA)
  c.send(encodeAck(2), r.rinfo.port)
  await waitFor(() => srv.finished.length === 1)
  assert.equal(srv.finished[0]!.ok, true)
})

test('a missing root is a server error to the client, not a crash', async (t) => {
  const srv = await startServer(t, { source: createFileSource({ root: '/nonexistent/rackboot-tftp-root' }) })
  const c = await RawClient.open(t)
  c.send(encodeRequest(Opcode.RRQ, 'f.bin', 'octet'), srv.port)
  expectError(await c.next(), 0)
  const again = await RawClient.open(t)
  again.send(encodeRequest(Opcode.RRQ, 'f.bin', 'octet'), srv.port)
  expectError(await again.next(), 0)
})
