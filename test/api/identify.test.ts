// POST /machines/{id}/identify: the chassis identify light through the power manager (a fake one here: the
// drivers' identify is tested with them), with the power routes' BMC error mapping.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PowerError, type PowerManager } from '../../src/power/index.js'
import { apiSetup } from './support/app.js'

function fakePower() {
  const calls: { machineId: string; on: boolean; seconds: number | undefined }[] = []
  let fail: PowerError | null = null
  const manager = {
    stop: async () => {},
    identify: async (machineId: string, on: boolean, seconds?: number) => {
      calls.push({ machineId, on, seconds })
      if (fail) throw fail
    },
  } as unknown as PowerManager
  return { manager, calls, failWith: (e: PowerError | null) => { fail = e } }
}

async function rig(t: { after(fn: () => unknown): void }) {
  const power = fakePower()
  const s = await apiSetup({ powerManager: () => power.manager })
  t.after(() => s.close())
  const ipmi = await s.inventory.machines.create({ name: 'ipmi-1', serial: 'IP1' }, Date.now())
  await s.inventory.bmcs.put(ipmi.id, { type: 'ipmi', address: '198.18.9.1', username: 'ADMIN', password: 'x' })
  const redfish = await s.inventory.machines.create({ name: 'rf-1', serial: 'RF1' }, Date.now())
  await s.inventory.bmcs.put(redfish.id, { type: 'redfish', address: 'https://198.18.9.2', username: 'root', password: 'x' })
  const bare = await s.inventory.machines.create({ name: 'bare-1', serial: 'B1' }, Date.now())
  const post = (ref: string, payload?: object, scope: 'read' | 'provision' | 'admin' = 'provision') =>
    s.app.inject({ method: 'POST', url: `/api/v1/machines/${ref}/identify`, headers: s.auth(scope), ...(payload ? { payload } : {}) })
  return { s, power, ipmi, redfish, bare, post }
}

test('on (no body: until turned off), on for N seconds, off; by name or serial; on the timeline', async (t) => {
  const { s, power, ipmi, post } = await rig(t)
  let r = await post('ipmi-1')
  assert.equal(r.statusCode, 200, r.body)
  assert.deepEqual(r.json(), { machineId: ipmi.id, on: true, seconds: null, note: null, result: 'identify light on until turned off (ipmi 198.18.9.1)' })
  r = await post('IP1', { seconds: 30 })
  assert.equal(r.statusCode, 200, r.body)
  assert.equal(r.json().result, 'identify light on for 30 s (ipmi 198.18.9.1)')
  r = await post('ipmi-1', { on: false, seconds: 30 })
  assert.deepEqual({ on: r.json().on, seconds: r.json().seconds }, { on: false, seconds: null })
  assert.deepEqual(power.calls, [
    { machineId: ipmi.id, on: true, seconds: undefined },
    { machineId: ipmi.id, on: true, seconds: 30 },
    { machineId: ipmi.id, on: false, seconds: undefined },
  ])
  await s.timeline.flush()
  const events = await s.inventory.events.list({ machineId: ipmi.id, types: ['power'] })
  assert.deepEqual(events.map((e) => e.message), ['identify on requested by token capi', 'identify on requested by token capi', 'identify off requested by token capi'])
})

test('what each BMC type can do: IPMI caps at 255 s, Redfish has no timer; both said in a note', async (t) => {
  const { power, redfish, post } = await rig(t)
  let r = await post('ipmi-1', { seconds: 600 })
  assert.equal(r.json().seconds, 255)
  assert.match(r.json().note, /at most 255 s: asked for 600 s/)
  r = await post('rf-1', { seconds: 60 })
  assert.equal(r.statusCode, 200)
  assert.equal(r.json().seconds, null)
  assert.match(r.json().note, /Redfish has no identify timer/)
  assert.deepEqual(power.calls.map((c) => c.seconds), [255, undefined])
  assert.equal(power.calls[1]!.machineId, redfish.id)
})

test('refusals: read scope 403, bad bodies 400, no BMC 409, unknown machine 404; BMC failures 502/504/501', async (t) => {
  const { power, post } = await rig(t)
  assert.equal((await post('ipmi-1', {}, 'read')).statusCode, 403)
  for (const bad of [{ seconds: 0 }, { seconds: 3601 }, { seconds: 1.5 }, { on: 'yes' }, { blink: true }]) {
    const r = await post('ipmi-1', bad)
    assert.equal(r.statusCode, 400, JSON.stringify(bad))
  }
  const bare = await post('bare-1')
  assert.equal(bare.statusCode, 409)
  assert.equal(bare.json().error, 'RB_ERR_CONFLICT')
  assert.match(bare.json().message, /machine bare-1 has no BMC in the inventory/)
  const none = await post('nosuch')
  assert.equal(none.statusCode, 404)
  assert.equal(none.json().error, 'RB_ERR_MACHINE_NOT_FOUND')
  assert.equal(power.calls.length, 0, 'none of these reached the BMC')

  for (const [kind, status] of [['auth', 502], ['timeout', 504], ['unsupported', 501], ['busy', 503]] as const) {
    power.failWith(new PowerError(kind, `BMC 198.18.9.1: ${kind} happened`))
    const r = await post('ipmi-1')
    assert.equal(r.statusCode, status, kind)
    assert.equal(r.json().error, 'RB_ERR_BMC')
    assert.equal(r.json().details.kind, kind)
    assert.equal(r.json().message, `identify on on ipmi-1: BMC 198.18.9.1: ${kind} happened`)
  }
  power.failWith(new PowerError('no-bmc', 'no credentials for this BMC'))
  const noCreds = await post('ipmi-1')
  assert.equal(noCreds.statusCode, 409)
  assert.match(noCreds.json().message, /ipmi-1: no credentials/)
})
