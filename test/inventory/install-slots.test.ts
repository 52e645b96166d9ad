// Install slots (issue 16): the database decides who gets the last of provisioning.maxConcurrent / maxPerRack. On
// both backends: the bounds overall and per rack, a re-claim, a slot whose machine left provisioning, the lifecycle
// giving slots up. On PostgreSQL: two inventories (two pools, as two instances) claiming at once never get more
// slots than the bound.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { sql } from 'kysely'
import { createEventBus } from '../../src/events/bus.js'
import type { Inventory, InstallSlotClaim, Machine } from '../../src/inventory/index.js'
import { createLifecycle } from '../../src/lifecycle/index.js'
import { silentLogger } from '../../src/log.js'
import { eachBackend, inventoryBackends, skipped } from '../support/backends.js'

const NOW = 1_800_000_000_000
let made = 0

async function provisioning(inv: Inventory, rack: string | null = null): Promise<Machine> {
  const n = ++made
  const m = await inv.machines.create({ name: `slot-${n}`, rack, nics: [{ mac: `02:00:00:03:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 0xff).toString(16).padStart(2, '0')}`, name: null, boot: true }], state: 'ready' }, NOW)
  assert.ok(await inv.machines.setState(m.id, 'ready', 'provisioning', NOW))
  return m
}

const claim = (inv: Inventory, m: Machine, overall: number, perRack = 0, holder = 'A') =>
  inv.installSlots!.claim(m.id, m.rack, { overall, perRack }, holder, NOW)

eachBackend('install slots: at most maxConcurrent overall; a machine holding one is ok again, even at the bound', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const ms = [await provisioning(inv), await provisioning(inv), await provisioning(inv)]
  assert.deepEqual(await claim(inv, ms[0]!, 2), { ok: true, installing: 0, rackInstalling: null })
  assert.deepEqual(await claim(inv, ms[1]!, 2), { ok: true, installing: 1, rackInstalling: null })
  assert.deepEqual(await claim(inv, ms[2]!, 2), { ok: false, bound: 'overall', installing: 2, rackInstalling: null })
  assert.deepEqual(await claim(inv, ms[1]!, 2, 0, 'B'), { ok: true, installing: 1, rackInstalling: null }, 'a re-claim is ok')
  const slots = await inv.installSlots!.list()
  const byId = (x: { machineId: string }, y: { machineId: string }) => (x.machineId < y.machineId ? -1 : 1)
  const expected = [ms[0]!, ms[1]!].map((m) => ({ machineId: m.id, rack: null, holder: 'A', takenAt: NOW }))
  assert.deepEqual([...slots].sort(byId), expected.sort(byId))
  // No bound: anyone.
  assert.equal((await claim(inv, ms[2]!, 0)).ok, true)
})

eachBackend('install slots: at most maxPerRack in a rack; other racks and machines without one are not held back by it', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const r1 = [await provisioning(inv, 'r1'), await provisioning(inv, 'r1'), await provisioning(inv, 'r1')]
  const r2 = await provisioning(inv, 'r2')
  const none = await provisioning(inv, null)
  assert.deepEqual(await claim(inv, r1[0]!, 10, 2), { ok: true, installing: 0, rackInstalling: 0 })
  assert.deepEqual(await claim(inv, r1[1]!, 10, 2), { ok: true, installing: 1, rackInstalling: 1 })
  assert.deepEqual(await claim(inv, r1[2]!, 10, 2), { ok: false, bound: 'rack', installing: 2, rackInstalling: 2 })
  assert.deepEqual(await claim(inv, r2, 10, 2), { ok: true, installing: 2, rackInstalling: 0 })
  assert.deepEqual(await claim(inv, none, 10, 2), { ok: true, installing: 3, rackInstalling: null })
  // The overall bound still applies to all of them.
  assert.deepEqual(await claim(inv, r1[2]!, 4, 3), { ok: false, bound: 'overall', installing: 4, rackInstalling: 2 })
})

eachBackend('install slots: a slot whose machine left provisioning no longer counts, and is swept', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const [a, b] = [await provisioning(inv), await provisioning(inv)]
  assert.equal((await claim(inv, a, 1)).ok, true)
  assert.equal((await claim(inv, b, 1)).ok, false)
  // Left provisioning without its slot being released (a crash between the two): the count joins the state.
  assert.ok(await inv.machines.setState(a.id, 'provisioning', 'installed', NOW))
  assert.deepEqual(await inv.installSlots!.list(), [])
  assert.deepEqual(await claim(inv, b, 1), { ok: true, installing: 0, rackInstalling: null })
  assert.deepEqual((await inv.installSlots!.list()).map((s) => s.machineId), [b.id])
  assert.equal(await inv.installSlots!.release(b.id), true)
  assert.equal(await inv.installSlots!.release(b.id), false)
  // Deleting a machine deletes its slot.
  const c = await provisioning(inv)
  assert.equal((await claim(inv, c, 1)).ok, true)
  assert.ok(await inv.machines.delete(c.id))
  assert.equal((await claim(inv, b, 1)).ok, true)
})

eachBackend('install slots: a machine leaving provisioning, or starting a new attempt, gives its slot up (lifecycle)', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const lifecycle = createLifecycle({ inventory: inv, bus: createEventBus(), log: silentLogger(), clock: { now: () => NOW } })
  const rows = async (id: string) => (await sql<{ n: number | string }>`select count(*) as n from install_slots where machine_id = ${id}`.execute(inv.db)).rows[0]!.n
  const done = await provisioning(inv)
  assert.equal((await claim(inv, done, 1)).ok, true)
  await lifecycle.transition(done.id, 'installed', 'test')
  assert.equal(Number(await rows(done.id)), 0, 'released as it left provisioning')
  // A crash between the move out of provisioning and the release leaves the slot behind; a retry (a new attempt)
  // must not inherit it: it is admitted afresh.
  const m = await provisioning(inv)
  assert.equal((await claim(inv, m, 1)).ok, true)
  assert.ok(await inv.machines.setState(m.id, 'provisioning', 'failed', NOW))
  await lifecycle.transition(m.id, 'provisioning', 'test retry')
  assert.deepEqual(await inv.installSlots!.list(), [])
  const other = await provisioning(inv)
  assert.equal((await claim(inv, other, 1)).ok, true, 'the failed attempt holds no slot')
  assert.equal((await claim(inv, m, 1)).ok, false)
})

// Two instances: two inventories over one database, each with its own pool, claiming at once.
for (const backend of inventoryBackends().filter((b) => b.name === 'postgres')) {
  test('install slots: two instances claiming at once never get more than the bound, overall or per rack [postgres]', async (t) => {
    if (await skipped(t, backend)) return
    const first = await backend.open()
    const second = await backend.open({ url: first.url! })
    t.after(async () => {
      await second.close()
      await first.close()
    })
    for (let round = 0; round < 5; round++) {
      const ms: Machine[] = []
      for (let i = 0; i < 20; i++) ms.push(await provisioning(first, i < 10 ? `rack-${round}` : null))
      // Interleaved: machine i asks instance i % 2; all twenty at once.
      const answers: InstallSlotClaim[] = await Promise.all(ms.map((m, i) => claim(i % 2 === 0 ? first : second, m, 3, 0, i % 2 === 0 ? 'A' : 'B')))
      assert.equal(answers.filter((x) => x.ok).length, 3, `round ${round}: ${JSON.stringify(answers)}`)
      assert.equal((await second.installSlots!.list()).length, 3)
      for (const m of ms) assert.ok(await first.machines.setState(m.id, 'provisioning', 'installed', NOW))
    }
    // Per rack: ten machines of one rack, one slot in it, twenty overall.
    const rack: Machine[] = []
    for (let i = 0; i < 10; i++) rack.push(await provisioning(first, 'r-race'))
    const answers = await Promise.all(rack.map((m, i) => claim(i % 2 === 0 ? first : second, m, 20, 1, i % 2 === 0 ? 'A' : 'B')))
    assert.equal(answers.filter((x) => x.ok).length, 1, JSON.stringify(answers))
  })
}
