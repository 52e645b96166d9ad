// The power manager: every BMC operation goes through here. One queue per BMC (never two operations at once on
// one BMC), a timeout per attempt, retries with backoff and jitter, a minimum interval between reboots of one
// machine, "PXE boot now", and status polling spread over the interval with bounded concurrency.
import { createHash, randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { BmcLease, BmcLeaseRepository, BmcRepository } from '../inventory/repositories.js'
import type { Bmc, BootMethod } from '../inventory/types.js'
import type { Logger } from '../log.js'
import { sleep, systemClock, type Clock } from './clock.js'
import { createBmcDriver, type DriverFactory, type DriverOptions } from './driver.js'
import { PowerError, toPowerError, type PowerErrorKind } from './errors.js'
import type {
  BmcDriver, BootMode, BootOverride, BootReadback, CallOptions, Capability, PowerAction, PowerState,
} from './types.js'

export type PowerOperation = PowerAction | 'status' | 'set-boot' | 'get-boot' | 'identify' | 'capabilities' | 'pxe-boot'
  | 'insert-media' | 'eject-media'

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
  /** The state-changing request left for the BMC in this attempt. */
  sent?: boolean
  /** It left and no answer says whether it ran: it is not sent again, the BMC is read back instead. */
  ambiguous?: boolean
  /** The attempt (re)boots the machine: the minimum reboot interval counts from it (src/lifecycle/reboot-history). */
  reboot?: boolean
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
  /** Attempts per operation, first included; a state change is re-sent only when the BMC's answer proves it did not run. */
  attempts: number
  backoffBaseMs: number
  backoffMaxMs: number
  /** Minimum time between two reboots (cycle, reset, PXE boot now) of one machine. */
  minRebootIntervalMs: number
  /** After a power action, how long the BMC has to report the expected state (BMCs apply changes seconds late). */
  verifyTimeoutMs: number
  /** Read-back interval while verifying. */
  verifyIntervalMs: number
  /** A soft-off (ACPI shutdown) still on after this long is powered off hard, when softOffFallback says so. */
  softOffTimeoutMs: number
  softOffFallback: 'hard-off' | 'none'
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
  /**
   * With shared leases (deps.leases): how long a BMC lease lasts unless renewed. A crashed instance's lease is taken
   * over this long after its last renewal at the latest, by the database's clock (the hosts' clocks may disagree).
   */
  leaseTtlMs: number
  /** How often a held lease is renewed (a third of the TTL: one failed renewal is survived). */
  leaseRenewMs: number
}

export const DEFAULT_POWER_SETTINGS: PowerManagerSettings = {
  timeoutMs: 20_000,
  attempts: 3,
  backoffBaseMs: 1_000,
  backoffMaxMs: 30_000,
  minRebootIntervalMs: 120_000,
  verifyTimeoutMs: 60_000,
  verifyIntervalMs: 2_000,
  softOffTimeoutMs: 180_000,
  softOffFallback: 'hard-off',
  pollIntervalMs: 60_000,
  pollJitter: 0.1,
  pollConcurrency: 32,
  sessionIdleMs: 20_000,
  leaseTtlMs: 30_000,
  leaseRenewMs: 10_000,
}

export interface PowerManagerDeps {
  /**
   * The inventory's BMC port: where each machine's BMC is, its decrypted credentials, and (optional) where the
   * last power state and the clear-after-boot mark are kept.
   */
  bmcs: Pick<BmcRepository, 'get' | 'credentials'> & Partial<Pick<BmcRepository, 'recordPower' | 'setClearOverrideAfterBoot'>>
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
  /** The virtual media image a BMC mounts for `virtual-media` boots (rackboot's /media/rackboot.iso), once it exists. */
  mediaUrl?: () => Promise<string | null> | string | null
  /**
   * Leases shared by every instance on the database (inventory.bmcLeases). With them an operation takes the
   * machine's BMC lease before its first command leaves and keeps it to its end, the reboot interval consults and
   * writes the shared reboot record, and the poller leaves alone a BMC another instance holds or read lately. Without
   * them (one instance, unit tests) only this process's queue and history count.
   */
  leases?: Pick<BmcLeaseRepository, 'acquire' | 'renew' | 'release' | 'recordReboot' | 'lastReboot'>
  /** This instance's name in lease rows and messages; default hostname:pid:random. */
  instanceId?: string
}

export interface RebootOptions {
  /** Within the minimum reboot interval: fail with `too-soon` (default), or wait until it has passed. */
  ifTooSoon?: 'error' | 'defer'
  /** Gives up waiting (queue, backoff, verification); a request already sent is not recalled. */
  signal?: AbortSignal
}

export interface PxeBootOptions extends RebootOptions {
  mode?: BootMode
  /** PXE on every boot rather than the next one only. */
  persistent?: boolean
}

export interface NetbootOptions extends PxeBootOptions {
  /** How to boot from the network; default: the BMC record's bootMethod. */
  method?: BootMethod
  /** uefi-http: the boot file URL (without it the firmware asks DHCP). */
  uri?: string
}

export interface PowerOutcome {
  /** What was asked, and what was sent (a cycle or reset of an off machine is sent as power on). */
  action: PowerAction
  sent: PowerAction
  /** The state the BMC reported last. */
  state: PowerState | null
  /** The BMC read back the state the action leads to. */
  verified: boolean
  /** Something a person should know (no answer but the state says it ran, the soft-off fallback). */
  note: string | null
  ms: number
}

export interface PxeBootResult {
  readback: BootReadback
  /** What the machine's power was before, and what was done about it. */
  previous: PowerState
  action: 'cycle' | 'on'
  method: BootMethod
  /** The machine read back as on afterwards. */
  verified: boolean
  note: string | null
}

export interface KnownStatus {
  state: PowerState | null
  at: number
  error?: string
}

export interface PowerManager {
  status(machineId: string): Promise<PowerState>
  /** Sends the action once, then waits for the BMC to report its result (verifyTimeoutMs; soft-off its own). */
  power(machineId: string, action: PowerAction, options?: RebootOptions): Promise<PowerOutcome>
  /** Sets the next boot device and reads it back; a Once the BMC keeps as Continuous is cleared after the boot. */
  setBootDevice(machineId: string, override: BootOverride): Promise<BootReadback>
  getBootDevice(machineId: string): Promise<BootReadback>
  identify(machineId: string, on: boolean, seconds?: number): Promise<void>
  capabilities(machineId: string): Promise<Capability[]>
  /** Next boot PXE (verified by reading it back), then power cycle when on, or power on when off. */
  pxeBootNow(machineId: string, options?: PxeBootOptions): Promise<PxeBootResult>
  /** Like pxeBootNow by the machine's boot method: PXE, UEFI HTTP boot, or virtual media (insert, boot from CD). */
  netbootNow(machineId: string, options?: NetbootOptions): Promise<PxeBootResult>
  insertMedia(machineId: string, url: string): Promise<void>
  ejectMedia(machineId: string): Promise<void>
  /** The last state seen (by an operation or a poll), or null. */
  lastKnown(machineId: string): KnownStatus | null
  /** Starts polling the machines `list` returns, every pollIntervalMs, each at its own phase. */
  startPolling(list: () => Promise<string[]> | string[]): void
  /** Stops polling and waits for running operations to end. */
  stop(): Promise<void>
}

const REBOOTS = new Set<PowerOperation>(['cycle', 'reset', 'pxe-boot'])
/** Failures a sent state change leaves ambiguous: the manager reads back instead of sending again. */
const ambiguous = new WeakSet<PowerError>()
const EXPECTED: Record<PowerAction, PowerState> = { on: 'on', off: 'off', 'soft-off': 'off', cycle: 'on', reset: 'on' }
const ATTEMPT_GRACE_MS = 1_000
/** How often an unchanged power state is written back to the inventory (changes are written at once). */
const RECORD_REFRESH_MS = 10 * 60_000

/** Everything a driver was made from: a parked driver is reused only for the same BMC record and credentials. */
type Credentials = Parameters<DriverFactory>[1]

function driverIdentity(bmc: Bmc, credentials: Credentials): string {
  const secret = createHash('sha256').update(credentials.password ?? '').update(credentials.kg ?? '').digest('hex')
  // The power state columns change on every poll; they do not make another driver.
  const { power: _power, clearOverrideAfterBoot: _clear, ...record } = bmc
  return JSON.stringify([record, credentials.username, secret])
}

function bmcKey(bmc: Bmc): string {
  return `${bmc.type}://${bmc.address}:${bmc.port ?? ''}`
}

export function isAmbiguous(err: unknown): boolean {
  return err instanceof PowerError && ambiguous.has(err)
}

/** Lease waits: the first pause, and the longest (each doubles, with jitter). */
const LEASE_BACKOFF_MIN_MS = 100
const LEASE_BACKOFF_MAX_MS = 2_000

/** A poll that found the BMC's lease held by another instance (or could not ask): skipped, not a failed read. */
class PollLeaseRefused extends Error {
  constructor(readonly reason: 'lease-held' | 'lease-unavailable', message: string) {
    super(message)
  }
}

/** An operation's hold on its BMC's lease. */
interface HeldLease {
  /** Whom this operation waited for, when another instance held the BMC as it asked. */
  contended: BmcLease | null
  /** Aborts the operation's waits and driver calls when the lease is lost. */
  signal: AbortSignal
  /** Resolves when the lease is (still) this instance's for a while; rejects when it was lost. */
  ensure(): Promise<void>
  /** Records a reboot in the shared history (written before the lease is released). */
  recordReboot(at: number): void
  release(): Promise<void>
  lost(): PowerError | null
}

export function defaultInstanceId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
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
  const leases = deps.leases ?? null
  const instanceId = deps.instanceId ?? defaultInstanceId()

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
  const recorded = new Map<string, number>()
  /** The power_checked_at this instance wrote last, per machine: a newer one is another instance's read. */
  const ownChecks = new Map<string, number>()
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
  const outcomes = deps.metrics ? new Counter({
    name: 'rackboot_power_outcomes_total', help: 'Power actions by how their outcome was established: verified, not-verified, unknown',
    labelNames: ['action', 'outcome'] as const, registers: [deps.metrics],
  }) : null
  if (deps.metrics) {
    new Gauge({
      name: 'rackboot_power_state_machines', help: 'Machines by the power state their BMC last reported (unknown: the last read failed)',
      labelNames: ['state'] as const, registers: [deps.metrics],
      collect() {
        const counts = { on: 0, off: 0, unknown: 0 }
        for (const k of known.values()) counts[k.state ?? 'unknown']++
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n)
      },
    })
  }

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

  function backoff(attempt: number, err: PowerError): number {
    const full = Math.min(settings.backoffMaxMs, settings.backoffBaseMs * 2 ** (attempt - 1))
    const jittered = full / 2 + random() * (full / 2) // "equal jitter": never zero, never in lockstep
    // A BMC that said how long to wait (Retry-After, a vendor's "system in POST") is believed, within the maximum.
    return Math.max(jittered, Math.min(err.retryAfterMs ?? 0, settings.backoffMaxMs))
  }

  async function target(machineId: string): Promise<Bmc> {
    const bmc = await deps.bmcs.get(machineId)
    if (!bmc) throw new PowerError('no-bmc', `machine ${machineId} has no BMC in the inventory`)
    return bmc
  }

  function bmcLabel(bmc: Bmc): string {
    return `${bmc.type} BMC ${bmc.address}${bmc.port ? `:${bmc.port}` : ''}`
  }

  /**
   * The machine's last reboot as far as anyone knows: this process's, the timeline's, and the shared record of every
   * instance (with leases). `strict`: a shared record that cannot be read is an error, not "never rebooted".
   */
  async function lastRebootOf(machineId: string, strict: boolean): Promise<number | undefined> {
    const recordedAt = deps.lastRebootAt ? await deps.lastRebootAt(machineId).catch(() => null) : null
    let shared: number | null = null
    if (leases) {
      try {
        shared = await leases.lastReboot(machineId, clock.now())
      } catch (err) {
        if (strict) {
          throw new PowerError('busy', `machine ${machineId}: cannot read the shared reboot history (${(err as Error).message}); not rebooted`,
            { cause: err, notRun: true })
        }
      }
    }
    const known = [lastReboot.get(machineId), recordedAt ?? undefined, shared ?? undefined].filter((v): v is number => v !== undefined)
    return known.length === 0 ? undefined : Math.max(...known)
  }

  /** How long until the machine may be rebooted again (<= 0: now), and the refusal to give when it may not. */
  async function rebootWait(machineId: string, strict: boolean): Promise<{ wait: number; tooSoon: () => PowerError }> {
    const last = await lastRebootOf(machineId, strict)
    const wait = last === undefined ? 0 : last + settings.minRebootIntervalMs - clock.now()
    return {
      wait,
      tooSoon: () => new PowerError('too-soon', `machine ${machineId} was rebooted ${Math.round((clock.now() - last!) / 1000)} s ago; ` +
        `reboots are at least ${Math.round(settings.minRebootIntervalMs / 1000)} s apart, retry in ${Math.ceil(wait / 1000)} s`,
      { details: { retryAfterMs: wait } }),
    }
  }

  async function checkRebootInterval(machineId: string, options: RebootOptions | undefined): Promise<void> {
    for (;;) {
      const { wait, tooSoon } = await rebootWait(machineId, false)
      if (wait <= 0) return
      if (options?.ifTooSoon !== 'defer') throw tooSoon()
      log.info({ machineId, waitMs: wait }, 'reboot deferred by the minimum reboot interval')
      await pause(wait, options.signal)
    }
  }

  function pause(ms: number, signal?: AbortSignal): Promise<void> {
    if (!signal) return sleep(clock, ms)
    if (signal.aborted) return Promise.reject(gaveUp())
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        clock.clearTimeout(handle)
        reject(gaveUp())
      }
      const handle = clock.setTimeout(() => {
        signal.removeEventListener('abort', onAbort)
        resolve()
      }, Math.max(0, ms))
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  function gaveUp(): PowerError {
    return new PowerError('timeout', 'gave up waiting (the caller\'s deadline passed); a request already sent was not recalled')
  }

  /** One driver call with retries: the unit every operation is made of. */
  type Attempt = <T>(operation: PowerOperation, fn: (driver: BmcDriver, call: CallOptions) => Promise<T>,
    options?: { quiet?: boolean; onSend?: () => void; reboot?: boolean }) => Promise<T>

  interface Context {
    bmc: Bmc
    attempt: Attempt
    signal?: AbortSignal
    /** The BMC's shared lease, when the manager has leases. */
    lease?: HeldLease
  }

  interface RunOptions {
    /** Polls: one attempt, and no per-attempt results (status changes are reported instead). */
    poll?: boolean
    reboot?: RebootOptions
    signal?: AbortSignal
  }

  /**
   * Takes the BMC's queue (after the reboot interval, checked again in the queue), then with shared leases the BMC's
   * lease (the reboot interval checked a third time, under it), and runs body with attempts.
   */
  async function withBmc<T>(machineId: string, operation: PowerOperation, body: (ctx: Context) => Promise<T>,
    runOptions: RunOptions = {}): Promise<T> {
    const bmc = await target(machineId)
    const isReboot = REBOOTS.has(operation)
    if (isReboot) await checkRebootInterval(machineId, runOptions.reboot)
    return serial(bmcKey(bmc), async () => {
      if (runOptions.signal?.aborted) throw gaveUp()
      if (leases) return underLease(machineId, bmc, operation, body, runOptions, isReboot)
      // Checked again in the queue: another reboot may have run while this one waited.
      if (isReboot) await checkRebootInterval(machineId, runOptions.reboot)
      const attempt: Attempt = (op, fn, o = {}) => attemptOn(machineId, bmc, op, fn,
        { ...runOptions, quiet: o.quiet ?? false, onSend: o.onSend, isReboot: o.reboot ?? false })
      return body({ bmc, attempt, ...(runOptions.signal ? { signal: runOptions.signal } : {}) })
    })
  }

  /**
   * withBmc's part with shared leases: the lease is taken before the first command leaves (waiting for another
   * instance's operation to end, or a poll gives up at once), the reboot interval is decided under it, and it is
   * released once every driver call has stopped and the reboot record is written.
   */
  async function underLease<T>(machineId: string, bmc: Bmc, operation: PowerOperation, body: (ctx: Context) => Promise<T>,
    runOptions: RunOptions, isReboot: boolean): Promise<T> {
    let lease: HeldLease
    for (;;) {
      lease = await takeLease(machineId, bmc, operation, runOptions)
      if (!isReboot) break
      let check: Awaited<ReturnType<typeof rebootWait>>
      try {
        check = await rebootWait(machineId, true)
      } catch (err) {
        await lease.release()
        throw err
      }
      if (check.wait <= 0) break
      // Not holding the BMC while deferring: another instance's status or power on need not wait for this.
      await lease.release()
      if (runOptions.reboot?.ifTooSoon !== 'defer') throw check.tooSoon()
      log.info({ machineId, waitMs: check.wait }, 'reboot deferred by the minimum reboot interval')
      await pause(check.wait, runOptions.reboot.signal)
    }
    const held = lease
    // The caller's signal and the lease's: either stops waits and driver calls.
    const onCallerAbort = (): void => controllers.get(held)?.abort()
    runOptions.signal?.addEventListener('abort', onCallerAbort, { once: true })
    if (runOptions.signal?.aborted) onCallerAbort()
    try {
      const options: RunOptions = { ...runOptions, signal: held.signal }
      const attempt: Attempt = (op, fn, o = {}) => attemptOn(machineId, bmc, op, fn,
        { ...options, quiet: o.quiet ?? false, onSend: o.onSend, isReboot: o.reboot ?? false, lease: held })
      return await body({ bmc, attempt, signal: held.signal, lease: held })
    } catch (err) {
      const lost = held.lost()
      if (!lost || err === lost || (runOptions.signal?.aborted ?? false)) throw err
      // The lease went while a command or read-back was under way (which it cut short): say both.
      throw new PowerError(lost.kind, `${lost.message}; the operation ended with: ${(err as Error).message}`, { cause: err })
    } finally {
      runOptions.signal?.removeEventListener('abort', onCallerAbort)
      await held.release()
    }
  }

  /** Each held lease's controller (aborted when the lease is lost or the caller gives up). */
  const controllers = new WeakMap<HeldLease, AbortController>()

  /** The longest an operation waits for another instance's: what it may take itself (attempts, then read-back). */
  function leaseWaitBudget(operation: PowerOperation): number {
    const attempts = Math.max(1, settings.attempts) * (settings.timeoutMs + ATTEMPT_GRACE_MS)
    if (operation === 'soft-off') return attempts + settings.softOffTimeoutMs + settings.verifyTimeoutMs
    if (operation in EXPECTED || operation === 'pxe-boot') return attempts + settings.verifyTimeoutMs
    return attempts
  }

  function describeHolder(lease: BmcLease | null): string {
    if (!lease) return 'another rackboot instance'
    const since = lease.acquiredAt === null ? '' : `, for ${Math.max(0, Math.round((clock.now() - lease.acquiredAt) / 1000))} s`
    return `rackboot instance ${lease.holder}${lease.operation ? ` (${lease.operation}${since})` : ''}`
  }

  /** Takes the machine's BMC lease, waiting with backoff while another instance holds it (a poll does not wait). */
  async function takeLease(machineId: string, bmc: Bmc, operation: PowerOperation, runOptions: RunOptions): Promise<HeldLease> {
    const store = leases!
    const started = clock.now()
    const budget = leaseWaitBudget(operation)
    let delay = LEASE_BACKOFF_MIN_MS
    let other: BmcLease | null = null
    for (let tries = 1; ; tries++) {
      const now = clock.now()
      let grant: Awaited<ReturnType<typeof store.acquire>>
      try {
        grant = await store.acquire(machineId, instanceId, operation, settings.leaseTtlMs, now)
      } catch (err) {
        if (runOptions.poll) throw new PollLeaseRefused('lease-unavailable', (err as Error).message)
        throw err
      }
      if (grant.granted) {
        if (tries > 1) log.info({ machineId, operation, waitedMs: clock.now() - started, after: other?.holder }, 'took the BMC lease after another instance')
        return hold(machineId, bmc, now, other)
      }
      other = grant.lease ?? other
      if (runOptions.poll) throw new PollLeaseRefused('lease-held', describeHolder(other))
      if (tries === 1) log.info({ machineId, operation, holder: other?.holder, holderOperation: other?.operation }, 'BMC held by another instance; waiting')
      const left = started + budget - clock.now()
      if (left <= 0) {
        throw new PowerError('busy', `${operation} on machine ${machineId} (${bmcLabel(bmc)}): the BMC is held by ${describeHolder(other)}; ` +
          `gave up after waiting ${Math.round((clock.now() - started) / 1000)} s; nothing was sent`,
        { notRun: true, details: { holder: other?.holder ?? null, holderOperation: other?.operation ?? null } })
      }
      const jittered = delay / 2 + random() * (delay / 2)
      delay = Math.min(LEASE_BACKOFF_MAX_MS, delay * 2)
      await pause(Math.min(jittered, left), runOptions.signal)
    }
  }

  /** Keeps a granted lease: renewed every leaseRenewMs until released; lost when a renewal finds another holder. */
  function hold(machineId: string, bmc: Bmc, grantedAt: number, contended: BmcLease | null): HeldLease {
    const store = leases!
    const controller = new AbortController()
    // On this process's clock, from before the statement whose database time starts the row's TTL: this instance
    // stops sending before anyone else may take the row, whatever the hosts' clocks say.
    let validUntil = grantedAt + settings.leaseTtlMs
    let lost: PowerError | null = null
    let released = false
    let timer: unknown = null
    const writes: Promise<unknown>[] = []
    const lose = (): PowerError => {
      if (!lost) {
        lost = new PowerError('busy', `machine ${machineId} (${bmcLabel(bmc)}): this instance (${instanceId}) lost the BMC's lease ` +
          `(not renewed within ${Math.round(settings.leaseTtlMs / 1000)} s: stalled, or the database was unreachable; another instance ` +
          'may have taken it over); stopped before sending anything more')
        log.warn({ machineId, holder: instanceId }, 'BMC lease lost')
        controller.abort()
      }
      return lost
    }
    const renew = async (): Promise<void> => {
      const at = clock.now()
      if (await store.renew(machineId, instanceId, settings.leaseTtlMs, at)) validUntil = Math.max(validUntil, at + settings.leaseTtlMs)
      else lose()
    }
    const schedule = (): void => {
      timer = clock.setTimeout(() => {
        timer = null
        if (released || lost) return
        void renew()
          .catch((err) => log.warn({ machineId, err: (err as Error).message }, 'cannot renew the BMC lease; trying again'))
          .finally(() => {
            if (!released && !lost) schedule()
          })
      }, settings.leaseRenewMs)
      ;(timer as { unref?: () => void }).unref?.()
    }
    schedule()
    const held: HeldLease = {
      contended,
      signal: controller.signal,
      lost: () => lost,
      async ensure() {
        if (lost) throw lost
        // Good for a while yet (the renewals keep it so): no round trip before each command.
        if (clock.now() + settings.leaseRenewMs < validUntil) return
        // Renewals failed or this process stalled: no command leaves before the database confirms the lease.
        try {
          await renew()
        } catch (err) {
          throw new PowerError('busy', `machine ${machineId} (${bmcLabel(bmc)}): cannot confirm the BMC's lease ` +
            `(${(err as Error).message}); not sent`, { cause: err, notRun: true })
        }
        if (lost) throw lost
      },
      recordReboot(at) {
        writes.push(store.recordReboot(machineId, at, instanceId, clock.now())
          .catch((err) => log.warn({ machineId, err: (err as Error).message }, 'cannot record the reboot in the shared history')))
      },
      async release() {
        if (released) return
        released = true
        if (timer !== null) clock.clearTimeout(timer)
        await Promise.all(writes)
        await store.release(machineId, instanceId)
          .catch((err) => log.warn({ machineId, err: (err as Error).message }, 'cannot release the BMC lease; it expires by itself'))
      },
    }
    controllers.set(held, controller)
    return held
  }

  async function attemptOn<T>(machineId: string, bmc: Bmc, operation: PowerOperation,
    fn: (driver: BmcDriver, call: CallOptions) => Promise<T>,
    o: RunOptions & { quiet: boolean; onSend?: (() => void) | undefined; isReboot: boolean; lease?: HeldLease }): Promise<T> {
    const attempts = o.poll ? 1 : Math.max(1, settings.attempts)
    const report = !o.poll && !o.quiet
    for (let attempt = 1; ; attempt++) {
      // With shared leases no command leaves unless this instance still holds the BMC.
      await o.lease?.ensure()
      const started = clock.now()
      const controller = new AbortController()
      // A second more than the driver's own budget: a driver that keeps to it reports which step got no answer.
      const timer = clock.setTimeout(() => controller.abort(), settings.timeoutMs + ATTEMPT_GRACE_MS)
      const onCallerAbort = (): void => controller.abort()
      o.signal?.addEventListener('abort', onCallerAbort, { once: true })
      let driver: BmcDriver | null = null
      let identity = ''
      let work: Promise<T> | null = null
      let succeeded = false
      let sent = false
      try {
        const credentials = await deps.bmcs.credentials(machineId)
        if (!credentials) throw new PowerError('no-bmc', `machine ${machineId} has no BMC credentials in the inventory`, { notRun: true })
        identity = driverIdentity(bmc, credentials)
        driver = takeDriver(bmc, credentials, identity)
        work = fn(driver, {
          signal: controller.signal,
          onSend: () => {
            sent = true
            o.onSend?.()
          },
        })
        const value = await raceAbort(work, controller.signal, settings.timeoutMs + ATTEMPT_GRACE_MS, bmcLabel(bmc), operation)
        succeeded = true
        const ms = clock.now() - started
        record(bmc, operation, 'ok', ms)
        if (report) notify({ machineId, action: operation, ok: true, ms, attempt, final: true, sent, ...(o.isReboot ? { reboot: true } : {}) })
        return value
      } catch (thrown) {
        const err = toPowerError(thrown, `${operation} on machine ${machineId} (${bmcLabel(bmc)})`)
        const ms = clock.now() - started
        // A request that left and got no answer proving it did not run may have been carried out: never again.
        const unsure = sent && !err.notRun
        if (unsure) ambiguous.add(err)
        // A BMC that did not answer within the whole budget will not answer a second later: timeouts end it.
        const retry = attempt < attempts && err.retryable && !unsure && err.kind !== 'timeout' && !o.signal?.aborted
        record(bmc, operation, err.kind, ms)
        if (report) {
          notify({ machineId, action: operation, ok: false, error: err.message, errorKind: err.kind, ms, attempt, final: !retry, sent,
            ...(unsure ? { ambiguous: true } : {}), ...(o.isReboot ? { reboot: true } : {}) })
        }
        if (o.poll) log.debug({ machineId, kind: err.kind, err: err.message }, 'bmc poll failed')
        else log.warn({ machineId, operation, attempt, kind: err.kind, err: err.message, retry, sent, ambiguous: unsure }, 'bmc operation failed')
        if (!retry) throw err
        clock.clearTimeout(timer)
        await pause(backoff(attempt, err), o.signal)
      } finally {
        clock.clearTimeout(timer)
        o.signal?.removeEventListener('abort', onCallerAbort)
        // Hold the BMC's queue until the driver has really stopped, even after a timeout was reported.
        if (work) await work.then(() => undefined, () => undefined)
        if (driver && !(succeeded && park(bmc, identity, driver))) await driver.close().catch(() => undefined)
      }
    }
  }

  function record(bmc: Bmc, operation: PowerOperation, result: string, ms: number): void {
    ops?.inc({ type: bmc.type, operation, result })
    durations?.observe({ type: bmc.type, operation }, ms / 1000)
  }

  /** Keeps a state read; resolves once it is stored (when it is written at all). */
  function remember(machineId: string, state: PowerState | null, error?: string, poll = false): Promise<unknown> {
    const previous = known.get(machineId)
    const entry: KnownStatus = { state, at: clock.now(), ...(error ? { error } : {}) }
    known.set(machineId, entry)
    const changed = previous === undefined ? true : previous.state !== state || (error !== undefined) !== (previous.error !== undefined)
    // The inventory keeps the last state for the UI and other instances: written on a change, refreshed now and then.
    let written: Promise<unknown> = Promise.resolve()
    // With shared leases every poll is written: its time tells the other instances' pollers this BMC was just read.
    const refresh = clock.now() - (recorded.get(machineId) ?? -Infinity) >= RECORD_REFRESH_MS || (poll && leases !== null)
    if (deps.bmcs.recordPower && (changed || refresh)) {
      const checkedAt = clock.now()
      recorded.set(machineId, checkedAt)
      ownChecks.set(machineId, checkedAt)
      // Shared: stored on the database's clock and read back onto each reader's (readElsewhere compares it with
      // another host's now); this instance's own reads back as checkedAt.
      written = deps.bmcs.recordPower(machineId, { state, checkedAt, error: error ?? null }, leases ? checkedAt : undefined)
        .catch((err) => log.warn({ machineId, err: (err as Error).message }, 'cannot record the power state'))
    }
    if (!changed || !observer?.status) return written
    // Told once it is stored: whoever reads the machine on the event sees the new state.
    void written.then(() => {
      try {
        observer.status!({ machineId, state, previous: previous?.state ?? null, at: entry.at, ...(error ? { error } : {}) })
      } catch (err) {
        log.warn({ err }, 'power observer failed')
      }
    })
    return written
  }

  /** Reads the power state (retried: reads are safe) and remembers it. */
  async function read(machineId: string, ctx: Context, quiet = true): Promise<PowerState> {
    const state = await ctx.attempt('status', (d, call) => d.powerStatus(call), { quiet })
    void remember(machineId, state)
    return state
  }

  /**
   * Reads back until the BMC reports `expected` or the budget is spent. Read failures count as "not yet" until the
   * end, when the last one is the answer.
   */
  async function waitFor(machineId: string, ctx: Context, expected: PowerState, budgetMs: number): Promise<{ state: PowerState | null; reached: boolean; error: PowerError | null }> {
    const until = clock.now() + budgetMs
    let state: PowerState | null = null
    let error: PowerError | null = null
    for (;;) {
      try {
        state = await read(machineId, ctx)
        error = null
        if (state === expected) return { state, reached: true, error }
      } catch (thrown) {
        error = toPowerError(thrown, `status of machine ${machineId}`)
        if (ctx.signal?.aborted) return { state: null, reached: false, error }
      }
      const left = until - clock.now()
      if (left <= 0) return { state, reached: false, error }
      await pause(Math.min(settings.verifyIntervalMs, left), ctx.signal).catch(() => undefined)
      if (ctx.signal?.aborted) return { state, reached: false, error }
    }
  }

  /**
   * Sends one state change, then establishes its outcome from the BMC's read-back. An ambiguous send (no answer,
   * an answer that proves nothing) is never repeated: the read-back decides, or the outcome is reported unknown.
   */
  async function act(machineId: string, ctx: Context, action: PowerAction, sendAction: PowerAction, started: number,
    stampReboot: boolean): Promise<PowerOutcome> {
    let unsure: PowerError | null = null
    try {
      await ctx.attempt(sendAction, (d, call) => d.power(sendAction, call), {
        onSend: stampReboot ? () => {
          const at = clock.now()
          lastReboot.set(machineId, at)
          ctx.lease?.recordReboot(at)
        } : undefined,
        reboot: stampReboot,
      })
    } catch (err) {
      if (!isAmbiguous(err)) {
        // A refusal of on/off by a machine already there (iDRAC's 409 "already powered on") is the result asked for.
        if ((sendAction === 'on' || sendAction === 'off') && err instanceof PowerError && err.notRun) {
          const now = await read(machineId, ctx).catch(() => null)
          if (now === EXPECTED[sendAction]) {
            outcomes?.inc({ action, outcome: 'verified' })
            return { action, sent: sendAction, state: now, verified: true, note: `the BMC refused it (${err.message}); it already reports ${now}`, ms: clock.now() - started }
          }
        }
        throw err
      }
      unsure = err as PowerError
    }
    const expected = EXPECTED[sendAction]
    const budget = sendAction === 'soft-off' ? settings.softOffTimeoutMs : settings.verifyTimeoutMs
    const seen = await waitFor(machineId, ctx, expected, budget)
    const ms = (): number => clock.now() - started
    if (seen.reached) {
      outcomes?.inc({ action, outcome: 'verified' })
      const note = unsure
        ? `no answer that says whether the BMC did it (${unsure.message}); it now reports ${expected}: not re-sent`
        : null
      // A reboot that got no answer and left the machine on may or may not have happened: say so.
      if (unsure && (sendAction === 'cycle' || sendAction === 'reset')) {
        outcomes?.inc({ action, outcome: 'unknown' })
        throw new PowerError('unknown-outcome', `${sendAction} on machine ${machineId} (${bmcLabel(ctx.bmc)}): ${unsure.message}; ` +
          'the machine is on, whether it rebooted is unknown; not re-sent (check its console, then retry if needed)',
        { details: { state: seen.state, cause: unsure.kind } })
      }
      return { action, sent: sendAction, state: seen.state, verified: true, note, ms: ms() }
    }
    if (sendAction === 'soft-off' && settings.softOffFallback === 'hard-off' && !unsure && seen.state === 'on') {
      // The OS ignored or did not finish the ACPI shutdown: a hard off is a new, deliberate action.
      log.warn({ machineId, ms: budget }, 'soft-off: still on; powering off hard')
      const hard = await act(machineId, ctx, action, 'off', started, false)
      return { ...hard, note: `still on ${Math.round(budget / 1000)} s after the ACPI shutdown request: powered off hard` }
    }
    const last = seen.state ? `still reports ${seen.state}` : `could not be read (${seen.error?.message ?? 'no answer'})`
    if (unsure) {
      outcomes?.inc({ action, outcome: 'unknown' })
      throw new PowerError('unknown-outcome', `${sendAction} on machine ${machineId} (${bmcLabel(ctx.bmc)}): ${unsure.message}; ` +
        `the BMC ${last} after ${Math.round(budget / 1000)} s; not re-sent (it may still apply it)`,
      { details: { state: seen.state, cause: unsure.kind } })
    }
    outcomes?.inc({ action, outcome: 'not-verified' })
    throw new PowerError('not-verified', `${sendAction} on machine ${machineId} (${bmcLabel(ctx.bmc)}): the BMC accepted it but ${last} ` +
      `after ${Math.round(budget / 1000)} s (expected ${expected})`, { details: { state: seen.state } })
  }

  async function markAfterBoot(machineId: string, readback: BootReadback, override: BootOverride, method: BootMethod): Promise<void> {
    const tidy = (readback.fallback === 'continuous' && !override.persistent) || method === 'virtual-media'
    if (!tidy || !deps.bmcs.setClearOverrideAfterBoot) return
    await deps.bmcs.setClearOverrideAfterBoot(machineId, true).catch((err) => log.warn({ machineId, err: (err as Error).message }, 'cannot mark the override for clearing'))
  }

  async function netboot(machineId: string, options: NetbootOptions): Promise<PxeBootResult> {
    const started = clock.now()
    return withBmc(machineId, 'pxe-boot', async (ctx) => {
      const method: BootMethod = options.method ?? ctx.bmc.bootMethod ?? 'pxe'
      const device = method === 'virtual-media' ? 'cd' : method === 'uefi-http' ? 'http' : 'pxe'
      const override: BootOverride = { device, persistent: options.persistent ?? false,
        ...(options.mode ? { mode: options.mode } : {}), ...(options.uri ? { uri: options.uri } : {}) }
      if (method === 'virtual-media') {
        const media = (await deps.mediaUrl?.()) ?? null
        if (!media) {
          throw new PowerError('invalid', `machine ${machineId} boots from virtual media, but this process has no media URL ` +
            '(is http.publicUrl set?)')
        }
        await ctx.attempt('insert-media', (d, call) => d.insertMedia(media, call))
      }
      const readback = await ctx.attempt('set-boot', (d, call) => d.setBootDevice(override, call))
      await markAfterBoot(machineId, readback, override, method)
      const previous = await read(machineId, ctx)
      const action = previous === 'on' ? 'cycle' : 'on'
      const outcome = await act(machineId, ctx, action, action, started, true)
      return { readback, previous, action, method, verified: outcome.verified, note: outcome.note } satisfies PxeBootResult
    }, { reboot: options, ...(options.signal ? { signal: options.signal } : {}) })
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
      const bmc = await deps.bmcs.get(machineId, leases ? clock.now() : undefined)
      if (!bmc) {
        pollsSkipped?.inc({ reason: 'no-bmc' })
        return
      }
      if ((queued.get(bmcKey(bmc)) ?? 0) > 0) {
        pollsSkipped?.inc({ reason: 'bmc-busy' }) // an operation is running or waiting; it will report
        return
      }
      if (readElsewhere(machineId, bmc)) {
        pollsSkipped?.inc({ reason: 'read-elsewhere' }) // another instance polls this BMC now
        return
      }
      await acquire()
      try {
        if (stopped) return
        // With shared leases the read is stored before the lease goes: another instance's poller sees either the
        // lease or the fresh power_checked_at, never neither.
        let remembered = false
        await withBmc(machineId, 'status', async (ctx) => {
          // Asked again under the lease, where it is exact: the instance that read it last stored it before letting go.
          if (leases) {
            const now = await deps.bmcs.get(machineId, clock.now())
            if (now && readElsewhere(machineId, now)) {
              remembered = true
              pollsSkipped?.inc({ reason: 'read-elsewhere' })
              return
            }
          }
          let state: PowerState | null = null
          let error: string | undefined
          try {
            state = await ctx.attempt('status', (d, call) => d.powerStatus(call))
          } catch (err) {
            error = (err as Error).message
          }
          remembered = true
          const stored = remember(machineId, state, error, true)
          if (leases) await stored
        }, { poll: true }).catch((err: unknown) => {
          // Another instance's operation holds the BMC (it reads the state itself), or the lease could not be asked for.
          if (err instanceof PollLeaseRefused) pollsSkipped?.inc({ reason: err.reason })
          else if (!remembered) void remember(machineId, null, (err as Error).message, true)
        })
      } finally {
        release()
      }
    } catch (err) {
      log.warn({ machineId, err: (err as Error).message }, 'power poll failed')
    } finally {
      polling.delete(machineId)
    }
  }

  /**
   * With shared leases: another instance read this BMC's power within the poll interval (the power_checked_at it
   * stored is not this instance's). Its state is taken over as last known, without a report (that instance made it).
   * The interval is widened by the jitter both ways: the instance polling it now reads it again within that, and
   * another instance takes over only once it stopped. Both times are on this host's clock: the row's is the
   * database's, read onto it (bmcs.ts), so hosts whose clocks disagree still agree on how old a read is.
   */
  function readElsewhere(machineId: string, bmc: Bmc): boolean {
    const p = bmc.power
    if (!leases || !p || ownChecks.get(machineId) === p.checkedAt) return false
    if (clock.now() - p.checkedAt >= settings.pollIntervalMs * (1 + 2 * settings.pollJitter)) return false
    const mine = known.get(machineId)
    if (!mine || mine.at < p.checkedAt) known.set(machineId, { state: p.state, at: p.checkedAt, ...(p.error ? { error: p.error } : {}) })
    return true
  }

  async function round(): Promise<void> {
    if (stopped || !pollList) return
    const started = clock.now()
    roundTimer = clock.setTimeout(() => void round(), settings.pollIntervalMs)
    ;(roundTimer as { unref?: () => void }).unref?.()
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
      ;(handle as { unref?: () => void }).unref?.()
      pollTimers.add(handle)
    }
  }

  return {
    async status(machineId) {
      return withBmc(machineId, 'status', (ctx) => read(machineId, ctx, false))
    },

    async power(machineId, action, options = {}) {
      if (!(action in EXPECTED)) throw new PowerError('invalid', `unknown power action ${String(action)}`)
      const started = clock.now()
      return withBmc(machineId, action, async (ctx) => {
        const other = ctx.lease?.contended
        if (other && (action === 'on' || action === 'off')) {
          // Another instance had the BMC while this asked: it may have done just this. Read first; on and off are
          // results, and one already reached needs no second command.
          const now = await read(machineId, ctx).catch(() => null)
          if (now === EXPECTED[action]) {
            outcomes?.inc({ action, outcome: 'verified' })
            return { action, sent: action, state: now, verified: true, ms: clock.now() - started,
              note: `not sent: the BMC was held by ${describeHolder(other)} meanwhile, and it already reports ${now}` }
          }
        }
        let send = action
        if (action === 'cycle' || action === 'reset') {
          // Most BMCs do nothing (and say done) for a cycle or reset of a machine that is off: power it on instead.
          const before = await read(machineId, ctx)
          if (before === 'off') send = 'on'
        }
        const outcome = await act(machineId, ctx, action, send, started, REBOOTS.has(action))
        return send === action ? outcome : { ...outcome, note: `the machine was off: powered on instead of ${action}` }
      }, { reboot: options, ...(options.signal ? { signal: options.signal } : {}) })
    },

    async setBootDevice(machineId, override) {
      const { readback, method } = await withBmc(machineId, 'set-boot', async (ctx) =>
        ({ readback: await ctx.attempt('set-boot', (d, call) => d.setBootDevice(override, call)), method: ctx.bmc.bootMethod ?? 'pxe' }))
      if (override.device === 'none') await deps.bmcs.setClearOverrideAfterBoot?.(machineId, false).catch(() => undefined)
      else await markAfterBoot(machineId, readback, override, method)
      return readback
    },

    getBootDevice(machineId) {
      return withBmc(machineId, 'get-boot', (ctx) => ctx.attempt('get-boot', (d, call) => d.getBootDevice(call)))
    },

    async identify(machineId, on, seconds) {
      await withBmc(machineId, 'identify', (ctx) => ctx.attempt('identify', (d, call) =>
        d.identify(on, { ...call, ...(seconds !== undefined ? { seconds } : {}) })))
    },

    capabilities(machineId) {
      return withBmc(machineId, 'capabilities', (ctx) => ctx.attempt('capabilities', (d, call) => d.capabilities(call)))
    },

    pxeBootNow(machineId, options = {}) {
      return netboot(machineId, { ...options, method: 'pxe' })
    },

    netbootNow(machineId, options = {}) {
      return netboot(machineId, options)
    },

    async insertMedia(machineId, url) {
      await withBmc(machineId, 'insert-media', (ctx) => ctx.attempt('insert-media', (d, call) => d.insertMedia(url, call)))
    },

    async ejectMedia(machineId) {
      await withBmc(machineId, 'eject-media', (ctx) => ctx.attempt('eject-media', (d, call) => d.ejectMedia(call)))
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
function raceAbort<T>(work: Promise<T>, signal: AbortSignal, ms: number, bmc: string, operation: string): Promise<T> {
  if (signal.aborted) return Promise.reject(timeoutError(ms, bmc, operation))
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(timeoutError(ms, bmc, operation))
    signal.addEventListener('abort', onAbort, { once: true })
    work.then(
      (v) => { signal.removeEventListener('abort', onAbort); resolve(v) },
      (e) => { signal.removeEventListener('abort', onAbort); reject(e) },
    )
  })
}

function timeoutError(ms: number, bmc: string, operation: string): PowerError {
  return new PowerError('timeout', `${operation}: no answer from ${bmc} within ${ms} ms`)
}
