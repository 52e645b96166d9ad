// Issue 16: the event stream on any instance carries events from all of them and resumes across instances. Two
// rackboot apps (each its own inventory handle, pool, timeline and event hub) on one PostgreSQL database, as two
// processes would be. On PostgreSQL a seq is drawn at insert and seen at commit, so with concurrent writers seq n+1 is
// read before n commits; the hub must hold back behind such a hole until it fills (or is given up on), else n is lost
// to every live stream. Other instances' events must arrive at once through LISTEN/NOTIFY, not at the next poll, and
// the listening connection must come back when the server drops it. PostgreSQL only: skipped loudly without a cluster.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { ServerResponse } from 'node:http'
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { sql, type Kysely } from 'kysely'
import { createEventBus } from '../../src/events/bus.js'
import { createEventHub } from '../../src/http/plugins/api/event-hub.js'
import type { EventStreamOptions } from '../../src/http/plugins/api/index.js'
import type { PostgresInventory, StoredEvent } from '../../src/inventory/index.js'
import { silentLogger } from '../../src/log.js'
import type { Database } from '../../src/inventory/sql/schema.js'
import { inventoryBackends, skipped, type Backend } from '../support/backends.js'
import { apiSetup, type ApiSetup } from './support/app.js'
import { openSse, type SseClient } from './support/sse.js'

const postgres = inventoryBackends().find((b) => b.name === 'postgres')!

type Instance = { s: ApiSetup; base: string; inventory: PostgresInventory }

/** The backend, but every open() is another handle on the database at `url` (a second instance). */
function sameDatabase(url: string): Backend {
  return {
    ...postgres,
    async open(options = {}) {
      const inv = await postgres.open({ ...options, url })
      // apiSetup names its tokens reader, capi, root: the first instance made them in this database already.
      const tokens = inv.tokens
      return Object.assign(inv, { tokens: { ...tokens, create: (input: Parameters<typeof tokens.create>[0], now: number) => tokens.create({ ...input, name: `${input.name}-b` }, now) } })
    },
  }
}

/** Two instances on one fresh database, listening. */
async function twoInstances(t: TestContext, events: EventStreamOptions): Promise<[Instance, Instance, string]> {
  const a = await apiSetup({ backend: postgres, events })
  t.after(() => a.close())
  const url = (a.inventory as unknown as { url: string }).url
  const b = await apiSetup({ backend: sameDatabase(url), events })
  t.after(() => b.close())
  const instances = await Promise.all([a, b].map(async (s) => ({ s, base: await s.app.listen({ host: '127.0.0.1', port: 0 }), inventory: s.inventory as unknown as PostgresInventory })))
  return [instances[0]!, instances[1]!, url]
}

/** The backends of the instances' event listeners (LISTEN done), other than `except`: waits for `n` of them. */
async function listeners(db: Kysely<Database>, n: number, except: number[] = []): Promise<number[]> {
  const started = Date.now()
  for (;;) {
    const r = await sql<{ pid: number }>`select pid from pg_stat_activity
      where datname = current_database() and application_name = 'rackboot-events' and query like 'LISTEN%'`.execute(db)
    const pids = r.rows.map((row) => Number(row.pid)).filter((p) => !except.includes(p))
    if (pids.length >= n) return pids
    assert.ok(Date.now() - started < 15_000, `${pids.length} of ${n} event listeners after 15 s`)
    await sleep(20)
  }
}

const event = (message: string) => ({ machineId: null, type: 'inventory.imported', at: Date.now(), message, data: {} })

async function stream(i: Instance, since: number | null): Promise<SseClient> {
  const c = await openSse(`${i.base}/api/v1/events${since === null ? '' : `?since=${since}`}`, i.s.auth('read'))
  assert.equal(c.status, 200)
  return c
}

const ids = (c: SseClient) => c.events.map((e) => Number(e.id))

/** Resolves with the ms until `message` reached `c` (from `from`). */
async function arrival(c: SseClient, message: string, from: number, ms = 5_000): Promise<number> {
  await c.until((x) => x.events.some((e) => e.data.message === message), ms)
  return Date.now() - from
}

test('two instances, concurrent writers and late commits: a stream on each delivers every event exactly once in seq order; a stream resumes on the other instance from a seq seen on the first', async (t) => {
  if (await skipped(t, postgres)) return
  const [a, b, url] = await twoInstances(t, {})
  await listeners(a.inventory.db, 2)
  const start = await a.inventory.queries.latestEventSeq()
  const onA = await stream(a, start)
  const onB = await stream(b, start)
  t.after(() => { onA.close(); onB.close() })

  // Writers that commit late: a transaction of their own (not the appends' lock) draws its seqs, then holds them
  // uncommitted for a while (well under the 2 s grace) as the appends commit higher seqs past them. One rolls back:
  // a hole that never fills, which must not stall the streams for long.
  let outOfOrder = 0
  const lateWriter = async (n: number, delayMs: number, holdMs: number, rollback = false) => {
    await sleep(delayMs)
    const c = new pg.Client({ connectionString: url })
    await c.connect()
    try {
      await c.query('BEGIN')
      const seqs: number[] = []
      for (let i = 0; i < 2; i++) {
        const r = await c.query<{ seq: string }>(`insert into events (machine_id, type, at, message, data) values (null, 'inventory.imported', $1, $2, '{}') returning seq`, [Date.now(), `late ${n}.${i}`])
        seqs.push(Number(r.rows[0]!.seq))
      }
      await sleep(holdMs)
      const top = await a.inventory.queries.latestEventSeq()
      if (top > Math.max(...seqs) && !rollback) outOfOrder++
      await c.query(rollback ? 'ROLLBACK' : 'COMMIT')
    } finally {
      await c.end()
    }
  }
  const late = Array.from({ length: 8 }, (_, n) => lateWriter(n, 40 * n, 200 + 60 * n))
  late.push(lateWriter(99, 100, 300, true))

  // 2 x 500 appends at once, each instance over its own pool.
  let resumed: { since: number; client: Promise<SseClient> } | null = null
  const resumer = onA.until((c) => c.events.length >= 300, 30_000).then(() => {
    const since = Number(onA.events.at(-1)!.id)
    resumed = { since, client: stream(b, since) }
  })
  await Promise.all([
    ...['a', 'b'].flatMap((who) => Array.from({ length: 500 }, (_, i) => (who === 'a' ? a : b).inventory.events.append(event(`${who} ${i}`)))),
    ...late,
  ])
  await resumer
  const r = resumed as { since: number; client: Promise<SseClient> } | null
  assert.ok(r, 'the resumed stream was opened')
  const again = await r.client
  t.after(() => again.close())

  const stored = (await a.inventory.events.list({ since: start, limit: 10_000 })).map((e) => e.seq)
  assert.equal(stored.length, 1000 + 8 * 2, 'every append and every committed late row is in the table')
  assert.ok(outOfOrder > 0, 'a late row committed below a seq already visible (the case under test happened)')
  t.diagnostic(`${stored.length} events from seq ${stored[0]} to ${stored.at(-1)}; ${outOfOrder} of 8 late transactions committed below a visible seq; B resumed after ${r.since}`)
  for (const [name, c, expected] of [['A', onA, stored], ['B', onB, stored], ['B resumed', again, stored.filter((q) => q > r.since)]] as const) {
    await c.until((x) => x.events.length >= expected.length, 30_000).catch(() => {})
    const got = ids(c)
    const missing = expected.filter((q) => !got.includes(q))
    assert.deepEqual(missing, [], `stream ${name}: none lost`)
    assert.equal(new Set(got).size, got.length, `stream ${name}: none twice`)
    assert.deepEqual(got, expected, `stream ${name}: every event, in seq order`)
  }
  assert.ok(r.since > start && r.since < stored.at(-1)!, 'resumed from the middle')
})

test('events from the other instance arrive within ~300 ms through NOTIFY, with the poll an hour away', async (t) => {
  if (await skipped(t, postgres)) return
  const [a, b] = await twoInstances(t, { pollMs: 3_600_000 })
  await listeners(a.inventory.db, 2)
  const onA = await stream(a, null)
  const onB = await stream(b, null)
  t.after(() => { onA.close(); onB.close() })
  const times: number[] = []
  for (let i = 0; i < 6; i++) {
    const writer = i % 2 === 0 ? a : b
    const reader = writer === a ? onB : onA
    const from = Date.now()
    // Straight into the table: no bus of either instance hears of it.
    await writer.inventory.events.append(event(`remote ${i}`))
    times.push(await arrival(reader, `remote ${i}`, from, 3_000))
    await arrival(writer === a ? onA : onB, `remote ${i}`, from, 3_000)
  }
  t.diagnostic(`remote events arrived after ${times.join(', ')} ms`)
  assert.ok(Math.max(...times) < 300, `remote events took ${times.join(', ')} ms`)
})

test('the listener reconnects after its backend is terminated; events written meanwhile arrive on reconnect, later ones at once', async (t) => {
  if (await skipped(t, postgres)) return
  const [a, b] = await twoInstances(t, { pollMs: 3_600_000 })
  const before = await listeners(a.inventory.db, 2)
  const onA = await stream(a, null)
  const onB = await stream(b, null)
  t.after(() => { onA.close(); onB.close() })

  const killed = await sql<{ ok: boolean }>`select pg_terminate_backend(pid) as ok from pg_stat_activity where pid in (${sql.join(before)})`.execute(a.inventory.db)
  assert.deepEqual(killed.rows.map((row) => row.ok), [true, true])
  const from = Date.now()
  await a.inventory.events.append(event('while away'))
  await listeners(a.inventory.db, 2, before)
  // Announced to nobody (the listeners were gone), read when they are back: not at the poll an hour away.
  const ms = await Promise.all([onA, onB].map((c) => arrival(c, 'while away', from, 10_000)))
  assert.ok(Math.max(...ms) < 5_000, `events written while the listeners were away took ${ms.join(', ')} ms`)

  const now = Date.now()
  await b.inventory.events.append(event('after'))
  const after = await Promise.all([onA, onB].map((c) => arrival(c, 'after', now, 3_000)))
  t.diagnostic(`written while away: arrived after ${ms.join(', ')} ms; after the reconnect: ${after.join(', ')} ms`)
  assert.ok(Math.max(...after) < 300, `after the reconnect events took ${after.join(', ')} ms`)
  assert.deepEqual(onA.events.map((e) => e.data.message), ['while away', 'after'])
  assert.deepEqual(ids(onA), ids(onB))
})

test('a hole holds back what follows it, for live streams and for a stream resuming past it, until it fills; a hole that never fills is given up on after the grace', async (t) => {
  if (await skipped(t, postgres)) return
  const [a, b, url] = await twoInstances(t, { pollMs: 3_600_000 })
  await listeners(a.inventory.db, 2)
  const onA = await stream(a, null)
  const onB = await stream(b, null)
  t.after(() => { onA.close(); onB.close() })
  const late = new pg.Client({ connectionString: url })
  await late.connect()
  t.after(() => late.end())
  const insert = async (message: string) => Number((await late.query<{ seq: string }>(
    `insert into events (machine_id, type, at, message, data) values (null, 'inventory.imported', $1, $2, '{}') returning seq`, [Date.now(), message])).rows[0]!.seq)

  await late.query('BEGIN')
  const hole = await insert('late')
  await a.inventory.events.append(event('after 1'))
  await b.inventory.events.append(event('after 2'))
  // Both hubs have read past the hole by now (NOTIFY): they hold back. So does a stream resuming on B from what A
  // delivered, although the rows after the hole are in the table for it to read.
  await sleep(300)
  const resumed = await stream(b, hole - 1)
  t.after(() => resumed.close())
  await sleep(300)
  assert.deepEqual([onA, onB, resumed].map((c) => c.events.length), [0, 0, 0], 'nothing past the hole while it may fill')
  await late.query('COMMIT')
  for (const c of [onA, onB, resumed]) await c.until((x) => x.events.length >= 3, 2_000)

  // A hole that never fills (a rolled-back insert): what follows waits out the grace (2 s), then comes without any
  // further event or poll to wake the hub.
  await late.query('BEGIN')
  await insert('rolled back')
  const from = Date.now()
  await a.inventory.events.append(event('after 3'))
  await late.query('ROLLBACK')
  const waited = await Promise.all([onA, onB, resumed].map((c) => arrival(c, 'after 3', from, 10_000)))
  t.diagnostic(`behind a rolled-back insert: ${waited.join(', ')} ms`)
  assert.ok(Math.min(...waited) >= 1_500 && Math.max(...waited) < 6_000, `behind a rolled-back insert: ${waited.join(', ')} ms`)
  for (const c of [onA, onB, resumed]) assert.deepEqual(c.events.map((e) => e.data.message), ['late', 'after 1', 'after 2', 'after 3'])
  assert.deepEqual(ids(onA), ids(resumed))
})

test('the hub on a table whose rows appear out of seq order (any backend): hands over up to a hole, the rest once it fills; gives a hole up after gapGraceMs', async (t) => {
  const table: StoredEvent[] = []
  const add = (...seqs: number[]) => {
    for (const seq of seqs) table.push({ seq, machineId: null, type: 'inventory.imported', at: Date.now(), message: `e${seq}`, data: {} })
    bus.publish({ type: 'inventory.imported', machineId: null, at: Date.now(), message: 'more', data: {} })
  }
  const inventory = {
    events: {
      async list(f: { since?: number; limit?: number; newest?: boolean } = {}) {
        const rows = table.filter((e) => e.seq > (f.since ?? 0)).sort((x, y) => x.seq - y.seq)
        return f.newest ? rows.slice(-(f.limit ?? 1000)) : rows.slice(0, f.limit ?? 1000)
      },
    },
    queries: { latestEventSeq: async () => Math.max(0, ...table.map((e) => e.seq)) },
  } as unknown as Parameters<typeof createEventHub>[0]['inventory']
  const bus = createEventBus()
  const hub = createEventHub({ inventory, bus, log: silentLogger(), options: { gapGraceMs: 400, pollMs: 3_600_000, heartbeatMs: 3_600_000 } })
  t.after(() => hub.close())
  const sink = (got: number[]) => new Writable({
    write(chunk: Buffer, _e, done) {
      for (const m of chunk.toString().matchAll(/^id: (\d+)$/gm)) got.push(Number(m[1]))
      done()
    },
  }) as unknown as ServerResponse
  const live: number[] = []
  void hub.open(sink(live), 0, { types: null, machineId: null })
  await sleep(50)

  add(1, 2, 4)
  await sleep(100)
  assert.deepEqual(live, [1, 2], 'not past the hole at 3')
  // A stream reading the table from behind stops at the hole too.
  const behind: number[] = []
  void hub.open(sink(behind), 1, { types: null, machineId: null })
  await sleep(100)
  assert.deepEqual(behind, [2])
  add(3)
  await sleep(100)
  assert.deepEqual(live, [1, 2, 3, 4])
  assert.deepEqual(behind, [2, 3, 4])

  // 5 never comes (rolled back): 6 waits out the grace, then comes without another event to wake the hub.
  const from = Date.now()
  add(6)
  await sleep(150)
  assert.deepEqual(live, [1, 2, 3, 4])
  while (live.length < 5 && Date.now() - from < 3_000) await sleep(10)
  assert.deepEqual(live, [1, 2, 3, 4, 6])
  assert.ok(Date.now() - from >= 380, `given up after ${Date.now() - from} ms`)
  // A hole given up on stays given up: 5 committing now is history for streams that resume from before it.
  add(5, 7)
  await sleep(100)
  assert.deepEqual(live, [1, 2, 3, 4, 6, 7])
  assert.deepEqual(behind, [2, 3, 4, 6, 7])
})
