// Issue 14's API: replace a machine (atomically, idempotently, never one machine twice under 50 concurrent calls),
// retry a quarantined one, and allocation that skips machines no install disk fits.
import assert from 'node:assert/strict'
import { apiSetup, eachBackend, type ApiSetup } from './support/app.js'
import { seedMachines } from './support/seed.js'

async function catalog(s: ApiSetup) {
  await s.inventory.profiles.put({ name: 'w113', description: null, talosVersion: 'v1.13.9', arch: 'amd64', schematic: null, kernelArgs: [], baseConfig: null, patches: [], managedBy: null }, 1)
  await s.inventory.classes.put({ name: 'any', description: null, selectors: [], profile: 'w113', patches: [{ machine: { sysctls: { 'vm.swappiness': '1' } } }], managedBy: null }, 1)
  await s.app.inject({ method: 'POST', url: '/api/v1/clusters', headers: s.auth('admin'), payload: { name: 'lab', endpoint: 'https://198.18.0.10:6443', talosVersion: 'v1.13.9' } })
}

const post = (s: ApiSetup, url: string, payload: Record<string, unknown> = {}, scope: 'provision' | 'read' = 'provision') =>
  s.app.inject({ method: 'POST', url, headers: s.auth(scope), payload })

eachBackend('replace: a like machine takes the place (class, role, cluster, profile, patches); a failed one stays quarantined, a healthy one is released', async (t, backend) => {
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  await catalog(s)
  await seedMachines(s.inventory, { count: 6 })
  const r = await post(s, '/api/v1/allocations', { class: 'any', count: 2, cluster: 'lab', role: 'controlplane', patches: [{ machine: { network: { hostname: 'x' } } }] })
  assert.equal(r.statusCode, 201, r.body)
  const [a, b] = r.json().machines.map((m: { id: string }) => m.id)
  // a failed: the ladder quarantined it.
  await s.lifecycle.transition(a, 'failed', 'test: quarantined after 2 failures')
  const rep = await post(s, `/api/v1/machines/${a}/replace`, { idempotencyKey: 'replace-a-1' })
  assert.equal(rep.statusCode, 201, rep.body)
  const body = rep.json()
  assert.deepEqual(body.replaced, { id: a, action: 'quarantined' })
  const fresh = body.allocation.machines[0].id
  assert.notEqual(fresh, a)
  assert.notEqual(fresh, b)
  const current = await s.inventory.allocations.current(fresh)
  assert.equal(current?.cluster, 'lab')
  assert.equal(current?.role, 'controlplane')
  assert.equal(current?.class, 'any')
  assert.deepEqual(current?.patches, [{ machine: { network: { hostname: 'x' } } }])
  assert.equal((await s.inventory.machines.get(fresh))!.state, 'provisioning')
  assert.equal((await s.inventory.machines.get(a))!.state, 'failed')
  assert.equal(await s.inventory.allocations.current(a), null, 'the failed machine left the cluster')
  // Idempotent: the same key answers the same result, nothing more taken.
  const again = await post(s, `/api/v1/machines/${a}/replace`, { idempotencyKey: 'replace-a-1' })
  assert.equal(again.statusCode, 200)
  assert.equal(again.json().allocation.id, body.allocation.id)
  assert.equal(await s.inventory.machines.count({ state: 'provisioning' }), 2)
  // A healthy machine replaced is released (wiped).
  const repB = await post(s, `/api/v1/machines/${b}/replace`)
  assert.equal(repB.statusCode, 201, repB.body)
  assert.deepEqual(repB.json().replaced, { id: b, action: 'released' })
  assert.equal((await s.inventory.machines.get(b))!.state, 'released')
  // Not allocated: nothing to replace. A read token may not.
  assert.equal((await post(s, `/api/v1/machines/${b}/replace`)).statusCode, 409)
  assert.equal((await post(s, `/api/v1/machines/${fresh}/replace`, {}, 'read')).statusCode, 403)
})

eachBackend('50 concurrent replace calls for 50 failed machines: each gets its own ready machine, none taken twice, the rest refused', async (t, backend) => {
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  await catalog(s)
  await seedMachines(s.inventory, { count: 90 })
  const r = await post(s, '/api/v1/allocations', { class: 'any', count: 50, cluster: 'lab', role: 'worker' })
  assert.equal(r.statusCode, 201, r.body)
  const old: string[] = r.json().machines.map((m: { id: string }) => m.id)
  for (const id of old) await s.lifecycle.transition(id, 'failed', 'test')
  // 40 ready machines for 50 replacements, each call sent twice (a retried request with the same key).
  const calls = old.flatMap((id) => [0, 1].map(() => post(s, `/api/v1/machines/${id}/replace`, { idempotencyKey: `rep-${id}` })))
  const answers = await Promise.all(calls)
  const ok = answers.filter((a) => a.statusCode === 201 || a.statusCode === 200)
  const refused = answers.filter((a) => a.statusCode === 409)
  assert.equal(ok.length + refused.length, answers.length, answers.filter((a) => ![200, 201, 409].includes(a.statusCode)).map((a) => a.body).join('\n'))
  const taken = new Map<string, string>()
  for (const a of ok) {
    const j = a.json()
    const fresh = j.allocation.machines[0].id as string
    const prev = taken.get(fresh)
    assert.ok(!prev || prev === j.allocation.id, `machine ${fresh} handed out by two allocations`)
    taken.set(fresh, j.allocation.id)
  }
  assert.equal(taken.size, 40, 'every ready machine replaced exactly one failed machine')
  // The two calls for one failed machine (same key) got one answer between them: one allocation, never two machines.
  old.forEach((id, i) => {
    const mine = [answers[2 * i]!, answers[2 * i + 1]!].filter((a) => a.statusCode < 300).map((a) => a.json().allocation.id as string)
    assert.ok(new Set(mine).size <= 1, `failed machine ${id} got ${new Set(mine).size} replacements`)
  })
  assert.equal(await s.inventory.machines.count({ state: 'ready' }), 0)
  assert.equal(await s.inventory.machines.count({ state: 'provisioning' }), 40)
  for (const a of refused) assert.match(a.json().message, /not enough ready machines/)
})

eachBackend('retry: a failed machine goes back to provisioning; anything else is refused', async (t, backend) => {
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  await catalog(s)
  await seedMachines(s.inventory, { count: 2 })
  const id = (await post(s, '/api/v1/allocations', { class: 'any', count: 1, cluster: 'lab' })).json().machines[0].id as string
  assert.equal((await post(s, `/api/v1/machines/${id}/retry`)).statusCode, 409, 'a provisioning machine is not retried')
  await s.lifecycle.transition(id, 'failed', 'test')
  assert.equal((await post(s, `/api/v1/machines/${id}/retry`, {}, 'read')).statusCode, 403)
  const ok = await post(s, `/api/v1/machines/${id}/retry`, { reason: 'reseated the NIC' })
  assert.equal(ok.statusCode, 200, ok.body)
  assert.equal(ok.json().machine.state, 'provisioning')
  await s.timeline.flush()
  const msgs = (await s.inventory.events.list({ machineId: id })).map((e) => e.message)
  assert.ok(msgs.some((m) => /failed → provisioning: retry by .*reseated the NIC/.test(m)), msgs.join('\n'))
  // Replaced, it left its cluster: nothing to retry.
  await s.lifecycle.transition(id, 'failed', 'test')
  assert.equal((await post(s, `/api/v1/machines/${id}/replace`)).statusCode, 201)
  const gone = await post(s, `/api/v1/machines/${id}/retry`)
  assert.equal(gone.statusCode, 409)
  assert.match(gone.json().message, /left its cluster/)
})

eachBackend('allocation skips machines whose disks no install-disk selector fits, and says how many and why', async (t, backend) => {
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  await catalog(s)
  await s.inventory.profiles.put({ name: 'nvme', description: null, talosVersion: 'v1.13.9', arch: 'amd64', schematic: null, kernelArgs: [], baseConfig: null, patches: [], installDisk: { type: 'nvme' }, managedBy: null }, 1)
  await seedMachines(s.inventory, { count: 8 }) // factsFor(i): i % 4 NVMe disks, so 2 of 8 have none
  const r = await post(s, '/api/v1/allocations', { selector: 'cpu.cores >= 1', profile: 'nvme', count: 7 })
  assert.equal(r.statusCode, 409)
  assert.equal(r.json().details.skipped, 2)
  assert.equal(r.json().details.available, 6)
  assert.match(r.json().message, /2 matching machines skipped: no disk satisfies the install-disk selector of profile nvme/)
  const ok = await post(s, '/api/v1/allocations', { selector: 'cpu.cores >= 1', profile: 'nvme', count: 6 })
  assert.equal(ok.statusCode, 201)
  for (const m of ok.json().machines) assert.ok(((await s.inventory.machines.get(m.id))!.hardware?.disks ?? []).some((d) => d.type === 'nvme'))
})

eachBackend('a profile whose Talos files are missing is refused at allocation, with the command that fetches them', async (t, backend) => {
  const { createAllocator } = await import('../../src/lifecycle/index.js')
  const { missingTalosAssets } = await import('../../src/assets/readiness.js')
  const { mkdtempSync, mkdirSync, writeFileSync } = await import('node:fs')
  const { join } = await import('node:path')
  const { tmpdir } = await import('node:os')
  const { silentLogger } = await import('../../src/log.js')
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  await catalog(s)
  await seedMachines(s.inventory, { count: 2 })
  const assets = mkdtempSync(join(tmpdir(), 'rb-assets-'))
  const allocator = createAllocator({ inventory: s.inventory, lifecycle: s.lifecycle, log: silentLogger(), missingAssets: (p) => missingTalosAssets(assets, p) })
  await assert.rejects(allocator.allocate({ class: 'any', count: 1 }), (err: Error & { statusCode?: number }) => {
    assert.equal(err.statusCode, 422)
    assert.match(err.message, /profile 'w113': Talos v1\.13\.9 amd64 boot files missing .*run rackboot assets fetch talos v1\.13\.9/)
    return true
  })
  assert.equal(await s.inventory.machines.count({ state: 'ready' }), 2)
  mkdirSync(join(assets, 'talos', 'v1.13.9', 'amd64'), { recursive: true })
  for (const f of ['vmlinuz', 'initramfs.xz']) writeFileSync(join(assets, 'talos', 'v1.13.9', 'amd64', f), 'x')
  assert.equal((await allocator.allocate({ class: 'any', count: 1 })).allocation.machines.length, 1)
})
