import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { startServe } from '../support/cli.js'
import { seedMachines } from './support/seed.js'

const MACHINES = 400

function serveArgs(dir: string): string[] {
  return ['--set', `dataDir=${dir}`, '--set', 'http.listen=127.0.0.1', '--set', 'http.port=0', '--set', 'tftp.enabled=false', '--set', `assetsDir=${join(dir, 'assets')}`]
}

async function start(dir: string) {
  const server = await startServe(serveArgs(dir), { cwd: dir, timeoutMs: 60_000 })
  const line = server.output().split('\n').find((l) => l.includes('rackboot is serving'))!
  const address = JSON.parse(line).address as string
  return { server, address }
}

test('kill -9 in the middle of a stream of allocations leaves no machine half-allocated after restart', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rb-crash-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const db = join(dir, 'rackboot.db')
  const key = join(dir, 'secret.key')
  let inv = await openSqliteInventory({ file: db, secretKeyFile: key })
  await seedMachines(inv, { count: MACHINES })
  await inv.profiles.put({ name: 'w', description: null, talosVersion: 'v1.13.9', arch: 'amd64', schematic: null, kernelArgs: [], baseConfig: null, patches: [], managedBy: null }, 1)
  await inv.classes.put({ name: 'any', description: null, selectors: ['cpu.cores >= 8'], profile: 'w', patches: [], managedBy: null }, 1)
  const { secret } = await inv.tokens.create({ name: 'capi', scopes: ['provision'] }, Date.now())
  await inv.close()

  let { server, address } = await start(dir)
  t.after(() => server.stop())
  const headers = { authorization: `Bearer ${secret}`, 'content-type': 'application/json' }
  const acked = new Map<string, { id: string; machines: string[] }>()
  const sent: { key: string; count: number }[] = []
  let killed = false
  // Eight allocators in a loop until the server dies under them.
  const allocator = async (w: number) => {
    for (let i = 0; !killed; i++) {
      const key = `w${w}-${i}`
      const count = 1 + ((w + i) % 5)
      sent.push({ key, count })
      try {
        const r = await fetch(`${address}/api/v1/allocations`, { method: 'POST', headers, body: JSON.stringify({ class: 'any', count, idempotencyKey: key }) })
        const body = await r.json() as any
        if (r.status === 201) acked.set(key, { id: body.id, machines: body.machines.map((m: any) => m.id) })
        else if (r.status !== 409) assert.fail(`${r.status} ${JSON.stringify(body)}`)
      } catch {
        return // the connection died with the server
      }
    }
  }
  const workers = Array.from({ length: 8 }, (_, w) => allocator(w))
  // Kill once a good number are through, while the others are in flight.
  while (acked.size < 25) await new Promise((r) => setTimeout(r, 5))
  server.child.kill('SIGKILL')
  killed = true
  await server.stop()
  await Promise.all(workers)
  assert.ok(sent.length > acked.size, 'some requests were in flight when the server died')

  // Restart on the same data; the state must be whole.
  ;({ server, address } = await start(dir))
  inv = await openSqliteInventory({ file: db, secretKeyFile: key })
  t.after(() => inv.close())
  const machines = (await inv.queries.scanMachines({ limit: 1000 })).items
  assert.equal(machines.length, MACHINES, 'no machine lost')
  const provisioning = machines.filter((m) => m.state === 'provisioning')
  assert.equal(provisioning.length + machines.filter((m) => m.state === 'ready').length, MACHINES)
  const allocations = (await inv.allocations.list({ limit: 1000 })).items
  const owner = new Map<string, string>()
  for (const a of allocations) {
    assert.equal(a.machines.length, a.count, `${a.id} holds what it asked for`)
    for (const m of a.machines) {
      assert.ok(!owner.has(m.id), `${m.id} in ${owner.get(m.id)} and ${a.id}`)
      owner.set(m.id, a.id)
    }
  }
  for (const m of provisioning) {
    assert.equal(owner.get(m.id), (await inv.allocations.current(m.id))?.allocationId, `${m.id} belongs to its allocation`)
    assert.ok(owner.has(m.id), `${m.id} is provisioning without an allocation`)
    assert.equal(m.profile, 'w')
  }
  for (const [id] of owner) assert.equal(machines.find((m) => m.id === id)?.state, 'provisioning', `${id} allocated but not provisioning`)
  // Every answer the clients got survived.
  for (const [k, a] of acked) {
    const stored = await inv.allocations.byKey(k)
    assert.equal(stored?.id, a.id, k)
    assert.deepEqual(stored?.machines.map((m) => m.id), a.machines)
  }
  // A client retrying what it never heard back about gets either the committed result or a fresh one, never two.
  for (const { key, count } of sent.filter((x) => !acked.has(x.key)).slice(0, 10)) {
    const before = await inv.allocations.byKey(key)
    const r = await fetch(`${address}/api/v1/allocations`, { method: 'POST', headers, body: JSON.stringify({ class: 'any', count, idempotencyKey: key }) })
    if (before) {
      assert.equal(r.status, 201)
      assert.equal(r.headers.get('idempotent-replayed'), 'true')
      assert.equal(((await r.json()) as any).id, before.id)
    } else {
      assert.ok([201, 409].includes(r.status), String(r.status))
      await r.body?.cancel()
    }
  }
  assert.equal(await server.stop(), 0, 'a clean stop after the restart')
})
