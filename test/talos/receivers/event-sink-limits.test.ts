// What one unauthenticated peer can make the event sink do (issue 13): connections per address and in all, calls
// in flight per connection, events per second per address (acknowledgements held back, never events lost for a
// client that, like Talos, sends one call at a time), and field lengths. 127.0.0.2 is a second peer: grpc-js cannot
// pick a local address, so that peer speaks gRPC over node:http2 by hand.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import http2 from 'node:http2'
import { connect, type Socket } from 'node:net'
import { once } from 'node:events'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { createMetricsRegistry } from '../../../src/metrics.js'
import { silentLogger } from '../../../src/log.js'
import { createEventSinkServer, PROTO_DIR, PUBLISH_PATH, type EventSinkServerDeps, type TalosEvent } from '../../../src/talos/receivers/index.js'
import { bytes, eventRequest, message, vint, xid } from './wire.js'
import { until } from './support.js'

type PublishClient = grpc.Client & {
  Publish(request: unknown, callback: (err: grpc.ServiceError | null, response?: unknown) => void): void
}

function clientFor(t: TestContext, port: number): PublishClient {
  const definition = protoLoader.loadSync(join(PROTO_DIR, 'events/events.proto'), { includeDirs: [PROTO_DIR], keepCase: true, defaults: true })
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    events: { EventSinkService: new (address: string, credentials: grpc.ChannelCredentials) => PublishClient }
  }
  const client = new pkg.events.EventSinkService(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
  t.after(() => client.close())
  return client
}

const T0 = 1_787_000_000
const task = (name: string) => message(bytes(1, name), vint(2, 0))
const talosEvent = (id: string, name: string) => ({ id, data: { type_url: 'type.googleapis.com/machine.TaskEvent', value: task(name) } })

function publish(client: PublishClient, request: unknown): Promise<void> {
  return new Promise((resolve, reject) => client.Publish(request, (err) => (err ? reject(err) : resolve())))
}

/** One unary gRPC call over plain HTTP/2 from `localAddress`; resolves with the grpc-status trailer. */
function rawPublish(session: http2.ClientHttp2Session, body: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const frame = Buffer.alloc(5 + body.length)
    frame.writeUInt32BE(body.length, 1)
    body.copy(frame, 5)
    const stream = session.request({ ':method': 'POST', ':path': PUBLISH_PATH, 'content-type': 'application/grpc', te: 'trailers' })
    let status: number | undefined
    const read = (headers: http2.IncomingHttpHeaders) => {
      if (headers['grpc-status'] !== undefined) status = Number(headers['grpc-status'])
    }
    stream.on('response', read)
    stream.on('trailers', read)
    stream.on('data', () => {})
    stream.on('error', reject)
    stream.on('close', () => (status === undefined ? reject(new Error(`no grpc-status (rst ${stream.rstCode})`)) : resolve(status)))
    stream.end(frame)
  })
}

function rawSession(t: TestContext, port: number, localAddress: string): http2.ClientHttp2Session {
  const session = http2.connect(`http://127.0.0.1:${port}`, { createConnection: () => connect({ host: '127.0.0.1', port, localAddress }) })
  session.on('error', () => {})
  t.after(() => session.destroy())
  return session
}

async function rawSocket(t: TestContext, port: number, localAddress = '127.0.0.1'): Promise<{ socket: Socket; closed: () => boolean }> {
  const socket = connect({ host: '127.0.0.1', port, localAddress })
  let closed = false
  socket.on('error', () => {})
  socket.on('close', () => { closed = true })
  socket.resume() // read what the server sends, so its closing is seen
  await once(socket, 'connect')
  t.after(() => socket.destroy())
  return { socket, closed: () => closed }
}


async function startSink(t: TestContext, overrides: Partial<EventSinkServerDeps> = {}) {
  const events: TalosEvent[] = []
  const metrics = createMetricsRegistry()
  const sink = createEventSinkServer({ listen: '127.0.0.1', port: 0, log: silentLogger(), metrics, observer: { event: (e) => { events.push(e) } }, ...overrides })
  const { port } = await sink.start()
  t.after(() => sink.stop())
  return { sink, events, metrics, port }
}

test('connections beyond maxConnectionsPerPeer are closed at once and counted; another address still gets through', async (t) => {
  const { sink, events, metrics, port } = await startSink(t, { maxConnectionsPerPeer: 2 })
  const held = [await rawSocket(t, port), await rawSocket(t, port)]
  await until('two connections', () => sink.stats().connections === 2)
  const third = await rawSocket(t, port)
  await until('third closed by the server', third.closed)
  assert.deepEqual(sink.stats().refusedConnections, { peer: 1, total: 0 })
  assert.match(await metrics.metrics(), /rackboot_talos_event_sink_refused_connections_total\{reason="peer"\} 1/)
  // 127.0.0.2 is not held back by 127.0.0.1's connections
  const other = rawSession(t, port, '127.0.0.2')
  assert.equal(await rawPublish(other, eventRequest(xid(T0, 1), 'machine.TaskEvent', task('other'))), grpc.status.OK)
  assert.deepEqual(events.map((e) => [e.peer, e.data.task]), [['127.0.0.2', 'other']])
  // once 127.0.0.1 lets go of one, it can publish again
  held[0]!.socket.destroy()
  await until('a slot free', () => sink.stats().connections === 2)
  await publish(clientFor(t, port), talosEvent(xid(T0, 2), 'again'))
  assert.deepEqual(events.map((e) => e.peer), ['127.0.0.2', '127.0.0.1'])
})

test('connections beyond maxConnections in all are closed and counted', async (t) => {
  const { sink, port } = await startSink(t, { maxConnections: 2 })
  await rawSocket(t, port)
  await rawSocket(t, port, '127.0.0.2')
  await until('two connections', () => sink.stats().connections === 2)
  const third = await rawSocket(t, port, '127.0.0.3')
  await until('third closed', third.closed)
  assert.deepEqual(sink.stats().refusedConnections, { peer: 0, total: 1 })
})

test('a connection that never speaks HTTP/2 is closed after idleTimeoutMs', async (t) => {
  const { sink, port } = await startSink(t, { idleTimeoutMs: 200 })
  const silent = await rawSocket(t, port)
  await until('connected', () => sink.stats().connections === 1)
  await until('closed by the server', silent.closed, 3000)
  await until('counted closed', () => sink.stats().connections === 0)
})

test('past its burst a peer\'s acknowledgements slow to its rate: every event arrives, in order; another peer is not slowed', async (t) => {
  // The rate's clock stands still, so the waits are exact: tokens owed pile up, 200, 400 then 600 ms.
  const frozen = Date.now()
  const { sink, events, metrics, port } = await startSink(t, { eventsPerSecond: 5, eventBurst: 5, now: () => frozen })
  const client = clientFor(t, port)
  const started = Date.now()
  // as Talos does: the next call only after the previous one is acknowledged
  for (let i = 0; i < 8; i++) await publish(client, talosEvent(xid(T0, i), `t${i}`))
  const elapsed = Date.now() - started
  assert.deepEqual(events.map((e) => e.data.task), Array.from({ length: 8 }, (_, i) => `t${i}`))
  // 5 at once, then 3 held back
  assert.ok(elapsed >= 1150, `8 events took ${elapsed} ms`)
  assert.equal(sink.stats().delayed, 3)
  assert.deepEqual(sink.stats().dropped, {})
  assert.match(await metrics.metrics(), /rackboot_talos_events_delayed_total 3/)
  // 127.0.0.1 is now out of tokens (its next call would wait 800 ms); 127.0.0.2 is answered at once
  const other = rawSession(t, port, '127.0.0.2')
  const otherStart = Date.now()
  assert.equal(await rawPublish(other, eventRequest(xid(T0, 99), 'machine.TaskEvent', task('other'))), grpc.status.OK)
  assert.ok(Date.now() - otherStart < 400)
  assert.equal(sink.stats().delayed, 3)
})

test('many calls in flight past the rate: those that would wait past maxRateWaitMs are refused and counted', async (t) => {
  const frozen = Date.now()
  const { sink, events, metrics, port } = await startSink(t, { eventsPerSecond: 10, eventBurst: 2, maxRateWaitMs: 150, maxStreamsPerConnection: 100, now: () => frozen })
  const client = clientFor(t, port)
  const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => publish(client, talosEvent(xid(T0, i), `c${i}`))))
  // 2 from the burst, one 100 ms later; the rest would wait 200 ms or more
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 3)
  for (const r of results.filter((r) => r.status === 'rejected')) {
    assert.equal(((r as PromiseRejectedResult).reason as grpc.ServiceError).code, grpc.status.RESOURCE_EXHAUSTED)
  }
  assert.equal(events.length, 3)
  assert.equal(sink.stats().dropped.rate, 7)
  assert.match(await metrics.metrics(), /rackboot_talos_events_dropped_total\{reason="rate"\} 7/)
})

test('calls in flight on one connection are capped by maxStreamsPerConnection', async (t) => {
  let inFlight = 0
  let most = 0
  const releases: Array<() => void> = []
  const { port } = await startSink(t, {
    maxStreamsPerConnection: 2,
    observer: {
      event: () => new Promise<void>((resolve) => {
        inFlight++
        most = Math.max(most, inFlight)
        releases.push(() => { inFlight--; resolve() })
      }),
    },
  })
  const client = clientFor(t, port)
  const calls = Array.from({ length: 5 }, (_, i) => publish(client, talosEvent(xid(T0, i), `s${i}`)).then(() => 'ok', (err: grpc.ServiceError) => err.code))
  await until('two calls held', () => inFlight === 2)
  await sleep(100) // room for a third, were it allowed
  assert.equal(most, 2)
  // let them through; the rest follow on the same connection, never more than two at a time
  let settled = false
  void Promise.all(calls).then(() => { settled = true })
  while (!settled) {
    releases.splice(0).forEach((release) => release())
    await sleep(10)
  }
  assert.equal(most, 2)
  assert.deepEqual(await Promise.all(calls), ['ok', 'ok', 'ok', 'ok', 'ok'])
})

test('fields longer than Talos ever sends are acknowledged, counted and not handed on', async (t) => {
  const { sink, events, port } = await startSink(t)
  const client = clientFor(t, port)
  await publish(client, talosEvent('i'.repeat(1000), 'long id'))
  await publish(client, { id: xid(T0, 1), actor_id: 'a'.repeat(1000), data: { type_url: 'type.googleapis.com/machine.TaskEvent', value: task('x') } })
  await publish(client, { id: xid(T0, 2), data: { type_url: `type.googleapis.com/${'x'.repeat(1000)}`, value: Buffer.alloc(1) } })
  const address = message(bytes(1, 'h'.repeat(300)), bytes(2, '127.0.0.1'))
  await publish(client, { id: xid(T0, 3), data: { type_url: 'type.googleapis.com/machine.AddressEvent', value: address } })
  // what Talos sends still goes through
  await publish(client, { id: xid(T0, 4), actor_id: '6f1c1a35-7c1e-4d4f-9a53-0c7e8a8f1b2d', data: { type_url: 'type.googleapis.com/machine.AddressEvent', value: message(bytes(1, `talos-${'a'.repeat(240)}`), bytes(2, '127.0.0.1')) } })
  assert.deepEqual(sink.stats().dropped, { too_long: 4 })
  assert.deepEqual(events.map((e) => e.id), [xid(T0, 4)])
})

test('stop() answers calls still held for the rate with UNAVAILABLE, so Talos resends them', async (t) => {
  const { sink, events, port } = await startSink(t, { eventsPerSecond: 1, eventBurst: 1, maxRateWaitMs: 60_000 })
  const client = clientFor(t, port)
  await publish(client, talosEvent(xid(T0, 1), 'first'))
  const held = publish(client, talosEvent(xid(T0, 2), 'held')).then(() => 'ok', (err: grpc.ServiceError) => err.code)
  await until('held', () => sink.stats().delayed === 1)
  const stopping = Date.now()
  await sink.stop()
  assert.ok(Date.now() - stopping < 1500)
  assert.equal(await held, grpc.status.UNAVAILABLE)
  assert.deepEqual(events.map((e) => e.data.task), ['first'])
})
