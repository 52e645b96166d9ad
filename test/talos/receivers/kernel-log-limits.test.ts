// What one unauthenticated sender can make the kernel log receiver do (issue 13): a line rate per peer address
// (UDP lines past it dropped and counted, a TCP connection paused so nothing is lost), connections per address, and
// the transport each line came by, which the lifecycle needs (UDP source addresses are trivially spoofed).
// Real sockets on loopback; 127.0.0.2 is a second peer. The rate's clock is a fake one the tests move.
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
  type KernelLogLine,
  type KernelLogReceiverDeps,
} from '../../../src/talos/receivers/index.js'
import { createPeerRateLimiter } from '../../../src/talos/receivers/rate-limiter.js'
import { kmsg, until } from './support.js'

function fakeClock(start = 1_787_000_000_000) {
  let t = start
  return { now: () => t, advance: (ms: number) => { t += ms } }
}

async function startReceiver(t: TestContext, overrides: Partial<KernelLogReceiverDeps> = {}) {
  const metrics = createMetricsRegistry()
  const store = createKernelLogStore({ perMachineLines: 10_000 })
  const heard: Array<[string, KernelLogLine]> = []
  store.subscribe((peer, line) => heard.push([peer, line]))
  const receiver = createKernelLogReceiver({ listen: '127.0.0.1', tcpPort: 0, udpPort: 0, log: silentLogger(), metrics, store, ...overrides })
  const ports = await receiver.start()
  t.after(() => receiver.stop())
  return { receiver, store, metrics, ports, heard }
}

async function tcpClient(t: TestContext, port: number, localAddress = '127.0.0.1'): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port, localAddress })
  socket.on('error', () => {})
  await once(socket, 'connect')
  t.after(() => socket.destroy())
  return socket
}

function udpClient(t: TestContext, port: number, address = '127.0.0.1') {
  const client = createSocket('udp4')
  t.after(() => client.close())
  const bound = new Promise<void>((resolve) => client.bind(0, address, resolve))
  return async (data: string) => {
    await bound
    await new Promise<void>((resolve, reject) => client.send(data, port, '127.0.0.1', (err) => (err ? reject(err) : resolve())))
  }
}

const write = (socket: Socket, data: string) => new Promise<void>((resolve, reject) => socket.write(data, (err) => (err ? reject(err) : resolve())))
const lines = (from: number, to: number, tag: string) => Array.from({ length: to - from }, (_, i) => `${kmsg(from + i, `${tag} ${from + i}`)}\n`).join('')

test('token bucket: a burst, then the rate; keys apart; a bounded number of keys; reservations', () => {
  const clock = fakeClock()
  const limiter = createPeerRateLimiter({ ratePerSecond: 10, burst: 20, maxKeys: 2, now: clock.now })
  let taken = 0
  while (limiter.take('a')) taken++
  assert.equal(taken, 20)
  assert.equal(limiter.take('b'), true) // another key has its own bucket
  clock.advance(500)
  assert.equal(limiter.msUntil('a', 6), 100)
  taken = 0
  while (limiter.take('a')) taken++
  assert.equal(taken, 5)
  clock.advance(60_000)
  assert.equal(limiter.msUntil('a', 1000), 0) // never more than the burst
  // a third key forgets the least recently used one ('b'), which comes back with a full bucket
  limiter.take('c')
  assert.equal(limiter.size, 2)
  assert.equal(limiter.forgotten, 1)
  // reserve: borrow against the next tokens, up to a wait
  const r = createPeerRateLimiter({ ratePerSecond: 10, burst: 1, maxKeys: 10, now: clock.now })
  assert.equal(r.reserve('x', 250), 0)
  assert.equal(r.reserve('x', 250), 100)
  assert.equal(r.reserve('x', 250), 200)
  assert.equal(r.reserve('x', 250), null) // 300 ms away: refused, nothing reserved
  clock.advance(300)
  assert.equal(r.reserve('x', 0), 0)
})

test('UDP: a peer past its burst has lines dropped and counted as "rate"; another peer is unaffected', async (t) => {
  const clock = fakeClock()
  const { receiver, store, metrics, ports } = await startReceiver(t, { linesPerSecond: 50, now: clock.now })
  const fast = udpClient(t, ports.udpPort!)
  for (let seq = 0; seq < 150; seq++) await fast(kmsg(seq, `fast ${seq}`))
  await until('150 datagrams handled', () => receiver.stats().lines.udp + (receiver.stats().dropped.udp_rate ?? 0) === 150)
  // the burst is twice the rate
  assert.equal(store.lines('127.0.0.1').length, 100)
  assert.equal(store.lines('127.0.0.1').at(-1)?.msg, 'fast 99')
  assert.deepEqual(receiver.stats().dropped, { udp_rate: 50 })
  assert.match(await metrics.metrics(), /rackboot_talos_kernel_log_dropped_total\{transport="udp",reason="rate"\} 50/)
  const other = udpClient(t, ports.udpPort!, '127.0.0.2')
  for (let seq = 0; seq < 20; seq++) await other(kmsg(seq, `other ${seq}`))
  await until('other peer stored', () => store.lines('127.0.0.2').length === 20)
  // a second later the fast peer has earned 50 lines more
  clock.advance(1000)
  for (let seq = 150; seq < 250; seq++) await fast(kmsg(seq, `fast ${seq}`))
  await until('next 100 handled', () => (receiver.stats().dropped.udp_rate ?? 0) === 100)
  assert.equal(store.lines('127.0.0.1').length, 150)
  assert.equal(store.lines('127.0.0.1').at(-1)?.msg, 'fast 199')
})

test('TCP: a peer past its burst is paused, not dropped; its lines arrive as the rate allows; another peer is unaffected', async (t) => {
  const clock = fakeClock()
  const { receiver, store, metrics, ports } = await startReceiver(t, { linesPerSecond: 50, now: clock.now })
  const fast = await tcpClient(t, ports.tcpPort!)
  await write(fast, lines(0, 300, 'fast'))
  await until('burst stored and connection paused', () => store.lines('127.0.0.1').length === 100 && receiver.stats().throttledConnections === 1)
  await sleep(150) // the clock stands still: nothing more gets through
  assert.equal(store.lines('127.0.0.1').length, 100)
  assert.ok(receiver.stats().bufferedBytes > 0)
  // a second peer is not held back by the first one's rate
  const other = await tcpClient(t, ports.tcpPort!, '127.0.0.2')
  await write(other, lines(0, 10, 'other'))
  await until('other peer stored', () => store.lines('127.0.0.2').length === 10)
  // 50 lines a second from here (the bucket holds at most 100, so the clock moves a second at a time)
  for (let expected = 150; expected <= 300; expected += 50) {
    clock.advance(1000)
    await until(`${expected} lines`, () => store.lines('127.0.0.1').length === expected, 3000)
  }
  assert.deepEqual(store.lines('127.0.0.1').map((l) => l.seq), Array.from({ length: 300 }, (_, i) => i))
  await until('reading again', () => receiver.stats().throttledConnections === 0)
  assert.deepEqual(receiver.stats().dropped, {})
  assert.equal(receiver.stats().bufferedBytes, 0)
  assert.ok(receiver.stats().throttled >= 1)
  assert.match(await metrics.metrics(), /rackboot_talos_kernel_log_throttled_total [1-9]/)
  // the connection still works once the rate allows again
  clock.advance(10_000)
  await write(fast, lines(300, 301, 'fast'))
  await until('line after the pause', () => store.lines('127.0.0.1').length === 301)
})

test('TCP: lines waiting for the rate when the connection is reset are counted as dropped', async (t) => {
  const clock = fakeClock()
  const { receiver, store, ports } = await startReceiver(t, { linesPerSecond: 5, now: clock.now })
  const socket = await tcpClient(t, ports.tcpPort!)
  await write(socket, lines(0, 30, 'x'))
  await until('paused', () => store.lines('127.0.0.1').length === 10 && receiver.stats().throttledConnections === 1)
  // A reset, not a close: a paused connection reads its end only once its waiting lines are through.
  socket.resetAndDestroy()
  await until('closed', () => receiver.stats().connections === 0)
  assert.deepEqual(receiver.stats().dropped, { tcp_rate: 20 })
})

test('TCP: connections beyond maxConnectionsPerPeer are closed and counted; other peers still connect', async (t) => {
  const { receiver, metrics, ports } = await startReceiver(t, { maxConnectionsPerPeer: 2 })
  await tcpClient(t, ports.tcpPort!)
  await tcpClient(t, ports.tcpPort!)
  await until('two connections', () => receiver.stats().connections === 2)
  const third = await tcpClient(t, ports.tcpPort!)
  let closed = false
  third.on('close', () => { closed = true })
  await until('third connection closed by the server', () => closed)
  assert.equal(receiver.stats().refusedPerPeer, 1)
  await tcpClient(t, ports.tcpPort!, '127.0.0.2')
  await until('other peer connected', () => receiver.stats().connections === 3)
  assert.equal(receiver.stats().refusedConnections, 1)
  assert.match(await metrics.metrics(), /rackboot_talos_kernel_log_refused_connections_total\{reason="peer"\} 1/)
})

test('listeners learn whether a line came over TCP or UDP', async (t) => {
  const { heard, ports } = await startReceiver(t)
  const socket = await tcpClient(t, ports.tcpPort!)
  await write(socket, `${kmsg(1, 'by tcp')}\n`)
  await until('tcp line', () => heard.length === 1)
  await udpClient(t, ports.udpPort!, '127.0.0.2')(kmsg(2, 'by udp'))
  await until('udp line', () => heard.length === 2)
  assert.deepEqual(heard.map(([peer, line]) => [peer, line.transport, line.msg]), [['127.0.0.1', 'tcp', 'by tcp'], ['127.0.0.2', 'udp', 'by udp']])
})
