// After a network boot that needed it, the override the BMC kept for every boot is cleared and virtual media is
// ejected, once; a failure leaves the mark for the next boot. Driven by the event bus as `serve` wires it.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createEventBus } from '../../src/events/bus.js'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { attachTimeline, createAfterBoot, createLifecycle } from '../../src/lifecycle/index.js'
import { silentLogger } from '../../src/log.js'

test('after the boot script: the kept override is cleared, virtual media ejected, the mark removed; a failure keeps it', async () => {
  const inventory = await openSqliteInventory({ file: ':memory:' })
  const log = silentLogger()
  const bus = createEventBus()
  const timeline = attachTimeline({ inventory, bus, log })
  const lifecycle = createLifecycle({ inventory, bus, log })
  const now = Date.now()
  const a = await inventory.machines.create({ name: 'a', serial: 'A' }, now)
  const b = await inventory.machines.create({ name: 'b', serial: 'B' }, now)
  const c = await inventory.machines.create({ name: 'c', serial: 'C' }, now)
  await inventory.bmcs.put(a.id, { type: 'redfish', address: '198.18.5.1', username: 'root', password: 'x' })
  await inventory.bmcs.put(b.id, { type: 'redfish', address: '198.18.5.2', username: 'root', password: 'x', bootMethod: 'virtual-media' })
  await inventory.bmcs.put(c.id, { type: 'redfish', address: '198.18.5.3', username: 'root', password: 'x' })
  for (const m of [a, b]) await inventory.bmcs.setClearOverrideAfterBoot(m.id, true)
  const calls: string[] = []
  let failEject = true
  const afterBoot = createAfterBoot({
    inventory, lifecycle, bus, log,
    power: {
      async setBootDevice(id, o) { calls.push(`${id}:${o.device}`) },
      async ejectMedia(id) {
        calls.push(`${id}:eject`)
        if (failEject) throw new Error('BMC 198.18.5.2 refused EjectMedia: HTTP 500')
      },
    },
  })
  afterBoot.start()
  for (const m of [a, b, c]) lifecycle.record(m.id, 'boot.script', 'boot script: agent', {})
  await afterBoot.stop()
  assert.deepEqual(calls.sort(), [`${a.id}:none`, `${b.id}:eject`, `${b.id}:none`].sort(), 'c had no mark: nothing done')
  assert.equal((await inventory.bmcs.get(a.id))!.clearOverrideAfterBoot, false)
  assert.equal((await inventory.bmcs.get(b.id))!.clearOverrideAfterBoot, true, 'the eject failed: tried again at the next boot')

  failEject = false
  calls.length = 0
  afterBoot.start()
  lifecycle.record(a.id, 'boot.script', 'boot script: agent', {})
  lifecycle.record(b.id, 'boot.script', 'boot script: agent', {})
  await afterBoot.stop()
  assert.deepEqual(calls.sort(), [`${b.id}:eject`, `${b.id}:none`].sort(), 'a was tidied already')
  assert.equal((await inventory.bmcs.get(b.id))!.clearOverrideAfterBoot, false)
  await timeline.flush()
  const events = await inventory.events.list({ machineId: b.id, types: ['power'] })
  assert.deepEqual(events.map((e) => e.message).sort(), [
    'after the network boot: boot override cleared; eject failed: BMC 198.18.5.2 refused EjectMedia: HTTP 500',
    'after the network boot: virtual media ejected; boot override cleared',
  ].sort())
  timeline.detach()
  await inventory.close()
})
