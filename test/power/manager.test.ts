// The power manager with fake drivers and a fake clock: per-BMC serialisation, retries with backoff and jitter,
// timeouts, the reboot interval, PXE boot now, and polling spread over the interval with bounded concurrency.
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { test } from 'node:test'
import { pino } from 'pino'
import type { Bmc } from '../../src/inventory/types.js'
import { silentLogger } from '../../src/log.js'
import { createMetricsRegistry } from '../../src/metrics.js'
import {
  createPowerManager, isPowerError, PowerError, type BmcDriver, type BootOverride, type PowerManagerSettings,
  type PowerObserver, type PowerResult, type PowerState, type PowerStatusChange,
} from '../../src/power/index.js'
import { FakeClock, seededRandom, settle } from './fixtures/fake-clock.js'
import { bmcRecord } from '../support/bmc.js'
import { startFakeBmc } from './fixtures/fake-rmcp-bmc.js'

type Op = 'status' | 'power' | 'set-boot' | 'get-boot' | 'identify' | 'capabilities'

interface Call {
  machineId: string
  bmc: string
  op: Op
  arg?: unknown
  at: number
  end?: number
}

interface World {
  clock: FakeClock
  calls: Call[]
  power: Map<string, PowerState>
  maxActivePerBmc: Map<string, number>
  maxActive: number
  /** Decides what a call does: return normally, throw, or take time (default: `duration` ms). */
  behave: (call: Call, signal: AbortSignal) => Promise<void>
  duration: number
  results: PowerResult[]
  changes: PowerStatusChange[]
  /** The fake BMC applies power changes this long after answering (slow BMCs, sushy's fake driver). */
  applyDelay: number
  /** An ACPI shutdown the OS ignores: soft-off answers and nothing happens. */
  ignoresSoftOff: boolean
  clearMarks: Map<string, boolean>
  /** The BMC keeps overrides only for every boot (reads Once back as Continuous): the driver's documented fallback. */
  onlyContinuous: boolean
  recorded: Map<string, { state: PowerState | null; error: string | null }>
}

function bmcOf(machineId: string, address: string, type: Bmc['type'] = 'ipmi'): Bmc {
  return bmcRecord({ machineId, type, address, port: 623 })
}

function setup(machines: Record<string, string>, settings: Partial<PowerManagerSettings> = {}, random = seededRandom(1)) {
  const clock = new FakeClock()
  const bmcs = new Map(Object.entries(machines).map(([id, address]) => [id, bmcOf(id, address)]))
  const active = new Map<string, number>()
  let activeAll = 0
  const world: World = {
    clock, calls: [], power: new Map(), maxActivePerBmc: new Map(), maxActive: 0, duration: 100, results: [], changes: [],
    applyDelay: 0, ignoresSoftOff: false, onlyContinuous: false, clearMarks: new Map(), recorded: new Map(),
    behave: async (_call, signal) => sleepFake(clock, world.duration, signal),
  }
  const observer: PowerObserver = { result: (r) => world.results.push(r), status: (c) => world.changes.push(c) }

  function makeDriver(target: Bmc): BmcDriver {
    const machineId = target.machineId
    const key = target.address
    const call = async <T>(op: Op, signal: AbortSignal | undefined, arg: unknown, value: () => T): Promise<T> => {
      const c: Call = { machineId, bmc: key, op, arg, at: clock.now() }
      world.calls.push(c)
      active.set(key, (active.get(key) ?? 0) + 1)
      activeAll++
      world.maxActivePerBmc.set(key, Math.max(world.maxActivePerBmc.get(key) ?? 0, active.get(key)!))
      world.maxActive = Math.max(world.maxActive, activeAll)
      try {
        await world.behave(c, signal ?? new AbortController().signal)
        return value()
      } finally {
        c.end = clock.now()
        active.set(key, active.get(key)! - 1)
        activeAll--
      }
    }
    return {
      type: 'ipmi',
      capabilities: (o) => call('capabilities', o?.signal, undefined, () => ['power.status' as const]),
      powerStatus: (o) => call('status', o?.signal, undefined, () => world.power.get(machineId) ?? 'off'),
      power: (action, o) => (o?.onSend?.(), call('power', o?.signal, action, () => {
        if (action === 'soft-off' && world.ignoresSoftOff) return
        const apply = (): void => {
          // A cycle or reset of an off machine does nothing, as on most BMCs.
          if ((action === 'cycle' || action === 'reset') && (world.power.get(machineId) ?? 'off') === 'off') return
          world.power.set(machineId, action === 'off' || action === 'soft-off' ? 'off' : 'on')
        }
        if (world.applyDelay > 0) clock.setTimeout(apply, world.applyDelay)
        else apply()
      })),
      setBootDevice: (override: BootOverride, o) => call('set-boot', o?.signal, override, () => ({
        device: override.device, mode: override.mode ?? null, persistent: override.persistent ?? false, enabled: true, raw: 'fake',
        ...(world.onlyContinuous && !override.persistent ? { persistent: true, fallback: 'continuous' as const } : {}),
      })),
      getBootDevice: (o) => call('get-boot', o?.signal, undefined, () => ({ device: 'none' as const, mode: null, persistent: null, enabled: false, raw: '' })),
      identify: (on, o) => call('identify', o?.signal, on, () => undefined),
      insertMedia: (url, o) => call('insert-media' as Op, o?.signal, url, () => undefined),
      ejectMedia: (o) => call('eject-media' as Op, o?.signal, undefined, () => undefined),
      close: async () => {},
    }
  }

  const manager = createPowerManager({
    bmcs: {
      get: async (id) => bmcs.get(id) ?? null,
      credentials: async (id) => (bmcs.has(id) ? { username: 'admin', password: 'pw' } : null),
      setClearOverrideAfterBoot: async (id, value) => void world.clearMarks.set(id, value),
      recordPower: async (id, p) => void world.recorded.set(id, { state: p.state, error: p.error }),
    },
    log: silentLogger(),
    metrics: createMetricsRegistry(),
    observer,
    createDriver: (target) => makeDriver(target as Bmc),
    clock,
    random,
    settings: { timeoutMs: 5_000, attempts: 3, backoffBaseMs: 1_000, backoffMaxMs: 8_000, minRebootIntervalMs: 120_000,
      verifyTimeoutMs: 30_000, verifyIntervalMs: 2_000, softOffTimeoutMs: 60_000,
      pollIntervalMs: 60_000, pollJitter: 0.1, pollConcurrency: 8, ...settings },
  })
  return { world, manager, clock }
}

function sleepFake(clock: FakeClock, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const h = clock.setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = (): void => {
      clock.clearTimeout(h)
      reject(new PowerError('timeout', 'fake driver aborted'))
    }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/** Starts a promise and records how it ended, without unhandled rejections. */
function track<T>(p: Promise<T>): { done: boolean; value?: T; error?: unknown } {
  const state: { done: boolean; value?: T; error?: unknown } = { done: false }
  p.then((v) => { state.done = true; state.value = v }, (e) => { state.done = true; state.error = e })
  return state
}

test('one queue per BMC: never two operations at once on one BMC, other BMCs in parallel, FIFO order', async () => {
  // m1 and m2 share a BMC (a chassis manager for two blades); m3 has its own.
  const { world, manager, clock } = setup({ m1: '10.0.0.1', m2: '10.0.0.1', m3: '10.0.0.3' })
  const ops = [
    track(manager.power('m1', 'on')),
    track(manager.status('m2')),
    track(manager.setBootDevice('m1', { device: 'pxe' })),
    track(manager.status('m3')),
    track(manager.identify('m2', true)),
  ]
  await clock.advance(200) // power on, then its read-back
  assert.ok(ops[3]!.done, 'm3 ran beside the shared BMC')
  assert.ok(ops[0]!.done && !ops[1]!.done)
  await clock.advance(1_000)
  assert.ok(ops.every((o) => o.done && o.error === undefined))
  assert.equal(world.maxActivePerBmc.get('10.0.0.1'), 1)
  assert.equal(world.maxActive, 2)
  const shared = world.calls.filter((c) => c.bmc === '10.0.0.1')
  assert.deepEqual(shared.map((c) => `${c.machineId}:${c.op}`), ['m1:power', 'm1:status', 'm2:status', 'm1:set-boot', 'm2:identify'])
  for (let i = 1; i < shared.length; i++) assert.ok(shared[i]!.at >= shared[i - 1]!.end!, 'starts after the previous ended')
})

test('retries with exponential backoff and jitter; results reported per attempt', async () => {
  const { world, manager, clock } = setup({ m1: '10.0.0.1' }, {}, () => 0.5)
  let failures = 2
  world.behave = async () => {
    if (failures-- > 0) throw new PowerError('busy', 'BMC busy', { notRun: true })
  }
  const op = track(manager.power('m1', 'on'))
  await clock.advance(60_000)
  assert.ok(op.done && op.error === undefined)
  // base 1000 ms: attempt 1 -> 1000 * (0.5 + 0.5 * 0.5) = 750 ms; attempt 2 -> 2000 * 0.75 = 1500 ms.
  // Then one read-back verifies the result (quiet: not an attempt of its own).
  assert.deepEqual(world.calls.map((c) => c.at), [0, 750, 2250, 2250])
  assert.deepEqual(world.calls.map((c) => c.op), ['power', 'power', 'power', 'status'])
  assert.deepEqual(op.value && { verified: op.value.verified, state: op.value.state }, { verified: true, state: 'on' })
  assert.deepEqual(world.results.map((r) => [r.attempt, r.ok, r.final, r.errorKind]),
    [[1, false, false, 'busy'], [2, false, false, 'busy'], [3, true, true, undefined]])
  assert.ok(world.results.every((r) => r.machineId === 'm1' && r.action === 'on'))
})

test('jitter spreads retries: different random draws give different delays within [d/2, d]', async () => {
  const delays: number[] = []
  for (const r of [0, 0.25, 0.99]) {
    const { world, manager, clock } = setup({ m1: '10.0.0.1' }, { attempts: 2 }, () => r)
    let fail = true
    world.behave = async () => {
      if (fail) {
        fail = false
        throw new PowerError('unreachable', 'no route')
      }
    }
    const op = track(manager.status('m1'))
    await clock.advance(10_000)
    assert.ok(op.done && op.error === undefined)
    delays.push(world.calls[1]!.at)
  }
  assert.deepEqual(delays, [500, 625, 995])
})

test('non-retryable errors stop at once; exhausted retries give the last error', async () => {
  const { world, manager, clock } = setup({ m1: '10.0.0.1' })
  world.behave = async () => {
    throw new PowerError('auth', 'BMC 10.0.0.1 rejected the credentials')
  }
  const auth = track(manager.status('m1'))
  await clock.advance(60_000)
  assert.ok(isPowerError(auth.error, 'auth'))
  assert.equal(world.calls.length, 1)
  assert.deepEqual(world.results.map((r) => r.final), [true])

  world.behave = async () => {
    throw new PowerError('timeout', 'no answer')
  }
  const timeouts = track(manager.status('m1'))
  await clock.advance(60_000)
  assert.ok(isPowerError(timeouts.error, 'timeout'))
  assert.equal(world.calls.length, 2, 'a BMC that did not answer within the whole budget is not asked again at once')

  world.behave = async () => {
    throw new PowerError('unreachable', 'connection refused', { notRun: true })
  }
  const refused = track(manager.status('m1'))
  await clock.advance(60_000)
  assert.ok(isPowerError(refused.error, 'unreachable'))
  assert.equal(world.calls.length, 5)

  const missing = track(manager.status('nope'))
  await clock.advance(0)
  assert.ok(isPowerError(missing.error, 'no-bmc'))
})

test('a per-attempt timeout aborts the driver; a driver that ignores it still holds the BMC queue', async () => {
  const { world, manager, clock } = setup({ m1: '10.0.0.1' }, { attempts: 2, timeoutMs: 5_000 })
  world.duration = 60_000 // longer than the timeout: the driver honours the abort signal
  const op = track(manager.status('m1'))
  await clock.advance(5_000)
  assert.equal(world.calls.length, 1)
  await clock.advance(20_000)
  assert.ok(isPowerError(op.error, 'timeout'))
  // A second of grace past the driver's own budget, so a driver that keeps to it can name the step it waited for.
  assert.match((op.error as Error).message, /no answer from ipmi BMC 10\.0\.0\.1:623 within 6000 ms/)
  assert.equal(world.calls.length, 1)
  assert.equal(world.calls[0]!.end, 6_000)

  // A driver that ignores the signal: the caller hears "timeout" on time, the next operation waits for the driver.
  world.calls.length = 0
  world.behave = (call) => call.op === 'status' ? new Promise((r) => clock.setTimeout(r, 30_000)) : Promise.resolve()
  const stuck = track(manager.status('m1'))
  const next = track(manager.identify('m1', true))
  await clock.advance(6_001)
  assert.ok(isPowerError(stuck.error, 'timeout') || !stuck.done)
  assert.equal(world.calls.filter((c) => c.op === 'identify').length, 0)
  await clock.advance(120_000)
  const identify = world.calls.find((c) => c.op === 'identify')!
  assert.ok(identify.at >= 30_000, `identify started at ${identify.at}`)
  assert.ok(next.done && next.error === undefined)
})

test('minimum interval between reboots: a clear error, or a deferral when asked', async () => {
  const { world, manager, clock } = setup({ m1: '10.0.0.1', m2: '10.0.0.2' }, { minRebootIntervalMs: 120_000 })
  world.power.set('m1', 'on')
  world.power.set('m2', 'on')
  const first = track(manager.power('m1', 'cycle')) // a read (100 ms), the cycle, sent at 100 ms, and its read-back
  await clock.advance(1_000)
  assert.ok(first.done && first.error === undefined)

  await clock.advance(9_000)
  const tooSoon = track(manager.power('m1', 'reset'))
  await clock.advance(0)
  assert.ok(isPowerError(tooSoon.error, 'too-soon'), String(tooSoon.error))
  const err = tooSoon.error as PowerError
  assert.match(err.message, /rebooted 10 s ago; reboots are at least 120 s apart, retry in 111 s/)
  assert.equal((err.details as { retryAfterMs: number }).retryAfterMs, 110_100)
  assert.equal(err.statusCode, 429)

  // Other machines and non-reboot actions are not held back.
  const other = track(manager.power('m2', 'cycle'))
  const off = track(manager.power('m1', 'off'))
  await clock.advance(1_000)
  assert.ok(other.done && other.error === undefined && off.done && off.error === undefined)

  const deferred = track(manager.power('m1', 'cycle', { ifTooSoon: 'defer' }))
  await clock.advance(100_000) // now t = 111 s
  assert.ok(!deferred.done)
  await clock.advance(10_000)
  assert.ok(deferred.done && deferred.error === undefined)
  const cycles = world.calls.filter((c) => c.machineId === 'm1' && c.arg === 'cycle')
  // Off (at 10 s) left m1 off: the deferred cycle found it off and powered it on instead, 120 s after the first.
  assert.deepEqual(cycles.map((c) => c.at), [100])
  const ons = world.calls.filter((c) => c.machineId === 'm1' && c.arg === 'on')
  assert.deepEqual(ons.map((c) => c.at), [120_200])
  assert.match((deferred.value as { note: string }).note, /was off: powered on instead of cycle/)
})

test('a reboot that may have happened is not retried; one that surely did not run is', async () => {
  const { world, manager, clock } = setup({ m1: '10.0.0.1', m2: '10.0.0.2' })
  world.power.set('m1', 'on')
  world.power.set('m2', 'on')
  let m2power = 0
  world.behave = async (call) => {
    if (call.op === 'power' && call.machineId === 'm1') throw new PowerError('timeout', 'no answer to Chassis Control')
    if (call.op === 'power' && call.machineId === 'm2' && m2power++ === 0) {
      throw new PowerError('unreachable', 'ECONNREFUSED', { notRun: true })
    }
  }
  const ambiguous = track(manager.power('m1', 'cycle'))
  const refused = track(manager.power('m2', 'cycle'))
  await clock.advance(30_000)
  // m1: sent, no answer, still on: whether it rebooted is unknown, and it is said so rather than sent again.
  assert.ok(isPowerError(ambiguous.error, 'unknown-outcome'), String(ambiguous.error))
  assert.match((ambiguous.error as Error).message, /whether it rebooted is unknown; not re-sent/)
  assert.equal(world.calls.filter((c) => c.machineId === 'm1' && c.op === 'power').length, 1)
  assert.deepEqual(world.results.filter((r) => r.machineId === 'm1').map((r) => [r.action, r.ok, r.sent, r.ambiguous, r.final]),
    [['cycle', false, true, true, true]])
  assert.ok(refused.done && refused.error === undefined)
  assert.equal(world.calls.filter((c) => c.machineId === 'm2' && c.op === 'power').length, 2)

  // An answer that proves nothing (HTTP 500 after the reset was sent, a dropped connection): retryable for a read,
  // never re-sent for a reboot.
  world.behave = async (call) => {
    if (call.op === 'power') throw new PowerError('protocol', 'BMC 10.0.0.1 answered HTTP 500 to reset PowerCycle')
  }
  world.power.set('m1', 'on')
  const five = track(manager.power('m1', 'reset', { ifTooSoon: 'defer' }))
  await clock.advance(300_000)
  assert.ok(isPowerError(five.error, 'unknown-outcome'), String(five.error))
  assert.equal(world.calls.filter((c) => c.machineId === 'm1' && c.op === 'power').length, 2, 'one cycle, one reset')
})

test('PXE boot now: set PXE (read back), then cycle when on, power on when off', async () => {
  const { world, manager, clock } = setup({ on: '10.0.0.1', off: '10.0.0.2' })
  world.power.set('on', 'on')
  const a = track(manager.pxeBootNow('on', { mode: 'uefi' }))
  const b = track(manager.pxeBootNow('off'))
  await clock.advance(5_000)
  assert.deepEqual(a.value, { readback: { device: 'pxe', mode: 'uefi', persistent: false, enabled: true, raw: 'fake' }, previous: 'on',
    action: 'cycle', method: 'pxe', verified: true, note: null })
  assert.equal((b.value as { action: string }).action, 'on')
  assert.deepEqual(world.calls.filter((c) => c.machineId === 'on').map((c) => `${c.op}:${JSON.stringify(c.arg ?? '')}`),
    ['set-boot:{"device":"pxe","persistent":false,"mode":"uefi"}', 'status:""', 'power:"cycle"', 'status:""'])
  assert.equal(manager.lastKnown('on')?.state, 'on')
  // The power attempts are reported as what was sent, marked as reboots for the reboot interval.
  assert.deepEqual(world.results.filter((r) => r.reboot).map((r) => [r.machineId, r.action, r.ok]), [['on', 'cycle', true], ['off', 'on', true]])

  // A second PXE boot right away is a reboot too soon.
  const again = track(manager.pxeBootNow('on'))
  await clock.advance(0)
  assert.ok(isPowerError(again.error, 'too-soon'))
})

test('PXE boot now never powers a machine whose override did not stick', async () => {
  const { world, manager, clock } = setup({ m1: '10.0.0.1' })
  world.behave = async (call) => {
    if (call.op === 'set-boot') throw new PowerError('not-applied', 'BMC accepted boot override pxe but it did not stick')
  }
  const op = track(manager.pxeBootNow('m1'))
  await clock.advance(60_000)
  assert.ok(isPowerError(op.error, 'not-applied'))
  assert.equal(world.calls.filter((c) => c.op === 'power').length, 0)
  assert.equal(world.calls.filter((c) => c.op === 'set-boot').length, 3) // retried (it is safe), then given up
  // Nothing rebooted, so nothing holds the next attempt back.
  world.behave = async () => {}
  const retry = track(manager.pxeBootNow('m1'))
  await clock.advance(1_000)
  assert.ok(retry.done && retry.error === undefined)
})

test('polling: thousands of BMCs spread over the interval, bounded concurrency, one poll per BMC at a time', async () => {
  const machines: Record<string, string> = {}
  for (let i = 0; i < 2000; i++) machines[`m${i}`] = `10.1.${i >> 8}.${i & 255}`
  const { world, manager, clock } = setup(machines, { pollIntervalMs: 60_000, pollConcurrency: 8, pollJitter: 0.1 })
  world.duration = 200
  const ids = Object.keys(machines)
  manager.startPolling(() => ids)
  for (let s = 0; s < 60; s++) await clock.advance(1_000)
  const firstRound = world.calls.filter((c) => c.op === 'status')
  assert.ok(firstRound.length >= 1900, `polled ${firstRound.length} of 2000 in the first interval`)
  await clock.advance(2_000) // the last few, queued behind the concurrency bound
  const polledBy62 = new Set(world.calls.filter((c) => c.op === 'status' && c.at < 62_000).map((c) => c.machineId))
  assert.equal(polledBy62.size, 2000)
  assert.ok(world.maxActive <= 8, `max ${world.maxActive} at once`)
  assert.ok([...world.maxActivePerBmc.values()].every((n) => n === 1))
  // Spread: no second carries much more than its share (2000 / 60 ≈ 33 per second).
  const perSecond = new Map<number, number>()
  for (const c of firstRound) perSecond.set(Math.floor(c.at / 1000), (perSecond.get(Math.floor(c.at / 1000)) ?? 0) + 1)
  assert.ok(perSecond.size >= 58, `polls fell in ${perSecond.size} distinct seconds`)
  assert.ok(Math.max(...perSecond.values()) <= 40, `busiest second had ${Math.max(...perSecond.values())} polls`)
  // Each machine keeps its own phase: the next poll comes about one interval later (± jitter).
  for (let s = 0; s < 68; s++) await clock.advance(1_000)
  const m5 = world.calls.filter((c) => c.machineId === 'm5' && c.op === 'status').map((c) => c.at)
  assert.ok(m5.length >= 2)
  assert.ok(Math.abs(m5[1]! - m5[0]! - 60_000) <= 12_000 + 1_000, `m5 polled at ${m5.join(', ')}`)
  // Status changes go to the observer once each, not on every poll; polls add no per-attempt results.
  assert.equal(world.changes.length, 2000)
  assert.equal(world.results.length, 0)
  assert.ok(world.changes.every((c) => c.state === 'off' && c.previous === null))
  const stopping = manager.stop() // waits for polls in flight, which need the clock to move
  await clock.advance(1_000)
  await stopping
  const count = world.calls.length
  await clock.advance(120_000)
  assert.equal(world.calls.length, count, 'no polls after stop')
})

test('polling skips a BMC with an operation running and reports changes and failures', async () => {
  const { world, manager, clock } = setup({ m1: '10.0.0.1', m2: '10.0.0.2' }, { pollIntervalMs: 10_000, pollJitter: 0, timeoutMs: 60_000 })
  world.duration = 4_950
  const op = track(manager.power('m1', 'on')) // with its read-back, holds m1's BMC for the whole first polling round
  manager.startPolling(async () => ['m1', 'm2'])
  await clock.advance(10_000)
  assert.ok(op.done)
  const polls = world.calls.filter((c) => c.op === 'status').map((c) => `${c.machineId}@${c.at}`)
  // m1's poll fell inside the operation and was skipped (its one read is the operation's read-back); m2's was not.
  assert.deepEqual(polls.filter((p) => p.startsWith('m1')), ['m1@4950'])
  assert.equal(polls.filter((p) => p.startsWith('m2')).length, 1)
  world.duration = 10
  world.behave = async (call) => {
    if (call.machineId === 'm2') throw new PowerError('unreachable', 'no route to BMC')
  }
  await clock.advance(20_000)
  assert.equal(manager.lastKnown('m1')?.state, 'on')
  assert.equal(manager.lastKnown('m2')?.state, null)
  assert.match(manager.lastKnown('m2')?.error ?? '', /no route/)
  const m2changes = world.changes.filter((c) => c.machineId === 'm2')
  assert.deepEqual(m2changes.map((c) => [c.previous, c.state, Boolean(c.error)]), [[null, 'off', false], ['off', null, true]])
  const stopping = manager.stop()
  await clock.advance(1_000)
  await stopping
})

test('with the real IPMI driver: a wrong password fails once, and never reaches results or logs', async (t) => {
  const bmc = await startFakeBmc({ password: 'right-password' })
  t.after(() => bmc.close())
  const secret = 'Sup3r-Secret-Pw'
  const lines: string[] = []
  const log = pino({ level: 'trace' }, new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb() } }))
  const results: PowerResult[] = []
  const manager = createPowerManager({
    bmcs: {
      get: async (id) => ({ ...bmcOf(id, '127.0.0.1'), port: bmc.port }),
      credentials: async () => ({ username: 'admin', password: secret }),
    },
    log,
    observer: { result: (r) => results.push(r) },
    settings: { timeoutMs: 3_000 },
  })
  await assert.rejects(manager.status('m1'), (err) => isPowerError(err, 'auth') && !err.message.includes(secret))
  assert.equal(results.length, 1)
  assert.ok(!JSON.stringify(results).includes(secret))
  assert.ok(lines.length > 0)
  assert.ok(lines.every((l) => !l.includes(secret)))
  await settle()
})

test('PXE boot now with the real Redfish driver: verified override then a cycle; a dropped override never reboots', async (t) => {
  const { startRedfishServer } = await import('./fixtures/redfish-server.js')
  const good = await startRedfishServer()
  const dropping = await startRedfishServer({ quirks: { dropsBootOverride: true } })
  t.after(async () => {
    await good.close()
    await dropping.close()
  })
  good.state.power = 'On'
  dropping.state.power = 'On'
  const urls: Record<string, string> = { good: good.url, dropping: dropping.url }
  const results: PowerResult[] = []
  const manager = createPowerManager({
    bmcs: {
      get: async (id) => ({ ...bmcOf(id, urls[id]!, 'redfish'), port: null }),
      credentials: async () => ({ username: 'admin', password: 'password' }),
    },
    log: silentLogger(),
    observer: { result: (r) => results.push(r) },
    driverOptions: { redfish: { verifyIntervalMs: 5 } },
    settings: { timeoutMs: 5_000, attempts: 2, backoffBaseMs: 10, backoffMaxMs: 20 },
  })
  const done = await manager.pxeBootNow('good', { mode: 'uefi' })
  assert.equal(done.action, 'cycle')
  assert.equal(done.readback.raw, 'Pxe/Once/UEFI')
  assert.deepEqual(good.state.resets, ['PowerCycle'])
  assert.equal(good.state.sessions.size, 1, 'the session is kept for the next operation')
  assert.equal(await manager.status('good'), 'on')
  assert.equal(good.state.sessionsCreated, 1, 'the next operation reuses it')

  await assert.rejects(manager.pxeBootNow('dropping', { mode: 'uefi' }), (err) => isPowerError(err, 'not-applied'))
  assert.deepEqual(dropping.state.resets, [])
  assert.equal(dropping.state.sessions.size, 0) // each attempt logged out
  assert.deepEqual(results.filter((r) => r.machineId === 'dropping').map((r) => [r.attempt, r.ok, r.final]), [[1, false, false], [2, false, true]])
  await manager.stop()
  assert.equal(good.state.sessions.size, 0, 'stop logs out of kept sessions')
})

test('kept sessions: logged out after the idle time, replaced when the BMC dropped them, not kept when sessionIdleMs is 0', async (t) => {
  const { startRedfishServer } = await import('./fixtures/redfish-server.js')
  const bmc = await startRedfishServer()
  t.after(() => bmc.close())
  bmc.state.power = 'On'
  const make = (sessionIdleMs: number) => createPowerManager({
    bmcs: {
      get: async (id) => ({ ...bmcOf(id, bmc.url, 'redfish'), port: null }),
      credentials: async () => ({ username: 'admin', password: 'password' }),
    },
    log: silentLogger(),
    settings: { timeoutMs: 5_000, attempts: 2, backoffBaseMs: 10, backoffMaxMs: 20, sessionIdleMs },
  })
  const kept = make(150)
  await kept.status('m1')
  await kept.status('m1')
  assert.equal(bmc.state.sessionsCreated, 1)
  // The BMC forgets the session (its own timeout, a reset): the next operation logs in again and succeeds.
  bmc.state.sessions.clear()
  assert.equal(await kept.status('m1'), 'on')
  assert.equal(bmc.state.sessionsCreated, 2)
  await new Promise((r) => setTimeout(r, 400))
  assert.equal(bmc.state.sessions.size, 0, 'logged out once idle')
  await kept.stop()

  const none = make(0)
  await none.status('m1')
  assert.equal(bmc.state.sessions.size, 0, 'sessionIdleMs 0: logged out after every operation')
  await none.stop()
})

test('outcomes are read back: a BMC that applies power late is waited for, and the next action waits behind it', async () => {
  const { world, manager, clock } = setup({ m1: '10.0.0.1' })
  world.power.set('m1', 'on')
  world.applyDelay = 7_000
  const off = track(manager.power('m1', 'off'))
  const on = track(manager.power('m1', 'on'))
  await clock.advance(6_000)
  assert.ok(!off.done, 'off is not done while the BMC still reports on')
  await clock.advance(3_000)
  assert.ok(off.done && off.error === undefined, String(off.error))
  assert.deepEqual(off.value && [off.value.verified, off.value.state], [true, 'off'])
  // "on" was queued behind the pending off: it is sent after off was seen, and itself verified.
  const onSent = world.calls.find((c) => c.op === 'power' && c.arg === 'on')!
  assert.ok(onSent.at >= 8_000, `on sent at ${onSent.at}`)
  await clock.advance(10_000)
  assert.deepEqual(on.value && [on.value.verified, on.value.state], [true, 'on'])
  assert.equal(world.power.get('m1'), 'on', 'the machine ends in the state asked last')
  assert.equal(world.calls.filter((c) => c.op === 'power').length, 2)
  assert.deepEqual(world.recorded.get('m1'), { state: 'on', error: null })
})

test('an action the BMC accepts and never carries out is reported not verified; one without an answer, unknown', async () => {
  const { world, manager, clock } = setup({ m1: '10.0.0.1', m2: '10.0.0.2' })
  world.applyDelay = 10_000_000 // never, within the test
  const on = track(manager.power('m1', 'on'))
  await clock.advance(40_000)
  assert.ok(isPowerError(on.error, 'not-verified'), String(on.error))
  assert.match((on.error as Error).message, /on on machine m1 \(ipmi BMC 10\.0\.0\.2?1?:623\): the BMC accepted it but still reports off after 30 s/)
  assert.equal((on.error as PowerError).statusCode, 504)

  world.behave = async (call) => {
    if (call.op === 'power') throw new PowerError('timeout', 'no answer to Chassis Control (power on)')
  }
  const lost = track(manager.power('m2', 'on'))
  await clock.advance(40_000)
  assert.ok(isPowerError(lost.error, 'unknown-outcome'), String(lost.error))
  assert.match((lost.error as Error).message, /still reports off after 30 s; not re-sent/)
  assert.equal(world.calls.filter((c) => c.machineId === 'm2' && c.op === 'power').length, 1)
})

test('a lost answer to an action that did run is settled by the read-back, without sending it again', async () => {
  const { world, manager, clock } = setup({ m1: '10.0.0.1' })
  world.behave = async (call) => {
    if (call.op === 'power') {
      world.power.set('m1', 'on') // carried out, answer lost
      throw new PowerError('timeout', 'no answer to Chassis Control (power on)')
    }
  }
  const on = track(manager.power('m1', 'on'))
  await clock.advance(10_000)
  assert.ok(on.done && on.error === undefined, String(on.error))
  assert.equal(on.value!.verified, true)
  assert.match(on.value!.note ?? '', /now reports on: not re-sent/)
  assert.equal(world.calls.filter((c) => c.op === 'power').length, 1)
})

test('soft-off falls back to a hard off when the OS does not shut down; cycle and reset of an off machine power it on', async () => {
  const { world, manager, clock } = setup({ m1: '10.0.0.1', m2: '10.0.0.2', m3: '10.0.0.3' })
  world.power.set('m1', 'on')
  world.ignoresSoftOff = true
  const soft = track(manager.power('m1', 'soft-off'))
  await clock.advance(59_000)
  assert.ok(!soft.done)
  await clock.advance(5_000)
  assert.ok(soft.done && soft.error === undefined, String(soft.error))
  assert.deepEqual(world.calls.filter((c) => c.op === 'power').map((c) => c.arg), ['soft-off', 'off'])
  assert.match(soft.value!.note ?? '', /still on 60 s after the ACPI shutdown request: powered off hard/)
  assert.equal(world.power.get('m1'), 'off')

  for (const [id, action] of [['m2', 'cycle'], ['m3', 'reset']] as const) {
    const op = track(manager.power(id, action))
    await clock.advance(5_000)
    assert.ok(op.done && op.error === undefined, String(op.error))
    assert.deepEqual([op.value!.sent, op.value!.state, op.value!.verified], ['on', 'on', true])
    assert.equal(world.power.get(id), 'on')
  }
})

test('a BMC\'s Retry-After is waited for; a caller that gives up stops waiting and nothing more is sent', async () => {
  const { world, manager, clock } = setup({ m1: '10.0.0.1' })
  let busy = 1
  world.behave = async () => {
    if (busy-- > 0) throw new PowerError('busy', 'system in POST', { notRun: true, retryAfterMs: 6_000 })
  }
  const op = track(manager.status('m1'))
  await clock.advance(5_900)
  assert.equal(world.calls.length, 1)
  await clock.advance(200)
  assert.ok(op.done && op.error === undefined)
  assert.equal(world.calls[1]!.at, 6_000)

  world.calls.length = 0
  world.applyDelay = 10_000_000
  const controller = new AbortController()
  const slow = track(manager.power('m1', 'on', { signal: controller.signal }))
  await clock.advance(5_000)
  controller.abort()
  await clock.advance(60_000)
  assert.ok(slow.done && slow.error instanceof PowerError, String(slow.error))
  assert.equal(world.calls.filter((c) => c.op === 'power').length, 1)
  assert.ok(world.calls.length <= 4, `${world.calls.length} calls after the caller gave up`)
})

test('a next-boot override the BMC keeps for every boot is marked to be cleared after the boot', async () => {
  const { world, manager, clock } = setup({ m1: '10.0.0.1', m2: '10.0.0.2' })
  const plain = track(manager.pxeBootNow('m1', { mode: 'uefi' }))
  await clock.advance(5_000)
  assert.ok(plain.done && plain.error === undefined, String(plain.error))
  assert.equal(world.clearMarks.get('m1'), undefined, 'an override that read back as asked needs no clearing')

  world.onlyContinuous = true
  const fallback = track(manager.pxeBootNow('m2', { mode: 'uefi' }))
  await clock.advance(5_000)
  assert.ok(fallback.done && fallback.error === undefined, String(fallback.error))
  assert.equal(fallback.value!.readback.fallback, 'continuous')
  assert.equal(world.clearMarks.get('m2'), true)
  // Asked persistent, kept persistent: nothing to clear.
  const persistent = track(manager.setBootDevice('m1', { device: 'pxe', persistent: true }))
  await clock.advance(1_000)
  assert.ok(persistent.done)
  assert.equal(world.clearMarks.get('m1'), undefined)
  const cleared = track(manager.setBootDevice('m2', { device: 'none' }))
  await clock.advance(1_000)
  assert.ok(cleared.done)
  assert.equal(world.clearMarks.get('m2'), false)
})

test('a refused power on of a machine already on is the result asked for; a refusal otherwise is the error', async () => {
  const { world, manager, clock } = setup({ m1: '10.0.0.1', m2: '10.0.0.2' }, { attempts: 1 })
  world.power.set('m1', 'on')
  world.behave = async (call) => {
    if (call.op === 'power') throw new PowerError('busy', 'BMC 10.0.0.1 refused reset On: HTTP 409: Server is already powered ON', { notRun: true })
  }
  const on = track(manager.power('m1', 'on'))
  const off = track(manager.power('m2', 'off'))
  const refused = track(manager.power('m2', 'on'))
  await clock.advance(10_000)
  assert.deepEqual(on.value && [on.value.verified, on.value.state], [true, 'on'])
  assert.match(on.value!.note ?? '', /refused it .*already reports on/)
  assert.ok(off.done && off.error === undefined, 'm2 is off already: its refused off is done too')
  assert.ok(isPowerError(refused.error, 'busy'), String(refused.error))
})
