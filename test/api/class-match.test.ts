// GET /machines/{id}/class-match: which class and profile a machine gets, selector by selector (what
// `rackboot classes test MACHINE` printed), with the install disk its profile picks.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { resolveProfile } from '../../src/lifecycle/index.js'
import { chooseClass } from '../../src/matching/index.js'
import { apiSetup } from './support/app.js'
import { seedMachines } from './support/seed.js'

const cls = (name: string, selectors: string[], profile: string | null = null) => ({ name, description: null, selectors, profile, patches: [], managedBy: null })
const profile = (name: string, installDisk: object | null = null) => ({
  name, description: null, talosVersion: 'v1.13.9', arch: 'amd64', schematic: null, kernelArgs: [], baseConfig: null, patches: [], managedBy: null,
  ...(installDisk ? { installDisk } : {}),
})

test('every class selector by selector, the most specific wins, ties named; the profile, why, and its install disk', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  // Machine 3 of the seed: 64 cores, 128 GiB, three NVMe disks and an SSD.
  const ids = await seedMachines(s.inventory, { count: 4 })
  const id = ids[3]!
  const now = Date.now()
  await s.inventory.profiles.put(profile('p-nvme', { type: 'nvme', prefer: 'smallest' }) as never, now)
  await s.inventory.classes.put(cls('any', ['cpu.cores >= 1']), now)
  await s.inventory.classes.put(cls('big', ['cpu.cores >= 32', 'memory.gib >= 64'], 'p-nvme'), now)
  await s.inventory.classes.put(cls('tie', ['cpu.cores >= 48', 'disks[type=nvme].count >= 1']), now)
  await s.inventory.classes.put(cls('huge', ['cpu.cores >= 32', 'memory.gib >= 4096', 'labels.zone == "z3"']), now)
  await s.inventory.classes.put(cls('empty', []), now)
  await s.inventory.classes.put(cls('broken', ['memory.gigs > 1']), now) // stored behind the API's back

  const r = await s.app.inject({ url: `/api/v1/machines/r1-u4-3/class-match`, headers: s.auth('read') })
  assert.equal(r.statusCode, 200, r.body)
  const m = r.json()
  assert.equal(m.machineId, id)
  assert.equal(m.machineName, 'r1-u4-3')
  assert.equal(m.chosen, 'big')
  assert.deepEqual(m.tiedWith, ['tie'])
  assert.deepEqual(m.matching, ['big', 'tie', 'any'])
  assert.equal(m.profile, 'p-nvme')
  assert.equal(m.profileExists, true)
  assert.equal(m.reason, 'class big (tied with tie; chosen by name) gives profile p-nvme')
  assert.deepEqual(m.installDisk, { selector: { type: 'nvme', prefer: 'smallest' }, disk: '/dev/nvme0n1', reason: null })
  const byName = new Map(m.classes.map((c: any) => [c.name, c]))
  assert.deepEqual(byName.get('huge'), {
    name: 'huge', profile: null, matched: false, specificity: 3,
    selectors: [
      { source: 'cpu.cores >= 32', ok: true, error: null },
      { source: 'memory.gib >= 4096', ok: false, error: null },
      { source: 'labels.zone == "z3"', ok: true, error: null },
    ],
  })
  assert.deepEqual(byName.get('empty'), { name: 'empty', profile: null, matched: false, specificity: 0, selectors: [] })
  const broken = byName.get('broken') as any
  assert.equal(broken.matched, false)
  assert.match(broken.selectors[0].error, /memory\.gigs/)

  // The same answer the CLI's `classes test` computed from these functions.
  const machine = (await s.inventory.machines.get(id))!
  const choice = chooseClass(machine, await s.inventory.classes.list())
  const resolved = await resolveProfile(s.inventory, machine)
  assert.deepEqual({ chosen: m.chosen, tiedWith: m.tiedWith, profile: m.profile, reason: m.reason }, {
    chosen: choice.chosen!.name, tiedWith: choice.tiedWith, profile: resolved.profile!.name, reason: resolved.reason,
  })
  assert.deepEqual(m.classes.map((c: any) => ({ ...c, selectors: c.selectors.map((x: any) => ({ source: x.source, ok: x.ok })) })),
    choice.all.map((c) => ({ ...c, selectors: c.selectors.map((x) => ({ source: x.source, ok: x.ok })) })))
})

test("a machine's own profile wins; a profile that does not exist is said so; no class at all; read scope", async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  const [a, b] = await seedMachines(s.inventory, { count: 2, state: 'discovered' })
  const now = Date.now()
  await s.inventory.profiles.put(profile('p-own') as never, now)
  await s.inventory.classes.put(cls('any', ['cpu.cores >= 1'], 'p-gone'), now)
  await s.inventory.machines.update(a!, { profile: 'p-own' }, now)
  const get = (id: string) => s.app.inject({ url: `/api/v1/machines/${id}/class-match`, headers: s.auth('read') })
  const own = (await get(a!)).json()
  assert.deepEqual([own.chosen, own.profile, own.profileExists, own.reason], ['any', 'p-own', true, "machine's own profile p-own"])
  assert.deepEqual(own.installDisk, { selector: null, disk: '/dev/sda', reason: null })
  const gone = (await get(b!)).json()
  assert.deepEqual([gone.chosen, gone.profile, gone.profileExists, gone.installDisk], ['any', 'p-gone', false, null])
  assert.equal(gone.reason, 'class any gives profile p-gone, which does not exist')
  await s.inventory.classes.delete('any')
  const none = (await get(b!)).json()
  assert.deepEqual([none.chosen, none.profile, none.reason, none.classes], [null, null, 'no profile, and no class matches', []])
  assert.equal((await s.app.inject({ url: `/api/v1/machines/${a}/class-match` })).statusCode, 401)
})
