// Machine references: every /machines/{id}... route takes the id, the name, a MAC (any spelling, colons URL-encoded
// or not), the SMBIOS UUID, or a serial only one machine has; a serial two machines share is a 409 naming both, an
// unknown ref a 404 naming it. Resolved once, after authentication.
import assert from 'node:assert/strict'
import type { PowerManager } from '../../src/power/index.js'
import { apiSetup, eachBackend } from './support/app.js'
import type { Backend } from '../support/backends.js'
import { macFor, seedMachines } from './support/seed.js'

/** A power manager that never reaches a BMC: the routes only need one to be served. */
const idlePower = () => ({
  stop: async () => {},
  identify: async () => {},
  status: async () => 'on',
  getBootDevice: async () => null,
  lastKnown: () => null,
}) as unknown as PowerManager

async function rig(t: { after(fn: () => unknown): void }, backend: Backend) {
  const s = await apiSetup({ backend, powerManager: idlePower })
  t.after(() => s.close())
  const [a, b, c] = await seedMachines(s.inventory, { count: 3, state: 'discovered' })
  await s.inventory.machines.update(a!, { uuid: '8c3f5a7e-1b2d-4c6e-9f01-23456789abcd', serial: 'UNIQUE-1' }, Date.now())
  // Two machines with the same serial, as cheap boards ship them.
  await s.inventory.machines.update(b!, { serial: 'To Be Filled By O.E.M.' }, Date.now())
  await s.inventory.machines.update(c!, { serial: 'To Be Filled By O.E.M.' }, Date.now())
  return { s, a: a!, b: b!, c: c! }
}

eachBackend('GET /machines/{ref}: id, name, MAC in four spellings, UUID any case, a unique serial', async (t, backend) => {
  const { s, a } = await rig(t, backend)
  const mac = macFor(0, 1)
  const refs = [
    a, 'r1-u1-0',
    encodeURIComponent(mac), mac, mac.toUpperCase().replaceAll(':', '-'), mac.replaceAll(':', ''),
    '8C3F5A7E-1B2D-4C6E-9F01-23456789ABCD', 'UNIQUE-1', encodeURIComponent('UNIQUE-1'),
  ]
  for (const ref of refs) {
    const r = await s.app.inject({ url: `/api/v1/machines/${ref}`, headers: s.auth('read') })
    assert.equal(r.statusCode, 200, `${ref}: ${r.body}`)
    assert.equal(r.json().id, a, ref)
  }
})

eachBackend('a serial two machines share is a 409 naming both; an unknown ref a 404 naming it; on every /machines/{id} route', async (t, backend) => {
  const { s, a, b, c } = await rig(t, backend)
  const doc = (await s.app.inject({ url: '/api/v1/openapi.json' })).json()
  const routes: { method: string; path: string }[] = []
  for (const [path, item] of Object.entries<any>(doc.paths)) {
    if (!path.startsWith('/api/v1/machines/{id}')) continue
    for (const method of Object.keys(item)) routes.push({ method: method.toUpperCase(), path })
  }
  assert.ok(routes.length >= 15, `${routes.length} routes`)
  const serial = 'To Be Filled By O.E.M.'
  for (const { method, path } of routes) {
    // A body that passes validation everywhere it is required (the machine is resolved after validation).
    const payload = path.endsWith('/power') ? { action: 'on' } : path.endsWith('/maintenance') ? { on: true }
      : path.endsWith('/bmc') && method !== 'GET' && method !== 'DELETE' ? (method === 'PATCH' ? { port: 623 } : { type: 'ipmi', address: '198.18.1.1' })
      : method === 'PATCH' ? { rack: 'r9' } : method === 'POST' ? {} : undefined
    const req = (ref: string) => s.app.inject({ method: method as 'GET', url: path.replace('{id}', encodeURIComponent(ref)), headers: s.auth('admin'), ...(payload ? { payload } : {}) })
    const two = await req(serial)
    assert.equal(two.statusCode, 409, `${method} ${path}: ${two.body}`)
    assert.equal(two.json().error, 'RB_ERR_CONFLICT')
    assert.deepEqual([...two.json().details.candidates].sort(), [b, c].sort(), `${method} ${path}`)
    assert.match(two.json().message, new RegExp(`serial 'To Be Filled By O\\.E\\.M\\.' belongs to more than one machine \\(.*${b}.*\\)`))
    assert.ok(two.json().message.includes(c), two.json().message)
    const none = await req('SN-NOBODY-HAS')
    assert.equal(none.statusCode, 404, `${method} ${path}: ${none.body}`)
    assert.equal(none.json().error, 'RB_ERR_MACHINE_NOT_FOUND')
    assert.match(none.json().message, /SN-NOBODY-HAS/)
  }
  // Nothing was done to either machine.
  assert.equal((await s.inventory.machines.get(b))!.state, 'discovered')
  assert.equal((await s.inventory.bmcs.get(b)), null)
  assert.ok(await s.inventory.machines.get(a))
})

eachBackend('the ref is resolved after authentication and scope: no token 401, too small a scope 403, whatever the ref', async (t, backend) => {
  const { s } = await rig(t, backend)
  for (const ref of ['r1-u1-0', 'SN-NOBODY-HAS', encodeURIComponent('To Be Filled By O.E.M.')]) {
    assert.equal((await s.app.inject({ url: `/api/v1/machines/${ref}` })).statusCode, 401, ref)
    const patch = await s.app.inject({ method: 'PATCH', url: `/api/v1/machines/${ref}`, headers: s.auth('read'), payload: { rack: 'r1' } })
    assert.equal(patch.statusCode, 403, ref)
  }
})

eachBackend('actions follow the ref: PATCH by MAC, accept by serial, maintenance by UUID, DELETE by name', async (t, backend) => {
  const { s, a } = await rig(t, backend)
  const mac = encodeURIComponent(macFor(0, 0).toUpperCase())
  let r = await s.app.inject({ method: 'PATCH', url: `/api/v1/machines/${mac}`, headers: s.auth('provision'), payload: { rack: 'r77' } })
  assert.equal(r.statusCode, 200, r.body)
  assert.equal(r.json().rack, 'r77')
  r = await s.app.inject({ method: 'POST', url: '/api/v1/machines/UNIQUE-1/accept', headers: s.auth('provision') })
  assert.equal(r.statusCode, 200, r.body)
  assert.equal(r.json().state, 'ready')
  r = await s.app.inject({ method: 'POST', url: '/api/v1/machines/8c3f5a7e-1b2d-4c6e-9f01-23456789abcd/maintenance', headers: s.auth('provision'), payload: { on: true } })
  assert.equal(r.json().state, 'maintenance')
  r = await s.app.inject({ method: 'DELETE', url: '/api/v1/machines/r1-u1-0', headers: s.auth('admin') })
  assert.equal(r.statusCode, 204)
  assert.equal(await s.inventory.machines.get(a), null)
})
