import assert from 'node:assert/strict'
import { apiSetup, eachBackend } from './support/app.js'
import { factsFor, macFor, seedMachines } from './support/seed.js'

eachBackend('list: filters by state, labels, rack, free text and selectors combine; cursor pages cover everything once', async (t, backend) => {
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  const ids = await seedMachines(s.inventory, { count: 120 })
  await seedMachines(s.inventory, { count: 30, offset: 120, state: 'discovered' })
  const get = async (query: string) => {
    const r = await s.app.inject({ url: `/api/v1/machines?${query}`, headers: s.auth('read') })
    assert.equal(r.statusCode, 200, `${query}: ${r.body}`)
    return r.json() as { items: any[]; next: string | null }
  }

  // Pages of 25 in id order, no gaps, no repeats.
  const seen: string[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const page = await get(`limit=25${cursor ? `&cursor=${cursor}` : ''}`)
    seen.push(...page.items.map((m) => m.id))
    cursor = page.next
    pages++
  } while (cursor)
  assert.equal(pages, 6)
  assert.deepEqual(seen, [...seen].sort())
  assert.equal(new Set(seen).size, 150)

  assert.equal((await get('state=discovered&limit=1000')).items.length, 30)
  assert.equal((await get('state=ready,discovered&limit=1000')).items.length, 150)
  assert.equal((await get('state=ready&state=discovered&limit=1000')).items.length, 150)
  // Labels (every one must match), rack.
  const z1 = await get('label=zone%3Dz1&limit=1000')
  assert.equal(z1.items.length, [...Array(150).keys()].filter((i) => i % 4 === 1).length)
  assert.ok(z1.items.every((m) => m.labels.zone === 'z1'))
  const both = await get('label=zone%3Dz1&label=tier%3D2&limit=1000')
  assert.ok(both.items.length > 0 && both.items.every((m) => m.labels.zone === 'z1' && m.labels.tier === '2'))
  assert.equal(both.items.length, [...Array(150).keys()].filter((i) => i % 4 === 1 && i % 3 === 2).length)
  assert.equal((await get('rack=r2&limit=1000')).items.length, 40)
  // Free text: serial (any case), part of a MAC in another spelling, part of a name.
  assert.deepEqual((await get('q=sn00000042')).items.map((m) => m.id), [ids[42]])
  assert.deepEqual((await get(`q=${macFor(77, 1).toUpperCase().replaceAll(':', '-')}`)).items.map((m) => m.id), [ids[77]])
  assert.deepEqual((await get('q=u7-46')).items.map((m) => m.name), ['r2-u7-46'])
  assert.equal((await get('q=zz')).items.length, 0)
  // Selectors, pre-filtered in SQL and checked in JS; a class's selectors.
  const big = await get('selector=cpu.cores%20%3E%3D%2064%20and%20disks%5Btype%3Dnvme%5D.count%20%3E%3D%202&limit=1000')
  const expected = [...Array(150).keys()].filter((i) => factsFor(i).cpu!.cores! >= 64 && factsFor(i).disks!.filter((d) => d.type === 'nvme').length >= 2)
  assert.equal(big.items.length, expected.length)
  assert.ok(big.items.every((m) => m.hardware.cpuCores >= 64 && m.hardware.nvmeCount >= 2))
  await s.inventory.classes.put({ name: 'fat', description: null, selectors: ['memory.gib >= 512'], profile: null, patches: [], managedBy: null }, 1)
  const fat = await get('class=fat&state=ready&limit=1000')
  assert.equal(fat.items.length, [...Array(120).keys()].filter((i) => factsFor(i).memory!.totalBytes >= 512 * 2 ** 30).length)
  // A selector page follows the cursor too.
  const firstFat = await get('class=fat&limit=5')
  const secondFat = await get(`class=fat&limit=5&cursor=${firstFat.next}`)
  assert.equal(new Set([...firstFat.items, ...secondFat.items].map((m) => m.id)).size, 10)

  // Validation and errors.
  const badState = await s.app.inject({ url: '/api/v1/machines?state=exploded', headers: s.auth('read') })
  assert.equal(badState.statusCode, 400)
  assert.equal(badState.json().error, 'RB_ERR_VALIDATION')
  const badSel = await s.app.inject({ url: '/api/v1/machines?selector=memory.gigs%20%3E%201', headers: s.auth('read') })
  assert.equal(badSel.statusCode, 400)
  assert.equal(badSel.json().details.position, 7)
  assert.equal((await s.app.inject({ url: '/api/v1/machines?class=nope', headers: s.auth('read') })).statusCode, 422)
  assert.equal((await s.app.inject({ url: '/api/v1/machines?limit=0', headers: s.auth('read') })).statusCode, 400)
  assert.equal((await s.app.inject({ url: '/api/v1/machines?colour=red', headers: s.auth('read') })).statusCode, 400)
})

eachBackend('one machine: by id, name, MAC or UUID, with hardware, BMC without secrets, leases, allocation and timeline', async (t, backend) => {
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  const [id] = await seedMachines(s.inventory, { count: 1, state: 'discovered' })
  await s.inventory.machines.update(id!, { uuid: '8c3f5a7e-1b2d-4c6e-9f01-23456789abcd' }, Date.now())
  await s.inventory.bmcs.put(id!, { type: 'redfish', address: '198.18.7.1', username: 'root', password: 'calvin-secret' })
  await s.inventory.leases.put({ ip: '198.18.0.20', mac: macFor(0, 0), clientId: null, subnet: '198.18.0.0/24', state: 'bound', hostname: null, expiresAt: Date.now() + 60_000, updatedAt: Date.now() })
  await s.inventory.leases.put({ ip: '198.18.0.21', mac: macFor(0, 1), clientId: null, subnet: '198.18.0.0/24', state: 'bound', hostname: null, expiresAt: Date.now() - 1, updatedAt: Date.now() })
  for (let i = 0; i < 60; i++) s.lifecycle.record(id!, 'boot.dhcp', `offer ${i}`, { i })
  await s.timeline.flush()

  for (const ref of [id!, 'r1-u1-0', macFor(0, 1).toUpperCase(), '8C3F5A7E-1B2D-4C6E-9F01-23456789ABCD']) {
    const r = await s.app.inject({ url: `/api/v1/machines/${encodeURIComponent(ref)}`, headers: s.auth('read') })
    assert.equal(r.statusCode, 200, ref)
    assert.equal(r.json().id, id)
  }
  const m = (await s.app.inject({ url: `/api/v1/machines/${id}`, headers: s.auth('read') })).json()
  assert.equal(m.facts.cpu.cores, 8)
  assert.equal(m.facts.disks[0].name, 'sda')
  assert.deepEqual(m.hardware, { cpuCores: 8, memoryBytes: 64 * 2 ** 30, diskCount: 1, nvmeCount: 0 })
  assert.deepEqual(m.bmc, {
    type: 'redfish', address: '198.18.7.1', port: null, username: 'root', hasPassword: true, hasKg: false, insecure: false, fingerprint: null,
    systemId: null, ca: null, auth: 'auto', cipherSuites: null, privilege: null, bootVerify: null, bootMethod: 'pxe',
  })
  assert.equal(m.power, null, 'no power state read yet')
  assert.doesNotMatch(JSON.stringify(m), /calvin-secret|password_sealed|v1:/)
  assert.deepEqual(m.leases.map((l: any) => l.ip), ['198.18.0.20'])
  assert.equal(m.allocation, null)
  assert.equal(m.timeline.length, 50)
  assert.equal(m.timeline.at(-1).message, 'offer 59')
  assert.ok(m.timeline.every((e: any, i: number, a: any[]) => i === 0 || e.seq > a[i - 1].seq))
  const few = (await s.app.inject({ url: `/api/v1/machines/${id}?timeline=3`, headers: s.auth('read') })).json()
  assert.deepEqual(few.timeline.map((e: any) => e.message), ['offer 57', 'offer 58', 'offer 59'])
  assert.equal((await s.app.inject({ url: '/api/v1/machines/m-nosuch', headers: s.auth('read') })).json().error, 'RB_ERR_MACHINE_NOT_FOUND')
})

eachBackend('labels merge (null removes), rack location, accept, maintenance on/off, delete; each on the timeline', async (t, backend) => {
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  const [id, other] = await seedMachines(s.inventory, { count: 2, state: 'discovered' })
  const patch = (payload: unknown, who: 'provision' | 'read' = 'provision') =>
    s.app.inject({ method: 'PATCH', url: `/api/v1/machines/${id}`, headers: s.auth(who), payload: payload as object })
  let r = await patch({ labels: { gpu: 'a100', zone: null }, rack: 'r99', rackUnit: 12 })
  assert.equal(r.statusCode, 200, r.body)
  assert.deepEqual(r.json().labels, { gpu: 'a100', rack: 'r1', tier: '0' })
  assert.equal(r.json().rack, 'r99')
  assert.equal(r.json().rackUnit, 12)
  // The label index follows: the list finds the new label and not the removed one.
  const byLabel = (await s.app.inject({ url: '/api/v1/machines?label=gpu%3Da100', headers: s.auth('read') })).json()
  assert.deepEqual(byLabel.items.map((m: any) => m.id), [id])
  const byOld = (await s.app.inject({ url: '/api/v1/machines?label=zone%3Dz0', headers: s.auth('read') })).json()
  assert.deepEqual(byOld.items.map((m: any) => m.id), [])
  assert.equal((await patch({})).statusCode, 400)
  assert.equal((await patch({ labels: { 'bad key': 'x' } })).statusCode, 400)
  assert.equal((await patch({ state: 'ready' })).statusCode, 400)
  assert.equal((await patch({ rack: 'r1' }, 'read')).statusCode, 403)

  r = await s.app.inject({ method: 'POST', url: `/api/v1/machines/${id}/accept`, headers: s.auth('provision') })
  assert.equal(r.statusCode, 200, r.body)
  assert.equal(r.json().state, 'ready')
  // Accepting again is a no-op; accepting a machine in maintenance is a conflict.
  assert.equal((await s.app.inject({ method: 'POST', url: `/api/v1/machines/${id}/accept`, headers: s.auth('provision') })).statusCode, 200)
  r = await s.app.inject({ method: 'POST', url: `/api/v1/machines/${id}/maintenance`, headers: s.auth('provision'), payload: { on: true, reason: 'DIMM swap' } })
  assert.equal(r.json().state, 'maintenance')
  const conflict = await s.app.inject({ method: 'POST', url: `/api/v1/machines/${id}/accept`, headers: s.auth('provision') })
  assert.equal(conflict.statusCode, 409)
  assert.equal(conflict.json().error, 'RB_ERR_INVALID_TRANSITION')
  r = await s.app.inject({ method: 'POST', url: `/api/v1/machines/${id}/maintenance`, headers: s.auth('provision'), payload: { on: false } })
  assert.equal(r.json().state, 'discovered')
  assert.equal((await s.app.inject({ method: 'POST', url: `/api/v1/machines/${id}/maintenance`, headers: s.auth('provision'), payload: {} })).statusCode, 400)

  await s.timeline.flush()
  const timeline = await s.inventory.events.list({ machineId: id })
  assert.deepEqual(timeline.map((e) => e.type), ['machine.updated', 'machine.state', 'machine.state', 'machine.state'])
  assert.match(timeline[0]!.message, /labels, rack, rackUnit changed by token capi/)
  assert.match(timeline[2]!.message, /maintenance on by token capi: DIMM swap/)

  // Delete: admin only; an allocated machine needs force.
  assert.equal((await s.app.inject({ method: 'DELETE', url: `/api/v1/machines/${id}`, headers: s.auth('provision') })).statusCode, 403)
  r = await s.app.inject({ method: 'DELETE', url: `/api/v1/machines/${id}`, headers: s.auth('admin') })
  assert.equal(r.statusCode, 204)
  assert.equal(r.body, '')
  assert.equal(await s.inventory.machines.get(id!), null)
  assert.equal((await s.app.inject({ url: `/api/v1/machines?q=${id}`, headers: s.auth('read') })).json().items.length, 0)
  await s.inventory.machines.setState(other!, 'discovered', 'ready', 1)
  await s.inventory.machines.setState(other!, 'ready', 'provisioning', 1)
  const refused = await s.app.inject({ method: 'DELETE', url: `/api/v1/machines/${other}`, headers: s.auth('admin') })
  assert.equal(refused.statusCode, 409)
  assert.equal((await s.app.inject({ method: 'DELETE', url: `/api/v1/machines/${other}?force=true`, headers: s.auth('admin') })).statusCode, 204)
})

eachBackend('network: PATCH sets, replaces and clears (null) the static addresses; lists and details show them; bad ones are 400s naming the field', async (t, backend) => {
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  const [id, other] = await seedMachines(s.inventory, { count: 2, state: 'ready' })
  const patch = (payload: unknown, machine = id!) =>
    s.app.inject({ method: 'PATCH', url: `/api/v1/machines/${machine}`, headers: s.auth('provision'), payload: payload as object })
  const network = {
    addresses: [
      { link: 'eno1', addresses: ['198.18.0.20/24', 'fd00:198:18::20/64'], gateway: '198.18.0.1', mtu: 9000 },
      { mac: '3C-EC-EF-12-34-57', addresses: ['198.19.0.20/24'], gateway: '198.19.0.1' },
    ],
    nameservers: ['198.18.0.53'],
  }
  const stored = { ...network, addresses: [network.addresses[0], { ...network.addresses[1], mac: '3c:ec:ef:12:34:57' }] }
  let r = await patch({ network })
  assert.equal(r.statusCode, 200, r.body)
  assert.deepEqual(r.json().network, stored, 'MACs are stored lower-case with colons')
  assert.deepEqual((await s.inventory.machines.get(id!))?.network, stored)
  assert.deepEqual((await s.app.inject({ url: `/api/v1/machines/${id}`, headers: s.auth('read') })).json().network, stored)
  const list = (await s.app.inject({ url: '/api/v1/machines', headers: s.auth('read') })).json()
  assert.deepEqual(list.items.map((m: any) => m.network), [stored, null])

  r = await patch({ labels: { gpu: 'a100' } })
  assert.deepEqual(r.json().network, stored, 'a PATCH that does not name network keeps it')
  r = await patch({ network: { addresses: [{ link: 'eno2', addresses: ['198.18.0.21/24'] }] } })
  assert.deepEqual(r.json().network, { addresses: [{ link: 'eno2', addresses: ['198.18.0.21/24'] }] }, 'network is replaced whole')
  r = await patch({ network: null })
  assert.equal(r.statusCode, 200)
  assert.equal(r.json().network, null)

  const before = await s.inventory.machines.get(other!)
  for (const [bad, why] of [
    [{ addresses: [{ link: 'eno1', addresses: ['198.18.0.20'] }] }, /^network\.addresses\[0\]\.addresses\[0\]: not an address in CIDR form .*'198\.18\.0\.20'$/],
    [{ addresses: [{ link: 'eno1', addresses: ['198.18.0.20/40'] }] }, /^network\.addresses\[0\]\.addresses\[0\]: not an address in CIDR form/],
    [{ addresses: [{ link: 'eno1', addresses: ['198.18.0.20/24'], gateway: 'router' }] }, /^network\.addresses\[0\]\.gateway: not an IP address: 'router'$/],
    [{ addresses: [{ link: 'eno1', addresses: ['198.18.0.20/24'], gateway: 'fd00::1' }] }, /^network\.addresses\[0\]\.gateway: gateway fd00::1 is IPv6, but this link has no IPv6 address$/],
    [{ addresses: [], nameservers: ['198.18.0.53', '1.1.1'] }, /^network\.nameservers\[1\]: not an IP address: '1\.1\.1'$/],
    [{ addresses: [{ addresses: ['198.18.0.20/24'] }] }, /^network\.addresses\[0\]: give the link by name \(link\) or by MAC \(mac\)$/],
    [{ addresses: [{ link: 'eno1', mac: '3c:ec:ef:12:34:57', addresses: ['198.18.0.20/24'] }] }, /^network\.addresses\[0\]: give link or mac, not both$/],
    [{ addresses: [{ mac: 'nope', addresses: ['198.18.0.20/24'] }] }, /^network\.addresses\[0\]\.mac: not a MAC address: 'nope'$/],
    [{ addresses: [{ link: 'eno1', addresses: ['198.18.0.20/24'], mtu: 20 }] }, /mtu/],
    [{ addresses: [{ link: 'eno1', addresses: [] }] }, /addresses/],
    [{ addresses: [{ link: 'eno1', addresses: ['198.18.0.20/24'], vlan: 12 }] }, /additional/],
    [{ nameservers: ['198.18.0.53'] }, /addresses/],
  ] as const) {
    const res = await patch({ network: bad }, other)
    assert.equal(res.statusCode, 400, JSON.stringify(bad))
    assert.equal(res.json().error, 'RB_ERR_VALIDATION')
    assert.match(res.json().message, why)
  }
  const after = await s.inventory.machines.get(other!)
  assert.equal(after?.network, null)
  assert.equal(after?.updatedAt, before?.updatedAt, 'a refused PATCH changes nothing')
  await s.timeline.flush()
  const updates = (await s.inventory.events.list({ machineId: id!, types: ['machine.updated'] })).map((e) => e.message)
  assert.ok(updates.some((m) => /network changed by token capi/.test(m)), updates.join('\n'))
})
