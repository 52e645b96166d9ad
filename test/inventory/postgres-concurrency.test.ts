// Several rackboot instances on one PostgreSQL database (issue 16): what SQLite got from its single connection, the
// PostgreSQL backend must give across instances and connections. Two PostgresInventory instances on the same database
// (two pools, as two processes would have) allocate through the lifecycle's allocator at once: no machine goes to two
// allocations, every machine there is gets allocated, and the rest are refused as insufficient, never as a lost race
// or an exhausted retry; two instances racing with one idempotency key make one allocation; the event log is read in
// the order it commits. PostgreSQL only: skipped (loudly) where no private cluster can be started.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sql } from 'kysely'
import { createEventBus } from '../../src/events/bus.js'
import { isRackbootError, type RackbootError } from '../../src/errors.js'
import { importInventory, loadInventoryFiles, type ImportReport, type PostgresInventory } from '../../src/inventory/index.js'
import { createAllocator, createLifecycle, type AllocationResult, type Allocator } from '../../src/lifecycle/index.js'
import { silentLogger } from '../../src/log.js'
import { seedMachines } from '../api/support/seed.js'
import { inventoryBackends, skipped, type Backend } from '../support/backends.js'

const postgres = inventoryBackends().find((b) => b.name === 'postgres')!

type Instance = { inventory: PostgresInventory & { url?: string }; allocator: Allocator }

/** `count` rackboot instances (each its own pool and allocator) on one fresh database, `machines` ready machines in it. */
async function instances(t: TestContext, backend: Backend, count: number, machines: number): Promise<Instance[]> {
  const first = (await backend.open()) as PostgresInventory & { url?: string }
  const all = [first]
  for (let i = 1; i < count; i++) all.push((await backend.open({ url: first.url! })) as PostgresInventory & { url?: string })
  t.after(() => Promise.all(all.map((inv) => inv.close())))
  await seedMachines(first, { count: machines })
  await first.profiles.put({ name: 'w', description: null, talosVersion: 'v1.13.9', arch: 'amd64', schematic: null, kernelArgs: [], baseConfig: null, patches: [], managedBy: null }, 1)
  await first.classes.put({ name: 'all', description: null, selectors: [], profile: 'w', patches: [], managedBy: null }, 1)
  return all.map((inventory) => {
    const log = silentLogger()
    const lifecycle = createLifecycle({ inventory, bus: createEventBus(), log })
    return { inventory, allocator: createAllocator({ inventory, lifecycle, log }) }
  })
}

type Outcome = { ok: true; result: AllocationResult } | { ok: false; error: RackbootError }

async function attempt(p: Promise<AllocationResult>): Promise<Outcome> {
  try {
    return { ok: true, result: await p }
  } catch (err) {
    if (!isRackbootError(err)) throw err
    return { ok: false, error: err }
  }
}

/** Machines per state, straight from the table. */
async function states(inv: PostgresInventory): Promise<Record<string, number>> {
  const rows = await sql<{ state: string; n: number }>`select state, count(*)::int as n from machines group by state`.execute(inv.db)
  return Object.fromEntries(rows.rows.map((r) => [r.state, r.n]))
}

test('two instances, 20 concurrent allocations of 2 machines each, 50 ready machines: each taken once, all 50 allocated, the rest insufficient', async (t) => {
  if (await skipped(t, postgres)) return
  const [a, b] = await instances(t, postgres, 2, 50)
  const calls = [a!, b!].flatMap((inst, i) => Array.from({ length: 20 }, (_, j) =>
    attempt(inst.allocator.allocate({ class: 'all', count: 2 }, `racer ${i}.${j}`))))
  const outcomes = await Promise.all(calls)
  const won = outcomes.flatMap((o) => (o.ok ? [o.result] : []))
  const lost = outcomes.flatMap((o) => (o.ok ? [] : [o.error]))
  const taken = won.flatMap((w) => w.allocation.machines.map((m) => m.id))
  assert.equal(new Set(taken).size, taken.length, 'no machine went to two allocations')
  assert.deepEqual(lost.filter((e) => (e.details as { reason?: string } | undefined)?.reason !== 'insufficient-machines').map((e) => `${e.code} ${e.statusCode}: ${e.message}`), [],
    'every refusal says there were not enough machines (no lost race, no exhausted retry)')
  assert.equal(won.length, 25)
  assert.equal(lost.length, 15)
  assert.equal(new Set(taken).size, 50, 'every machine was allocated')
  // The database agrees: every machine provisioning, one open allocation row each, 25 allocations.
  assert.deepEqual(await states(a!.inventory), { provisioning: 50 })
  const open = await sql<{ machine_id: string; n: number }>`select machine_id, count(*)::int as n from allocation_machines where released_at is null group by machine_id`.execute(a!.inventory.db)
  assert.equal(open.rows.length, 50)
  assert.ok(open.rows.every((r) => r.n === 1), 'one current allocation per machine')
  assert.equal((await a!.inventory.allocations.list({ limit: 1000 })).items.length, 25)
  for (const w of won) {
    const stored = await b!.inventory.allocations.byId(w.allocation.id)
    assert.deepEqual(stored?.machines.map((m) => m.id), w.allocation.machines.map((m) => m.id))
  }
  const retries = [a!, b!].map((i) => i.inventory.retryStats())
  t.diagnostic(`serialization retries: ${JSON.stringify(retries)}`)
  assert.ok(retries.every((r) => r.failures === 0))
})

test('16 callers over two instances allocating until refused, 40 ready machines: each taken once, all 40 allocated, every caller ends refused as insufficient', async (t) => {
  if (await skipped(t, postgres)) return
  const [a, b] = await instances(t, postgres, 2, 40)
  // Each caller asks again and again (1 or 2 machines) until it is refused: the last machines are fought over by
  // callers that each skip what the others hold, the case where a refusal must wait to be sure.
  const taken: string[] = []
  const refusals: RackbootError[] = []
  await Promise.all(Array.from({ length: 16 }, async (_, caller) => {
    const inst = caller % 2 === 0 ? a! : b!
    for (;;) {
      const o = await attempt(inst.allocator.allocate({ class: 'all', count: 1 + (caller % 4 === 3 ? 1 : 0) }, `caller ${caller}`))
      if (!o.ok) {
        refusals.push(o.error)
        return
      }
      taken.push(...o.result.allocation.machines.map((m) => m.id))
    }
  }))
  assert.equal(new Set(taken).size, taken.length, 'no machine went to two allocations')
  assert.equal(taken.length, 40, 'every machine was allocated')
  assert.deepEqual(refusals.filter((e) => (e.details as { reason?: string } | undefined)?.reason !== 'insufficient-machines').map((e) => `${e.code} ${e.statusCode}: ${e.message}`), [],
    'every refusal says there were not enough machines (no lost race, no exhausted retry)')
  assert.equal(refusals.length, 16)
  assert.deepEqual(await states(a!.inventory), { provisioning: 40 })
  const retries = [a!, b!].map((i) => i.inventory.retryStats())
  t.diagnostic(`retries: ${JSON.stringify(retries)}`)
  assert.ok(retries.every((r) => r.failures === 0))
})

test('a ready machine another transaction holds is waited for before an allocation is refused, and counted only if it is still ready', async (t) => {
  if (await skipped(t, postgres)) return
  const [a] = await instances(t, postgres, 1, 2)
  const ids = (await a!.inventory.machines.list()).items.map((m) => m.id).sort()
  // Someone else (a single statement, another instance's transaction) holds the second machine: a first attempt skips
  // it and finds one machine of the two asked for. That is no answer yet: the holder may let it go.
  const holdSecond = async () => {
    const c = await a!.inventory.pool.connect()
    await c.query('begin')
    await c.query('select id from machines where id = $1 for update', [ids[1]])
    return c
  }
  let holder = await holdSecond()
  let call = attempt(a!.allocator.allocate({ class: 'all', count: 2 }, 'needs both'))
  await new Promise((resolve) => setTimeout(resolve, 300))
  await holder.query('rollback')
  holder.release()
  let o = await call
  assert.ok(o.ok, `allocated once the holder let go (${o.ok ? '' : o.error.message})`)
  assert.deepEqual(o.result.allocation.machines.map((m) => m.id).sort(), ids)
  // Released again; this time the holder takes the machine out of the pool: the allocation is refused as insufficient.
  for (const id of ids) await a!.allocator.release(id, { pxeBoot: false })
  await sql`update machines set state = 'ready'`.execute(a!.inventory.db)
  holder = await holdSecond()
  call = attempt(a!.allocator.allocate({ class: 'all', count: 2 }, 'needs both'))
  await new Promise((resolve) => setTimeout(resolve, 300))
  await holder.query(`update machines set state = 'maintenance' where id = $1`, [ids[1]])
  await holder.query('commit')
  holder.release()
  o = await call
  assert.ok(!o.ok, 'refused')
  assert.equal((o.error.details as { reason?: string }).reason, 'insufficient-machines', o.error.message)
  assert.deepEqual(await states(a!.inventory), { ready: 1, maintenance: 1 })
})

test('allocations run READ COMMITTED with row locks: 16 callers over two instances on 200 ready machines take 16 distinct machines at once, without retries', async (t) => {
  if (await skipped(t, postgres)) return
  const [a, b] = await instances(t, postgres, 2, 200)
  // Every allocation's first statement waits until all 16 are in their transaction: under SERIALIZABLE they would
  // all read the same first ready machines and all but one be aborted and retried; with SKIP LOCKED each takes its own.
  const hold = await a!.inventory.pool.connect()
  await hold.query('begin')
  await hold.query('lock table allocations in share row exclusive mode')
  const calls = Array.from({ length: 16 }, (_, i) => attempt((i % 2 === 0 ? a! : b!).allocator.allocate({ class: 'all', count: 1 }, `caller ${i}`)))
  // Let every caller reach its insert of the allocation row (it waits there for the table lock) before letting go.
  // (Watched from outside the holding transaction: inside one, pg_stat_activity is read once and kept.)
  for (let waited = 0; ; waited += 20) {
    const r = await a!.inventory.pool.query(`select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and query ilike 'insert into "allocations"%'`)
    if (r.rows[0].n === 16 || waited > 20_000) break
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  const isolation = await a!.inventory.pool.query(`select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and query ilike 'insert into "allocations"%'`)
  await hold.query('commit')
  hold.release()
  const outcomes = await Promise.all(calls)
  assert.equal(isolation.rows[0].n, 16, 'all 16 allocations were in flight at once, each holding its machine')
  const taken = outcomes.flatMap((o) => (o.ok ? o.result.allocation.machines.map((m) => m.id) : []))
  assert.deepEqual(outcomes.filter((o) => !o.ok).map((o) => (o as { error: RackbootError }).error.message), [])
  assert.equal(new Set(taken).size, 16, 'sixteen distinct machines')
  assert.deepEqual([a!, b!].map((i) => i.inventory.retryStats()), [{ retries: 0, failures: 0 }, { retries: 0, failures: 0 }], 'no transaction was aborted and retried')
})

test('two instances racing with one idempotency key: one allocation, the other call replays it', async (t) => {
  if (await skipped(t, postgres)) return
  const [a, b] = await instances(t, postgres, 2, 40)
  // Ten keys, each sent at once by both instances (twice each): per key one allocation of 2 machines.
  const keys = Array.from({ length: 10 }, (_, i) => `capi-set-${i}`)
  const outcomes = await Promise.all(keys.flatMap((key) => [a!, b!, a!, b!].map((inst) =>
    attempt(inst.allocator.allocate({ class: 'all', count: 2, idempotencyKey: key })).then((o) => ({ key, o })))))
  const failed = outcomes.filter(({ o }) => !o.ok).map(({ key, o }) => `${key}: ${(o as { error: RackbootError }).error.message}`)
  assert.deepEqual(failed, [], 'a call that raced with the same key replays, it is not refused')
  for (const key of keys) {
    const mine = outcomes.filter((x) => x.key === key).map(({ o }) => (o as { result: AllocationResult }).result)
    assert.equal(new Set(mine.map((r) => r.allocation.id)).size, 1, `${key}: one allocation`)
    assert.equal(mine.filter((r) => !r.replayed).length, 1, `${key}: made once, replayed by the other calls`)
  }
  assert.deepEqual(await states(a!.inventory), { provisioning: 20, ready: 20 })
  assert.equal((await a!.inventory.allocations.list({ limit: 1000 })).items.length, 10)
})

test('two instances importing the same files at once: every import succeeds, the machines are made once', async (t) => {
  if (await skipped(t, postgres)) return
  const [a, b] = await instances(t, postgres, 2, 0)
  const dir = mkdtempSync(join(tmpdir(), 'rb-pg-import-'))
  writeFileSync(join(dir, 'machines.yaml'), `machines:\n${Array.from({ length: 20 }, (_, i) =>
    `  - name: imp-${i}\n    serial: IMP${i}\n    labels: { zone: z${i % 3} }\n    nics:\n      - mac: 02:00:00:aa:00:${i.toString(16).padStart(2, '0')}\n        boot: true\n`).join('')}`)
  const files = loadInventoryFiles(dir)
  // Each import reads the machines, then creates the missing ones: two at once conflict (the loser's insert fails
  // inside repository code that wraps the driver's error), and the loser is retried, finding them made.
  const reports = await Promise.all([a!, b!, a!, b!].map((inst) => importInventory(inst.inventory, files, { now: 1 })))
  const created = (r: ImportReport) => r.changes.filter((c) => c.action === 'created').length
  assert.deepEqual(reports.map(created).sort(), [0, 0, 0, 20], 'one import made the machines, the others found them')
  assert.equal(await a!.inventory.machines.count(), 20)
  assert.equal(await b!.inventory.machines.count({ labels: { zone: 'z1' } }), 7)
})

test('boot tokens issued for one machine by two instances at once: one stays good, every other is void', async (t) => {
  if (await skipped(t, postgres)) return
  const [a, b] = await instances(t, postgres, 2, 1)
  const [machine] = (await a!.inventory.machines.list()).items
  const issued = await Promise.all([a!, b!].flatMap((inst) => Array.from({ length: 10 }, () =>
    inst.inventory.bootTokens.issue({ machineId: machine!.id, purpose: 'config', clientIp: '198.18.0.9', ttlMs: 60_000 }, Date.now()))))
  const live = []
  for (const secret of issued) if (await a!.inventory.bootTokens.verify(secret, 'config', Date.now())) live.push(secret)
  assert.equal(live.length, 1, 'a token means one boot: every earlier one is void')
})

test('events appended by two instances at once are read in commit order: a reader following `since` misses none', async (t) => {
  if (await skipped(t, postgres)) return
  const [a, b] = await instances(t, postgres, 2, 0)
  // A reader that, like the API's event stream, reads what follows the newest seq it has seen.
  let head = 0
  const seen: number[] = []
  let writing = true
  const reader = (async () => {
    while (writing) {
      const rows = await a!.inventory.events.list({ since: head, limit: 1000 })
      for (const e of rows) seen.push(e.seq)
      if (rows.length > 0) head = rows.at(-1)!.seq
      await new Promise((r) => setImmediate(r))
    }
  })()
  // Each instance appends from several callers at once (its pool's connections), as its protocol servers and API do.
  const writers = [a!, b!].flatMap((inst, i) => Array.from({ length: 8 }, async (_, w) => {
    for (let n = 0; n < 60; n++) await inst.inventory.events.append({ machineId: null, type: 'boot.dhcp', at: Date.now(), message: `${i}.${w}.${n}`, data: {} })
  }))
  await Promise.all(writers)
  writing = false
  await reader
  for (let rows = await a!.inventory.events.list({ since: head, limit: 1000 }); rows.length > 0; rows = await a!.inventory.events.list({ since: head, limit: 1000 })) {
    for (const e of rows) seen.push(e.seq)
    head = rows.at(-1)!.seq
  }
  const all = (await a!.inventory.events.list({ limit: 10_000 })).map((e) => e.seq)
  assert.equal(all.length, 2 * 8 * 60)
  const missed = all.filter((s) => !seen.includes(s))
  assert.deepEqual(missed, [], `the reader missed ${missed.length} events that committed after a later one`)
  assert.deepEqual(seen, all)
})
