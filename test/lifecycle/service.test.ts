import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createEventBus, type RackbootEvent } from '../../src/events/bus.js'
import { eachBackend, inventoryBackends, skipped, type Backend } from '../support/backends.js'
import { attachTimeline, createLifecycle, TRANSITIONS } from '../../src/lifecycle/index.js'
import { silentLogger } from '../../src/log.js'
import { isRackbootError } from '../../src/errors.js'

const backends = inventoryBackends()


async function setup(backend: Backend) {
  const inventory = await backend.open()
  const bus = createEventBus()
  const seen: RackbootEvent[] = []
  bus.subscribe((e) => seen.push(e))
  let now = 1_000
  const clock = { now: () => now }
  const log = silentLogger()
  const timeline = attachTimeline({ inventory, bus, log, limit: 5 })
  const lifecycle = createLifecycle({ inventory, bus, log, clock })
  return { inventory, bus, seen, lifecycle, timeline, tick: (ms: number) => (now += ms) }
}

eachBackend('identify finds by MAC, then uuid, then serial, and creates an unknown machine as new', async (t, backend) => {
  const { inventory, lifecycle, seen } = await setup(backend)
  t.after(() => inventory.close())
  const a = await lifecycle.identify({ mac: '52:54:00:1A:B0:01', uuid: '8c3f5a7e-1b2d-4c6e-9f01-23456789abcd', serial: 'LAB-1', arch: 'amd64' }, 'ipxe')
  assert.equal(a.created, true)
  assert.equal(a.machine.state, 'new')
  assert.deepEqual(a.machine.nics, [{ mac: '52:54:00:1a:b0:01', name: null, boot: true }])
  assert.equal((await lifecycle.identify({ mac: '52:54:00:1a:b0:01' }, 'dhcp')).machine.id, a.machine.id)
  assert.equal((await lifecycle.identify({ mac: '02:00:00:00:00:09', uuid: '8C3F5A7E-1B2D-4C6E-9F01-23456789ABCD' }, 'ipxe')).machine.id, a.machine.id)
  assert.equal((await lifecycle.identify({ serial: 'LAB-1' }, 'ipxe')).machine.id, a.machine.id)
  assert.equal(await inventory.machines.count(), 1)
  assert.deepEqual(seen.map((e) => e.type), ['machine.created'])
})

eachBackend('concurrent first sightings of one machine create it once', async (t, backend) => {
  const { inventory, lifecycle } = await setup(backend)
  t.after(() => inventory.close())
  const results = await Promise.all(Array.from({ length: 8 }, () => lifecycle.identify({ mac: '02:00:00:00:00:42' }, 'dhcp')))
  assert.equal(new Set(results.map((r) => r.machine.id)).size, 1)
  assert.equal(results.filter((r) => r.created).length, 1)
  assert.equal(await inventory.machines.count(), 1)
})

eachBackend('transitions follow the table, are recorded with their cause, and refuse the rest', async (t, backend) => {
  const { inventory, lifecycle, seen, tick } = await setup(backend)
  t.after(() => inventory.close())
  const { machine } = await lifecycle.identify({ mac: '02:00:00:00:00:01' }, 'dhcp')
  await assert.rejects(lifecycle.accept(machine.id, 'tech'), (e) => isRackbootError(e, 'RB_ERR_INVALID_TRANSITION'))
  tick(10)
  await lifecycle.transition(machine.id, 'discovered', 'agent reported')
  const ready = await lifecycle.accept(machine.id, 'tech accepted')
  assert.equal(ready.state, 'ready')
  assert.equal(ready.stateChangedAt, 1_010)
  await assert.rejects(lifecycle.transition(machine.id, 'installed', 'guess'), (e) => isRackbootError(e, 'RB_ERR_INVALID_TRANSITION'))
  const m = await lifecycle.setMaintenance(machine.id, true, 'disk swap')
  assert.equal(m.state, 'maintenance')
  assert.equal((await lifecycle.setMaintenance(machine.id, false, 'done')).state, 'new', 'no hardware reported yet: back to new')
  const states = seen.filter((e) => e.type === 'machine.state').map((e) => `${e.data.from}>${e.data.to}:${e.data.cause}`)
  assert.deepEqual(states, ['new>discovered:agent reported', 'discovered>ready:tech accepted', 'ready>maintenance:disk swap', 'maintenance>new:done'])
  for (const [from, tos] of Object.entries(TRANSITIONS)) {
    assert.ok(!tos.includes(from as never), `${from} lists itself`)
  }
})

eachBackend('a lost race on a transition is a conflict, not a silent overwrite', async (t, backend) => {
  const { inventory, lifecycle } = await setup(backend)
  t.after(() => inventory.close())
  const { machine } = await lifecycle.identify({ mac: '02:00:00:00:00:02' }, 'dhcp')
  await lifecycle.transition(machine.id, 'discovered', 'agent')
  const results = await Promise.allSettled(Array.from({ length: 5 }, () => lifecycle.transition(machine.id, 'ready', 'tech', { from: 'discovered' })))
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1)
  for (const r of results) if (r.status === 'rejected') assert.ok(isRackbootError(r.reason))
})

eachBackend('the timeline keeps every event in order and trims per machine', async (t, backend) => {
  const { inventory, lifecycle, timeline } = await setup(backend)
  t.after(() => inventory.close())
  const { machine } = await lifecycle.identify({ mac: '02:00:00:00:00:03' }, 'dhcp')
  for (let i = 0; i < 60; i++) lifecycle.record(machine.id, 'boot.dhcp', `discover ${i}`, { i })
  await timeline.flush()
  const events = await inventory.events.list({ machineId: machine.id })
  assert.ok(events.length < 61 && events.length <= 5 + 50, `trimmed to the limit plus at most one batch, got ${events.length}`)
  assert.equal(events.at(-1)!.message, 'discover 59')
  const seqs = events.map((e) => e.seq)
  assert.deepEqual([...seqs].sort((a, b) => a - b), seqs)
})

test('the timeline writes the events of a turn in one transaction; one it cannot store costs the others nothing', async (t) => {
  const backend = backends.find((b) => b.name === 'sqlite')!
  const real = await backend.open()
  t.after(() => real.close())
  let transactions = 0
  // An event the database refuses (a stand-in for a row that fails a constraint), inside and outside transactions.
  const refusing = (events: typeof real.events): typeof real.events => ({ ...events, append: (e) => (e.message === 'bad' ? Promise.reject(new Error('refused')) : events.append(e)) })
  const inventory = {
    ...real,
    events: refusing(real.events),
    transaction: ((fn) => {
      transactions++
      return real.transaction((tx) => fn({ ...tx, events: refusing(tx.events) }))
    }) as typeof real.transaction,
  }
  const bus = createEventBus()
  const timeline = attachTimeline({ inventory, bus, log: silentLogger() })
  const publish = (message: string) => bus.publish({ type: 'boot.dhcp', machineId: null, at: 1, message, data: {} })
  for (let i = 0; i < 30; i++) publish(`e${i}`)
  await timeline.flush()
  assert.equal(transactions, 1, '30 events of one turn were not written together')
  publish('a')
  publish('bad')
  publish('b')
  await timeline.flush()
  const messages = (await real.events.list({})).map((e) => e.message)
  assert.deepEqual(messages, [...Array.from({ length: 30 }, (_, i) => `e${i}`), 'a', 'b'])
})
