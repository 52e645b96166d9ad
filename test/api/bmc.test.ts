import { test } from 'node:test'
import assert from 'node:assert/strict'
import { TEST_CA_PEM } from '../inventory/helpers.js'
import { apiSetup, type ApiSetup } from './support/app.js'
import { seedMachines } from './support/seed.js'

// A machine's BMC through the API (issue 18): PUT (or POST) sets it whole, PATCH some fields, DELETE removes it,
// adopt takes the address the discovery agent reported. Secrets go in and never come out.

const PASSWORD = 'calvin-Secret9-xyz'
const KG = 'A1B2C3D4E5F60718293A4B5C6D7E8F9012345678'
const FP = '5E:2F:8A:11:9C:40:7D:3B:A2:61:0F:C4:77:18:E9:52:3C:6D:90:AB:14:F7:28:C5:6E:03:D9:81:4A:B6:2E:75'

function client(s: ApiSetup) {
  const bodies: string[] = []
  const call = async (method: 'GET' | 'PUT' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: unknown, scope: 'admin' | 'provision' | 'read' = 'admin') => {
    const r = await s.app.inject({ method, url: `/api/v1${url}`, headers: s.auth(scope), ...(payload !== undefined ? { payload: payload as object } : {}) })
    bodies.push(r.body)
    return r
  }
  return { call, bodies }
}

/** Neither the password nor the K_G (in any spelling) appears in the text. */
function assertNoSecrets(text: string, where: string): void {
  for (const secret of [PASSWORD, KG, KG.toLowerCase(), 'ffeeddcc']) assert.ok(!text.includes(secret), `${where} quotes a secret: ${text.slice(0, 300)}`)
}

test('PUT creates, GET reads without secrets, PATCH changes some fields (null clears), POST replaces, DELETE removes', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  const [id] = await seedMachines(s.inventory, { count: 1 })
  const { call, bodies } = client(s)

  let r = await call('PUT', `/machines/${id}/bmc`, {
    type: 'ipmi', address: '10.30.12.8', port: 6230, username: 'ADMIN', password: PASSWORD, kg: KG,
    cipherSuites: [17, 3], privilege: 'operator', bootVerify: 'device',
  })
  assert.equal(r.statusCode, 201, r.body)
  assert.deepEqual(r.json(), {
    machineId: id, type: 'ipmi', address: '10.30.12.8', port: 6230, username: 'ADMIN', hasPassword: true, hasKg: true,
    insecure: false, fingerprint: null, systemId: null, ca: null, auth: 'auto', cipherSuites: [17, 3], privilege: 'operator',
    bootVerify: 'device', bootMethod: 'pxe', power: null,
  })
  const creds = await s.inventory.bmcs.credentials(id!)
  assert.equal(creds?.password, PASSWORD)
  assert.equal(creds?.kg?.toString('hex'), KG.toLowerCase(), 'K_G stored as given, in hex')
  assert.deepEqual((await call('GET', `/machines/${id}/bmc`, undefined, 'read')).json(), r.json())

  // PATCH: only what is given; the secrets stay.
  r = await call('PATCH', `/machines/${id}/bmc`, { privilege: null, cipherSuites: [3] })
  assert.equal(r.statusCode, 200, r.body)
  assert.deepEqual([r.json().privilege, r.json().cipherSuites, r.json().bootVerify, r.json().port, r.json().hasKg], [null, [3], 'device', 6230, true])
  assert.equal((await s.inventory.bmcs.credentials(id!))?.password, PASSWORD)
  r = await call('PATCH', `/machines/${id}/bmc`, { kg: null })
  assert.equal(r.json().hasKg, false)

  // Switching to Redfish through PATCH drops the IPMI settings; the system path in the address becomes systemId.
  r = await call('PATCH', `/machines/${id}/bmc`, {
    type: 'redfish', address: 'https://10.30.12.7:8443/redfish/v1/Systems/System.Embedded.1', ca: `subject=CN = x\n${TEST_CA_PEM}`,
    fingerprint: FP, auth: 'session', bootMethod: 'virtual-media', port: null,
  })
  assert.equal(r.statusCode, 200, r.body)
  assert.deepEqual(r.json(), {
    machineId: id, type: 'redfish', address: 'https://10.30.12.7:8443', port: null, username: 'ADMIN', hasPassword: true, hasKg: false,
    insecure: false, fingerprint: FP.replaceAll(':', '').toLowerCase(), systemId: 'System.Embedded.1', ca: TEST_CA_PEM, auth: 'session',
    cipherSuites: null, privilege: null, bootVerify: null, bootMethod: 'virtual-media', power: null,
  })
  r = await call('PATCH', `/machines/${id}/bmc`, { ca: null, auth: null })
  assert.deepEqual([r.json().ca, r.json().auth, r.json().systemId], [null, 'auto', 'System.Embedded.1'])

  // POST is PUT: the whole BMC; settings left out go back to their defaults, the password stays.
  r = await call('POST', `/machines/${id}/bmc`, { type: 'redfish', address: '10.30.12.9', username: 'root' })
  assert.equal(r.statusCode, 200, r.body)
  assert.deepEqual([r.json().systemId, r.json().fingerprint, r.json().bootMethod, r.json().hasPassword], [null, null, 'pxe', true])
  r = await call('PATCH', `/machines/${id}/bmc`, { password: null })
  assert.equal(r.json().hasPassword, false)

  // The power state the BMC last read is shown with it.
  await s.inventory.bmcs.recordPower(id!, { state: 'on', checkedAt: Date.parse('2026-01-02T03:04:05Z'), error: null })
  assert.deepEqual((await call('GET', `/machines/${id}/bmc`, undefined, 'read')).json().power, { state: 'on', checkedAt: '2026-01-02T03:04:05.000Z', error: null })

  assert.equal((await call('DELETE', `/machines/${id}/bmc`)).statusCode, 204)
  assert.equal(await s.inventory.bmcs.get(id!), null)
  r = await call('GET', `/machines/${id}/bmc`, undefined, 'read')
  assert.equal(r.statusCode, 404)
  assert.equal(r.json().error, 'RB_ERR_NOT_FOUND')
  assert.equal((await call('DELETE', `/machines/${id}/bmc`)).statusCode, 404)
  assert.equal((await call('PATCH', `/machines/${id}/bmc`, { username: 'x' })).statusCode, 404)
  assert.equal((await call('GET', '/machines/m-nosuch/bmc', undefined, 'read')).statusCode, 404)

  // Each change is one timeline line naming what changed, never a secret.
  await s.timeline.flush()
  const events = (await s.inventory.events.list({ machineId: id })).filter((e) => e.type === 'machine.updated')
  assert.deepEqual(events.map((e) => e.message.replace(/ by token root.*?:/, ':')), [
    'BMC added: ipmi 10.30.12.8',
    'BMC changed: ipmi 10.30.12.8 (cipherSuites, privilege)',
    'BMC changed: ipmi 10.30.12.8 (kg)',
    'BMC changed: redfish https://10.30.12.7:8443 (type, address, port, fingerprint, systemId, ca, auth, cipherSuites, bootVerify, bootMethod)',
    'BMC changed: redfish https://10.30.12.7:8443 (ca, auth)',
    'BMC replaced: redfish 10.30.12.9 (address, username, fingerprint, systemId, bootMethod)',
    'BMC changed: redfish 10.30.12.9 (password)',
    'BMC removed: redfish 10.30.12.9',
  ])
  assertNoSecrets(JSON.stringify(await s.inventory.events.list({ machineId: id })), 'the timeline')
  for (const body of bodies) assertNoSecrets(body, 'an answer')
})

test('bad values are 400s naming the field (PEM, fingerprint, suites, K_G, other type\'s settings); writes need admin', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  const [id] = await seedMachines(s.inventory, { count: 1 })
  const { call, bodies } = client(s)
  const redfish = { type: 'redfish', address: '10.0.0.9', username: 'root', password: PASSWORD }
  const ipmi = { type: 'ipmi', address: '10.0.0.9', username: 'ADMIN', password: PASSWORD }
  const cases: [unknown, RegExp][] = [
    [{ ...redfish, ca: 'not a certificate' }, /^ca: the PEM is not a PEM certificate \(no -----BEGIN CERTIFICATE----- block\)$/],
    [{ ...redfish, ca: TEST_CA_PEM.replace('MIIBlTCC', 'MIIBlTCD') }, /^ca: the PEM is not a PEM certificate: certificate 1 does not parse/],
    [{ ...redfish, ca: `${TEST_CA_PEM}-----BEGIN EC PRIVATE KEY-----\nAA==\n-----END EC PRIVATE KEY-----\n` }, /^ca: the PEM holds a private key/],
    [{ ...redfish, fingerprint: 'abc123' }, /^fingerprint: not a sha256 fingerprint \(64 hex digits/],
    [{ ...redfish, fingerprint: 'g'.repeat(64) }, /^fingerprint: not a sha256 fingerprint/],
    [{ ...ipmi, cipherSuites: [17, 5] }, /cipherSuites\/1 must be equal to one of the allowed values/],
    [{ ...ipmi, cipherSuites: [17, 17] }, /cipherSuites must NOT have duplicate items/],
    [{ ...ipmi, kg: 'ffeeddcc-not-hex' }, /^kg: is not a K_G in hex \(2 to 40 hex digits: up to 20 bytes\)$/],
    [{ ...ipmi, kg: 'ab'.repeat(21) }, /^kg: is not a K_G in hex/],
    [{ ...redfish, cipherSuites: [17] }, /^cipherSuites: cipherSuites is an IPMI setting, but this BMC is redfish$/],
    [{ ...redfish, kg: 'abcd' }, /^kg: kg is an IPMI setting, but this BMC is redfish$/],
    [{ ...redfish, privilege: 'user', bootVerify: 'device' }, /^privilege: privilege is an IPMI setting, but this BMC is redfish \(and 1 more\)$/],
    [{ ...ipmi, systemId: '1' }, /^systemId: systemId is a Redfish setting, but this BMC is ipmi$/],
    [{ ...ipmi, ca: TEST_CA_PEM }, /^ca: ca is a Redfish setting/],
    [{ ...ipmi, auth: 'basic' }, /^auth: auth is a Redfish setting/],
    [{ ...ipmi, bootMethod: 'uefi-http' }, /^bootMethod: bootMethod uefi-http needs a Redfish BMC/],
    [{ ...ipmi, address: 'https://10.0.0.9' }, /^address: an IPMI address is a host name or IP address, not a URL$/],
    [{ ...redfish, address: 'https://10.0.0.9/redfish/v1/Systems/1', systemId: '2' }, /^systemId: the address names system 1, but systemId is 2$/],
    [{ ...redfish, address: 'https://10.0.0.9/redfish/v1/Chassis/1' }, /^address: path \/redfish\/v1\/Chassis\/1 is not a Redfish system/],
    [{ ...redfish, address: `https://root:${PASSWORD}@10.0.0.9` }, /^address: user name and password do not belong in the address/],
    [{ ...redfish, systemId: 'a b' }, /^systemId: not a Redfish system Id/],
    [{ ...redfish, auth: 'digest' }, /auth must be equal to one of the allowed values/],
    [{ ...redfish, colour: 'red' }, /must NOT have additional properties/],
    [{ address: '10.0.0.9' }, /must have required property 'type'/],
  ]
  for (const [payload, why] of cases) {
    const r = await call('PUT', `/machines/${id}/bmc`, payload)
    assert.equal(r.statusCode, 400, `${JSON.stringify(payload)}: ${r.body}`)
    assert.equal(r.json().error, 'RB_ERR_VALIDATION')
    assert.match(r.json().message, why, JSON.stringify(payload))
  }
  assert.equal(await s.inventory.bmcs.get(id!), null, 'nothing was stored')
  for (const body of bodies) assertNoSecrets(body, 'an error answer')

  // PATCH checks the result: an IPMI setting given to a Redfish BMC is refused, a PATCH needs a field.
  assert.equal((await call('PUT', `/machines/${id}/bmc`, redfish)).statusCode, 201)
  let r = await call('PATCH', `/machines/${id}/bmc`, { cipherSuites: [3] })
  assert.equal(r.statusCode, 400)
  assert.match(r.json().message, /^cipherSuites: cipherSuites is an IPMI setting/)
  assert.equal((await call('PATCH', `/machines/${id}/bmc`, {})).statusCode, 400)

  // BMC credentials are the admin's: provision and read tokens may look, not write.
  for (const scope of ['read', 'provision'] as const) {
    assert.equal((await call('PUT', `/machines/${id}/bmc`, redfish, scope)).statusCode, 403, scope)
    assert.equal((await call('POST', `/machines/${id}/bmc`, redfish, scope)).statusCode, 403, scope)
    assert.equal((await call('PATCH', `/machines/${id}/bmc`, { username: 'x' }, scope)).statusCode, 403, scope)
    assert.equal((await call('DELETE', `/machines/${id}/bmc`, undefined, scope)).statusCode, 403, scope)
    assert.equal((await call('POST', `/machines/${id}/bmc/adopt`, {}, scope)).statusCode, 403, scope)
  }
  assert.equal((await call('GET', `/machines/${id}/bmc`, undefined, 'read')).statusCode, 200)
  r = await s.app.inject({ url: `/api/v1/machines/${id}/bmc` })
  assert.equal(r.statusCode, 401)
})

test('machine list and detail show the BMC in short and its last power state', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  const [a, b] = await seedMachines(s.inventory, { count: 2 })
  await s.inventory.bmcs.put(a!, { type: 'redfish', address: '10.0.0.5', username: 'root', password: PASSWORD, bootMethod: 'uefi-http', systemId: '1' })
  await s.inventory.bmcs.recordPower(a!, { state: null, checkedAt: Date.parse('2026-01-02T03:04:05Z'), error: 'BMC 10.0.0.5 did not answer' })
  const list = (await s.app.inject({ url: '/api/v1/machines', headers: s.auth('read') })).json()
  assert.deepEqual(list.items.map((m: any) => [m.id, m.bmc, m.power]), [
    [a, { type: 'redfish', address: '10.0.0.5', bootMethod: 'uefi-http' }, { state: null, checkedAt: '2026-01-02T03:04:05.000Z', error: 'BMC 10.0.0.5 did not answer' }],
    [b, null, null],
  ])
  const detail = (await s.app.inject({ url: `/api/v1/machines/${a}`, headers: s.auth('read') })).json()
  assert.equal(detail.bmc.systemId, '1')
  assert.equal(detail.bmc.hasPassword, true)
  assert.deepEqual(detail.power, list.items[0].power)
  assertNoSecrets(JSON.stringify(detail), 'the machine detail')
  // Answers of other machine routes carry them too.
  const patched = (await s.app.inject({ method: 'PATCH', url: `/api/v1/machines/${a}`, headers: s.auth('provision'), payload: { rack: 'r9' } })).json()
  assert.deepEqual(patched.bmc, list.items[0].bmc)
})

test('adopt: the address the agent reported replaces the stored one (a Redfish URL keeps its scheme and port); 409 when none', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  const [a, b, c] = await seedMachines(s.inventory, { count: 3 })
  const { call, bodies } = client(s)
  const report = async (id: string, address: string | undefined) => {
    const m = (await s.inventory.machines.get(id))!
    await s.inventory.machines.setHardware(id, { ...m.hardware, ...(address ? { bmc: { address, mac: '3c:ec:ef:00:00:01' } } : {}) }, Date.now())
  }
  // Nothing reported: a conflict that says so.
  let r = await call('POST', `/machines/${a}/bmc/adopt`)
  assert.equal(r.statusCode, 409, r.body)
  assert.match(r.json().message, /^machine r1-u1-0: the discovery agent reported no BMC address .*nothing to adopt$/)
  await report(c!, 'bmc.evil.example')
  r = await call('POST', `/machines/${c}/bmc/adopt`, { type: 'ipmi' })
  assert.equal(r.statusCode, 409)
  assert.match(r.json().message, /not an IP address/)

  // No BMC record yet: the type (and credentials) must be given.
  await report(a!, '10.30.1.5')
  r = await call('POST', `/machines/${a}/bmc/adopt`)
  assert.equal(r.statusCode, 422, r.body)
  assert.match(r.json().message, /has no BMC record yet: give type/)
  r = await call('POST', `/machines/${a}/bmc/adopt`, { type: 'ipmi', username: 'ADMIN', password: PASSWORD })
  assert.equal(r.statusCode, 200, r.body)
  assert.deepEqual([r.json().changed, r.json().previous, r.json().reported, r.json().bmc.address, r.json().bmc.hasPassword], [true, null, '10.30.1.5', '10.30.1.5', true])
  // Again: nothing to change.
  r = await call('POST', `/machines/${a}/bmc/adopt`)
  assert.deepEqual([r.statusCode, r.json().changed], [200, false])
  // The BMC moved: its record keeps everything but the address.
  await s.inventory.bmcs.put(a!, { type: 'ipmi', address: '10.30.1.5', username: 'ADMIN', cipherSuites: [3], privilege: 'operator' })
  await report(a!, '10.30.1.6')
  r = await call('POST', `/machines/${a}/bmc/adopt`)
  assert.equal(r.statusCode, 200, r.body)
  assert.deepEqual([r.json().changed, r.json().previous, r.json().bmc.address, r.json().bmc.cipherSuites, r.json().bmc.privilege], [true, '10.30.1.5', '10.30.1.6', [3], 'operator'])
  assert.equal((await s.inventory.bmcs.credentials(a!))?.password, PASSWORD)

  await s.inventory.bmcs.put(b!, { type: 'redfish', address: 'https://10.30.2.5:8443', username: 'root', password: PASSWORD, systemId: '1' })
  await report(b!, '10.30.2.9')
  r = await call('POST', `/machines/${b}/bmc/adopt`, {})
  assert.deepEqual([r.json().bmc.address, r.json().bmc.systemId, r.json().previous], ['https://10.30.2.9:8443', '1', 'https://10.30.2.5:8443'])

  await s.timeline.flush()
  const events = await s.inventory.events.list({ machineId: a })
  assert.match(events.at(-1)!.message, /^BMC address adopted from the agent's report \(was 10\.30\.1\.5\) by token root: ipmi 10\.30\.1\.6 \(address\)$/)
  assertNoSecrets(JSON.stringify(events), 'the timeline')
  for (const body of bodies) assertNoSecrets(body, 'an answer')
})
