// The power routes against a Redfish BMC (the stub, through the real driver and manager): verified results, and a
// BMC's failures as 502/504 with its address and message (was 503 "internal error").
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { silentLogger } from '../../src/log.js'
import { createPowerManager } from '../../src/power/index.js'
import { startRedfishServer, type RedfishQuirks } from '../power/fixtures/redfish-server.js'
import { apiSetup } from './support/app.js'

async function rig(t: { after(fn: () => unknown): void }, quirks: RedfishQuirks = {}, password = 'password') {
  const server = await startRedfishServer({ quirks })
  t.after(() => server.close())
  const s = await apiSetup({
    powerManager: (inventory) => createPowerManager({
      bmcs: inventory.bmcs, log: silentLogger(),
      settings: { timeoutMs: 1_500, attempts: 2, backoffBaseMs: 50, minRebootIntervalMs: 0, verifyTimeoutMs: 3_000, verifyIntervalMs: 200, sessionIdleMs: 0 },
    }),
  })
  t.after(() => s.close())
  const m = await s.inventory.machines.create({ name: 'rf-1', serial: 'RF1', firmware: 'uefi' }, Date.now())
  await s.inventory.bmcs.put(m.id, { type: 'redfish', address: server.url, username: 'admin', password })
  const post = (body: Record<string, unknown>) => s.app.inject({ method: 'POST', url: `/api/v1/machines/${m.id}/power`, headers: s.auth('provision'), payload: body })
  const get = () => s.app.inject({ method: 'GET', url: `/api/v1/machines/${m.id}/power`, headers: s.auth('read') })
  return { server, s, m, post, get }
}

test('power actions answer once the BMC shows the result; next boot disk and clear-override are read back', async (t) => {
  const { server, s, m, post, get } = await rig(t)
  const on = await post({ action: 'on' })
  assert.equal(on.statusCode, 200, on.body)
  assert.deepEqual({ ...(on.json() as object), result: undefined }, { machineId: m.id, action: 'on', state: 'on', verified: true, note: null, bootOverride: null, result: undefined })
  assert.equal(server.state.power, 'On')

  const pxe = await post({ action: 'pxe' })
  assert.equal(pxe.statusCode, 200, pxe.body)
  assert.match(pxe.json().result, /next boot pxe uefi verified \(pxe\); was on, power cycled/)
  assert.deepEqual(pxe.json().bootOverride.verified, { device: true, mode: true, persistent: true })

  const disk = await post({ action: 'disk', persistent: true })
  assert.equal(disk.statusCode, 200, disk.body)
  assert.equal(server.state.boot.BootSourceOverrideTarget, 'Hdd')
  assert.equal(server.state.boot.BootSourceOverrideEnabled, 'Continuous')
  const clear = await post({ action: 'clear-override' })
  assert.equal(clear.statusCode, 200, clear.body)
  assert.equal(server.state.boot.BootSourceOverrideEnabled, 'Disabled')
  const view = await get()
  assert.equal(view.statusCode, 200)
  assert.equal(view.json().state, 'on')
  // The inventory keeps the last state read, for the machine views and other instances.
  assert.equal((await s.inventory.bmcs.get(m.id))!.power?.state, 'on')
})

test('a BMC that refuses is a 502 naming it and quoting it; one that does not answer, a 504; never "internal error"', async (t) => {
  const bad = await rig(t, {}, 'wrong-password')
  const refused = await bad.post({ action: 'on' })
  assert.equal(refused.statusCode, 502, refused.body)
  assert.equal(refused.json().error, 'RB_ERR_BMC')
  assert.match(refused.json().message, new RegExp(`power on on rf-1: .*127\\.0\\.0\\.1:${bad.server.port}.*(401|credentials|password)`, 'i'))
  assert.equal(refused.json().details.kind, 'auth')
  assert.ok(!refused.body.includes('wrong-password'))
  const read = await bad.get()
  assert.equal(read.statusCode, 502)
  assert.equal(read.json().details.kind, 'auth')

  const hung = await rig(t, { loseResetAnswer: 'hang' })
  hung.server.state.power = 'On'
  const cycle = await hung.post({ action: 'cycle' })
  assert.equal(cycle.statusCode, 504, cycle.body)
  assert.equal(cycle.json().details.kind, 'unknown-outcome')
  assert.match(cycle.json().message, /whether it rebooted is unknown; not re-sent/)
  assert.equal(hung.server.state.resetsCarriedOut, 1)
})
