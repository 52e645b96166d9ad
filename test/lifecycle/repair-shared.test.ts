// Issue 16: two rackboot instances on one PostgreSQL database share one repair ladder. Only the holder of the leader
// lease sweeps deadlines and power-cycles; it follows every instance's events from the events table; a follower
// takes over when the leader stops renewing (killed: its lease is never released) and resumes what it left, without
// a second power cycle for one missed deadline; admission limits hold across both. One fake clock for both instances,
// timers driven by hand. PostgreSQL only: skipped loudly where no private cluster can be started.
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { createEventBus } from '../../src/events/bus.js'
import { openPostgresInventory, type PostgresInventory } from '../../src/inventory/postgres/open.js'
import { useCallerClock } from '../../src/inventory/sql/dialect.js'
import { createSqlLeaderLeases } from '../../src/inventory/sql/leader-leases.js'
import type { BmcLease, BmcLeaseRepository, Machine } from '../../src/inventory/index.js'
import { attachTimeline, createLifecycle } from '../../src/lifecycle/index.js'
import { createLeadership, type Leadership } from '../../src/lifecycle/leader.js'
import { createRepair, type Admission, type Repair, type RepairPower, type RepairSettings } from '../../src/lifecycle/repair.js'
import { silentLogger } from '../../src/log.js'
import { pgClusterOrSkip } from '../support/backends.js'

const S = 1000

interface Timer { at: number; fn: () => void; cancelled: boolean }

/** How an instance's power manager behaves: works, or the instance is killed in the middle of a power cycle. */
type PowerMode = 'ok' | 'killed-after-send' | 'killed-before-send'

interface Instance {
  name: string
  inventory: PostgresInventory
  lifecycle: ReturnType<typeof createLifecycle>
  timeline: ReturnType<typeof attachTimeline>
  leadership: Leadership
  repair: Repair
  timers: Timer[]
  powerMode: PowerMode
  /** Resolves when the instance is killed: nothing waits on its work after that. */
  dead: Promise<void>
}

/**
 * The shared rows as PostgreSQL gives them to a host whose clock is `offsetMs` off the database's (dialect.ts): the
 * rows hold the database's times (here the test's clock, which useCallerClock makes the database's), and what is
 * passed in and read back with `now` is on the host's clock.
 */
function onHostClock(leases: BmcLeaseRepository, offsetMs: number): BmcLeaseRepository {
  const toDb = (t: number) => t - offsetMs
  const shift = (l: BmcLease): BmcLease => ({ ...l, acquiredAt: l.acquiredAt === null ? null : l.acquiredAt + offsetMs, expiresAt: l.expiresAt + offsetMs })
  return {
    acquire: async (id, holder, operation, ttlMs, now) => {
      const g = await leases.acquire(id, holder, operation, ttlMs, toDb(now))
      return g.granted ? { granted: true, lease: shift(g.lease) } : { granted: false, lease: g.lease ? shift(g.lease) : null }
    },
    renew: (id, holder, ttlMs, now) => leases.renew(id, holder, ttlMs, toDb(now)),
    release: (id, holder) => leases.release(id, holder),
    get: async (id, now) => {
      if (now === undefined) return leases.get(id)
      const l = await leases.get(id, toDb(now))
      return l ? shift(l) : null
    },
    recordReboot: (id, at, holder, now = at) => leases.recordReboot(id, toDb(at), holder, toDb(now)),
    lastReboot: async (id, now) => {
      if (now === undefined) return leases.lastReboot(id)
      const t = await leases.lastReboot(id, toDb(now))
      return t === null ? null : t + offsetMs
    },
  }
}

async function world(t: TestContext, settings: Partial<RepairSettings> = {}, skews: Record<string, number> = {}) {
  const c = await pgClusterOrSkip(t)
  if (!c) return null
  const url = await c.createDatabase()
  let now = 1_800_000_000_000
  const clock = { now: () => now }
  const log = silentLogger()
  /** Every power cycle any instance sent (or began), in order. */
  const powerCalls: Array<{ id: string; by: string }> = []
  const instances: Instance[] = []
  /** Instances that were killed: never driven again, their connections closed at the end. */
  const killed = new Set<Instance>()
  const deaths = new Map<Instance, () => void>()
  /** kill -9: the instance is never driven again; what it was doing never ends. */
  function kill(i: Instance): Promise<never> {
    killed.add(i)
    deaths.get(i)!()
    return new Promise(() => {})
  }

  async function start(name: string): Promise<Instance> {
    const inventory = await openPostgresInventory({ url, connectTimeoutMs: 30_000 })
    // One fake clock drives every instance here: the leases' times are the test's, not PostgreSQL's.
    useCallerClock(inventory.db)
    // A host whose clock is off (`skews`): its timeline and ladder go by it; the shared rows by the database's. (The
    // leader lease, which decides between hosts by the database's clock too, is left on the test's.)
    const offset = skews[name] ?? 0
    const host = offset === 0 ? clock : { now: () => now + offset }
    const shared = offset === 0 ? inventory : { ...inventory, bmcLeases: onHostClock(inventory.bmcLeases!, offset) }
    const bus = createEventBus()
    const timeline = attachTimeline({ inventory, bus, log })
    const lifecycle = createLifecycle({ inventory, bus, log, clock: host })
    const timers: Timer[] = []
    const setTimer = (fn: () => void, ms: number) => {
      const timer = { at: now + ms, fn, cancelled: false }
      timers.push(timer)
      return { cancel: () => { timer.cancelled = true } }
    }
    const self = { name, inventory, lifecycle, timeline, timers, powerMode: 'ok' } as Instance
    self.dead = new Promise((resolve) => deaths.set(self, resolve))
    const power: RepairPower = {
      // As the power manager does with shared leases: the BMC lease around the operation, the reboot record at send.
      async netbootNow(id) {
        powerCalls.push({ id, by: name })
        await inventory.bmcLeases!.acquire(id, name, 'pxe-boot', 60 * S, now)
        // Killed here: the operation never ends, the BMC lease is never released.
        if (self.powerMode === 'killed-before-send') return kill(self)
        await inventory.bmcLeases!.recordReboot(id, now, name)
        if (self.powerMode === 'killed-after-send') return kill(self)
        await inventory.bmcLeases!.release(id, name)
        return {}
      },
    }
    self.leadership = createLeadership({
      store: createSqlLeaderLeases(inventory.db), name: 'repair', holder: name, log, clock, setTimer,
      onChange: () => self.repair.roleChanged(),
    })
    self.repair = createRepair({
      inventory: shared, lifecycle, bus, log, clock: host, power, random: () => 1, setTimer,
      settings: { sweepMs: 60 * 60 * S, ...settings },
      shared: { leadership: self.leadership, pollMs: 60 * 60 * S },
    })
    await self.repair.start()
    instances.push(self)
    return self
  }

  t.after(async () => {
    for (const i of instances) {
      if (!killed.has(i)) {
        await i.repair.stop()
        await i.timeline.flush()
      }
      await i.inventory.close()
    }
  })

  const alive = () => instances.filter((i) => !killed.has(i))
  const newestSeq = async () => (await instances[0]!.inventory.events.list({ newest: true, limit: 1 }))[0]?.seq ?? 0

  /** Runs every live instance until nothing moves: renewals, the table read, sweeps, due timers. */
  async function settle(): Promise<void> {
    let last = -1
    for (let round = 0; round < 50; round++) {
      let fired = 0
      for (const i of alive()) await i.timeline.flush()
      for (const i of alive()) {
        const idle = () => Promise.race([i.repair.idle(), i.dead])
        await i.leadership.tick()
        await idle()
        await i.repair.catchUp()
        await i.repair.sweep()
        await idle()
        for (const timer of i.timers.filter((x) => !x.cancelled && x.at <= now)) {
          timer.cancelled = true
          timer.fn()
          fired++
        }
        await idle()
        await i.timeline.flush()
      }
      const seq = await newestSeq()
      if (fired === 0 && seq === last) return
      last = seq
    }
    throw new Error('the instances never settled')
  }

  let made = 0
  return {
    start,
    powerCalls,
    clock,
    async advance(ms: number) {
      now += ms
      await settle()
    },
    settle,
    kill(i: Instance) {
      void kill(i)
    },
    /** A machine with a BMC, allocated (provisioning) through `via`. */
    async machine(via: Instance, name: string, rack: string | null = null): Promise<Machine> {
      const m = await via.inventory.machines.create({
        name, rack, nics: [{ mac: `02:00:00:00:02:${(++made).toString(16).padStart(2, '0')}`, name: null, boot: true }], state: 'ready', firmware: 'uefi',
      }, now)
      await via.inventory.bmcs.put(m.id, { type: 'ipmi', address: '198.18.0.200', username: 'admin', password: 'pw' })
      await via.lifecycle.transition(m.id, 'provisioning', 'test allocation')
      await settle()
      return (await via.inventory.machines.get(m.id))!
    },
    async ladder(id: string) {
      const events = await instances[0]!.inventory.events.list({ machineId: id, types: ['boot.failure', 'boot.repair'] })
      return events.map((e) => `${e.type} ${String(e.data.action ?? e.data.kind)}`)
    },
  }
}

test('the leader is killed: the other instance takes over its lease and repairs a missed deadline exactly once', async (t) => {
  const w = await world(t, { backoffMs: 30 * S, maxPhaseFailures: 3 })
  if (!w) return
  const a = await w.start('A')
  const b = await w.start('B')
  assert.ok(a.leadership.isLeader() && !b.leadership.isLeader(), 'the first to start leads')
  const m = await w.machine(a, 'through-a')
  // kill -9: A stops renewing and never releases its lease; nothing of it runs any more.
  w.kill(a)
  await w.advance(20 * S)
  assert.ok(b.leadership.isLeader(), 'B takes the lease once A\'s has expired')
  await w.advance(600 * S)
  assert.equal(b.repair.status(m.id)?.failures, 1, 'B saw the boot deadline pass')
  assert.deepEqual(w.powerCalls, [], 'the repair waits its backoff')
  await w.advance(31 * S)
  assert.deepEqual(w.powerCalls, [{ id: m.id, by: 'B' }])
  await w.advance(300 * S)
  assert.deepEqual(w.powerCalls, [{ id: m.id, by: 'B' }], 'one power cycle for one missed deadline')
  assert.deepEqual(await w.ladder(m.id), ['boot.failure deadline', 'boot.repair scheduled', 'boot.repair pxe-cycle'])
})

test('both instances running: one failure and one power cycle per missed deadline, whichever instance provisioned it', async (t) => {
  const w = await world(t, { backoffMs: 30 * S, maxPhaseFailures: 3, maxFailures: 3 })
  if (!w) return
  const a = await w.start('A')
  const b = await w.start('B')
  const viaA = await w.machine(a, 'via-a')
  const viaB = await w.machine(b, 'via-b')
  await w.advance(601 * S)
  await w.advance(31 * S)
  const byMachine = (id: string) => w.powerCalls.filter((c) => c.id === id).map((c) => c.by)
  assert.deepEqual(byMachine(viaA.id), ['A'])
  assert.deepEqual(byMachine(viaB.id), ['A'], 'the leader repairs machines booting through the follower too')
  // Second missed deadline (the deadline runs from the power cycle): one more each.
  await w.advance(601 * S)
  await w.advance(61 * S)
  assert.deepEqual(byMachine(viaA.id), ['A', 'A'])
  assert.deepEqual(byMachine(viaB.id), ['A', 'A'])
  for (const m of [viaA, viaB]) {
    assert.deepEqual(await w.ladder(m.id), [
      'boot.failure deadline', 'boot.repair scheduled', 'boot.repair pxe-cycle',
      'boot.failure deadline', 'boot.repair scheduled', 'boot.repair pxe-cycle',
    ])
    assert.equal(a.repair.status(m.id)?.failures, 2)
    assert.equal(b.repair.status(m.id)?.failures, 2, 'the follower keeps the same view')
  }
})

test('a repair the killed leader scheduled is resumed by the new leader once', async (t) => {
  const w = await world(t, { backoffMs: 60 * S, maxPhaseFailures: 3 })
  if (!w) return
  const a = await w.start('A')
  const b = await w.start('B')
  const m = await w.machine(a, 'scheduled')
  await w.advance(601 * S)
  assert.deepEqual(await w.ladder(m.id), ['boot.failure deadline', 'boot.repair scheduled'])
  w.kill(a)
  await w.advance(20 * S)
  assert.ok(b.leadership.isLeader())
  assert.deepEqual(w.powerCalls, [], 'due 60 s after the failure, not before')
  await w.advance(45 * S)
  assert.deepEqual(w.powerCalls, [{ id: m.id, by: 'B' }])
  await w.advance(300 * S)
  assert.equal(w.powerCalls.length, 1)
  assert.equal(b.repair.status(m.id)?.failures, 1)
})

test('the leader is killed in the middle of a power cycle: the new leader does not send it again', async (t) => {
  for (const mode of ['killed-after-send', 'killed-before-send'] as const) {
    await t.test(mode, async (t) => {
      const w = await world(t, { backoffMs: 30 * S, maxPhaseFailures: 3 })
      if (!w) return
      const a = await w.start('A')
      const b = await w.start('B')
      const m = await w.machine(a, mode)
      a.powerMode = mode
      await w.advance(601 * S)
      // A sends (or begins to send) its power cycle and dies before it can say so on the timeline.
      await w.advance(31 * S)
      assert.deepEqual(w.powerCalls, [{ id: m.id, by: 'A' }])
      // B takes over; while A's BMC lease stands B waits, then it learns from the reboot record or the abandoned lease.
      for (let k = 0; k < 10; k++) await w.advance(10 * S)
      assert.ok(b.leadership.isLeader())
      assert.deepEqual(w.powerCalls, [{ id: m.id, by: 'A' }], 'no second power cycle for the same deadline')
      const ladder = await w.ladder(m.id)
      assert.equal(ladder.at(-1), 'boot.repair pxe-cycle', ladder.join(', '))
      const last = (await b.inventory.events.list({ machineId: m.id, types: ['boot.repair'] })).at(-1)!
      assert.equal(last.data.already, mode === 'killed-after-send' ? 'done' : 'unknown', last.message)
      // The deadline runs on from there: a machine that did not come back fails again and is repaired by B.
      await w.advance(600 * S)
      await w.advance(61 * S)
      assert.deepEqual(w.powerCalls.map((c) => c.by), ['A', 'B'])
    })
  }
})

test('hosts whose clocks are 120 s off: whether the killed leader\'s repair was done is told by the shared rows, not by the hosts\' times', async (t) => {
  // The old leader's repair is resumed from its timeline, where the decision is on the old leader's clock; the reboot
  // record and the BMC lease are read onto the new leader's. By the times, a leader 120 s ahead decided "after" its
  // own power cycle (the new leader sends it again), and one 120 s behind decided "before" a person's reboot of ten
  // seconds earlier (the new leader takes that reboot for the repair and sends nothing).
  await t.test('the leader was ahead and power-cycled the machine before it died: not sent again', async (t) => {
    const w = await world(t, { backoffMs: 30 * S, maxPhaseFailures: 3 }, { A: 120 * S })
    if (!w) return
    const a = await w.start('A')
    const b = await w.start('B')
    const m = await w.machine(a, 'ahead')
    a.powerMode = 'killed-after-send'
    await w.advance(601 * S)
    await w.advance(31 * S)
    assert.deepEqual(w.powerCalls, [{ id: m.id, by: 'A' }])
    // B takes over and resumes the repair, due 30 s after the decision by A's clock: 150 s from now by B's.
    for (let k = 0; k < 20; k++) await w.advance(10 * S)
    assert.ok(b.leadership.isLeader())
    assert.deepEqual(w.powerCalls, [{ id: m.id, by: 'A' }], 'no second power cycle for the same deadline')
    const last = (await b.inventory.events.list({ machineId: m.id, types: ['boot.repair'] })).at(-1)!
    assert.deepEqual([last.data.action, last.data.already], ['pxe-cycle', 'done'], last.message)
  })
  await t.test('the leader was behind and died before the repair was due; a person rebooted the machine just before the decision: sent once', async (t) => {
    const w = await world(t, { backoffMs: 30 * S, maxPhaseFailures: 3 }, { A: -120 * S })
    if (!w) return
    const a = await w.start('A')
    const b = await w.start('B')
    const m = await w.machine(a, 'behind')
    await w.advance(591 * S)
    // Rebooted by hand (through an instance's power manager) ten seconds before its boot deadline.
    await b.inventory.bmcLeases!.recordReboot(m.id, w.clock.now(), 'person')
    await w.advance(10 * S)
    assert.deepEqual(await w.ladder(m.id), ['boot.failure deadline', 'boot.repair scheduled'])
    w.kill(a)
    for (let k = 0; k < 10; k++) await w.advance(10 * S)
    assert.ok(b.leadership.isLeader())
    assert.deepEqual(w.powerCalls, [{ id: m.id, by: 'B' }], 'the repair the killed leader decided is sent once, by B')
    const last = (await b.inventory.events.list({ machineId: m.id, types: ['boot.repair'] })).at(-1)!
    assert.deepEqual([last.data.action, last.data.ok, last.data.already], ['pxe-cycle', true, undefined], last.message)
  })
})

test('admission: provisioning.maxConcurrent holds across both instances', async (t) => {
  const long = { boot: 100_000, download: 100_000, config: 100_000, installing: 100_000, installed: 100_000 }
  const w = await world(t, { maxProvisioning: 1, deadlines: long })
  if (!w) return
  const a = await w.start('A')
  const b = await w.start('B')
  const m1 = await w.machine(a, 'first')
  const m2 = await w.machine(b, 'second')
  // m1 asks A and gets its install script (the boot service records that on A's timeline).
  assert.deepEqual(await a.repair.admit(m1), { ok: true })
  a.lifecycle.record(m1.id, 'boot.script', 'boot script: install', { decision: 'install' })
  await w.settle()
  // m2 asks B: the one slot is taken, on A.
  const refused = await b.repair.admit(m2)
  assert.ok(!refused.ok, 'B must not admit a second machine while A installs one')
  assert.match(refused.reason, /1 machines installing \(provisioning.maxConcurrent 1\)/)
  b.lifecycle.record(m2.id, 'boot.script', 'waiting for an install slot', { decision: 'hold', queued: true })
  // m1 installs; its slot is free for m2, on B.
  await a.lifecycle.transition(m1.id, 'installed', 'test')
  await w.settle()
  assert.deepEqual(await b.repair.admit(m2), { ok: true })
})

test('admission: machines asking both instances in the same instant never get more than the bound (the database decides)', async (t) => {
  const long = { boot: 100_000, download: 100_000, config: 100_000, installing: 100_000, installed: 100_000 }
  const w = await world(t, { maxProvisioning: 2, maxProvisioningPerRack: 1, deadlines: long })
  if (!w) return
  const a = await w.start('A')
  const b = await w.start('B')
  for (let round = 0; round < 4; round++) {
    // Three machines ask A and three ask B at once, neither instance having seen the other's answers: each one's own
    // view has room for two.
    const viaA: Machine[] = [await w.machine(a, `r${round}-a0`), await w.machine(a, `r${round}-a1`), await w.machine(a, `r${round}-a2`)]
    const viaB: Machine[] = [await w.machine(b, `r${round}-b0`), await w.machine(b, `r${round}-b1`), await w.machine(b, `r${round}-b2`)]
    const answers: Admission[] = await Promise.all([...viaA.map((m) => a.repair.admit(m)), ...viaB.map((m) => b.repair.admit(m))])
    const granted = answers.filter((x) => x.ok).length
    assert.equal(granted, 2, `round ${round}: ${JSON.stringify(answers)}`)
    // The losers of the database's count are told so and stay in line.
    const byDatabase = answers.filter((x) => !x.ok && /across all instances/.test(x.reason))
    assert.ok(byDatabase.length >= 1, JSON.stringify(answers))
    for (const x of byDatabase) assert.match((x as { reason: string }).reason, /2 machines installing across all instances \(provisioning.maxConcurrent 2\)/)
    assert.equal((await a.inventory.installSlots!.list()).length, 2)
    // Asking again changes nothing while the two install.
    const again: Admission[] = await Promise.all([...viaA.map((m) => a.repair.admit(m)), ...viaB.map((m) => b.repair.admit(m))])
    assert.equal(again.filter((x) => x.ok).length, 2)
    // Every machine finishes: the next round starts with all slots free.
    for (const m of [...viaA, ...viaB]) await a.lifecycle.transition(m.id, 'installed', 'test')
    await w.settle()
  }
  // Per rack, the same: four machines of rack r9 ask at once (two through each instance); one slot in the rack.
  const rackA: Machine[] = [await w.machine(a, 'rack-a0', 'r9'), await w.machine(a, 'rack-a1', 'r9')]
  const rackB: Machine[] = [await w.machine(b, 'rack-b0', 'r9'), await w.machine(b, 'rack-b1', 'r9')]
  const answers: Admission[] = await Promise.all([...rackA.map((m) => a.repair.admit(m)), ...rackB.map((m) => b.repair.admit(m))])
  assert.equal(answers.filter((x) => x.ok).length, 1, JSON.stringify(answers))
})
