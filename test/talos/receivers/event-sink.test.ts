// The event sink against a real grpc-js client built with @grpc/proto-loader from the same .proto files, sending
// each event as Talos does: EventRequest{ data: Any(type.googleapis.com/machine.<Msg>), id: xid, actor_id }.
// Payload bytes are made by hand (wire.ts), not by the library under test.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { createMetricsRegistry } from '../../../src/metrics.js'
import { silentLogger } from '../../../src/log.js'
import {
  createEventSinkServer,
  lifecycleHintFor,
  PROTO_DIR,
  PUBLISH_PATH,
  type EventSinkServerDeps,
  type TalosEvent,
} from '../../../src/talos/receivers/index.js'
import { bytes, message, vint, xid } from './wire.js'

type PublishClient = grpc.Client & {
  Publish(request: unknown, callback: (err: grpc.ServiceError | null, response?: unknown) => void): void
}

function clientFor(address: string): PublishClient {
  const definition = protoLoader.loadSync(join(PROTO_DIR, 'events/events.proto'), {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    defaults: true,
  })
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    events: { EventSinkService: new (address: string, credentials: grpc.ChannelCredentials) => PublishClient }
  }
  return new pkg.events.EventSinkService(address, grpc.credentials.createInsecure())
}

function publish(client: PublishClient, request: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => client.Publish(request, (err, res) => (err ? reject(err) : resolve(res))))
}

const talosEvent = (id: string, name: string, payload: Buffer, actor = '') => ({
  id,
  actor_id: actor,
  data: { type_url: `type.googleapis.com/machine.${name}`, value: payload },
})

async function startSink(t: TestContext, overrides: Partial<EventSinkServerDeps> = {}) {
  const events: TalosEvent[] = []
  const metrics = createMetricsRegistry()
  const sink = createEventSinkServer({
    listen: '127.0.0.1',
    port: 0,
    log: silentLogger(),
    metrics,
    observer: { event: (e) => { events.push(e) } },
    ...overrides,
  })
  const { port } = await sink.start()
  t.after(() => sink.stop())
  const client = clientFor(`127.0.0.1:${port}`)
  t.after(() => client.close())
  return { sink, events, metrics, client, port }
}

// A Talos ≤ 1.13 install boot, then the installed system's boot, in the order machined publishes them
// (sequence → phase → stage, as machine_status.go derives stages from them).
const T0 = 1_787_000_000
const stage = (n: number, ready: boolean, unmet: Array<[string, string]> = []) =>
  message(vint(1, n), bytes(2, message(vint(1, ready), ...unmet.map(([name, reason]) => bytes(2, message(bytes(1, name), bytes(2, reason)))))))
const BOOT: Array<[string, Buffer]> = [
  ['SequenceEvent', message(bytes(1, 'initialize'), vint(2, 1))],
  ['MachineStatusEvent', stage(1, false, [['network', 'waiting on: address']])],
  ['TaskEvent', message(bytes(1, 'saveConfig'), vint(2, 0))],
  ['AddressEvent', message(bytes(1, 'talos-abc-def'), bytes(2, '127.0.0.1'))],
  ['SequenceEvent', message(bytes(1, 'initialize'), vint(2, 2))],
  ['SequenceEvent', message(bytes(1, 'install'), vint(2, 1))],
  ['PhaseEvent', message(bytes(1, 'install'), vint(2, 0))],
  ['MachineStatusEvent', stage(2, true)],
  ['PhaseEvent', message(bytes(1, 'kexec'), vint(2, 0))],
  ['MachineStatusEvent', stage(5, true)],
  // the installed system, after kexec
  ['SequenceEvent', message(bytes(1, 'boot'), vint(2, 1))],
  ['MachineStatusEvent', stage(1, false, [['services', 'waiting for kubelet']])],
  ['ServiceStateEvent', message(bytes(1, 'kubelet'), vint(2, 3), bytes(3, 'Health check successful'), bytes(4, message(vint(2, true))))],
  ['SequenceEvent', message(bytes(1, 'boot'), vint(2, 2))],
  ['MachineStatusEvent', stage(4, false, [['nodeReady', 'node "n1" is not ready']])],
  ['MachineStatusEvent', stage(4, true)],
]

test('events published as Talos does reach the observer in order, decoded, with peer, time and hostname', async (t) => {
  const { events, client, sink, metrics } = await startSink(t)
  for (const [i, [name, payload]] of BOOT.entries()) {
    const response = await publish(client, talosEvent(xid(T0 + i, i), name, payload, i === 0 ? 'actor-1' : ''))
    assert.deepEqual(response, {})
  }
  assert.equal(events.length, BOOT.length)
  assert.deepEqual(events.map((e) => e.type), BOOT.map(([name]) => `machine.${name}`))
  for (const [i, e] of events.entries()) {
    assert.equal(e.peer, '127.0.0.1')
    assert.equal(e.id, xid(T0 + i, i))
    assert.equal(e.at, (T0 + i) * 1000)
  }
  assert.equal(events[0]?.actorId, 'actor-1')
  assert.equal(events[1]?.actorId, undefined)
  // node is known from the AddressEvent on
  assert.equal(events[2]?.node, undefined)
  assert.equal(events[3]?.node, 'talos-abc-def')
  assert.equal(events[15]?.node, 'talos-abc-def')
  assert.deepEqual(events[1]?.data, { stage: 'BOOTING', status: { ready: false, unmetConditions: [{ name: 'network', reason: 'waiting on: address' }] } })
  assert.deepEqual(events[12]?.data, {
    service: 'kubelet', action: 'RUNNING', message: 'Health check successful', health: { unknown: false, healthy: true, lastMessage: '' },
  })
  const hints = events.map((e) => lifecycleHintFor(e)).filter((h) => h !== null)
  assert.deepEqual(hints, ['installing', 'installed'])
  assert.equal(sink.stats().received, BOOT.length)
  assert.equal(sink.stats().byType['machine.MachineStatusEvent'], 6)
  const text = await metrics.metrics()
  assert.match(text, /rackboot_talos_events_total\{type="machine.MachineStatusEvent"\} 6/)
  assert.match(text, /rackboot_talos_event_publish_seconds_count 16/)
})

test('malformed payloads, unknown types and garbage requests are acknowledged, counted and do not stop the stream', async (t) => {
  const { events, client, sink, metrics, port } = await startSink(t)
  // a known type whose bytes are cut short: dropped, yet acknowledged (an error would make Talos resend it forever)
  await publish(client, talosEvent(xid(T0, 1), 'MachineStatusEvent', Buffer.from([0x08, 0x02, 0x12, 0x40, 0x08])))
  // a type rackboot does not know: kept as { typeUrl, bytes }
  await publish(client, { id: xid(T0, 2), data: { type_url: 'type.googleapis.com/machine.FutureEvent', value: Buffer.alloc(33, 1) } })
  // no payload at all
  await publish(client, { id: xid(T0, 3) })
  // an id that is not an xid: no time, still delivered
  await publish(client, talosEvent('plain-id', 'TaskEvent', message(bytes(1, 'runningMaintenance'), vint(2, 0))))
  // a request body that is not an EventRequest at all, through the same method path
  const raw = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
  t.after(() => raw.close())
  await new Promise<void>((resolve, reject) =>
    raw.makeUnaryRequest(PUBLISH_PATH, (b: Buffer) => b, (b: Buffer) => b, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), (err) => (err ? reject(err) : resolve())),
  )
  // and the stream goes on
  await publish(client, talosEvent(xid(T0, 4), 'MachineStatusEvent', message(vint(1, 2))))

  assert.deepEqual(events.map((e) => e.type), ['unknown', 'machine.TaskEvent', 'machine.MachineStatusEvent'])
  assert.deepEqual(events[0]?.data, { typeUrl: 'type.googleapis.com/machine.FutureEvent', bytes: 33 })
  assert.equal(events[1]?.at, undefined)
  assert.equal(events[1]?.id, 'plain-id')
  assert.deepEqual(sink.stats().dropped, { bad_payload: 1, no_payload: 1, bad_request: 1 })
  assert.equal(sink.stats().byType.unknown, 1)
  const text = await metrics.metrics()
  assert.match(text, /rackboot_talos_events_dropped_total\{reason="bad_payload"\} 1/)
  assert.match(text, /rackboot_talos_events_dropped_total\{reason="bad_request"\} 1/)
  assert.match(text, /rackboot_talos_events_total\{type="unknown"\} 1/)
})

test('an observer that throws is counted; the call is still acknowledged', async (t) => {
  const { client, sink } = await startSink(t, { observer: { event: () => { throw new Error('lifecycle down') } } })
  await publish(client, talosEvent(xid(T0, 1), 'TaskEvent', message(bytes(1, 'x'), vint(2, 1))))
  assert.deepEqual(sink.stats().dropped, { observer_error: 1 })
})

test('an observer returning a promise holds the acknowledgement: one machine\'s events are handled in order', async (t) => {
  const log: string[] = []
  const { client, sink } = await startSink(t, {
    observerTimeoutMs: 300,
    observer: {
      async event(e) {
        const task = (e.data as { task: string }).task
        log.push(`start ${task}`)
        if (task === 'hang') return new Promise<void>(() => {}) // never settles: acknowledged after the timeout
        if (task === 'reject') throw new Error('inventory down')
        await sleep(40)
        log.push(`end ${task}`)
      },
    },
  })
  const started = Date.now()
  await publish(client, talosEvent(xid(T0, 1), 'TaskEvent', message(bytes(1, 'one'), vint(2, 0))))
  assert.ok(Date.now() - started >= 35, 'acknowledged before the observer finished')
  await publish(client, talosEvent(xid(T0, 2), 'TaskEvent', message(bytes(1, 'two'), vint(2, 0))))
  assert.deepEqual(log, ['start one', 'end one', 'start two', 'end two'])
  const hangStart = Date.now()
  await publish(client, talosEvent(xid(T0, 3), 'TaskEvent', message(bytes(1, 'hang'), vint(2, 0))))
  assert.ok(Date.now() - hangStart >= 290)
  await publish(client, talosEvent(xid(T0, 4), 'TaskEvent', message(bytes(1, 'reject'), vint(2, 0))))
  assert.deepEqual(sink.stats().dropped, { observer_timeout: 1, observer_error: 1 })
})

test('IPv6 loopback: the peer is the bare address', async (t) => {
  const events: TalosEvent[] = []
  const sink = createEventSinkServer({ listen: '::1', port: 0, log: silentLogger(), metrics: createMetricsRegistry(), observer: { event: (e) => { events.push(e) } } })
  let port: number
  try {
    port = (await sink.start()).port
  } catch (err) {
    t.skip(`no IPv6 loopback here: ${(err as Error).cause ?? err}`)
    return
  }
  t.after(() => sink.stop())
  const client = clientFor(`[::1]:${port}`)
  t.after(() => client.close())
  await publish(client, talosEvent(xid(T0, 1), 'PhaseEvent', message(bytes(1, 'install'), vint(2, 0))))
  assert.equal(events[0]?.peer, '::1')
})

test('stop() closes the port; start() twice or on a taken port is refused', async (t) => {
  const sink = createEventSinkServer({ listen: '127.0.0.1', port: 0, log: silentLogger(), metrics: createMetricsRegistry() })
  const { port } = await sink.start()
  await assert.rejects(sink.start(), { code: 'RB_ERR_INTERNAL' })
  const clash = createEventSinkServer({ listen: '127.0.0.1', port, log: silentLogger(), metrics: createMetricsRegistry() })
  await assert.rejects(clash.start(), { code: 'RB_ERR_INTERNAL' })
  await sink.stop()
  const client = clientFor(`127.0.0.1:${port}`)
  t.after(() => client.close())
  await assert.rejects(
    new Promise((resolve, reject) => client.Publish(talosEvent(xid(T0, 1), 'TaskEvent', Buffer.alloc(0)), (err, res) => (err ? reject(err) : resolve(res)))),
    { code: grpc.status.UNAVAILABLE },
  )
})
