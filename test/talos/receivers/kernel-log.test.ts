// The kernel log receiver over real TCP and UDP sockets on loopback, fed JSON lines shaped as Talos's
// KmsgLogDeliveryController sends them, plus the parser, the line splitter and the store on their own.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { connect, type Socket } from 'node:net'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { createMetricsRegistry } from '../../../src/metrics.js'
import { silentLogger } from '../../../src/log.js'
import {
  createKernelLogReceiver,
  createKernelLogStore,
  parseKernelLogLine,
  type KernelLogReceiverDeps,
  type KernelLogStore,
} from '../../../src/talos/receivers/index.js'
import { LineSplitter } from '../../../src/talos/receivers/line-splitter.js'
import { kmsg, until } from './support.js'

async function startReceiver(t: TestContext, overrides: Partial<KernelLogReceiverDeps> = {}, store: KernelLogStore = createKernelLogStore()) {
  const metrics = createMetricsRegistry()
  const receiver = createKernelLogReceiver({ listen: '127.0.0.1', tcpPort: 0, udpPort: 0, log: silentLogger(), metrics, store, ...overrides })
  const ports = await receiver.start()
  t.after(() => receiver.stop())
  return { receiver, store, metrics, ports }
}

async function tcpClient(t: TestContext, port: number): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port })
  await once(socket, 'connect')
  t.after(() => socket.destroy())
  return socket
}

function write(socket: Socket, data: string | Buffer): Promise<void> {
  return new Promise((resolve, reject) => socket.write(data, (err) => (err ? reject(err) : resolve())))
}

test('parseKernelLogLine keeps Talos\'s fields and refuses what is not a log object', () => {
  const ok = parseKernelLogLine(kmsg(711, '[talos] task setupLogger (1/1): done'), 42)
  assert.deepEqual(ok, {
    ok: true,
    record: {
      receivedAt: 42, msg: '[talos] task setupLogger (1/1): done', seq: 711, clock: 1_007_110, facility: 'kern', priority: 'info',
      talosLevel: 'info', talosTime: '2026-08-21T10:00:00.123456789Z',
    },
  })
  assert.deepEqual(parseKernelLogLine('{"msg":"only a message"}', 1), { ok: true, record: { receivedAt: 1, msg: 'only a message' } })
  // wrong types are left out rather than trusted
  assert.deepEqual(parseKernelLogLine('{"msg":"m","seq":"7","clock":1.5,"facility":3}', 1), { ok: true, record: { receivedAt: 1, msg: 'm' } })
  assert.deepEqual(parseKernelLogLine('{"msg": "x"', 1), { ok: false, reason: 'malformed' })
  assert.deepEqual(parseKernelLogLine('[1,2]', 1), { ok: false, reason: 'not_object' })
  assert.deepEqual(parseKernelLogLine('null', 1), { ok: false, reason: 'not_object' })
  assert.deepEqual(parseKernelLogLine('{"seq":1}', 1), { ok: false, reason: 'no_msg' })
  const long = parseKernelLogLine(JSON.stringify({ msg: 'x'.repeat(10_000) }), 1)
  assert.ok(long.ok)
  assert.equal(long.record.msg.length, 4096)
})

test('LineSplitter: lines across chunk borders, multi-byte characters split, and constant memory without newlines', () => {
  const lines: string[] = []
  let tooLong = 0
  const splitter = new LineSplitter(1024, { line: (l) => lines.push(l), tooLong: () => tooLong++ })
  const text = Buffer.from('{"msg":"héllo"}\n{"msg":"two"}\n{"msg":"thr')
  for (let i = 0; i < text.length; i++) splitter.push(text.subarray(i, i + 1)) // one byte at a time splits é
  splitter.push(Buffer.from('ee"}\n'))
  assert.deepEqual(lines, ['{"msg":"héllo"}', '{"msg":"two"}', '{"msg":"three"}'])
  // 8 MiB with no newline: reported once, never buffered beyond the limit
  const chunk = Buffer.alloc(64 * 1024, 0x61)
  for (let i = 0; i < 128; i++) {
    splitter.push(chunk)
    assert.ok(splitter.buffered <= 1024)
  }
  assert.equal(tooLong, 1)
  splitter.push(Buffer.from('tail of the long line\n{"msg":"after"}\n'))
  assert.equal(lines.at(-1), '{"msg":"after"}')
  assert.equal(tooLong, 1)
  // exactly the limit is accepted; one byte more is not
  splitter.push(Buffer.concat([Buffer.alloc(1024, 0x62), Buffer.from('\n')]))
  assert.equal(lines.at(-1)?.length, 1024)
  splitter.push(Buffer.concat([Buffer.alloc(1025, 0x62), Buffer.from('\n')]))
  assert.equal(tooLong, 2)
  splitter.push(Buffer.from('unfinished'))
  assert.equal(splitter.end(), true)
  assert.equal(splitter.end(), false)
})

test('store: bounded ring per peer, cursors, since/limit, least recently written peer evicted, live tail', () => {
  const store = createKernelLogStore({ perMachineLines: 5, maxPeers: 2 })
  const seen: string[] = []
  const unsubscribe = store.subscribe((peer, line) => seen.push(`${peer}:${line.msg}`))
  for (let i = 1; i <= 8; i++) store.append('198.18.0.1', { receivedAt: i, msg: `a${i}` }, 'tcp')
  assert.deepEqual(store.lines('198.18.0.1').map((l) => l.msg), ['a4', 'a5', 'a6', 'a7', 'a8'])
  assert.deepEqual(store.lines('198.18.0.1', { limit: 2 }).map((l) => l.msg), ['a7', 'a8'])
  const cursorOfA5 = store.lines('198.18.0.1')[1]!.cursor
  assert.deepEqual(store.lines('198.18.0.1', { since: cursorOfA5 }).map((l) => l.msg), ['a6', 'a7', 'a8'])
  assert.deepEqual(store.lines('198.18.0.1', { since: cursorOfA5, limit: 2 }).map((l) => l.msg), ['a6', 'a7'])
  assert.deepEqual(store.lines('198.18.0.1', { since: 0, limit: 1 }).map((l) => l.msg), ['a4'])
  assert.deepEqual(store.lines('198.18.0.1', { since: 10_000 }), [])
  store.append('198.18.0.2', { receivedAt: 9, msg: 'b1' }, 'tcp')
  store.append('198.18.0.1', { receivedAt: 10, msg: 'a9' }, 'tcp') // .1 is now the most recent
  store.append('198.18.0.3', { receivedAt: 11, msg: 'c1' }, 'tcp') // evicts .2
  assert.deepEqual(store.peers().map((p) => p.peer).sort(), ['198.18.0.1', '198.18.0.3'])
  assert.deepEqual(store.lines('198.18.0.2'), [])
  const { peers, lines, evictedPeers, evictedLines, listenerErrors } = store.stats()
  assert.deepEqual({ peers, lines, evictedPeers, evictedLines, listenerErrors }, { peers: 2, lines: 6, evictedPeers: 1, evictedLines: 0, listenerErrors: 0 })
  assert.equal(seen.length, 11)
  assert.equal(seen.at(-1), '198.18.0.3:c1')
  unsubscribe()
  store.subscribe(() => { throw new Error('listener bug') })
  store.append('198.18.0.3', { receivedAt: 12, msg: 'c2' }, 'tcp')
  assert.equal(seen.length, 11)
  assert.equal(store.stats().listenerErrors, 1)
  store.forget('198.18.0.3')
  assert.deepEqual(store.lines('198.18.0.3'), [])
})

test('TCP: JSON lines from one connection, malformed ones dropped and counted, a 1 MiB line skipped', async (t) => {
  const { receiver, store, metrics, ports } = await startReceiver(t)
  const socket = await tcpClient(t, ports.tcpPort!)
  await write(socket, `${kmsg(1, 'Linux version 6.12.40-talos')}\n`)
  await write(socket, 'not json\n{"msg": 3}\n[1]\n\n')
  await write(socket, `{"msg":"${'x'.repeat(1024 * 1024)}"}\n`)
  // a line split over two writes, right after the long one
  await write(socket, kmsg(2, 'Kernel command line: talos.platform=metal').slice(0, 20))
  await sleep(20)
  await write(socket, `${kmsg(2, 'Kernel command line: talos.platform=metal').slice(20)}\n`)
  await until('two lines', () => store.lines('127.0.0.1').length === 2)
  assert.deepEqual(store.lines('127.0.0.1').map((l) => [l.seq, l.msg]), [[1, 'Linux version 6.12.40-talos'], [2, 'Kernel command line: talos.platform=metal']])
  assert.deepEqual(receiver.stats().dropped, { tcp_malformed: 1, tcp_no_msg: 1, tcp_not_object: 1, tcp_too_long: 1 })
  assert.equal(receiver.stats().lines.tcp, 2)
  assert.equal(receiver.stats().connections, 1)
  const text = await metrics.metrics()
  assert.match(text, /rackboot_talos_kernel_log_dropped_total\{transport="tcp",reason="too_long"\} 1/)
  assert.match(text, /rackboot_talos_kernel_log_lines_total\{transport="tcp"\} 2/)
  assert.match(text, /rackboot_talos_kernel_log_connections 1/)
  socket.end()
  await until('connection closed', () => receiver.stats().connections === 0)
})

test('TCP: many lines in few large writes, the store keeping the newest', async (t) => {
  const store = createKernelLogStore({ perMachineLines: 2000 })
  // far above the rate limit's default: this is about splitting large writes (rate-limit.test.ts covers the rate)
  const { receiver, ports } = await startReceiver(t, { linesPerSecond: 1_000_000 }, store)
  const socket = await tcpClient(t, ports.tcpPort!)
  const total = 20_000
  let batch = ''
  for (let seq = 1; seq <= total; seq++) {
    batch += `${kmsg(seq, `line ${seq}`)}\n`
    if (seq % 5000 === 0) {
      await write(socket, batch)
      batch = ''
    }
  }
  await until('all lines', () => receiver.stats().lines.tcp === total, 20_000)
  const lines = store.lines('127.0.0.1')
  assert.equal(lines.length, 2000)
  assert.equal(lines[0]?.seq, total - 1999)
  assert.equal(lines.at(-1)?.seq, total)
  assert.deepEqual(receiver.stats().dropped, {})
})

test('TCP: a client that never sends a newline is bounded; an unfinished line at close is counted', async (t) => {
  const { receiver, store, ports } = await startReceiver(t, { maxLineBytes: 4096 })
  const socket = await tcpClient(t, ports.tcpPort!)
  const chunk = Buffer.alloc(256 * 1024, 0x7b)
  const start = '{"msg":"a line that'
  await write(socket, start)
  await until('partial line held', () => receiver.stats().bufferedBytes === start.length)
  for (let i = 0; i < 32; i++) await write(socket, chunk) // 8 MiB, no newline
  await until('too long counted', () => receiver.stats().dropped.tcp_too_long === 1)
  // whatever arrived after the limit was thrown away, not held
  assert.equal(receiver.stats().bufferedBytes, 0)
  // the connection is still usable once the line ends
  await write(socket, `\n${kmsg(5, 'after the flood')}\n`)
  await until('line after flood', () => store.lines('127.0.0.1').length === 1)
  assert.equal(store.lines('127.0.0.1')[0]?.msg, 'after the flood')
  assert.equal(receiver.stats().dropped.tcp_too_long, 1)
  await write(socket, '{"msg":"never finished"')
  socket.end()
  await until('unterminated counted', () => receiver.stats().dropped.tcp_unterminated === 1)
})

test('TCP: connections beyond maxConnections are closed and counted', async (t) => {
  const { receiver, ports } = await startReceiver(t, { maxConnections: 2 })
  await tcpClient(t, ports.tcpPort!)
  await tcpClient(t, ports.tcpPort!)
  await until('two connections', () => receiver.stats().connections === 2)
  const third = await tcpClient(t, ports.tcpPort!)
  third.on('error', () => {})
  await once(third, 'close')
  assert.equal(receiver.stats().refusedConnections, 1)
  assert.equal(receiver.stats().connections, 2)
})

test('TCP: an idle connection is closed after idleTimeoutMs', async (t) => {
  const { receiver, ports } = await startReceiver(t, { idleTimeoutMs: 100 })
  const socket = await tcpClient(t, ports.tcpPort!)
  await until('connected', () => receiver.stats().connections === 1)
  await once(socket, 'close')
  await until('server side closed', () => receiver.stats().connections === 0)
})

test('UDP: one JSON object per datagram; malformed and oversized datagrams dropped and counted', async (t) => {
  const { receiver, store, ports } = await startReceiver(t, { maxLineBytes: 2048 })
  const client = createSocket('udp4')
  t.after(() => client.close())
  const send = (data: string | Buffer) =>
    new Promise<void>((resolve, reject) => client.send(data, ports.udpPort!, '127.0.0.1', (err) => (err ? reject(err) : resolve())))
  await send(kmsg(1, 'udp one'))
  await send(`${kmsg(2, 'udp two with a newline, as a TCP-minded sender might')}\n`)
  await send('garbage')
  await send('{"no":"msg"}')
  await send(JSON.stringify({ msg: 'y'.repeat(4000) }))
  await send(Buffer.alloc(0))
  for (let seq = 3; seq <= 202; seq++) await send(kmsg(seq, `burst ${seq}`))
  await until('udp lines', () => receiver.stats().lines.udp === 202)
  const lines = store.lines('127.0.0.1')
  assert.deepEqual(lines.slice(0, 2).map((l) => l.msg), ['udp one', 'udp two with a newline, as a TCP-minded sender might'])
  assert.equal(lines.at(-1)?.msg, 'burst 202')
  await until('drops', () => Object.keys(receiver.stats().dropped).length === 3)
  assert.deepEqual(receiver.stats().dropped, { udp_malformed: 1, udp_no_msg: 1, udp_too_long: 1 })
})

test('the receiver can run TCP only or UDP only, and refuses a port already taken', async (t) => {
  const store = createKernelLogStore()
  const first = await startReceiver(t, { udpPort: null }, store)
  assert.equal(first.ports.udpPort, null)
  assert.ok(first.ports.tcpPort! > 0)
  const clash = createKernelLogReceiver({
    listen: '127.0.0.1', tcpPort: first.ports.tcpPort, udpPort: null, log: silentLogger(), metrics: createMetricsRegistry(), store,
  })
  await assert.rejects(clash.start(), { code: 'RB_ERR_INTERNAL' })
  const udpOnly = await startReceiver(t, { tcpPort: null }, store)
  assert.equal(udpOnly.ports.tcpPort, null)
  assert.ok(udpOnly.ports.udpPort! > 0)
})
