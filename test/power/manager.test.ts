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
}

function bmcOf(machineId: string, address: string, type: Bmc['type'] = 'ipmi'): Bmc {
  return { machineId, type, address, port: 623, username: 'admin', hasPassword: true, credentialsRef: null, insecure: false, fingerprint: null }
}

function setup(machines: Record<string, string>, settings: Partial<PowerManagerSettings> = {}, random = seededRandom(1)) {
  const clock = new FakeClock()
  const bmcs = new Map(Object.entries(machines).map(([id, address]) => [id, bmcOf(id, address)]))
  const active = new Map<string, number>()
  let activeAll = 0
  const world: World = {
    clock, calls: [], power: new Map(), maxActivePerBmc: new Map(), maxActive: 0, duration: 100, results: [], changes: [],
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
      power: (action, o) => call('power', o?.signal, action, () => {
        world.power.set(machineId, action === 'off' || action === 'soft-off' ? 'off' : 'on')
      }),
      setBootDevice: (override: BootOverride, o) => call('set-boot', o?.signal, override, () => ({
        device: override.device, mode: override.mode ?? null, persistent: override.persistent ?? false, enabled: true, raw: 'fake',
      })),
      getBootDevice: (o) => call('get-boot', o?.signal, undefined, () => ({ device: 'none' as const, mode: null, persistent: null, enabled: false, raw: '' })),
      identify: (on, o) => call('identify', o?.signal, on, () => undefined),
      close: async () => {},
    }
  }

  const manager = createPowerManager({
    bmcs: {
      get: async (id) => bmcs.get(id) ?? null,
      credentials: async (id) => (bmcs.has(id) ? { username: 'admin', password: 'pw' } : null),
    },
    log: silentLogger(),
    metrics: createMetricsRegistry(),
    observer,
    createDriver: (target) => makeDriver(target as Bmc),
    clock,
    random,
    settings: { timeoutMs: 5_000, attempts: 3, backoffBaseMs: 1_000, backoffMaxMs: 8_000, minRebootIntervalMs: 120_000,
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
  await clock.advance(100)
  assert.ok(ops[3]!.done, 'm3 ran beside the shared BMC')
  assert.ok(ops[0]!.done && !ops[1]!.done)
  await clock.advance(1_000)
  assert.ok(ops.every((o) => o.done && o.error === undefined))
  assert.equal(world.maxActivePerBmc.get('10.0.0.1'), 1)
  assert.equal(world.maxActive, 2)
  const shared = world.calls.filter((c) => c.bmc === '10.0.0.1')
  assert.deepEqual(shared.map((c) => `${c.machineId}:${c.op}`), ['m1:power', 'm2:status', 'm1:set-boot', 'm2:identify'])
  for (let i = 1; i < shared.length; i++) assert.ok(shared[i]!.at >= shared[i - 1]!.end!, 'starts after the previous ended')
})

test('retries with exponential backoff and jitter; results reported per attempt', async () => {
  const { world, manager, clock } = setup({ m1: '10.0.0.1' }, {}, () => 0.5)
  let failures = 2
  world.behave = async () => {
    if (failures-- > 0) throw new PowerError('busy', 'BMC busy')
  }
  const op = track(manager.power('m1', 'on'))
  await clock.advance(60_000)
  assert.ok(op.done && op.error === undefined)
  // base 1000 ms: attempt 1 -> 1000 * (0.5 + 0.5 * 0.5) = 750 ms; attempt 2 -> 2000 * 0.75 = 1500 ms.
  assert.deepEqual(world.calls.map((c) => c.at), [0, 750, 2250])
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
  assert.equal(world.calls.length, 4)

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
  assert.equal(world.calls.length, 2)
  assert.equal(world.calls[0]!.end, 5_000)

  // A driver that ignores the signal: the caller hears "timeout" on time, the next operation waits for the driver.
  world.calls.length = 0
  world.behave = (call) => call.op === 'status' ? new Promise((r) => clock.setTimeout(r, 30_000)) : Promise.resolve()
  const stuck = track(manager.status('m1'))
  const next = track(manager.identify('m1', true))
  await clock.advance(5_001)
  assert.ok(isPowerError(stuck.error, 'timeout') || !stuck.done)
  assert.equal(world.calls.filter((c) => c.op === 'identify').length, 0)
  await clock.advance(120_000)
  const identify = world.calls.find((c) => c.op === 'identify')!
  assert.ok(identify.at >= 30_000, `identify started at ${identify.at}`)
  assert.ok(next.done && next.error === undefined)
})

test('minimum interval between reboots: a clear error, or a deferral when asked', async () => {
  const { world, manager, clock } = setup({ m1: '10.0.0.1', m2: '10.0.0.2' }, { minRebootIntervalMs: 120_000 })
  const first = track(manager.power('m1', 'cycle'))
  await clock.advance(1_000)
  assert.ok(first.done && first.error === undefined)

  await clock.advance(9_000)
  const tooSoon = track(manager.power('m1', 'reset'))
  await clock.advance(0)
  assert.ok(isPowerError(tooSoon.error, 'too-soon'), String(tooSoon.error))
  const err = tooSoon.error as PowerError
  assert.match(err.message, /rebooted 10 s ago; reboots are at least 120 s apart, retry in 110 s/)
  assert.equal((err.details as { retryAfterMs: number }).retryAfterMs, 110_000)
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
  assert.deepEqual(cycles.map((c) => c.at), [0, 120_000])
})

test('a reboot that may have happened is not retried; one that surely did not run is', async () => {
  const { world, manager, clock } = setup({ m1: '10.0.0.1', m2: '10.0.0.2' })
  world.behave = async (call) => {
    if (call.op === 'power' && call.machineId === 'm1') throw new PowerError('timeout', 'no answer to Chassis Control')
    if (call.op === 'power' && call.machineId === 'm2' && world.calls.filter((c) => c.machineId === 'm2').length === 1) {
      throw new PowerError('unreachable', 'ECONNREFUSED')
    }
  }
  const ambiguous = track(manager.power('m1', 'cycle'))
  const refused = track(manager.power('m2', 'cycle'))
  await clock.advance(30_000)
  assert.ok(isPowerError(ambiguous.error, 'timeout'))
  assert.equal(world.calls.filter((c) => c.machineId === 'm1').length, 1)
  assert.ok(refused.done && refused.error === undefined)
  assert.equal(world.calls.filter((c) => c.machineId === 'm2').length, 2)
})

test('PXE boot now: set PXE (read back), then cycle when on, power on when off', async () => {
  const { world, manager, clock } = setup({ on: '10.0.0.1', off: '10.0.0.2' })
  world.power.set('on', 'on')
  const a = track(manager.pxeBootNow('on', { mode: 'uefi' }))
  const b = track(manager.pxeBootNow('off'))
  await clock.advance(5_000)
  assert.deepEqual(a.value, { readback: { device: 'pxe', mode: 'uefi', persistent: false, enabled: true, raw: 'fake' }, previous: 'on', action: 'cycle' })
  assert.equal((b.value as { action: string }).action, 'on')
  assert.deepEqual(world.calls.filter((c) => c.machineId === 'on').map((c) => `${c.op}:${JSON.stringify(c.arg ?? '')}`),
    ['set-boot:{"device":"pxe","persistent":false,"mode":"uefi"}', 'status:""', 'power:"cycle"'])
  assert.equal(manager.lastKnown('on')?.state, 'on')
  assert.equal(world.results.filter((r) => r.action === 'pxe-boot' && r.ok).length, 2)

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
  world.duration = 9_900
  const op = track(manager.power('m1', 'on')) // holds m1's BMC for the whole first polling round
  manager.startPolling(async () => ['m1', 'm2'])
  await clock.advance(10_000)
  assert.ok(op.done)
  const polls = world.calls.filter((c) => c.op === 'status').map((c) => c.machineId)
  // m1's poll fell inside the operation and was skipped; m2's was not.
  assert.deepEqual(polls, ['m2'])
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
