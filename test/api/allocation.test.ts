import assert from 'node:assert/strict'
import YAML from 'yaml'
import { generateSecretsBundle, secretsBundleToYaml } from '../../src/talos/index.js'
import { apiSetup, eachBackend, type ApiSetup } from './support/app.js'
import { factsFor, macFor, seedMachines } from './support/seed.js'
import { leaseAddress } from '../support/leases.js'

async function catalog(s: ApiSetup) {
  await s.inventory.profiles.put({ name: 'w113', description: null, talosVersion: 'v1.13.9', arch: 'amd64', schematic: null, kernelArgs: [], baseConfig: null, patches: [], managedBy: null }, 1)
  await s.inventory.profiles.put({ name: 'noversion', description: null, talosVersion: null, arch: null, schematic: null, kernelArgs: [], baseConfig: null, patches: [], managedBy: null }, 1)
  await s.inventory.classes.put({ name: 'big', description: null, selectors: ['cpu.cores >= 64'], profile: 'w113', patches: [{ machine: { sysctls: { 'vm.nr_hugepages': '1024' } } }], managedBy: null }, 1)
  await s.inventory.classes.put({ name: 'noprofile', description: null, selectors: [], profile: null, patches: [], managedBy: null }, 1)
  await s.inventory.classes.put({ name: 'broken', description: null, selectors: ['cpu.cores >>= 1'], profile: 'w113', patches: [], managedBy: null }, 1)
}

const allocate = (s: ApiSetup, payload: Record<string, unknown>, headers: Record<string, string> = {}) =>
  s.app.inject({ method: 'POST', url: '/api/v1/allocations', headers: { ...s.auth('provision'), ...headers }, payload })

eachBackend('an allocation takes `count` matching ready machines, all at once, into provisioning with their profile', async (t, backend) => {
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  await catalog(s)
  const ids = await seedMachines(s.inventory, { count: 20 })
  const big = ids.filter((_, i) => factsFor(i).cpu!.cores! >= 64) // i % 5 in {3, 4}: 8 machines
  assert.equal(big.length, 8)

  const r = await allocate(s, { class: 'big', count: 3 })
  assert.equal(r.statusCode, 201, r.body)
  const a = r.json()
  assert.match(a.id, /^a-[0-9a-z]+$/)
  assert.equal(r.headers.location, `/api/v1/allocations/${a.id}`)
  assert.equal(r.headers['idempotent-replayed'], undefined)
  assert.deepEqual(a.machines.map((m: any) => m.id), big.slice(0, 3))
  assert.deepEqual(a.machines[0].macs, [macFor(3, 0), macFor(3, 1)])
  assert.equal(a.profile, 'w113')
  assert.equal(a.machines[0].power, null)
  for (const id of big.slice(0, 3)) {
    const m = (await s.inventory.machines.get(id))!
    assert.equal(m.state, 'provisioning')
    assert.equal(m.profile, 'w113')
    assert.equal((await s.inventory.allocations.current(id))?.allocationId, a.id)
  }
  // Inline selector on top of the class, then a plain selector.
  const r2 = await allocate(s, { class: 'big', selector: 'memory.gib >= 512', count: 2 })
  assert.equal(r2.statusCode, 201, r2.body)
  for (const m of r2.json().machines) {
    const i = ids.indexOf(m.id)
    assert.ok(factsFor(i).cpu!.cores! >= 64 && factsFor(i).memory!.totalBytes >= 512 * 2 ** 30, m.id)
  }
  const r3 = await allocate(s, { selector: 'disks[type=nvme].count == 0', profile: 'w113', count: 1 })
  assert.equal(r3.statusCode, 201, r3.body)

  // The timeline and the bus say what happened, through the lifecycle.
  await s.timeline.flush()
  const ev = (await s.inventory.events.list({ machineId: big[0]!, types: ['machine.state'] })).at(-1)!
  assert.deepEqual([ev.data.from, ev.data.to, ev.data.allocation], ['ready', 'provisioning', a.id])
  assert.match(ev.message, /^ready → provisioning: allocated by token capi/)

  // Read back: one, and the list.
  const one = await s.app.inject({ url: `/api/v1/allocations/${a.id}`, headers: s.auth('read') })
  assert.deepEqual(one.json(), a)
  const list = (await s.app.inject({ url: '/api/v1/allocations?limit=2', headers: s.auth('read') })).json()
  assert.deepEqual(list.items.map((x: any) => x.id), [a.id, r2.json().id])
  const rest = (await s.app.inject({ url: `/api/v1/allocations?cursor=${list.next}`, headers: s.auth('read') })).json()
  assert.deepEqual(rest.items.map((x: any) => x.id), [r3.json().id])
  assert.equal((await s.app.inject({ url: '/api/v1/allocations/a-nosuch', headers: s.auth('read') })).statusCode, 404)
  // The machine detail shows its allocation.
  const detail = (await s.app.inject({ url: `/api/v1/machines/${big[0]}`, headers: s.auth('read') })).json()
  assert.equal(detail.allocation.allocationId, a.id)
  assert.equal(detail.allocation.class, 'big')
})

eachBackend('not enough machines: 409 and nothing taken; bad requests: 400/422 with the reason', async (t, backend) => {
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  await catalog(s)
  await seedMachines(s.inventory, { count: 10 })
  const before = await s.inventory.machines.count({ state: 'ready' })
  const r = await allocate(s, { class: 'big', count: 5 }) // 4 of 10 are big
  assert.equal(r.statusCode, 409)
  assert.equal(r.json().error, 'RB_ERR_CONFLICT')
  assert.deepEqual(r.json().details, { reason: 'insufficient-machines', requested: 5, available: 4, skipped: 0, skippedWhy: [] })
  assert.match(r.json().message, /not enough ready machines: 5 asked, 4 available in class big/)
  assert.equal(await s.inventory.machines.count({ state: 'ready' }), before)
  assert.deepEqual((await s.inventory.allocations.list()).items, [])

  const cases: [Record<string, unknown>, number, RegExp][] = [
    [{ count: 1 }, 400, /class or a selector/],
    [{ class: 'big' }, 400, /count/],
    [{ class: 'big', count: 0 }, 400, /count/],
    [{ class: 'big', count: 1001 }, 400, /count/],
    [{ class: 'big', count: 1, colour: 'red' }, 400, /additional/],
    [{ class: 'nope', count: 1 }, 422, /no class named 'nope'/],
    [{ class: 'broken', count: 1 }, 422, /class 'broken' has a selector that does not parse/],
    [{ selector: 'cpu.cores >= ', profile: 'w113', count: 1 }, 400, /expected a value/],
    [{ class: 'noprofile', count: 1 }, 422, /no profile/],
    [{ class: 'big', profile: 'nope', count: 1 }, 422, /no profile named 'nope'/],
    [{ class: 'big', profile: 'noversion', count: 1 }, 422, /names no Talos version/],
    [{ class: 'big', cluster: 'nope', count: 1 }, 422, /no cluster named 'nope'/],
    [{ class: 'big', role: 'boss', count: 1 }, 400, /role/],
    [{ class: 'big', count: 1, patches: [[{ op: 'explode', path: '/machine' }]] }, 400, /op/],
    [{ class: 'big', count: '1' }, 400, /count/],
  ]
  for (const [payload, status, why] of cases) {
    const bad = await allocate(s, payload)
    assert.equal(bad.statusCode, status, `${JSON.stringify(payload)}: ${bad.body}`)
    assert.match(bad.json().message, why, JSON.stringify(payload))
    assert.ok(['RB_ERR_VALIDATION'].includes(bad.json().error), bad.body)
  }
  assert.equal(await s.inventory.machines.count({ state: 'ready' }), before)
  assert.equal((await allocate(s, { class: 'big', count: 1 }, s.auth('read'))).statusCode, 403)
})

eachBackend('idempotency: the same key returns the same result; another request with it is refused', async (t, backend) => {
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  await catalog(s)
  await seedMachines(s.inventory, { count: 20 })
  const body = { class: 'big', count: 2, role: 'worker', idempotencyKey: 'capi-machine-set-7' }
  const first = await allocate(s, body)
  assert.equal(first.statusCode, 201)
  // Same body, keys in another order: same allocation, no new machines taken.
  const again = await allocate(s, { idempotencyKey: 'capi-machine-set-7', role: 'worker', count: 2, class: 'big' })
  assert.equal(again.statusCode, 201)
  assert.equal(again.headers['idempotent-replayed'], 'true')
  assert.deepEqual(again.json(), first.json())
  assert.equal(await s.inventory.machines.count({ state: 'provisioning' }), 2)
  // The header works the same way.
  const viaHeader = await allocate(s, { class: 'big', count: 1 }, { 'idempotency-key': 'k-2' })
  const viaHeader2 = await allocate(s, { class: 'big', count: 1 }, { 'idempotency-key': 'k-2' })
  assert.equal(viaHeader2.headers['idempotent-replayed'], 'true')
  assert.equal(viaHeader2.json().id, viaHeader.json().id)
  assert.equal(viaHeader.json().idempotencyKey, 'k-2')
  // Reused with another request: 422, nothing taken.
  const reused = await allocate(s, { ...body, count: 3 })
  assert.equal(reused.statusCode, 422)
  assert.equal(reused.json().details.reason, 'idempotency-key-reused')
  assert.equal(reused.json().details.allocationId, first.json().id)
  assert.equal(await s.inventory.machines.count({ state: 'provisioning' }), 3)
  const differ = await allocate(s, { ...body }, { 'idempotency-key': 'other' })
  assert.equal(differ.statusCode, 400)
  // A refused request (409) stores nothing: the key can be retried once machines are there.
  const tooMany = await allocate(s, { class: 'big', count: 6, idempotencyKey: 'later' })
  assert.equal(tooMany.statusCode, 409)
  await seedMachines(s.inventory, { count: 10, offset: 20 })
  assert.equal((await allocate(s, { class: 'big', count: 6, idempotencyKey: 'later' })).statusCode, 201)
})

eachBackend('50 concurrent allocators racing for 40 machines over HTTP: 40 distinct machines, the rest a clear 409', async (t, backend) => {
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  await catalog(s)
  await s.inventory.classes.put({ name: 'all', description: null, selectors: [], profile: 'w113', patches: [], managedBy: null }, 1)
  const ids = await seedMachines(s.inventory, { count: 40 })
  const base = await s.app.listen({ host: '127.0.0.1', port: 0 })
  const results = await Promise.all(Array.from({ length: 50 }, (_, i) =>
    fetch(`${base}/api/v1/allocations`, {
      method: 'POST',
      headers: { ...s.auth('provision'), 'content-type': 'application/json' },
      body: JSON.stringify({ class: 'all', count: 1, idempotencyKey: `racer-${i}` }),
    }).then(async (r) => ({ status: r.status, body: await r.json() as any }))))
  const won = results.filter((r) => r.status === 201)
  const lost = results.filter((r) => r.status !== 201)
  assert.equal(won.length, 40, lost.map((l) => `${l.status} ${JSON.stringify(l.body)}`).join('\n'))
  assert.equal(lost.length, 10)
  for (const l of lost) {
    assert.equal(l.status, 409)
    assert.equal(l.body.error, 'RB_ERR_CONFLICT')
    assert.equal(l.body.details.reason, 'insufficient-machines')
  }
  const taken = won.flatMap((w) => w.body.machines.map((m: any) => m.id))
  assert.equal(new Set(taken).size, 40, 'no machine went to two callers')
  assert.deepEqual([...taken].sort(), [...ids].sort(), 'no machine was lost')
  assert.equal(await s.inventory.machines.count({ state: 'provisioning' }), 40)
  for (const id of ids) assert.ok(await s.inventory.allocations.current(id), id)

  // Several machines per request: all or nothing under the race as well.
  await seedMachines(s.inventory, { count: 40, offset: 40 })
  const multi = await Promise.all(Array.from({ length: 20 }, () =>
    fetch(`${base}/api/v1/allocations`, {
      method: 'POST',
      headers: { ...s.auth('provision'), 'content-type': 'application/json' },
      body: JSON.stringify({ class: 'all', count: 3 }),
    }).then(async (r) => ({ status: r.status, body: await r.json() as any }))))
  const ok = multi.filter((r) => r.status === 201)
  assert.equal(ok.length, 13)
  assert.ok(ok.every((r) => r.body.machines.length === 3))
  assert.equal(new Set(ok.flatMap((r) => r.body.machines.map((m: any) => m.id))).size, 39)
  assert.equal(await s.inventory.machines.count({ state: 'ready' }), 1)
  const metrics = await s.registry.getSingleMetricAsString('rackboot_api_allocations_total')
  assert.match(metrics, /result="allocated"} 53/)
  assert.match(metrics, /result="insufficient"} 17/)
})

eachBackend('power on into PXE: done through the BMC, skipped (and said so) without one or without a power manager', async (t, backend) => {
  const calls: string[] = []
  const modes: (string | null)[] = []
  const power = {
    async netbootNow(id: string, o?: { mode?: string }) {
      modes.push(o?.mode ?? null)
      calls.push(id)
      if (id.endsWith('!')) throw new Error('never')
      if ((await s.inventory.bmcs.get(id))?.address === '198.18.9.9') throw new Error('BMC did not answer')
    },
  }
  const s = await apiSetup({ backend, power })
  t.after(() => s.close())
  await catalog(s)
  const ids = await seedMachines(s.inventory, { count: 3 })
  await s.inventory.bmcs.put(ids[0]!, { type: 'ipmi', address: '198.18.9.1', username: 'admin', password: 'x' })
  await s.inventory.bmcs.put(ids[1]!, { type: 'redfish', address: '198.18.9.9' })
  const r = await allocate(s, { selector: 'cpu.cores >= 1', profile: 'w113', count: 3, powerOn: true })
  assert.equal(r.statusCode, 201, r.body)
  const power0 = Object.fromEntries(r.json().machines.map((m: any) => [m.id, m.power]))
  assert.deepEqual(power0[ids[0]!], { status: 'done', message: 'PXE boot started through ipmi BMC 198.18.9.1' })
  assert.equal(power0[ids[1]!].status, 'failed')
  assert.match(power0[ids[1]!].message, /BMC did not answer/)
  assert.equal(power0[ids[2]!].status, 'skipped')
  assert.match(power0[ids[2]!].message, /no BMC/)
  assert.deepEqual(calls.sort(), [ids[0], ids[1]].sort())
  assert.deepEqual(modes, ['uefi', 'uefi'], 'the override carries the machine\'s firmware mode')
  // Stored with the allocation.
  assert.deepEqual((await s.inventory.allocations.byId(r.json().id))!.machines.map((m) => m.power?.status), r.json().machines.map((m: any) => m.power.status))

  const none = await apiSetup({ backend })
  t.after(() => none.close())
  await catalog(none)
  await seedMachines(none.inventory, { count: 1 })
  const r2 = await allocate(none, { selector: 'cpu.cores >= 1', profile: 'w113', count: 1, powerOn: true })
  assert.equal(r2.json().machines[0].power.status, 'skipped')
  assert.match(r2.json().machines[0].power.message, /no power manager/)
})

eachBackend('cluster allocation: the config comes from the cluster for the role, with class and request patches; release wipes and returns the machine', async (t, backend) => {
  const s = await apiSetup({ backend, boot: true })
  t.after(() => s.close())
  await catalog(s)
  const bundle = await generateSecretsBundle({ talosVersion: 'v1.13.9', rsaBits: 2048 })
  const c = await s.app.inject({ method: 'POST', url: '/api/v1/clusters', headers: s.auth('admin'), payload: { name: 'lab', endpoint: 'https://198.18.0.10:6443', talosVersion: 'v1.13.9', secrets: secretsBundleToYaml(bundle) } })
  assert.equal(c.statusCode, 201, c.body)
  const [id] = await seedMachines(s.inventory, { count: 5 })
  await s.inventory.machines.update(id!, { profile: 'old-profile' }, 1)
  const r = await allocate(s, {
    class: 'big', count: 1, cluster: 'lab', role: 'controlplane',
    patches: [{ machine: { network: { nameservers: ['198.18.0.53'] } } }],
  })
  assert.equal(r.statusCode, 201, r.body)
  const mid = r.json().machines[0].id
  assert.equal(r.json().machines[0].role, 'controlplane')
  assert.equal((await s.app.inject({ url: '/api/v1/clusters/lab', headers: s.auth('read') })).json().machines, 1)
  assert.equal((await s.app.inject({ method: 'DELETE', url: '/api/v1/clusters/lab', headers: s.auth('admin') })).statusCode, 409)

  // The machine network-boots: Talos with a config URL; the config is the cluster's, for a control plane.
  const m = (await s.inventory.machines.get(mid))!
  const query = `mac=${m.nics[0]!.mac.replaceAll(':', '-')}&arch=x86_64&platform=efi`
  await leaseAddress(s.inventory, '198.18.0.50', m.nics[0]!.mac)
  const script = (await s.app.inject({ url: `/boot.ipxe?${query}`, headers: { host: 'rb:8080' }, remoteAddress: '198.18.0.50' })).body
  const url = /talos\.config=http:\/\/rb:8080(\S+)/.exec(script)?.[1]
  assert.ok(url, script)
  const cfg = await s.app.inject({ url: url!, remoteAddress: '198.18.0.50' })
  assert.equal(cfg.statusCode, 200, cfg.body)
  const doc = YAML.parseAllDocuments(cfg.body)[0]!.toJS()
  assert.equal(doc.machine.type, 'controlplane')
  assert.equal(doc.cluster.clusterName, 'lab')
  assert.equal(doc.cluster.controlPlane.endpoint, 'https://198.18.0.10:6443')
  assert.deepEqual(doc.machine.network.nameservers, ['198.18.0.53'], 'request patch')
  assert.match(cfg.body, new RegExp(`hostname: ${m.name}`), 'the machine\'s own values too')
  assert.equal(doc.machine.sysctls['vm.nr_hugepages'], '1024', 'class patch')
  assert.equal(doc.machine.ca.crt, bundle.certs.os.crt)

  // Release: released, allocation closed, previous profile back; the wipe agent boots; its report makes it ready.
  assert.equal((await s.app.inject({ method: 'POST', url: `/api/v1/machines/${id}/release`, headers: s.auth('provision') })).statusCode, 409, 'a ready machine is not released')
  const rel = await s.app.inject({ method: 'POST', url: `/api/v1/machines/${mid}/release`, headers: s.auth('provision'), payload: { pxeBoot: false } })
  assert.equal(rel.statusCode, 200, rel.body)
  assert.equal(rel.json().released, true)
  assert.equal(rel.json().machine.state, 'released')
  assert.equal(rel.json().allocationId, r.json().id)
  assert.equal(rel.json().power, null)
  assert.equal(await s.inventory.allocations.current(mid), null)
  assert.equal((await s.app.inject({ url: '/api/v1/clusters/lab', headers: s.auth('read') })).json().machines, 0)
  const again = await s.app.inject({ method: 'POST', url: `/api/v1/machines/${mid}/release`, headers: s.auth('provision') })
  assert.equal(again.statusCode, 200)
  assert.equal(again.json().released, false)
  // The old config token is worth nothing now.
  assert.equal((await s.app.inject({ url: url!, remoteAddress: '198.18.0.50' })).statusCode, 403)
  const wipe = (await s.app.inject({ url: `/boot.ipxe?${query}`, headers: { host: 'rb:8080' }, remoteAddress: '198.18.0.50' })).body
  assert.match(wipe, /rackboot\.wipe=1/)
  const token = /rackboot\.token=(\w+)/.exec(wipe)![1]!
  // The agent's report needs no API token: its per-boot token is enough. It must name every disk the machine had.
  const had = (m.hardware?.disks ?? []).map((d) => d.name)
  assert.ok(had.length > 1, 'the seeded machine has several disks')
  const partial = await s.app.inject({ method: 'POST', url: '/api/v1/agent/report', headers: { authorization: `Bearer ${token}` }, remoteAddress: '198.18.0.50', payload: { wiped: [had[0]!] } })
  assert.equal(partial.json().state, 'released', 'a wipe that leaves a known disk out keeps the machine out of the pool')
  const wipe2 = (await s.app.inject({ url: `/boot.ipxe?${query}`, headers: { host: 'rb:8080' }, remoteAddress: '198.18.0.50' })).body
  const token2 = /rackboot\.token=(\w+)/.exec(wipe2)![1]!
  assert.equal((await s.app.inject({ method: 'POST', url: '/api/v1/agent/report', headers: { authorization: `Bearer ${token}` }, remoteAddress: '198.18.0.50', payload: { wiped: had } })).statusCode, 403, 'one report per boot')
  const report = await s.app.inject({ method: 'POST', url: '/api/v1/agent/report', headers: { authorization: `Bearer ${token2}` }, remoteAddress: '198.18.0.50', payload: { wiped: had, disks: m.hardware!.disks! } })
  assert.equal(report.statusCode, 200, report.body)
  assert.equal(report.json().state, 'ready')
  const back = (await s.inventory.machines.get(mid))!
  assert.equal(back.state, 'ready')
  // Allocatable again.
  assert.equal((await allocate(s, { selector: `id == ${mid}`, profile: 'w113', count: 1 })).statusCode, 201)
})

eachBackend('release with a power manager PXE-boots the machine so the wipe starts', async (t, backend) => {
  const calls: string[] = []
  const s = await apiSetup({ backend, power: { async netbootNow(id) { calls.push(id) } } })
  t.after(() => s.close())
  await catalog(s)
  const [id] = await seedMachines(s.inventory, { count: 1 })
  await s.inventory.bmcs.put(id!, { type: 'ipmi', address: '198.18.9.1' })
  await allocate(s, { selector: 'cpu.cores >= 1', profile: 'w113', count: 1 })
  await s.inventory.machines.setState(id!, 'provisioning', 'installed', Date.now())
  const rel = await s.app.inject({ method: 'POST', url: `/api/v1/machines/${id}/release`, headers: s.auth('provision') })
  assert.equal(rel.statusCode, 200, rel.body)
  assert.equal(rel.json().power.status, 'done')
  assert.deepEqual(calls, [id])
  assert.equal((await s.inventory.machines.get(id!))!.profile, null, 'the profile the machine had before comes back')
})
