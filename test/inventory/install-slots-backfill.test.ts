// Migration 0017 (issue 16): a database upgraded while machines were installing gives those machines the install
// slots they were admitted to, so claims after the upgrade count them. On both backends: machines at schema 0016 with
// timelines as boot.ts and the lifecycle write them, then the upgrade, then claims at the bounds.
import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Inventory, Machine } from '../../src/inventory/index.js'
import { eachBackend, type Backend } from '../support/backends.js'

const NOW = 1_800_000_000_000
let made = 0

async function machine(inv: Inventory, input: { rack?: string | null; labels?: Record<string, string> }, states: string[]): Promise<Machine> {
  const n = ++made
  const m = await inv.machines.create({ name: `backfill-${n}`, rack: input.rack ?? null, labels: input.labels ?? {}, nics: [{ mac: `02:00:00:17:00:${n.toString(16).padStart(2, '0')}`, name: null, boot: true }], state: 'ready' }, NOW)
  let from = 'ready'
  for (const to of states) {
    assert.ok(await inv.machines.setState(m.id, from as Machine['state'], to as Machine['state'], NOW))
    await event(inv, m, 'machine.state', { from, to })
    from = to
  }
  return m
}

const event = (inv: Inventory, m: Machine, type: string, data: Record<string, unknown>) =>
  inv.events.append({ machineId: m.id, type, at: NOW, message: type, data })
/** The boot script an admitted machine was served (boot.ts). */
const installScript = (inv: Inventory, m: Machine) => event(inv, m, 'boot.script', { decision: 'install', reason: 'provisioning' })
/** The one a machine waiting for a slot was served: held, queued. */
const heldScript = (inv: Inventory, m: Machine) => event(inv, m, 'boot.script', { decision: 'hold', reason: 'waiting for an install slot', queued: true, position: 1 })

/** A database left at 0016, reopened by the same backend at the newest schema. */
async function atSchema0016(backend: Backend) {
  const file = join(mkdtempSync(join(tmpdir(), 'rb-0017-')), 'v16.db')
  const old = await backend.open({ migrateTo: '0016-allocation-machine-index', file })
  return { old, reopen: () => backend.open(old.url ? { url: old.url } : { file }) }
}

eachBackend('0017: machines admitted before the upgrade get install slots, with their racks; claims at the bounds count them', async (t, backend) => {
  const { old, reopen } = await atSchema0016(backend)
  const inRack = await machine(old, { rack: 'r1' }, ['provisioning'])
  await installScript(old, inRack)
  // The rack label is the rack admission claims with when the machine has no rack (repair.ts rackOf).
  const byLabel = await machine(old, { labels: { rack: 'r2' } }, ['provisioning'])
  await heldScript(old, byLabel)
  await installScript(old, byLabel)
  const waiting = await machine(old, { rack: 'r1' }, ['provisioning'])
  await heldScript(old, waiting)
  // Admitted in an earlier attempt, provisioning again since and not admitted in this one.
  const retried = await machine(old, { rack: 'r1' }, ['provisioning'])
  await installScript(old, retried)
  assert.ok(await old.machines.setState(retried.id, 'provisioning', 'failed', NOW))
  await event(old, retried, 'machine.state', { from: 'provisioning', to: 'failed' })
  assert.ok(await old.machines.setState(retried.id, 'failed', 'provisioning', NOW))
  await event(old, retried, 'machine.state', { from: 'failed', to: 'provisioning' })
  const installed = await machine(old, { rack: 'r1' }, ['provisioning', 'installed'])
  await installScript(old, installed)
  // Claimed at 0016 (0015 made the table): its row stays as it was.
  const claimed = await machine(old, {}, ['provisioning'])
  assert.equal((await old.installSlots!.claim(claimed.id, null, { overall: 10, perRack: 0 }, 'A', NOW)).ok, true)
  await installScript(old, claimed)
  await old.close()

  const before = Date.now()
  const inv = await reopen()
  t.after(() => inv.close())
  const slots = await inv.installSlots!.list()
  const byId = new Map(slots.map((s) => [s.machineId, s]))
  assert.deepEqual([...byId.keys()].sort(), [inRack.id, byLabel.id, claimed.id].sort())
  assert.deepEqual({ ...byId.get(inRack.id), takenAt: 0 }, { machineId: inRack.id, rack: 'r1', holder: 'migration-0017', takenAt: 0 })
  assert.deepEqual({ ...byId.get(byLabel.id), takenAt: 0 }, { machineId: byLabel.id, rack: 'r2', holder: 'migration-0017', takenAt: 0 })
  assert.deepEqual(byId.get(claimed.id), { machineId: claimed.id, rack: null, holder: 'A', takenAt: NOW })
  const takenAt = byId.get(inRack.id)!.takenAt
  assert.ok(takenAt >= before && takenAt <= Date.now(), `taken at the migration's time (${takenAt})`)

  // maxConcurrent 3: three machines installing, the ones waiting stay waiting; one more slot, one more machine.
  assert.deepEqual(await inv.installSlots!.claim(waiting.id, 'r1', { overall: 3, perRack: 0 }, 'B', NOW), { ok: false, bound: 'overall', installing: 3, rackInstalling: 1 })
  assert.deepEqual(await inv.installSlots!.claim(retried.id, 'r1', { overall: 3, perRack: 0 }, 'B', NOW), { ok: false, bound: 'overall', installing: 3, rackInstalling: 1 })
  // maxPerRack 1: r1's one is installing.
  assert.deepEqual(await inv.installSlots!.claim(waiting.id, 'r1', { overall: 4, perRack: 1 }, 'B', NOW), { ok: false, bound: 'rack', installing: 3, rackInstalling: 1 })
  assert.deepEqual(await inv.installSlots!.claim(waiting.id, 'r1', { overall: 4, perRack: 0 }, 'B', NOW), { ok: true, installing: 3, rackInstalling: 1 })
  // A machine admitted before the upgrade holds its slot: ok at the bound.
  assert.deepEqual(await inv.installSlots!.claim(inRack.id, 'r1', { overall: 1, perRack: 1 }, 'B', NOW), { ok: true, installing: 3, rackInstalling: 1 })
})

eachBackend('0017 runs down and up again: its slots go and come back; others stay', async (t, backend) => {
  const { old, reopen } = await atSchema0016(backend)
  const admitted = await machine(old, { rack: 'r1' }, ['provisioning'])
  await installScript(old, admitted)
  await old.close()
  const inv = await reopen()
  t.after(() => inv.close())
  const { Migrator } = await import('kysely')
  const { migrationProvider } = await import('../../src/inventory/sql/migrations/index.js')
  const migrator = new Migrator({ db: inv.db, provider: migrationProvider })
  const other = await machine(inv, {}, ['provisioning'])
  assert.equal((await inv.installSlots!.claim(other.id, null, { overall: 10, perRack: 0 }, 'A', NOW)).ok, true)
  assert.equal((await migrator.migrateTo('0016-allocation-machine-index')).error, undefined)
  assert.deepEqual((await inv.installSlots!.list()).map((s) => s.machineId), [other.id])
  assert.equal((await migrator.migrateToLatest()).error, undefined)
  assert.deepEqual((await inv.installSlots!.list()).map((s) => [s.machineId, s.holder]).sort(), [[admitted.id, 'migration-0017'], [other.id, 'A']].sort())
})
