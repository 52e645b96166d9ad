// The power manager: every BMC operation goes through here. One queue per BMC (never two operations at once on
// one BMC), a timeout per attempt, retries with backoff and jitter, a minimum interval between reboots of one
// machine, "PXE boot now", and status polling spread over the interval with bounded concurrency.
import { createHash } from 'node:crypto'
import { Counter, Histogram, type Registry } from 'prom-client'
import type { BmcRepository } from '../inventory/repositories.js'
import type { Bmc } from '../inventory/types.js'
import type { Logger } from '../log.js'
import { sleep, systemClock, type Clock } from './clock.js'
import { createBmcDriver, type DriverFactory, type DriverOptions } from './driver.js'
import { PowerError, toPowerError, type PowerErrorKind } from './errors.js'
import type {
  BmcDriver, BootMode, BootOverride, BootReadback, Capability, PowerAction, PowerState,
} from './types.js'

export type PowerOperation = PowerAction | 'status' | 'set-boot' | 'get-boot' | 'identify' | 'capabilities' | 'pxe-boot'

export interface PowerResult {
  machineId: string
  action: PowerOperation
  ok: boolean
  /** What went wrong, fit for a timeline (never a credential). */
  error?: string
  errorKind?: PowerErrorKind
  /** Duration of this attempt. */
  ms: number
  /** 1-based; several results for one operation when it was retried. */
  attempt: number
  /** No further attempt follows (success, or the failure the caller gets). */
  final: boolean
}

export interface PowerStatusChange {
  machineId: string
  state: PowerState | null
  previous: PowerState | null
  at: number
  /** Set when the poll failed (state is then null). */
  error?: string
}

/** Where results go: the lead wires it to the machine's timeline. */
export interface PowerObserver {
  result(info: PowerResult): void
  /** Polled power state changes (and the first poll failure after a success). Optional. */
  status?(info: PowerStatusChange): void
}

export interface PowerManagerSettings {
  /** Budget of one attempt (session set-up included). */
  timeoutMs: number
  /** Attempts per operation, first included. */
  attempts: number
  backoffBaseMs: number
  backoffMaxMs: number
  /** Minimum time between two reboots (cycle, reset, PXE boot now) of one machine. */
  minRebootIntervalMs: number
  pollIntervalMs: number
  /** Each machine's poll moves by up to ± this fraction of the interval from its own fixed phase. */
  pollJitter: number
  /** Polls running at once, across all BMCs. */
  pollConcurrency: number
  /**
   * How long a BMC's session (Redfish session, IPMI RMCP+ session) is kept open after an operation for the next
   * one; 0 logs out after every operation. Below Redfish's smallest SessionTimeout (30 s) and IPMI's usual 60 s.
   */
  sessionIdleMs: number
}

export const DEFAULT_POWER_SETTINGS: PowerManagerSettings = {
  timeoutMs: 30_000,
  attempts: 3,
  backoffBaseMs: 1_000,
  backoffMaxMs: 30_000,
  minRebootIntervalMs: 120_000,
  pollIntervalMs: 60_000,
  pollJitter: 0.1,
  pollConcurrency: 32,
  sessionIdleMs: 20_000,
}

export interface PowerManagerDeps {
  /** The inventory's BMC port: where each machine's BMC is and its decrypted credentials. */
  bmcs: Pick<BmcRepository, 'get' | 'credentials'>
  log: Logger
  metrics?: Registry
  observer?: PowerObserver
  createDriver?: DriverFactory
  driverOptions?: DriverOptions
  clock?: Clock
  /** [0, 1) like Math.random: backoff jitter and poll phases. */
  random?: () => number
  /** Usually `settings.power`; its ipmiCipherSuites apply when driverOptions names no suites. */
  settings?: Partial<PowerManagerSettings> & { ipmiCipherSuites?: (3 | 17)[] }
  /**
   * When the machine was last rebooted as recorded outside this process (its timeline), so the minimum reboot
   * interval survives restarts and holds between processes; only this process's own reboots count without it.
   */
  lastRebootAt?: (machineId: string) => Promise<number | null>
}

export interface RebootOptions {
  /** Within the minimum reboot interval: fail with `too-soon` (default), or wait until it has passed. */
  ifTooSoon?: 'error' | 'defer'
}

export interface PxeBootOptions extends RebootOptions {
  mode?: BootMode
  /** PXE on every boot rather than the next one only. */
  persistent?: boolean
}

export interface PxeBootResult {
  readback: BootReadback
  /** What the machine's power was before, and what was done about it. */
  previous: PowerState
  action: 'cycle' | 'on'
}

export interface KnownStatus {
  state: PowerState | null
  at: number
  error?: string
}

export interface PowerManager {
  status(machineId: string): Promise<PowerState>
  power(machineId: string, action: PowerAction, options?: RebootOptions): Promise<void>
  setBootDevice(machineId: string, override: BootOverride): Promise<BootReadback>
  getBootDevice(machineId: string): Promise<BootReadback>
  identify(machineId: string, on: boolean, seconds?: number): Promise<void>
  capabilities(machineId: string): Promise<Capability[]>
  /** Next boot PXE (verified by reading it back), then power cycle when on, or power on when off. */
  pxeBootNow(machineId: string, options?: PxeBootOptions): Promise<PxeBootResult>
  /** The last state seen (by an operation or a poll), or null. */
  lastKnown(machineId: string): KnownStatus | null
  /** Starts polling the machines `list` returns, every pollIntervalMs, each at its own phase. */
  startPolling(list: () => Promise<string[]> | string[]): void
  /** Stops polling and waits for running operations to end. */
  stop(): Promise<void>
}

const REBOOTS = new Set<PowerOperation>(['cycle', 'reset', 'pxe-boot'])
// A reboot command that timed out may still have run: only errors that prove it never ran are retried.
const SAFE_TO_RETRY_REBOOT = new Set<PowerErrorKind>(['unreachable', 'session-limit', 'busy'])
const ambiguous = new WeakSet<PowerError>()

/** Everything a driver was made from: a parked driver is reused only for the same BMC record and credentials. */
type Credentials = Parameters<DriverFactory>[1]

function driverIdentity(bmc: Bmc, credentials: Credentials): string {
  const secret = createHash('sha256').update(credentials.password ?? '').digest('hex')
  return JSON.stringify([bmc, credentials.username, secret])
}

function bmcKey(bmc: Bmc): string {
  return `${bmc.type}://${bmc.address}:${bmc.port ?? ''}`
}

export function createPowerManager(deps: PowerManagerDeps): PowerManager {
  const settings: PowerManagerSettings = { ...DEFAULT_POWER_SETTINGS, ...deps.settings }
  const clock = deps.clock ?? systemClock
  const random = deps.random ?? Math.random
  const makeDriver = deps.createDriver ?? createBmcDriver
  const datagrams = deps.metrics ? new Counter({
    name: 'rackboot_ipmi_datagrams_total', help: 'IPMI datagrams: sent, retransmitted, and received but dropped',
    labelNames: ['kind'] as const, registers: [deps.metrics],
  }) : null
  const suites = deps.driverOptions?.ipmi?.suites ?? deps.settings?.ipmiCipherSuites
  const driverOptions: DriverOptions = {
    ...deps.driverOptions,
    ipmi: {
      ...deps.driverOptions?.ipmi,
      ...(suites ? { suites } : {}),
      onStats: deps.driverOptions?.ipmi?.onStats ?? ((s) => {
        datagrams?.inc({ kind: 'sent' }, s.sent)
        datagrams?.inc({ kind: 'retransmitted' }, s.retransmitted)
        datagrams?.inc({ kind: 'dropped' }, s.dropped)
      }),
    },
  }
  const log = deps.log.child({ svc: 'power' })
  const observer = deps.observer

  // Sessions kept between operations, one per BMC: a boot storm's PXE-then-poll traffic logs in once per BMC instead
  // of once per operation, and BMCs with few session slots are not churned. Operations on one BMC are serial, so a
  // parked driver is never used twice at once; a driver that failed is closed, never parked.
  const parked = new Map<string, { identity: string; driver: BmcDriver; timer: unknown }>()
  const unpark = (key: string): BmcDriver | null => {
    const p = parked.get(key)
    if (!p) return null
    parked.delete(key)
    clock.clearTimeout(p.timer)
    return p.driver
  }
  const takeDriver = (bmc: Bmc, credentials: Credentials, identity: string): BmcDriver => {
    const key = bmcKey(bmc)
    const p = parked.get(key)
    if (p?.identity === identity) return unpark(key)!
    if (p) void unpark(key)!.close().catch(() => undefined) // the record or the credentials changed
    return makeDriver(bmc, credentials, { ...driverOptions, timeoutMs: settings.timeoutMs, log })
  }
  const park = (bmc: Bmc, identity: string, driver: BmcDriver): boolean => {
    if (settings.sessionIdleMs <= 0 || stopped) return false
    const key = bmcKey(bmc)
    const timer = clock.setTimeout(() => {
      if (parked.get(key)?.driver !== driver) return
      parked.delete(key)
      // Closing takes the BMC's queue, so it cannot log out under an operation that is starting.
      void serial(key, () => driver.close().catch(() => undefined))
    }, settings.sessionIdleMs)
    ;(timer as { unref?: () => void }).unref?.()
    parked.set(key, { identity, driver, timer })
    return true
  }

  const tails = new Map<string, Promise<void>>()
  const queued = new Map<string, number>()
  const lastReboot = new Map<string, number>()
  const known = new Map<string, KnownStatus>()
  const running = new Set<Promise<unknown>>()

  const ops = deps.metrics ? new Counter({
    name: 'rackboot_power_operations_total', help: 'BMC operation attempts by type, operation and result',
    labelNames: ['type', 'operation', 'result'] as const, registers: [deps.metrics],
  }) : null
  const durations = deps.metrics ? new Histogram({
    name: 'rackboot_power_operation_seconds', help: 'Duration of BMC operation attempts',
    labelNames: ['type', 'operation'] as const, buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [deps.metrics],
  }) : null
  const pollsSkipped = deps.metrics ? new Counter({
    name: 'rackboot_power_polls_skipped_total', help: 'Status polls skipped, by reason',
    labelNames: ['reason'] as const, registers: [deps.metrics],
  }) : null

  /** Runs fn after every earlier operation on the same BMC has settled. */
  function serial<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = tails.get(key) ?? Promise.resolve()
    queued.set(key, (queued.get(key) ?? 0) + 1)
    const result = prev.then(fn)
    const tail = result.then(() => undefined, () => undefined).then(() => {
      const n = (queued.get(key) ?? 1) - 1
      if (n <= 0) queued.delete(key)
      else queued.set(key, n)
      if (tails.get(key) === tail) tails.delete(key)
    })
    tails.set(key, tail)
    running.add(tail)
    void tail.then(() => running.delete(tail))
    return result
  }

  function notify(info: PowerResult): void {
    try {
      observer?.result(info)
    } catch (err) {
      log.warn({ err }, 'power observer failed')
    }
  }

  function backoff(attempt: number): number {
    const full = Math.min(settings.backoffMaxMs, settings.backoffBaseMs * 2 ** (attempt - 1))
    return full / 2 + random() * (full / 2) // "equal jitter": never zero, never in lockstep
  }

  async function target(machineId: string): Promise<Bmc> {
    const bmc = await deps.bmcs.get(machineId)
    if (!bmc) throw new PowerError('no-bmc', `machine ${machineId} has no BMC in the inventory`)
    return bmc
  }

  async function checkRebootInterval(machineId: string, options: RebootOptions | undefined): Promise<void> {
    for (;;) {
      const recorded = deps.lastRebootAt ? await deps.lastRebootAt(machineId).catch(() => null) : null
      const mine = lastReboot.get(machineId)
      const last = mine === undefined ? recorded ?? undefined : Math.max(mine, recorded ?? mine)
      if (last === undefined) return
      const wait = last + settings.minRebootIntervalMs - clock.now()
      if (wait <= 0) return
      if (options?.ifTooSoon !== 'defer') {
        throw new PowerError('too-soon', `machine ${machineId} was rebooted ${Math.round((clock.now() - last) / 1000)} s ago; ` +
          `reboots are at least ${Math.round(settings.minRebootIntervalMs / 1000)} s apart, retry in ${Math.ceil(wait / 1000)} s`,
        { details: { retryAfterMs: wait } })
      }
      log.info({ machineId, waitMs: wait }, 'reboot deferred by the minimum reboot interval')
      await sleep(clock, wait)
    }
  }

  interface RunOptions {
    /** Polls: one attempt, and no per-attempt results (status changes are reported instead). */
    poll?: boolean
    reboot?: RebootOptions
  }

  async function execute<T>(machineId: string, operation: PowerOperation,
    fn: (driver: BmcDriver, signal: AbortSignal) => Promise<T>, runOptions: RunOptions = {}): Promise<T> {
    const bmc = await target(machineId)
    const isReboot = REBOOTS.has(operation)
    if (isReboot) await checkRebootInterval(machineId, runOptions.reboot)
    return serial(bmcKey(bmc), async () => {
      // Checked again in the queue: another reboot may have run while this one waited.
      if (isReboot) await checkRebootInterval(machineId, runOptions.reboot)
      const attempts = runOptions.poll ? 1 : Math.max(1, settings.attempts)
      for (let attempt = 1; ; attempt++) {
        const started = clock.now()
        const controller = new AbortController()
        const timer = clock.setTimeout(() => controller.abort(), settings.timeoutMs)
        let driver: BmcDriver | null = null
        let identity = ''
        let work: Promise<T> | null = null
        let succeeded = false
        try {
          const credentials = await deps.bmcs.credentials(machineId)
          if (!credentials) throw new PowerError('no-bmc', `machine ${machineId} has no BMC credentials in the inventory`)
          identity = driverIdentity(bmc, credentials)
          driver = takeDriver(bmc, credentials, identity)
          work = fn(driver, controller.signal)
          const value = await raceAbort(work, controller.signal, settings.timeoutMs, machineId, operation)
          succeeded = true
          const ms = clock.now() - started
          record(bmc, operation, 'ok', ms)
          if (!runOptions.poll) notify({ machineId, action: operation, ok: true, ms, attempt, final: true })
          return value
        } catch (thrown) {
          const err = toPowerError(thrown, `${operation} on machine ${machineId}`)
          const ms = clock.now() - started
          const retry = attempt < attempts && err.retryable && (!ambiguous.has(err) || SAFE_TO_RETRY_REBOOT.has(err.kind))
          record(bmc, operation, err.kind, ms)
          if (!runOptions.poll) notify({ machineId, action: operation, ok: false, error: err.message, errorKind: err.kind, ms, attempt, final: !retry })
          if (runOptions.poll) log.debug({ machineId, kind: err.kind, err: err.message }, 'bmc poll failed')
          else log.warn({ machineId, operation, attempt, kind: err.kind, err: err.message, retry }, 'bmc operation failed')
          if (!retry) throw err
        } finally {
          clock.clearTimeout(timer)
          // Hold the BMC's queue until the driver has really stopped, even after a timeout was reported.
          if (work) await work.then(() => undefined, () => undefined)
          if (driver && !(succeeded && park(bmc, identity, driver))) await driver.close().catch(() => undefined)
        }
        await sleep(clock, backoff(attempt))
      }
    })
  }

  /** Sends a reboot: stamps the reboot time first, and marks its failure as one that may have rebooted anyway. */
  async function reboot(machineId: string, driver: BmcDriver, action: PowerAction, signal: AbortSignal): Promise<void> {
    lastReboot.set(machineId, clock.now())
    try {
      await driver.power(action, { signal })
    } catch (thrown) {
      const err = toPowerError(thrown, `${action} on machine ${machineId}`)
      ambiguous.add(err)
      throw err
    }
  }

  function record(bmc: Bmc, operation: PowerOperation, result: string, ms: number): void {
    ops?.inc({ type: bmc.type, operation, result })
    durations?.observe({ type: bmc.type, operation }, ms / 1000)
  }

  function remember(machineId: string, state: PowerState | null, error?: string): void {
    const previous = known.get(machineId)
    const entry: KnownStatus = { state, at: clock.now(), ...(error ? { error } : {}) }
    known.set(machineId, entry)
    const changed = previous === undefined ? true : previous.state !== state || (error !== undefined) !== (previous.error !== undefined)
    if (changed && observer?.status) {
      try {
        observer.status({ machineId, state, previous: previous?.state ?? null, at: entry.at, ...(error ? { error } : {}) })
      } catch (err) {
        log.warn({ err }, 'power observer failed')
      }
    }
  }

  // ---- polling ----------------------------------------------------------------------------------------------
  let pollList: (() => Promise<string[]> | string[]) | null = null
  let roundTimer: unknown = null
  const pollTimers = new Set<unknown>()
  const phases = new Map<string, number>()
  const polling = new Set<string>()
  let active = 0
  const waiting: (() => void)[] = []
  let stopped = false

  async function acquire(): Promise<void> {
    if (active < settings.pollConcurrency) {
      active++
      return
    }
    await new Promise<void>((resolve) => waiting.push(resolve))
  }

  function release(): void {
    const next = waiting.shift()
    if (next) next() // the slot passes straight on
    else active--
  }

  async function pollOne(machineId: string): Promise<void> {
    if (stopped || polling.has(machineId)) {
      pollsSkipped?.inc({ reason: 'still-running' })
      return
    }
    polling.add(machineId)
    try {
      const bmc = await deps.bmcs.get(machineId)
      if (!bmc) {
        pollsSkipped?.inc({ reason: 'no-bmc' })
        return
      }
      if ((queued.get(bmcKey(bmc)) ?? 0) > 0) {
        pollsSkipped?.inc({ reason: 'bmc-busy' }) // an operation is running or waiting; it will report
        return
      }
      await acquire()
      try {
        if (stopped) return
        const state = await execute(machineId, 'status', (d, signal) => d.powerStatus({ signal }), { poll: true })
        remember(machineId, state)
      } catch (err) {
        remember(machineId, null, (err as Error).message)
      } finally {
        release()
      }
    } catch (err) {
      log.warn({ machineId, err: (err as Error).message }, 'power poll failed')
    } finally {
      polling.delete(machineId)
    }
  }

  async function round(): Promise<void> {
    if (stopped || !pollList) return
    const started = clock.now()
    roundTimer = clock.setTimeout(() => void round(), settings.pollIntervalMs)
    let ids: string[]
    try {
      ids = await pollList()
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'power poll list failed')
      return
    }
    const interval = settings.pollIntervalMs
    for (const id of ids) {
      let phase = phases.get(id)
      if (phase === undefined) {
        phase = random() * interval
        phases.set(id, phase)
      }
      const jitter = (random() * 2 - 1) * settings.pollJitter * interval
      const at = Math.min(interval - 1, Math.max(0, phase + jitter))
      const delay = Math.max(0, started + at - clock.now())
      const handle = clock.setTimeout(() => {
        pollTimers.delete(handle)
        const p = pollOne(id)
        running.add(p)
        void p.then(() => running.delete(p))
      }, delay)
      pollTimers.add(handle)
    }
  }

  return {
    async status(machineId) {
      const state = await execute(machineId, 'status', (d, signal) => d.powerStatus({ signal }))
      remember(machineId, state)
      return state
    },

    async power(machineId, action, options) {
      if (!['on', 'off', 'soft-off', 'cycle', 'reset'].includes(action)) {
        throw new PowerError('invalid', `unknown power action ${String(action)}`)
      }
      await execute(machineId, action, (d, signal) => REBOOTS.has(action) ? reboot(machineId, d, action, signal)
        : d.power(action, { signal }), { reboot: options })
    },

    setBootDevice(machineId, override) {
      return execute(machineId, 'set-boot', (d, signal) => d.setBootDevice(override, { signal }))
    },

    getBootDevice(machineId) {
      return execute(machineId, 'get-boot', (d, signal) => d.getBootDevice({ signal }))
    },

    async identify(machineId, on, seconds) {
      await execute(machineId, 'identify', (d, signal) => d.identify(on, { signal, ...(seconds !== undefined ? { seconds } : {}) }))
    },

    capabilities(machineId) {
      return execute(machineId, 'capabilities', (d, signal) => d.capabilities({ signal }))
    },

    async pxeBootNow(machineId, options = {}) {
      const override: BootOverride = { device: 'pxe', persistent: options.persistent ?? false,
        ...(options.mode ? { mode: options.mode } : {}) }
      const result = await execute(machineId, 'pxe-boot', async (d, signal) => {
        const readback = await d.setBootDevice(override, { signal })
        const previous = await d.powerStatus({ signal })
        const action = previous === 'on' ? 'cycle' : 'on'
        await reboot(machineId, d, action, signal)
        return { readback, previous, action } satisfies PxeBootResult
      }, { reboot: options })
      remember(machineId, 'on')
      return result
    },

    lastKnown(machineId) {
      return known.get(machineId) ?? null
    },

    startPolling(list) {
      if (pollList) throw new PowerError('invalid', 'power polling already started')
      stopped = false
      pollList = list
      void round()
    },

    async stop() {
      stopped = true
      pollList = null
      if (roundTimer !== null) clock.clearTimeout(roundTimer)
      for (const t of pollTimers) clock.clearTimeout(t)
      pollTimers.clear()
      // Queued polls wake up, see `stopped` and leave; the count is reset once everything has settled.
      for (const resolve of waiting.splice(0)) resolve()
      await Promise.all([...running])
      active = 0
      await Promise.all([...parked.keys()].map((key) => unpark(key)!.close().catch(() => undefined)))
    },
  }
}

/** Resolves or rejects with `work`, or rejects with a timeout as soon as the signal aborts. */
function raceAbort<T>(work: Promise<T>, signal: AbortSignal, ms: number, machineId: string, operation: string): Promise<T> {
  if (signal.aborted) return Promise.reject(timeoutError(ms, machineId, operation))
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(timeoutError(ms, machineId, operation))
    signal.addEventListener('abort', onAbort, { once: true })
    work.then(
      (v) => { signal.removeEventListener('abort', onAbort); resolve(v) },
      (e) => { signal.removeEventListener('abort', onAbort); reject(e) },
    )
  })
}

function timeoutError(ms: number, machineId: string, operation: string): PowerError {
  return new PowerError('timeout', `${operation} on machine ${machineId} did not finish within ${ms} ms`)
}
