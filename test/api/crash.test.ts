import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { startServe } from '../support/cli.js'
import { seedMachines } from './support/seed.js'

const MACHINES = 400

/** An error from fetch (or from reading its body) because the server's end of the connection went away. */
function cutByKill(err: unknown): boolean {
  for (let e: unknown = err; e; e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && ['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED'].includes(code)) return true
  }
  return false
}

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
  // The profile's boot files are on the server (allocations naming missing ones are refused).
  mkdirSync(join(dir, 'assets', 'talos', 'v1.13.9', 'amd64'), { recursive: true })
  for (const f of ['vmlinuz', 'initramfs.xz']) writeFileSync(join(dir, 'assets', 'talos', 'v1.13.9', 'amd64', f), 'x')
  await inv.classes.put({ name: 'any', description: null, selectors: ['cpu.cores >= 8'], profile: 'w', patches: [], managedBy: null }, 1)
  const { secret } = await inv.tokens.create({ name: 'capi', scopes: ['provision'] }, Date.now())
  await inv.close()

  let { server, address } = await start(dir)
  t.after(() => server.stop())
  const headers = { authorization: `Bearer ${secret}`, 'content-type': 'application/json' }
  // Every allocation acknowledged (201 with its whole body) before the kill, every request made, and the requests
  // whose connection the kill cut.
  const acked = new Map<string, { id: string; machines: string[] }>()
  const sent: { key: string; count: number }[] = []
  const cut: string[] = []
  let killed = false
  // Eight allocators in a loop until the server dies under them. Only a connection error after the kill ends one
  // quietly; any other failure, and every answer but 201, fails the test.
  const allocator = async (w: number) => {
    for (let i = 0; !killed; i++) {
      const key = `w${w}-${i}`
      const count = 1 + ((w + i) % 5)
      sent.push({ key, count })
      let status: number
      let text: string
      try {
        const r = await fetch(`${address}/api/v1/allocations`, { method: 'POST', headers, body: JSON.stringify({ class: 'any', count, idempotencyKey: key }) })
        status = r.status
        text = await r.text()
      } catch (err) {
        if (killed && cutByKill(err)) {
          cut.push(key)
          return
        }
        throw err
      }
      assert.equal(status, 201, `allocation ${key} (count ${count}) answered ${status} ${text}`)
      const body = JSON.parse(text) as { id: string; count: number; machines: { id: string }[] }
      assert.equal(body.machines.length, count, `${key}: ${text}`)
      acked.set(key, { id: body.id, machines: body.machines.map((m) => m.id) })
    }
  }
  let workersDone = false
  const workers = Promise.all(Array.from({ length: 8 }, (_, w) => allocator(w))).finally(() => (workersDone = true))
  workers.catch(() => undefined) // awaited below, after the kill
  // Kill once a good number are through, while the others are in flight (or at once, should an allocator fail).
  const deadline = Date.now() + 30_000
  while (acked.size < 25 && !workersDone && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5))
  killed = true
  server.child.kill('SIGKILL')
  await server.stop()
  await workers
  assert.ok(acked.size >= 25, `only ${acked.size} allocations in 30 s`)
  assert.ok(cut.length > 0, 'some requests were in flight when the server died')
  t.diagnostic(`kill -9 after ${acked.size} acknowledged allocations; ${sent.length} requests, ${cut.length} cut by the kill`)
  // What the clients were told is consistent in itself: no machine handed to two allocations.
  const told = new Map<string, string>()
  for (const [k, a] of acked) {
    for (const m of a.machines) {
      assert.ok(!told.has(m), `${m} acknowledged to ${told.get(m)} and ${k}`)
      told.set(m, k)
    }
  }

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
      const text = await r.text()
      assert.equal(r.status, 201, `${key} retried after the restart: ${r.status} ${text}`)
      assert.equal(r.headers.get('idempotent-replayed'), null)
      for (const m of (JSON.parse(text) as { machines: { id: string }[] }).machines) assert.ok(!owner.has(m.id), `${m.id} was allocated already, to ${owner.get(m.id)}`)
    }
  }
  assert.equal(await server.stop(), 0, 'a clean stop after the restart')
})
