import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { ServerResponse } from 'node:http'
import { Writable } from 'node:stream'
import { createEventBus } from '../../src/events/bus.js'
import { createEventHub } from '../../src/http/plugins/api/event-hub.js'
import { silentLogger } from '../../src/log.js'
import { apiSetup, eachBackend, type ApiSetup } from './support/app.js'
import type { Backend } from '../support/backends.js'
import { seedMachines } from './support/seed.js'
import { openSse } from './support/sse.js'

async function listening(s: ApiSetup): Promise<string> {
  return s.app.listen({ host: '127.0.0.1', port: 0 })
}

eachBackend('the stream delivers state changes and boot events in order, as they happen, and resumes from `since` or Last-Event-ID', async (t, backend) => {
  const s = await apiSetup({ backend, events: { heartbeatMs: 200 } })
  t.after(() => s.close())
  const ids = await seedMachines(s.inventory, { count: 3, state: 'discovered' })
  const base = await listening(s)
  s.lifecycle.record(ids[0]!, 'boot.dhcp', 'before the stream', {})
  await s.timeline.flush()

  const live = await openSse(`${base}/api/v1/events`, s.auth('read'))
  t.after(() => live.close())
  assert.equal(live.status, 200)
  assert.match(String(live.headers['content-type']), /^text\/event-stream/)
  // From now: nothing from before.
  for (const id of ids) {
    const r = await fetch(`${base}/api/v1/machines/${id}/accept`, { method: 'POST', headers: s.auth('provision') })
    assert.equal(r.status, 200)
    s.lifecycle.record(id, 'boot.tftp', `tftp ${id}`, { file: 'ipxe.efi' })
  }
  await live.until((c) => c.events.length >= 6)
  assert.deepEqual(live.events.map((e) => e.event), ['machine.state', 'boot.tftp', 'machine.state', 'boot.tftp', 'machine.state', 'boot.tftp'])
  const seqs = live.events.map((e) => Number(e.id))
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b))
  assert.ok(seqs.every((q, i) => i === 0 || q > seqs[i - 1]!))
  assert.deepEqual(live.events[0]!.data.data, { from: 'discovered', to: 'ready', cause: 'accepted by token capi' })
  assert.equal(live.events[0]!.data.machineId, ids[0])
  assert.equal(live.events[0]!.data.seq, seqs[0])
  assert.match(live.events[0]!.data.at, /^\d{4}-\d\d-\d\dT/)
  // What the table holds is what was streamed.
  const stored = await s.inventory.events.list({ since: seqs[0]! - 1 })
  assert.deepEqual(stored.map((e) => e.seq), seqs)
  await live.until((c) => c.comments.includes('keepalive'), 2_000)

  // Resume: since=X gives exactly what came after X; Last-Event-ID wins over since; since=0 gives everything.
  const resumed = await openSse(`${base}/api/v1/events?since=${seqs[2]}`, s.auth('read'))
  t.after(() => resumed.close())
  await resumed.until((c) => c.events.length >= 3)
  assert.deepEqual(resumed.events.map((e) => Number(e.id)), seqs.slice(3))
  const byHeader = await openSse(`${base}/api/v1/events?since=0`, { ...s.auth('read'), 'last-event-id': String(seqs[4]) })
  t.after(() => byHeader.close())
  await byHeader.until((c) => c.events.length >= 1)
  assert.deepEqual(byHeader.events.map((e) => Number(e.id)), seqs.slice(5))
  const all = await openSse(`${base}/api/v1/events?since=0`, s.auth('read'))
  t.after(() => all.close())
  await all.until((c) => c.events.length >= 7)
  assert.equal(all.events[0]!.data.message, 'before the stream')

  // Filters: by type (exact or family) and by machine.
  const states = await openSse(`${base}/api/v1/events?since=0&types=machine.state`, s.auth('read'))
  const boots = await openSse(`${base}/api/v1/events?since=0&types=boot.*&machine=${ids[1]}`, s.auth('read'))
  t.after(() => { states.close(); boots.close() })
  await states.until((c) => c.events.length >= 3)
  await boots.until((c) => c.events.length >= 1)
  assert.ok(states.events.every((e) => e.event === 'machine.state'))
  assert.deepEqual(boots.events.map((e) => [e.event, e.data.machineId]), [['boot.tftp', ids[1]]])
  // Bad cursors are refused before the stream starts.
  assert.equal((await fetch(`${base}/api/v1/events?since=-1`, { headers: s.auth('read') })).status, 400)
  assert.equal((await fetch(`${base}/api/v1/events`, { headers: { ...s.auth('read'), 'last-event-id': 'x' } })).status, 400)
})

eachBackend('a stream that starts in the past while events keep coming gets every event exactly once, in order', async (t, backend) => {
  const s = await apiSetup({ backend, events: { pageSize: 50 } })
  t.after(() => s.close())
  // Spread over machines: the timeline keeps 500 events per machine and trims older ones.
  const ids = await seedMachines(s.inventory, { count: 10 })
  const base = await listening(s)
  for (let i = 0; i < 400; i++) s.lifecycle.record(ids[i % 10]!, 'boot.dhcp', `old ${i}`, {})
  await s.timeline.flush()
  const first = (await s.inventory.events.list({ limit: 1 }))[0]!.seq
  const stream = await openSse(`${base}/api/v1/events?since=0`, s.auth('read'))
  t.after(() => stream.close())
  // New events while the backlog is being read (pages of 50).
  let produced = 0
  const producer = setInterval(() => {
    for (let i = 0; i < 20 && produced < 600; i++) s.lifecycle.record(ids[produced % 10]!, 'boot.script', `new ${produced++}`, {})
  }, 5)
  await stream.until((c) => c.events.length >= 1000, 20_000)
  clearInterval(producer)
  const got = stream.events.map((e) => Number(e.id))
  assert.equal(got.length, 1000)
  assert.equal(new Set(got).size, 1000, 'no event twice')
  assert.deepEqual(got, Array.from({ length: 1000 }, (_, i) => first + i), 'no gap, in order')
  assert.deepEqual(stream.events.slice(398, 402).map((e) => e.data.message), ['old 398', 'old 399', 'new 0', 'new 1'])
})

eachBackend('events written by another process (the CLI) reach the stream by polling', async (t, backend) => {
  const s = await apiSetup({ backend, events: { pollMs: 100 } })
  t.after(() => s.close())
  const base = await listening(s)
  const stream = await openSse(`${base}/api/v1/events`, s.auth('read'))
  t.after(() => stream.close())
  await new Promise((r) => setTimeout(r, 50))
  // Straight into the table, not through this process's bus.
  await s.inventory.events.append({ machineId: null, type: 'inventory.imported', at: Date.now(), message: 'imported by the CLI', data: {} })
  await stream.until((c) => c.events.length >= 1, 5_000)
  assert.equal(stream.events[0]!.data.message, 'imported by the CLI')
})

async function burstSetup(backend: Backend, stallMs: number) {
  const s = await apiSetup({ backend, events: { stallMs, pageSize: 100 } })
  // Spread over machines: the timeline keeps 500 events per machine and trims older ones.
  const ids = await seedMachines(s.inventory, { count: 20 })
  const base = await listening(s)
  const blob = 'x'.repeat(16 * 1024)
  const burst = async (n: number, tag: string) => {
    for (let i = 0; i < n; i++) s.lifecycle.record(ids[i % ids.length]!, 'boot.asset', `${tag} ${i}`, { blob })
    await s.timeline.flush()
  }
  return { s, base, burst }
}

eachBackend('a slow reader holds no queue: paused while ~32 MB of events are written, it catches up from the table in order', async (t, backend) => {
  const { s, base, burst } = await burstSetup(backend, 60_000)
  t.after(() => s.close())
  const slow = await openSse(`${base}/api/v1/events`, s.auth('read'))
  t.after(() => slow.close())
  slow.pause()
  await burst(2000, 'a')
  // ~32 MB written while it reads nothing: the kernel holds some, the server at most about one page (100 events).
  // The stream fills the socket page by page (on a loaded machine a PostgreSQL page can take 100+ ms): wait for the
  // server's buffer to be in use, then check it stays within a page.
  const bufferedNow = async () => Number(/rackboot_api_event_stream_buffered_bytes (\d+)/.exec(await s.registry.getSingleMetricAsString('rackboot_api_event_stream_buffered_bytes'))![1])
  let buffered = await bufferedNow()
  for (let waited = 0; buffered === 0 && waited < 15_000; waited += 100) {
    await new Promise((r) => setTimeout(r, 100))
    buffered = await bufferedNow()
  }
  assert.ok(buffered > 0 && buffered < 101 * 17 * 1024, `${buffered} bytes buffered in the server`)
  await new Promise((r) => setTimeout(r, 300))
  buffered = await bufferedNow()
  assert.ok(buffered < 101 * 17 * 1024, `${buffered} bytes buffered in the server while the client reads nothing`)
  slow.resume()
  await slow.until((c) => c.events.length >= 2000, 60_000)
  const seqs = slow.events.map((e) => Number(e.id))
  assert.ok(seqs.every((q, i) => i === 0 || q === seqs[i - 1]! + 1), 'contiguous')
  assert.deepEqual(slow.events.map((e) => e.data.message), Array.from({ length: 2000 }, (_, i) => `a ${i}`))
})

eachBackend('a reader that stops reading is dropped after stallMs (counted), and resumes with Last-Event-ID losing nothing', async (t, backend) => {
  const { s, base, burst } = await burstSetup(backend, 1_000)
  t.after(() => s.close())
  const stuck = await openSse(`${base}/api/v1/events`, s.auth('read'))
  stuck.pause()
  await burst(1000, 'b')
  // The server gives up on it (the client only notices once it reads again: the close is queued behind the data).
  const dropped = async () => /reason="stalled"} 1/.test(await s.registry.getSingleMetricAsString('rackboot_api_event_stream_dropped_total'))
  for (let waited = 0; !(await dropped()); waited += 100) {
    assert.ok(waited < 20_000, 'the stalled stream was not closed')
    await new Promise((r) => setTimeout(r, 100))
  }
  assert.match(await s.registry.getSingleMetricAsString('rackboot_api_event_streams'), /rackboot_api_event_streams 0/)
  // What reached the client before the drop, then the rest after reconnecting.
  stuck.resume()
  await stuck.ended
  const last = stuck.events.at(-1)?.id
  const again = await openSse(`${base}/api/v1/events${last ? '' : '?since=0'}`, { ...s.auth('read'), ...(last ? { 'last-event-id': last } : {}) })
  t.after(() => again.close())
  await again.until((c) => c.events.at(-1)?.data.message === 'b 999', 60_000)
  const got = [...stuck.events, ...again.events].map((e) => e.data.message).filter((m) => m.startsWith('b '))
  assert.deepEqual(got, Array.from({ length: 1000 }, (_, i) => `b ${i}`))
})

eachBackend('server shutdown ends every stream with a final event, and does not wait for clients', async (t, backend) => {
  const s = await apiSetup({ backend })
  let closed = false
  t.after(async () => {
    if (!closed) await s.close()
  })
  const base = await listening(s)
  const streams = await Promise.all([1, 2, 3].map(() => openSse(`${base}/api/v1/events`, s.auth('read'))))
  assert.match(await s.registry.getSingleMetricAsString('rackboot_api_event_streams'), /rackboot_api_event_streams 3/)
  const started = Date.now()
  await s.close()
  closed = true
  assert.ok(Date.now() - started < 3_000, `close took ${Date.now() - started} ms`)
  for (const st of streams) {
    await st.ended
    assert.equal(st.events.at(-1)?.event, 'shutdown')
  }
})

eachBackend('one token holds at most maxEventStreamsPerToken streams (default 8): the next gets 429, counted; other tokens still get theirs', async (t, backend) => {
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  const base = await listening(s)
  const refused = async () => Number(/reason="per-token"} (\d+)/.exec(await s.registry.getSingleMetricAsString('rackboot_api_event_streams_refused_total'))?.[1] ?? 0)
  // Asked for all at once: no two requests can both take the last slot.
  const first = await Promise.all(Array.from({ length: 10 }, () => openSse(`${base}/api/v1/events`, s.auth('read'))))
  t.after(() => first.forEach((c) => c.close()))
  const open = first.filter((c) => c.status === 200)
  const over = first.filter((c) => c.status !== 200)
  assert.equal(open.length, 8)
  assert.deepEqual(over.map((c) => c.status), [429, 429])
  assert.equal(await refused(), 2)

  const more = await fetch(`${base}/api/v1/events`, { headers: s.auth('read') })
  assert.equal(more.status, 429)
  assert.ok(more.headers.get('retry-after'))
  const body = await more.json() as { error: string; message: string; details: { limit: number } }
  assert.match(body.message, /token 'reader' already holds 8 event streams.*maxEventStreamsPerToken = 8/)
  assert.equal(body.details.limit, 8)
  assert.equal(await refused(), 3)

  // Another token (the web UI's, say) is not affected.
  const other = await openSse(`${base}/api/v1/events`, s.auth('admin'))
  t.after(() => other.close())
  assert.equal(other.status, 200)
  // A stream that closes gives its token's slot back.
  open[0]!.close()
  for (let waited = 0; ; waited += 20) {
    const again = await openSse(`${base}/api/v1/events`, s.auth('read'))
    t.after(() => again.close())
    if (again.status === 200) break
    assert.ok(waited < 5_000, 'the closed stream\'s slot never came back')
    await new Promise((r) => setTimeout(r, 20))
  }
})

test('the hub takes a slot when open() starts: streams asked for in one tick cannot overshoot either cap while the table is read', async (t) => {
  // A table slow to answer: every open() below is still waiting for it when the next one is admitted.
  const inventory = {
    events: { list: async () => [] },
    queries: { latestEventSeq: () => new Promise<number>((r) => setTimeout(() => r(0), 50)) },
  } as unknown as Parameters<typeof createEventHub>[0]['inventory']
  const hub = createEventHub({ inventory, bus: createEventBus(), log: silentLogger(), options: { maxStreams: 3, maxStreamsPerToken: 2, heartbeatMs: 60_000 } })
  t.after(() => hub.close())
  const sinks: Writable[] = []
  const opened: Promise<void>[] = []
  const ask = (token: string) => {
    const refusal = hub.admit(token)
    if (refusal === null) {
      const sink = new Writable({ write: (_c, _e, done) => done() })
      sinks.push(sink)
      opened.push(hub.open(sink as unknown as ServerResponse, null, { types: null, machineId: null }, token))
    }
    return refusal
  }
  assert.deepEqual(['a', 'a', 'a', 'b', 'b'].map(ask), [null, null, 'per-token', null, 'total'])
  assert.equal(hub.countFor('a'), 2)
  assert.equal(hub.count(), 3)
  // A closed response gives its slots back.
  await Promise.all(opened)
  sinks[0]!.destroy()
  await once(sinks[0]!, 'close')
  assert.equal(hub.countFor('a'), 1)
  assert.equal(hub.count(), 2)
  assert.equal(ask('a'), null)
})
