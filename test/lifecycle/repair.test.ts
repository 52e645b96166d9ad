// The repair ladder with a fake clock and hand-driven timers: phase deadlines, failures from Talos and downloads,
// boot loops, bounded repairs with backoff, quarantine, retry, and a restart that remembers.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createEventBus } from '../../src/events/bus.js'
import { openSqliteInventory, type Machine } from '../../src/inventory/index.js'
import { attachTimeline, createLifecycle } from '../../src/lifecycle/index.js'
import { createRepair, type RepairPower, type RepairSettings } from '../../src/lifecycle/repair.js'
import { silentLogger } from '../../src/log.js'
import { createMetricsRegistry } from '../../src/metrics.js'

const S = 1000

async function setup(options: { bmc?: boolean; settings?: Partial<RepairSettings>; failPower?: boolean; file?: string } = {}) {
  const inventory = await openSqliteInventory({ file: options.file ?? ':memory:' })
  const log = silentLogger()
  const bus = createEventBus()
  const timeline = attachTimeline({ inventory, bus, log })
  let now = 1_800_000_000_000
  const clock = { now: () => now }
  const lifecycle = createLifecycle({ inventory, bus, log, clock })
  const timers: Array<{ at: number; fn: () => void; cancelled: boolean }> = []
  const powerCalls: Array<{ id: string; at: number; mode?: string }> = []
  let inFlight = 0
  let maxInFlight = 0
  const power: RepairPower = {
    async netbootNow(id, o) {
      inFlight++
      maxInFlight = Math.max(maxInFlight, inFlight)
      powerCalls.push({ id, at: now, ...(o?.mode ? { mode: o.mode } : {}) })
      await new Promise((r) => setImmediate(r))
      inFlight--
      if (options.failPower) throw new Error('BMC 198.18.0.200 did not answer')
      return {}
    },
  }
  const registry = createMetricsRegistry()
  const make = () => createRepair({
    inventory, lifecycle, bus, log, clock, power, registry: createMetricsRegistry(), random: () => 1,
    settings: { sweepMs: 60 * 60 * S, ...options.settings },
    setTimer: (fn, ms) => {
      const t = { at: now + ms, fn, cancelled: false }
      timers.push(t)
      return { cancel: () => { t.cancelled = true } }
    },
  })
  const repair = make()
  void registry
  await repair.start()
  let made = 0
  async function machine(name: string, opts: { bmc?: boolean } = {}) {
    const m = await inventory.machines.create({ name, nics: [{ mac: `02:00:00:00:01:${(++made).toString(16).padStart(2, '0')}`, name: null, boot: true }], state: 'ready', firmware: 'uefi' }, now)
    if (opts.bmc ?? options.bmc ?? true) await inventory.bmcs.put(m.id, { type: 'ipmi', address: '198.18.0.200', username: 'admin', password: 'pw' })
    await lifecycle.transition(m.id, 'provisioning', 'test allocation')
    await repair.idle()
    return m
  }
  return {
    inventory, lifecycle, repair, timeline, powerCalls, registry,
    get maxInFlight() { return maxInFlight },
    make,
    clock,
    async advance(ms: number) {
      now += ms
      for (;;) {
        await repair.sweep()
        await repair.idle()
        const due = timers.filter((t) => !t.cancelled && t.at <= now)
        if (due.length === 0) break
        for (const t of due) {
          t.cancelled = true
          t.fn()
        }
        await repair.idle()
      }
    },
    machine,
    async state(id: string) {
      return (await inventory.machines.get(id))!.state
    },
    async timelineOf(id: string) {
      await timeline.flush()
      return (await inventory.events.list({ machineId: id })).filter((e) => e.type === 'boot.failure' || e.type === 'boot.repair').map((e) => e.message)
    },
    async close() {
      await repair.stop()
      await timeline.flush()
      await inventory.close()
    },
  }
}

test('a machine that never asks for its script fails its boot deadline, is power-cycled with backoff, then quarantined', async (t) => {
  const s = await setup({ settings: { deadlines: { boot: 600, download: 900, config: 600, installing: 900, installed: 1800 }, backoffMs: 30 * S } })
  t.after(() => s.close())
  const m = await s.machine('silent')
  await s.advance(599 * S)
  assert.equal(s.powerCalls.length, 0, 'not before the deadline')
  await s.advance(2 * S)
  assert.equal(s.repair.status(m.id)?.failures, 1)
  assert.equal(s.powerCalls.length, 0, 'the repair waits its backoff')
  await s.advance(30 * S)
  assert.deepEqual(s.powerCalls.map((c) => [c.id, c.mode]), [[m.id, 'uefi']])
  // Second failure in the same phase: quarantined (maxPhaseFailures 2), no third power cycle.
  await s.advance(601 * S)
  assert.equal(await s.state(m.id), 'failed')
  await s.advance(3600 * S)
  assert.equal(s.powerCalls.length, 1)
  const lines = await s.timelineOf(m.id)
  assert.match(lines[0]!, /boot failed in phase boot: waited 600 s for a boot script \(firmware, DHCP, iPXE\)/)
  assert.match(lines[1]!, /next boot PXE and a power cycle in 30 s \(failure 1 of 3\)/)
  assert.match(lines[2]!, /next boot PXE \(uefi\) and power cycle: done/)
  assert.match(lines.at(-1)!, /quarantined: 2 failures in phase boot/)
  // A person retries: back to provisioning with the counters reset.
  await s.lifecycle.transition(m.id, 'provisioning', 'retry by a tech')
  await s.advance(0)
  assert.equal(s.repair.status(m.id)?.failures, 0)
})

test('phases advance with the timeline; Talos reporting a failure and a missing initramfs are failures with their phase', async (t) => {
  const s = await setup({ settings: { maxPhaseFailures: 5, maxFailures: 3, backoffMs: 10 * S } })
  t.after(() => s.close())
  const m = await s.machine('talos-fails')
  s.lifecycle.record(m.id, 'boot.script', 'boot script: install', { decision: 'install' })
  await s.advance(S)
  assert.equal(s.repair.status(m.id)?.phase, 'download')
  s.lifecycle.record(m.id, 'boot.asset', 'downloaded', { path: 'talos/v1.13.9/amd64/vmlinuz', status: 200, complete: true })
  s.lifecycle.record(m.id, 'boot.asset', 'downloaded', { path: 'talos/v1.13.9/amd64/initramfs.xz', status: 200, complete: true })
  await s.advance(S)
  assert.equal(s.repair.status(m.id)?.phase, 'config')
  s.lifecycle.record(m.id, 'boot.config', 'config served', { status: 200 })
  s.lifecycle.record(m.id, 'boot.talos', 'Talos is installing', { hint: 'installing' })
  await s.advance(S)
  assert.equal(s.repair.status(m.id)?.phase, 'installed')
  // Talos says the install failed, twice in one boot (kernel log and event sink): one failure.
  s.lifecycle.record(m.id, 'boot.talos', 'Talos reported a failure: failed to run installer: disk /dev/nvme0n1 is in use', { hint: 'failed' })
  s.lifecycle.record(m.id, 'boot.talos', 'Talos reported a failure: sequence install failed', { hint: 'failed' })
  await s.advance(S)
  assert.equal(s.repair.status(m.id)?.failures, 1)
  await s.advance(10 * S)
  assert.equal(s.powerCalls.length, 1)
  // The next boot: its initramfs is missing on the server.
  s.lifecycle.record(m.id, 'boot.script', 'boot script: install', { decision: 'install' })
  s.lifecycle.record(m.id, 'boot.asset', 'download failed', { path: 'talos/v1.13.9/amd64/initramfs.xz', status: 404, complete: false })
  await s.advance(S)
  const lines = await s.timelineOf(m.id)
  assert.ok(lines.some((l) => /phase installed: Talos reported: failed to run installer: disk \/dev\/nvme0n1 is in use/.test(l)), lines.join('\n'))
  assert.ok(lines.some((l) => /phase download: talos\/v1\.13\.9\/amd64\/initramfs\.xz: HTTP 404 \(the file is missing on the server\)/.test(l)), lines.join('\n'))
  assert.equal(s.repair.status(m.id)?.failures, 2)
})

test('a boot loop (scripts again and again without a config) is a failure; no BMC: the ladder waits instead of cycling', async (t) => {
  const s = await setup({ bmc: false, settings: { bootLoopScripts: 4, maxFailures: 2, maxPhaseFailures: 2 } })
  t.after(() => s.close())
  const m = await s.machine('looping')
  for (let i = 0; i < 4; i++) s.lifecycle.record(m.id, 'boot.script', 'boot script: install', { decision: 'install' })
  await s.advance(S)
  const lines = await s.timelineOf(m.id)
  assert.ok(lines.some((l) => /boot loop: 4 boot scripts in one attempt without a config fetch/.test(l)), lines.join('\n'))
  assert.ok(lines.some((l) => /no BMC to power-cycle it/.test(l)), lines.join('\n'))
  assert.equal(s.powerCalls.length, 0)
  // It never comes back: the boot deadline is a second failure, which quarantines it (maxFailures 2).
  await s.advance(601 * S)
  assert.equal(await s.state(m.id), 'failed')
})

test('repairs are bounded at once and a failing BMC is recorded, not retried blindly', async (t) => {
  const s = await setup({ settings: { maxConcurrentRepairs: 3, backoffMs: 0, maxFailures: 5, maxPhaseFailures: 5 } })
  t.after(() => s.close())
  const ids = []
  for (let i = 0; i < 12; i++) ids.push((await s.machine(`m${i}`)).id)
  await s.advance(601 * S)
  assert.equal(s.powerCalls.length, 12)
  assert.ok(s.maxInFlight <= 3, `at most 3 at once, saw ${s.maxInFlight}`)
  const f = await setup({ failPower: true, settings: { backoffMs: 0 } })
  t.after(() => f.close())
  const m = await f.machine('dead-bmc')
  await f.advance(601 * S)
  assert.equal(f.powerCalls.length, 1)
  assert.ok((await f.timelineOf(m.id)).some((l) => /power cycle failed: BMC 198\.18\.0\.200 did not answer/.test(l)))
})

test('after a restart the ladder remembers failures from the timeline', async (t) => {
  const { mkdtempSync } = await import('node:fs')
  const { join } = await import('node:path')
  const { tmpdir } = await import('node:os')
  const file = join(mkdtempSync(join(tmpdir(), 'rb-repair-')), 'db.sqlite')
  const s = await setup({ file, settings: { backoffMs: 0 } })
  const m = await s.machine('restarted')
  await s.advance(601 * S)
  assert.equal(s.powerCalls.length, 1)
  await s.repair.stop()
  await s.timeline.flush()
  // A new ladder on the same database: one failure already counted; the next one in the same phase quarantines.
  const again = s.make()
  await again.start()
  t.after(() => again.stop())
  assert.equal(again.status(m.id)?.failures, 1)
  await s.advance(0)
  await again.sweep()
  assert.equal(await s.state(m.id), 'provisioning', 'the deadline restarted from the power cycle')
  await s.close()
})

test('after a restart a repair that was scheduled and not yet done is done once, when it was due', async (t) => {
  const { mkdtempSync } = await import('node:fs')
  const { join } = await import('node:path')
  const { tmpdir } = await import('node:os')
  const file = join(mkdtempSync(join(tmpdir(), 'rb-repair-')), 'db.sqlite')
  const s = await setup({ file, settings: { backoffMs: 60 * S, maxPhaseFailures: 3 } })
  const m = await s.machine('scheduled-then-restarted')
  await s.advance(601 * S)
  assert.match((await s.timelineOf(m.id)).at(-1)!, /next boot PXE and a power cycle in 60 s/)
  await s.repair.stop()
  await s.timeline.flush()
  const again = s.make()
  await again.start()
  t.after(() => again.stop())
  assert.equal(again.status(m.id)?.repairing, true, 'the scheduled repair is remembered')
  await s.advance(30 * S)
  await again.idle()
  assert.equal(s.powerCalls.length, 0, 'not before it is due')
  await s.advance(31 * S)
  await again.idle()
  assert.deepEqual(s.powerCalls.map((c) => c.id), [m.id])
  await s.advance(300 * S)
  await again.idle()
  assert.equal(s.powerCalls.length, 1)
  await s.close()
})

test('admission: at most N install at once overall and per rack; the rest wait in order and are not failed meanwhile', async (t) => {
  const long = { boot: 100_000, download: 100_000, config: 100_000, installing: 100_000, installed: 100_000 }
  const s = await setup({ settings: { maxProvisioning: 3, maxProvisioningPerRack: 2, deadlines: { ...long, boot: 600 } } })
  t.after(() => s.close())
  const ms: Machine[] = []
  for (const [i, rack] of ['r1', 'r1', 'r1', 'r2', 'r2'].entries()) {
    const m = await s.machine(`m${i}`)
    ms.push(await s.inventory.machines.update(m.id, { rack }, 1))
  }
  const ask = (i: number) => s.repair.admit(ms[i]!)
  assert.deepEqual(await ask(0), { ok: true })
  assert.deepEqual(await ask(1), { ok: true })
  const third = await ask(2)
  assert.ok(!third.ok)
  assert.match(third.reason, /rack r1 has 2 machines installing \(provisioning.maxPerRack 2\)/)
  // A machine of another rack is not held back by rack r1's line.
  assert.deepEqual(await ask(3), { ok: true })
  const fifth = await ask(4)
  assert.ok(!fifth.ok && fifth.position === 2, JSON.stringify(fifth))
  assert.match(fifth.reason, /3 machines installing \(provisioning.maxConcurrent 3\)/)
  assert.deepEqual(s.repair.queue().map((q) => q.machineId), [ms[2]!.id, ms[4]!.id])
  // The admitted ones got their install scripts (phase download, no boot deadline at stake for this test).
  for (const i of [0, 1, 3]) s.lifecycle.record(ms[i]!.id, 'boot.script', 'boot script: install', { decision: 'install' })
  // Waiting is not a failed boot: the boot deadline (600 s) runs from each ask.
  for (let k = 0; k < 4; k++) {
    // As the boot service does for each hold-script request: ask, then record the wait.
    for (const i of [2, 4]) {
      assert.ok(!(await ask(i)).ok)
      s.lifecycle.record(ms[i]!.id, 'boot.script', 'waiting for an install slot', { decision: 'hold', queued: true })
    }
    await s.advance(300 * S)
  }
  assert.equal(s.repair.status(ms[4]!.id)?.failures, 0)
  assert.equal(s.repair.status(ms[2]!.id)?.failures, 0)
  // m0 installs: its slot goes to the first in line that fits, m2 (rack r1 is down to m1), not m4 behind it.
  await s.lifecycle.transition(ms[0]!.id, 'installed', 'test')
  await s.advance(0)
  assert.ok(!(await ask(4)).ok, 'm4 stays behind m2')
  assert.deepEqual(await ask(2), { ok: true })
  assert.deepEqual(s.repair.queue().map((q) => q.machineId), [ms[4]!.id])
})

test('admission: the database decides the last slot (another instance may hold it); a claim it cannot answer holds the machine', async (t) => {
  const long = { boot: 100_000, download: 100_000, config: 100_000, installing: 100_000, installed: 100_000 }
  const s = await setup({ settings: { maxProvisioning: 1, deadlines: long } })
  t.after(() => s.close())
  const [m0, m1, m2] = [await s.machine('m0'), await s.machine('m1'), await s.machine('m2')]
  // Another instance gave m1 the one slot; this instance's view has not heard of it yet.
  assert.equal((await s.inventory.installSlots!.claim(m1.id, null, { overall: 1, perRack: 0 }, 'other', s.clock.now())).ok, true)
  const refused = await s.repair.admit(m0)
  assert.ok(!refused.ok && refused.position === 1, JSON.stringify(refused))
  assert.match(refused.reason, /number 1 of 1 in line: 1 machines installing across all instances \(provisioning.maxConcurrent 1\)/)
  assert.deepEqual(s.repair.queue().map((q) => q.machineId), [m0.id], 'it stays first in line')
  await s.lifecycle.transition(m1.id, 'installed', 'test')
  await s.advance(0)
  assert.deepEqual(await s.repair.admit(m0), { ok: true })
  assert.deepEqual((await s.inventory.installSlots!.list()).map((x) => x.machineId), [m0.id])
  await s.lifecycle.transition(m0.id, 'installed', 'test')
  await s.advance(0)
  // The database cannot be reached: nobody is admitted on this instance's word alone.
  const slots = s.inventory.installSlots!
  s.inventory.installSlots = { ...slots, claim: async () => { throw new Error('connect ECONNREFUSED /run/postgresql/.s.PGSQL.5432') } }
  const held = await s.repair.admit(m2)
  assert.ok(!held.ok)
  assert.match(held.reason, /cannot be reached \(connect ECONNREFUSED/)
  s.inventory.installSlots = slots
  assert.deepEqual(await s.repair.admit(m2), { ok: true })
})
