// Issue 16: several rackboot instances on one database share each BMC through a lease row per BMC operation. Two
// power managers (two inventory handles on one PostgreSQL database; one SQLite handle twice) with a recording fake
// driver: their operations never overlap at the BMC, the reboot interval holds between them, a crashed holder's
// lease is taken over after its TTL, two pollers poll each BMC about once per interval in total; then the real peer:
// a concurrent power on from both against ipmi_sim is one Chassis Control command.
import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { test, type TestContext } from 'node:test'
import type { Kysely } from 'kysely'
import type { Inventory } from '../../src/inventory/repositories.js'
import { useCallerClock } from '../../src/inventory/sql/dialect.js'
import type { Bmc } from '../../src/inventory/types.js'
import { silentLogger } from '../../src/log.js'
import { createMetricsRegistry, type Registry } from '../../src/metrics.js'
import {
  createPowerManager, isPowerError, type BmcDriver, type BootOverride, type PowerManager, type PowerManagerSettings,
  type PowerState,
} from '../../src/power/index.js'
import { systemClock, type Clock } from '../../src/power/clock.js'
import { inventoryBackends, skipped, type Backend } from '../support/backends.js'
import { missing, startIpmiSim } from './fixtures/bmc-sims.js'

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

interface Command {
  who: string
  machineId: string
  op: string
  arg?: unknown
  start: number
  end: number | null
}

/** The fake BMCs both managers talk to: one power state per machine, every command with its start and end. */
class Bmcs {
  readonly commands: Command[] = []
  readonly power = new Map<string, PowerState>()
  /** ms each command takes (random in [min, max)). */
  duration: [number, number] = [5, 20]
  /** Called as a command starts; may hold it (the "crashed" instance's hung call). */
  hook: ((c: Command) => Promise<void>) | null = null

  driver(who: string, target: Bmc): BmcDriver {
    const machineId = target.machineId
    const call = async <T>(op: string, arg: unknown, value: () => T): Promise<T> => {
      const c: Command = { who, machineId, op, arg, start: performance.now(), end: null }
      this.commands.push(c)
      try {
        if (this.hook) await this.hook(c)
        const [min, max] = this.duration
        await sleep(min + Math.random() * (max - min))
        return value()
      } finally {
        c.end = performance.now()
      }
    }
    return {
      type: 'ipmi',
      capabilities: () => call('capabilities', undefined, () => ['power.status' as const]),
      powerStatus: () => call('status', undefined, () => this.power.get(machineId) ?? 'off'),
      power: (action, o) => (o?.onSend?.(), call('power', action, () => {
        if ((action === 'cycle' || action === 'reset') && (this.power.get(machineId) ?? 'off') === 'off') return
        this.power.set(machineId, action === 'off' || action === 'soft-off' ? 'off' : 'on')
      })),
      setBootDevice: (override: BootOverride) => call('set-boot', override, () => ({
        device: override.device, mode: override.mode ?? null, persistent: override.persistent ?? false, enabled: true, raw: 'fake',
      })),
      getBootDevice: () => call('get-boot', undefined, () => ({ device: 'none' as const, mode: null, persistent: null, enabled: false, raw: '' })),
      identify: (on) => call('identify', on, () => undefined),
      insertMedia: (url) => call('insert-media', url, () => undefined),
      ejectMedia: () => call('eject-media', undefined, () => undefined),
      close: async () => {},
    }
  }

  /** Pairs of commands on one machine's BMC whose [start, end] intervals overlap. */
  overlaps(machineId?: string): [Command, Command][] {
    const list = this.commands.filter((c) => machineId === undefined || c.machineId === machineId).sort((a, b) => a.start - b.start)
    const out: [Command, Command][] = []
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length && list[j]!.start < (list[i]!.end ?? Infinity); j++) {
        if (list[j]!.machineId === list[i]!.machineId) out.push([list[i]!, list[j]!])
      }
    }
    return out
  }
}

const FAST: Partial<PowerManagerSettings> = {
  timeoutMs: 3_000, attempts: 2, backoffBaseMs: 20, backoffMaxMs: 100, minRebootIntervalMs: 0, verifyTimeoutMs: 2_000,
  verifyIntervalMs: 20, sessionIdleMs: 0, leaseTtlMs: 600, leaseRenewMs: 200, pollIntervalMs: 1_000, pollJitter: 0.1,
}

interface Rig {
  inv: [Inventory, Inventory]
  bmcs: Bmcs
  ids: string[]
  manager(who: 'A' | 'B', settings?: Partial<PowerManagerSettings>, leases?: Inventory['bmcLeases'], clock?: Clock): { power: PowerManager; metrics: Registry }
}

/** The real clock, with its time `offsetMs` off (a host whose clock is wrong): timers run as they do. */
const skewed = (offsetMs: number): Clock => ({ ...systemClock, now: () => Date.now() + offsetMs })

/**
 * Two inventory handles on one database (PostgreSQL: two pools, as two instances have; SQLite: one handle twice), with
 * one secrets key file as instances share.
 */
async function openTwice(t: TestContext, backend: Backend): Promise<[Inventory, Inventory]> {
  const secretKeyFile = join(mkdtempSync(join(tmpdir(), 'rb-shared-bmc-')), 'secret.key')
  const first = await backend.open({ secretKeyFile })
  const second = backend.name === 'postgres' ? await backend.open({ url: first.url!, secretKeyFile }) : first
  t.after(async () => {
    if (second !== first) await second.close()
    await first.close()
  })
  return [first, second]
}

/** openTwice with `machines` machines that have a BMC. */
async function rig(t: TestContext, backend: Backend, machines = 1): Promise<Rig> {
  const [first, second] = await openTwice(t, backend)
  const ids: string[] = []
  for (let i = 0; i < machines; i++) {
    const m = await first.machines.create({ serial: `S${i}` }, Date.now())
    await first.bmcs.put(m.id, { type: 'ipmi', address: `10.0.0.${i + 1}`, username: 'admin', password: 'pw' })
    ids.push(m.id)
  }
  const bmcs = new Bmcs()
  const inv: [Inventory, Inventory] = [first, second]
  return {
    inv, bmcs, ids,
    manager(who, settings = {}, leases, clock) {
      const inventory = inv[who === 'A' ? 0 : 1]
      const metrics = createMetricsRegistry()
      const power = createPowerManager({
        ...(clock ? { clock } : {}),
        bmcs: inventory.bmcs,
        leases: leases ?? inventory.bmcLeases,
        instanceId: `test-host:${who}`,
        log: silentLogger(),
        metrics,
        createDriver: (target) => bmcs.driver(who, target as Bmc),
        settings: { ...FAST, ...settings },
      })
      t.after(() => power.stop())
      return { power, metrics }
    },
  }
}

async function skipCounts(metrics: Registry): Promise<Record<string, number>> {
  const metric = metrics.getSingleMetric('rackboot_power_polls_skipped_total')
  const out: Record<string, number> = {}
  for (const v of (await metric!.get()).values) out[String(v.labels.reason)] = v.value
  return out
}

for (const backend of inventoryBackends()) {
  test(`the lease row: one winner among racing instances, taken over once expired, released only by its holder [${backend.name}]`, async (t) => {
    if (await skipped(t, backend)) return
    const [one, two] = await openTwice(t, backend)
    // The row's rules under times given by hand: the database takes the caller's now (PostgreSQL's own clock, which
    // decides between hosts, is the tests with skewed clocks below).
    for (const handle of [one, two]) useCallerClock((handle as unknown as { db: Kysely<any> }).db)
    const m = await one.machines.create({ serial: 'L1' }, Date.now())
    const now = 1_000_000
    // Twenty acquirers through both handles at once: exactly one is granted, the others are told who holds it.
    const grants = await Promise.all(Array.from({ length: 20 }, (_, i) =>
      (i % 2 ? two : one).bmcLeases!.acquire(m.id, `h${i}`, 'on', 1_000, now)))
    const winners = grants.filter((g) => g.granted)
    assert.equal(winners.length, 1)
    const holder = winners[0]!.lease!.holder
    for (const g of grants.filter((x) => !x.granted)) assert.equal(g.lease?.holder, holder)
    // The holder extends its own (keeping when it took it); another cannot renew or release it.
    const again = await two.bmcLeases!.acquire(m.id, holder, 'off', 1_000, now + 500)
    assert.deepEqual([again.granted, again.lease?.acquiredAt, again.lease?.expiresAt, again.lease?.operation], [true, now, now + 1_500, 'off'])
    assert.equal(await one.bmcLeases!.renew(m.id, 'someone-else', 1_000, now + 600), false)
    assert.equal(await one.bmcLeases!.release(m.id, 'someone-else'), false)
    assert.equal((await one.bmcLeases!.acquire(m.id, 'late', 'status', 1_000, now + 1_499)).granted, false)
    // Expired: anyone takes it over, and the old holder's renew and release then fail.
    const taken = await one.bmcLeases!.acquire(m.id, 'late', 'status', 1_000, now + 1_500)
    assert.deepEqual([taken.granted, taken.lease?.holder, taken.lease?.acquiredAt], [true, 'late', now + 1_500])
    assert.equal(await two.bmcLeases!.renew(m.id, holder, 1_000, now + 1_600), false)
    assert.equal(await two.bmcLeases!.release(m.id, holder), false)
    assert.equal(await two.bmcLeases!.release(m.id, 'late'), true)
    assert.equal(await one.bmcLeases!.get(m.id), null)
    // The reboot record keeps the newest; a machine's rows go with it.
    await one.bmcLeases!.recordReboot(m.id, 5_000, 'a')
    await two.bmcLeases!.recordReboot(m.id, 4_000, 'b')
    assert.equal(await two.bmcLeases!.lastReboot(m.id), 5_000)
    await one.bmcLeases!.acquire(m.id, 'x', 'on', 1_000, now)
    await one.machines.delete(m.id)
    assert.deepEqual([await two.bmcLeases!.get(m.id), await two.bmcLeases!.lastReboot(m.id)], [null, null])
  })

  test(`two instances' operations on one BMC never overlap at the BMC [${backend.name}]`, { timeout: 120_000 }, async (t) => {
    if (await skipped(t, backend)) return
    const { bmcs, ids, manager, inv } = await rig(t, backend)
    const [m1] = ids as [string]
    const a = manager('A').power
    const b = manager('B').power
    // Each instance runs a mix of operations, asked at random moments over 400 ms (its own queue orders them), both
    // instances together. (Which instance goes when is up to the lease: a waiter backs off, so an instance whose own
    // queue keeps the BMC busy tends to finish its run first; the log line below shows the order.)
    const later = <T>(fn: () => Promise<T>) => sleep(Math.random() * 400).then(fn)
    const mix = (p: PowerManager) => [
      later(() => p.power(m1, 'on')), later(() => p.status(m1)), later(() => p.setBootDevice(m1, { device: 'pxe' })),
      later(() => p.power(m1, 'off')), later(() => p.identify(m1, true)), later(() => p.power(m1, 'cycle')),
      later(() => p.getBootDevice(m1)), later(() => p.status(m1)), later(() => p.power(m1, 'on')), later(() => p.capabilities(m1)),
    ]
    const results = await Promise.allSettled([...mix(a), ...mix(b)])
    const overlaps = bmcs.overlaps(m1)
    assert.deepEqual(overlaps.map(([x, y]) => `${x.who}:${x.op} ${x.start.toFixed(1)}-${x.end?.toFixed(1)} / ${y.who}:${y.op} ${y.start.toFixed(1)}`), [],
      'no two commands at the BMC at once')
    const failed = results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason))
    assert.deepEqual(failed, [])
    const who = new Set(bmcs.commands.map((c) => c.who))
    assert.deepEqual([...who].sort(), ['A', 'B'], 'both instances reached the BMC')
    assert.ok(bmcs.commands.length >= 20, `${bmcs.commands.length} commands`)
    // Every lease was given back.
    assert.equal(await inv[1].bmcLeases!.get(m1), null)
    console.log(`overlap [${backend.name}]: commands by instance in order: ${[...bmcs.commands].sort((x, y) => x.start - y.start).map((c) => c.who).join('')}`)
  })

  test(`the reboot interval holds between instances: the other instance's reboot inside it is refused [${backend.name}]`, { timeout: 120_000 }, async (t) => {
    if (await skipped(t, backend)) return
    const { bmcs, ids, manager, inv } = await rig(t, backend, 2)
    const [m1, m2] = ids as [string, string]
    const a = manager('A', { minRebootIntervalMs: 60_000 }).power
    const b = manager('B', { minRebootIntervalMs: 60_000 }).power
    bmcs.power.set(m1, 'on')
    bmcs.power.set(m2, 'on')

    const first = await a.power(m1, 'cycle')
    assert.equal(first.verified, true)
    // As on one instance: the same instance's second reboot is refused...
    const again = await a.power(m1, 'cycle').then(() => null, (e: unknown) => e)
    assert.ok(isPowerError(again, 'too-soon'), String(again))
    // ...and so is the other instance's, the same way, with PXE boot now (a reboot too).
    for (const attempt of [() => b.power(m1, 'cycle'), () => b.power(m1, 'reset'), () => b.pxeBootNow(m1)]) {
      const err = await attempt().then(() => null, (e: unknown) => e)
      assert.ok(isPowerError(err, 'too-soon'), String(err))
      assert.match((err as Error).message, /was rebooted \d+ s ago; reboots are at least 60 s apart/)
    }
    assert.equal(bmcs.commands.filter((c) => c.machineId === m1 && c.op === 'power').length, 1, 'one reboot of m1 at the BMC')
    assert.ok((await inv[1].bmcLeases!.lastReboot(m1))! > 0, 'the shared record has it')

    // Both at the very same time: one reboot, the other refused (decided under the lease, not before the queue).
    const both = await Promise.allSettled([a.power(m2, 'cycle'), b.power(m2, 'cycle')])
    assert.deepEqual(both.map((r) => r.status).sort(), ['fulfilled', 'rejected'])
    const refused = both.find((r) => r.status === 'rejected') as PromiseRejectedResult
    assert.ok(isPowerError(refused.reason, 'too-soon'), String(refused.reason))
    assert.equal(bmcs.commands.filter((c) => c.machineId === m2 && c.op === 'power').length, 1, 'one reboot of m2 at the BMC')

    // A deferred reboot waits the interval out rather than failing (here: until its caller gives up).
    const controller = new AbortController()
    setTimeout(() => controller.abort(), 300)
    const deferred = await b.power(m2, 'cycle', { ifTooSoon: 'defer', signal: controller.signal }).then(() => null, (e: unknown) => e)
    assert.ok(isPowerError(deferred, 'timeout'), String(deferred))
    assert.equal(bmcs.commands.filter((c) => c.machineId === m2 && c.op === 'power').length, 1)
  })

  test(`a crashed instance's lease runs out after its TTL and the other takes over; the stalled one sends nothing more [${backend.name}]`, { timeout: 120_000 }, async (t) => {
    if (await skipped(t, backend)) return
    const { bmcs, ids, manager, inv } = await rig(t, backend)
    const [m1] = ids as [string]
    // A "crashes" during its power on: its command never returns and it stops renewing (both frozen until thawed).
    let thaw!: () => void
    const frozen = new Promise<void>((r) => { thaw = r })
    t.after(() => thaw()) // a failed assertion must not leave A frozen (stop() waits for it)
    let crashed = false
    const store = inv[0].bmcLeases!
    const aLeases = { ...store, renew: async (...args: Parameters<typeof store.renew>) => {
      if (crashed) await frozen
      return store.renew(...args)
    } }
    const a = manager('A', { timeoutMs: 30_000 }, aLeases).power
    const b = manager('B').power
    let crashedAt = 0
    bmcs.hook = async (c) => {
      if (c.who === 'A' && c.op === 'power' && !crashed) {
        crashed = true
        crashedAt = performance.now()
        await frozen
      }
    }
    bmcs.power.set(m1, 'on') // so that B's off below is sent, not found done already
    const aOn = a.power(m1, 'on').then(() => null, (e: unknown) => e)
    while (!crashed) await sleep(5)
    const held = await inv[1].bmcLeases!.get(m1)
    assert.equal(held?.holder, 'test-host:A')

    // B asks at once: it waits while A's lease is live, then takes it over and does its work.
    const bStarted = performance.now()
    const off = await b.power(m1, 'off')
    assert.equal(off.verified, true)
    const firstB = bmcs.commands.find((c) => c.who === 'B')!
    const ttl = FAST.leaseTtlMs!
    assert.ok(firstB.start - crashedAt >= ttl - FAST.leaseRenewMs! - 50,
      `B's first command ${Math.round(firstB.start - crashedAt)} ms after A froze (TTL ${ttl} ms)`)
    assert.ok(performance.now() - bStarted < ttl + 4_000, 'B did not wait much longer than the TTL')
    assert.equal(bmcs.power.get(m1), 'off')

    // A thaws: its renewal finds the lease gone, and it stops without another command at the BMC.
    const before = bmcs.commands.length
    thaw()
    const err = await aOn
    assert.ok(isPowerError(err, 'busy'), String(err))
    assert.match((err as Error).message, /test-host:A\) lost the BMC's lease .*stopped before sending anything more/)
    // (A's one command, sent before it froze, was in flight all along: no lease recalls what already left.)
    assert.deepEqual(bmcs.commands.slice(before).filter((c) => c.who === 'A'), [], 'nothing from A after the takeover')
    assert.deepEqual(bmcs.commands.filter((c) => c.who === 'A').map((c) => c.op), ['power'])
    assert.deepEqual(bmcs.overlaps(m1).filter(([x, y]) => x.who === y.who), [])
    assert.equal(await inv[1].bmcLeases!.get(m1), null, 'A\'s late release did not touch the lease, B released its own')
  })

  test(`a lease held by an instance that is gone is waited for, and a caller that cannot wait is told who holds it [${backend.name}]`, { timeout: 120_000 }, async (t) => {
    if (await skipped(t, backend)) return
    const { bmcs, ids, manager, inv } = await rig(t, backend)
    const [m1] = ids as [string]
    // A status waits at most its own budget (attempts x timeout): here 2 x 1.1 s, shorter than the dead lease.
    const b = manager('B', { timeoutMs: 100, attempts: 2 }).power
    await inv[0].bmcLeases!.acquire(m1, 'dead-host:42:abc', 'cycle', 60_000, Date.now())
    const started = performance.now()
    const err = await b.status(m1).then(() => null, (e: unknown) => e)
    assert.ok(isPowerError(err, 'busy'), String(err))
    assert.match((err as Error).message, /status on machine .*: the BMC is held by rackboot instance dead-host:42:abc \(cycle, for \d+ s\); gave up after waiting \d+ s; nothing was sent/)
    assert.ok(performance.now() - started >= 2_000, 'waited its budget')
    assert.equal(bmcs.commands.length, 0)
  })

  test(`two pollers poll each BMC about once per interval in total [${backend.name}]`, { timeout: 120_000 }, async (t) => {
    if (await skipped(t, backend)) return
    const n = 12
    const { bmcs, ids, manager } = await rig(t, backend, n)
    const a = manager('A')
    const b = manager('B')
    const interval = FAST.pollIntervalMs!
    const started = performance.now()
    a.power.startPolling(() => ids)
    b.power.startPolling(() => ids)
    await sleep(interval * 3.5)
    await Promise.all([a.power.stop(), b.power.stop()])
    const polls = bmcs.commands.filter((c) => c.op === 'status')
    const elapsed = performance.now() - started
    // One instance alone polls each machine once per interval: 3 or 4 times in 3.5 intervals (by its phase).
    const perMachine = ids.map((id) => polls.filter((c) => c.machineId === id).length)
    const total = perMachine.reduce((x, y) => x + y, 0)
    const skips = { A: await skipCounts(a.metrics), B: await skipCounts(b.metrics) }
    const detail = `${total} polls of ${n} BMCs in ${Math.round(elapsed)} ms, per machine ${perMachine.join(' ')}; skipped ${JSON.stringify(skips)}`
    assert.ok(total >= n * 3 && total <= n * 4 + 2, detail)
    assert.ok(Math.max(...perMachine) <= 5, detail)
    assert.ok(polls.some((c) => c.who === 'A') && polls.some((c) => c.who === 'B'), `both instances poll: ${detail}`)
    const readElsewhere = (skips.A['read-elsewhere'] ?? 0) + (skips.B['read-elsewhere'] ?? 0)
    assert.ok(readElsewhere >= n * 2, detail)
    assert.deepEqual(bmcs.overlaps(), [])
    console.log(`pollers [${backend.name}]: ${detail}`)
  })
}

// Hosts whose clocks disagree (PostgreSQL only: SQLite has one host, whose clock is the database's). Every expiry and
// the reboot interval go by the database's clock, so an instance whose clock is 60 s ahead of the holder's neither takes
// its live lease nor reboots inside the interval, and one whose clock is 60 s behind is not kept waiting for a minute.
for (const backend of inventoryBackends().filter((b) => b.name === 'postgres')) {
  test(`a BMC lease held by an instance is not taken by one whose clock is 120 s ahead; it waits for the operation [${backend.name}]`, { timeout: 120_000 }, async (t) => {
    if (await skipped(t, backend)) return
    const { bmcs, ids, manager, inv } = await rig(t, backend)
    const [m1] = ids as [string]
    const a = manager('A', {}, undefined, skewed(-60_000)).power
    const b = manager('B', {}, undefined, skewed(60_000)).power
    // A's power on takes 2 s at the BMC (over three TTLs: A renews its lease meanwhile).
    let slow = true
    bmcs.hook = async (c) => {
      if (c.who === 'A' && c.op === 'power' && slow) {
        slow = false
        await sleep(2_000)
      }
    }
    const aOn = a.power(m1, 'on')
    while (bmcs.commands.filter((c) => c.op === 'power').length === 0) await sleep(5)
    assert.equal((await inv[1].bmcLeases!.get(m1))?.holder, 'test-host:A')
    // Read with B's now, the lease's times are on B's clock: live, expiring within a TTL of B's now.
    const bNow = Date.now() + 60_000
    const seen = await inv[1].bmcLeases!.get(m1, bNow)
    assert.ok(seen && seen.expiresAt > bNow && seen.expiresAt <= bNow + FAST.leaseTtlMs! + 50 && seen.acquiredAt! <= bNow,
      `on B's clock: ${JSON.stringify(seen)}, now ${bNow}`)
    const cycle = await b.power(m1, 'cycle').then(() => null, (e: unknown) => e)
    const on = await aOn.then((o) => o, (e: unknown) => e)
    assert.deepEqual(bmcs.overlaps(m1).map(([x, y]) => `${x.who}:${x.op} ${x.start.toFixed(1)}-${x.end?.toFixed(1)} / ${y.who}:${y.op} ${y.start.toFixed(1)}`), [],
      'no two commands at the BMC at once')
    assert.equal((on as { verified?: boolean }).verified, true, String(on))
    assert.equal(cycle, null)
    const lastA = Math.max(...bmcs.commands.filter((c) => c.who === 'A').map((c) => c.end!))
    const firstB = bmcs.commands.find((c) => c.who === 'B')!
    assert.ok(firstB.start >= lastA, 'B waited for A\'s power on (with its read-back) to end')
    assert.equal(await inv[0].bmcLeases!.get(m1), null, 'both released their leases')
  })

  test(`the reboot interval holds between instances whose clocks are 60 s off, either way [${backend.name}]`, { timeout: 120_000 }, async (t) => {
    if (await skipped(t, backend)) return
    const { bmcs, ids, manager } = await rig(t, backend)
    const [m1] = ids as [string]
    const interval = 1_500
    const a = manager('A', { minRebootIntervalMs: interval }).power
    // B's clock is 60 s ahead of A's (and of the database's); B2 (on B's handle) 60 s behind.
    const ahead = manager('B', { minRebootIntervalMs: interval }, undefined, skewed(60_000)).power
    const behind = manager('B', { minRebootIntervalMs: interval }, undefined, skewed(-60_000)).power
    bmcs.power.set(m1, 'on')
    const rebooted = performance.now()
    assert.equal((await a.power(m1, 'cycle')).verified, true)
    // Inside the interval: refused, though to the instance ahead A's reboot looks a minute old by the hosts' clocks.
    const err = await ahead.power(m1, 'cycle').then(() => null, (e: unknown) => e)
    assert.ok(isPowerError(err, 'too-soon'), String(err))
    assert.match((err as Error).message, /was rebooted [01] s ago/)
    // Once the interval is over (by real time), the instance behind reboots it: not refused for another minute.
    await sleep(interval - (performance.now() - rebooted) + 100)
    const late = await behind.power(m1, 'cycle').then((o) => o, (e: unknown) => e)
    assert.equal((late as { verified?: boolean }).verified, true, String(late))
    assert.equal(bmcs.commands.filter((c) => c.op === 'power').length, 2)
  })

  test(`two pollers whose clocks are 60 s off poll each BMC about once per interval in total; one takes over soon after the other stops [${backend.name}]`, { timeout: 120_000 }, async (t) => {
    if (await skipped(t, backend)) return
    const n = 12
    const { bmcs, ids, manager } = await rig(t, backend, n)
    // Whether another instance read a BMC within the interval is decided from power_checked_at: on the hosts' clocks,
    // B (60 s ahead) would find A's reads two minutes old and poll every BMC again, and A would find B's two minutes
    // ahead and leave them to B until long after B stopped.
    const a = manager('A', {}, undefined, skewed(-60_000))
    const b = manager('B', {}, undefined, skewed(60_000))
    const interval = FAST.pollIntervalMs!
    a.power.startPolling(() => ids)
    b.power.startPolling(() => ids)
    await sleep(interval * 3.5)
    await b.power.stop()
    const polls = bmcs.commands.filter((c) => c.op === 'status')
    const skips = { A: await skipCounts(a.metrics), B: await skipCounts(b.metrics) }
    const detail = `${polls.length} polls of ${n} BMCs (A ${polls.filter((c) => c.who === 'A').length}, B ${polls.filter((c) => c.who === 'B').length}); skipped ${JSON.stringify(skips)}`
    assert.ok(polls.length >= n * 3 && polls.length <= n * 4 + 2, detail)
    // Each leaves to the other the BMCs it read last (by the hosts' clocks, B never would: A's reads look 2 min old).
    const readElsewhere = [skips.A['read-elsewhere'] ?? 0, skips.B['read-elsewhere'] ?? 0]
    assert.ok(readElsewhere[0]! >= 1 && readElsewhere[1]! >= 1 && readElsewhere[0]! + readElsewhere[1]! >= n * 2, detail)
    // B stopped: A polls every BMC within about an interval of B's last read (its reads look too old 1.2 intervals on).
    const stoppedAt = bmcs.commands.length
    await sleep(interval * 3)
    await a.power.stop()
    const after = bmcs.commands.slice(stoppedAt).filter((c) => c.op === 'status')
    assert.deepEqual(ids.filter((id) => !after.some((c) => c.who === 'A' && c.machineId === id)), [], `A took over every BMC (${after.length} polls); ${detail}`)
    assert.deepEqual(bmcs.overlaps(), [])
    console.log(`skewed pollers [${backend.name}]: ${detail}; then A alone: ${after.length} polls in 3 intervals`)
  })
}

const simSkip = missing('ipmi_sim')
if (simSkip) console.warn(`SKIPPED shared-BMC ipmi_sim test: ${simSkip}`)

for (const backend of inventoryBackends()) {
  test(`ipmi_sim: a power on asked of two instances at once is one Chassis Control command [${backend.name}]`, { skip: simSkip ?? false, timeout: 120_000 }, async (t) => {
    if (await skipped(t, backend)) return
    const sim = await startIpmiSim(t)
    const [first, second] = await openTwice(t, backend)
    const m = await first.machines.create({ serial: 'SIM' }, Date.now())
    await first.bmcs.put(m.id, { type: 'ipmi', address: '127.0.0.1', port: sim.port, username: 'admin', password: 'password' })
    const managers = [first, second].map((inventory, i) => {
      const power = createPowerManager({
        bmcs: inventory.bmcs, leases: inventory.bmcLeases, instanceId: `sim-test:${i}`, log: silentLogger(),
        driverOptions: { ipmi: { retransmitMs: 500, bootVerify: 'device' } },
        settings: { timeoutMs: 8_000, attempts: 3, backoffBaseMs: 100, minRebootIntervalMs: 0, verifyTimeoutMs: 8_000, verifyIntervalMs: 500, sessionIdleMs: 0 },
      })
      t.after(() => power.stop())
      return power
    })
    const count = (call: string) => sim.calls().filter((c) => c === call).length
    const outcomes = await Promise.all(managers.map((p) => p.power(m.id, 'on')))
    assert.equal(count('0x20 set power 1'), 1, `one power on at the BMC:\n${sim.calls().join('\n')}`)
    assert.equal(sim.calls().filter((c) => / set /.test(c)).length, 1, sim.calls().join('\n'))
    assert.deepEqual(outcomes.map((o) => [o.verified, o.state]), [[true, 'on'], [true, 'on']])
    // The one that waited read the BMC first and found it on.
    assert.equal(outcomes.filter((o) => /^not sent: the BMC was held by rackboot instance sim-test:\d \(on, for \d+ s\) meanwhile, and it already reports on$/.test(o.note ?? '')).length, 1,
      JSON.stringify(outcomes))
    assert.equal(sim.file('power'), '1')
  })
}
