import { hostname } from 'node:os'
import { Counter, Gauge, type Registry } from 'prom-client'
import type { EventBus, RackbootEvent } from '../events/bus.js'
import type { InstallSlotClaim, Inventory, Machine, Profile } from '../inventory/index.js'
import type { Logger } from '../log.js'
import type { Leadership } from './leader.js'
import { systemClock, type Clock, type Lifecycle } from './service.js'

// Failure as routine (DESIGN.md): a provisioning machine moves through boot phases, each with a deadline. A missed
// deadline, a failure Talos reports, a failed download or a boot loop is a failure with a phase and a reason, on the
// timeline ('boot.failure'). The ladder then repairs what is cheap (next boot PXE and a power cycle through the
// power manager, with backoff and a bound on repairs at once) and quarantines a machine that keeps failing in state
// `failed`. Everything it knows is rebuilt from the timeline at start, so a restart forgets nothing (a repair that was
// scheduled and not yet done is resumed).
//
// Several instances on one database (issue 16, `shared`): the bus carries only this process's events, so every
// instance follows the events table by seq instead (all instances' events, in commit order: events.ts), and only the
// holder of the leader lease (leader.ts) acts: sweeps deadlines, counts failures up the ladder, power-cycles,
// quarantines. Followers keep the same view without acting, for admission and status. When the role moves, the
// instance rebuilds from the timeline up to the newest seq and follows on from there; a repair the old leader
// scheduled is resumed, and one it may have sent is not sent again (the shared reboot record and BMC lease say so).

/** What a provisioning machine waits for next. */
export const BOOT_PHASES = ['boot', 'download', 'config', 'installing', 'installed'] as const
export type BootPhase = (typeof BOOT_PHASES)[number]

export const PHASE_WAITS_FOR: Record<BootPhase, string> = {
  boot: 'a boot script (firmware, DHCP, iPXE)',
  download: 'the kernel and initramfs downloads',
  config: 'the Talos config fetch',
  installing: 'Talos to start installing',
  installed: 'Talos to finish installing',
}

/** Seconds allowed per phase. */
export type PhaseDeadlines = Record<BootPhase, number>

export const DEFAULT_DEADLINES: PhaseDeadlines = { boot: 600, download: 900, config: 600, installing: 900, installed: 1800 }

export interface RepairSettings {
  deadlines: PhaseDeadlines
  /** Failures in one phase that quarantine the machine. */
  maxPhaseFailures: number
  /** Failures in all that quarantine the machine. */
  maxFailures: number
  /** Backoff before a repair: base doubles per failure up to the max, with jitter (half to all of it). */
  backoffMs: number
  backoffMaxMs: number
  /** Repairs (power operations) in flight at once. */
  maxConcurrentRepairs: number
  /** Install scripts served in one attempt without reaching the config fetch: a boot loop. */
  bootLoopScripts: number
  /** How often deadlines are checked. */
  sweepMs: number
  /** Machines installing at once, overall and per rack (0: no bound); the rest wait in order, holding. */
  maxProvisioning: number
  maxProvisioningPerRack: number
}

export const DEFAULT_REPAIR: RepairSettings = {
  deadlines: DEFAULT_DEADLINES, maxPhaseFailures: 2, maxFailures: 3, backoffMs: 30_000, backoffMaxMs: 600_000,
  maxConcurrentRepairs: 20, bootLoopScripts: 5, sweepMs: 5_000, maxProvisioning: 0, maxProvisioningPerRack: 0,
}

/** What the ladder needs of the power layer (src/power PowerManager fits). */
export interface RepairPower {
  netbootNow(machineId: string, options?: { mode?: 'uefi' | 'bios'; ifTooSoon?: 'error' | 'defer' }): Promise<unknown>
}

export interface RepairDeps {
  inventory: Inventory
  lifecycle: Lifecycle
  bus: EventBus
  log: Logger
  clock?: Clock
  power?: RepairPower | null
  settings?: Partial<RepairSettings>
  registry?: Registry
  /** The profile that applies to a machine (its deadlines may override the defaults). */
  profileFor?: (machine: Machine) => Promise<Profile | null>
  random?: () => number
  /** Timers, replaceable by tests. */
  setTimer?: (fn: () => void, ms: number) => { cancel(): void }
  /** Several instances on one database: follow the events table, act only while holding the leader lease. */
  shared?: RepairShared
}

export interface RepairShared {
  /** The leader lease; its holder is this instance's name in BMC leases too (the power manager's instanceId). */
  leadership: Leadership
  /** Wakes the reader when any instance commits an event (PostgreSQL LISTEN/NOTIFY). Returns what stops it. */
  watch?: (wake: () => void) => () => void
  /** Reads the events table this often as well (ms; default 5000), in case a wake was missed. */
  pollMs?: number
  /** A repair whose BMC another instance is operating waits this long before it looks again (ms). */
  busyRetryMs?: number
}

/** The events the ladder reads: the rest of the table is skipped by the query. */
const LADDER_EVENTS = ['machine.state', 'boot.script', 'boot.asset', 'boot.config', 'boot.talos', 'boot.failure', 'boot.repair']
/** BMC operations that change nothing: one left behind by a stopped instance says nothing about a power cycle. */
const READ_ONLY_OPERATIONS = new Set(['status', 'get-boot', 'capabilities', 'identify'])

/**
 * The machine's shared reboot record and BMC lease (bmc-leases.ts) as stored: the database's times, whichever instance
 * reads them (null: no row, or a lease with no time).
 */
interface SharedRows {
  reboot: number | null
  lease: number | null
}

function sharedRowsOf(v: unknown): SharedRows | null {
  const o = v as Partial<Record<keyof SharedRows, unknown>> | null
  if (o === null || typeof o !== 'object') return null
  const time = (t: unknown) => (typeof t === 'number' ? t : null)
  return { reboot: time(o.reboot), lease: time(o.lease) }
}

interface Attempt {
  machineId: string
  phase: BootPhase
  phaseSince: number
  /** Install scripts served since the attempt began, without a config fetch. */
  scripts: number
  assets: Set<string>
  failures: { total: number; byPhase: Partial<Record<BootPhase, number>> }
  /** A repair is scheduled or running: no deadline fires meanwhile. */
  repairing: boolean
  /** When the scheduled repair was decided, and when it is due (null: none scheduled). */
  scheduledAt: number | null
  dueAt: number
  /** The shared reboot record and BMC lease as the decision found them (null: not known; see `earlier`). */
  seen: SharedRows | null
  /** Holds an install slot (admission): from its first install script until it leaves provisioning. */
  admitted: boolean
  rack: string | null
  /** A failure was already counted for this boot: Talos's several failure signals, or its retries, count once. */
  failedThisBoot: boolean
  deadlines: PhaseDeadlines
}

export interface RepairStatus {
  machineId: string
  phase: BootPhase
  phaseSince: number
  deadlineAt: number
  failures: number
  phaseFailures: number
  repairing: boolean
}

export type Admission = { ok: true } | { ok: false; position: number; waiting: number; reason: string }

export interface QueuedMachine {
  machineId: string
  rack: string | null
  /** When it first asked and was told to wait. */
  since: number
  position: number
}

export interface Repair {
  /**
   * Whether a provisioning machine may boot its installer now (provisioning.maxConcurrent, provisioning.maxPerRack):
   * first come, first served; a rack at its bound does not hold back machines of other racks. The slot itself is
   * claimed in the database (Inventory.installSlots), which counts every instance's: the bounds hold across instances,
   * and a claim the database cannot answer holds the machine.
   */
  admit(machine: Machine): Promise<Admission>
  /** Machines waiting for an install slot, in order. */
  queue(): QueuedMachine[]
  /** Rebuilds attempts from the timeline of every provisioning machine, then watches the bus and the clock. */
  start(): Promise<void>
  stop(): Promise<void>
  /** Checks every deadline now (the sweeper does this every sweepMs). */
  sweep(): Promise<void>
  status(machineId: string): RepairStatus | null
  /** Waits for scheduled work to settle (tests). */
  idle(): Promise<void>
  /** Shared: the leader lease changed hands (leadership's onChange); the view is rebuilt for the new role. */
  roleChanged(): void
  /** Shared: reads the events table up to now (the watch and the poll do this by themselves). */
  catchUp(): Promise<void>
}

const isKernelOrInitrd = (path: string) => /(^|\/)(vmlinuz|initramfs\.xz)$/.test(path)

export function createRepair(deps: RepairDeps): Repair {
  const { inventory, lifecycle, log } = deps
  const clock = deps.clock ?? systemClock
  const random = deps.random ?? Math.random
  const settings: RepairSettings = { ...DEFAULT_REPAIR, ...deps.settings, deadlines: { ...DEFAULT_DEADLINES, ...deps.settings?.deadlines } }
  const setTimer = deps.setTimer ?? ((fn, ms) => {
    const t = setTimeout(fn, ms)
    t.unref?.()
    return { cancel: () => clearTimeout(t) }
  })
  const attempts = new Map<string, Attempt>()
  /** Machines told to wait for an install slot, in the order they first asked; `asked` forgets the ones that stopped. */
  const waiting = new Map<string, { since: number; asked: number; rack: string | null }>()
  const timers = new Map<string, { cancel(): void }>()
  const queue: string[] = []
  let running = 0
  let pending: Promise<unknown> = Promise.resolve()
  let unsubscribe: (() => void) | null = null
  let sweeper: ReturnType<typeof setInterval> | null = null
  /** Whether the view is built for acting: alone, always; shared, once rebuilt as leader. */
  let acting = !deps.shared
  /** Shared: the role the view is built for (null: none yet, or being rebuilt). */
  let role: boolean | null = null
  let stopped = false
  /** Shared: the seq up to which the events table has been read. */
  let cursor = 0
  /** Shared: reads of the table and role changes, one at a time and in order. */
  let work: Promise<void> = Promise.resolve()
  let readQueued = false
  let poller: ReturnType<typeof setInterval> | null = null
  let unwatch: (() => void) | null = null

  const metrics = deps.registry ? {
    failures: new Counter({ name: 'rackboot_boot_failures_total', help: 'Boot failures by phase and kind (deadline, talos, download, loop, config)', labelNames: ['phase', 'kind'] as const, registers: [deps.registry] }),
    repairs: new Counter({ name: 'rackboot_boot_repairs_total', help: 'Repairs tried (result: ok, failed, no-bmc) and machines that installed after a repair (result: succeeded)', labelNames: ['result'] as const, registers: [deps.registry] }),
    quarantined: new Counter({ name: 'rackboot_machines_failed_total', help: 'Machines quarantined in state failed by the repair ladder', registers: [deps.registry] }),
    repairing: new Gauge({ name: 'rackboot_boot_repairs_in_flight', help: 'Repairs scheduled or running', registers: [deps.registry] }),
  } : null

  function deadlinesOf(profile: Profile | null): PhaseDeadlines {
    const own = (profile as { deadlines?: Partial<PhaseDeadlines> | null } | null)?.deadlines
    return own ? { ...settings.deadlines, ...own } : settings.deadlines
  }

  function begin(machineId: string, at: number, deadlines: PhaseDeadlines): void {
    attempts.set(machineId, { machineId, phase: 'boot', phaseSince: at, scripts: 0, assets: new Set(), failures: { total: 0, byPhase: {} }, repairing: false, scheduledAt: null, dueAt: 0, seen: null, failedThisBoot: false, admitted: false, rack: null, deadlines })
  }

  /** A new boot of the same attempt (after a power cycle, or a wait for one without a BMC): back to waiting for its script. */
  function rebootAt(a: Attempt, at: number): void {
    a.phase = 'boot'
    a.phaseSince = at
    a.scripts = 0
    a.assets.clear()
  }

  function advance(a: Attempt, phase: BootPhase, at: number): void {
    if (BOOT_PHASES.indexOf(phase) <= BOOT_PHASES.indexOf(a.phase)) return
    a.phase = phase
    a.phaseSince = at
  }

  /** Records a failure: the bus brings it back to `onEvent`, which counts it and climbs the ladder. */
  function fail(a: Attempt, phase: BootPhase, kind: string, reason: string, evidence: Record<string, unknown> = {}): void {
    if (kind !== 'deadline' && a.failedThisBoot) return
    a.failedThisBoot = true
    // The deadline runs anew from the failure, so a machine that never comes back fails again one deadline later.
    a.phaseSince = clock.now()
    lifecycle.record(a.machineId, 'boot.failure', `boot failed in phase ${phase}: ${reason}`, { phase, kind, reason, attempt: a.failures.total + 1, ...evidence })
  }

  function backoff(n: number): number {
    const base = Math.min(settings.backoffMs * 2 ** Math.max(0, n - 1), settings.backoffMaxMs)
    return Math.round(base * (0.5 + 0.5 * random()))
  }

  function track(p: Promise<unknown>): void {
    pending = Promise.all([pending, p.catch(() => {})])
  }

  async function climb(a: Attempt, phase: BootPhase, reason: string): Promise<void> {
    const inPhase = a.failures.byPhase[phase] ?? 0
    if (inPhase >= settings.maxPhaseFailures || a.failures.total >= settings.maxFailures) {
      const why = inPhase >= settings.maxPhaseFailures
        ? `${inPhase} failures in phase ${phase}`
        : `${a.failures.total} failures in all`
      cancel(a.machineId)
      attempts.delete(a.machineId)
      try {
        await lifecycle.transition(a.machineId, 'failed', `quarantined after ${why}; last: ${reason}`, { from: 'provisioning' })
        metrics?.quarantined.inc()
        lifecycle.record(a.machineId, 'boot.repair', `quarantined: ${why} (last in phase ${phase}: ${reason}); retry or replace it`, { action: 'quarantine', phase, failures: a.failures.total })
      } catch (err) {
        log.warn({ err, machineId: a.machineId }, 'cannot quarantine a failing machine (it changed state meanwhile)')
      }
      return
    }
    const bmc = await inventory.bmcs.get(a.machineId).catch(() => null)
    if (!bmc || !deps.power) {
      metrics?.repairs.inc({ result: 'no-bmc' })
      lifecycle.record(a.machineId, 'boot.repair', `no BMC to power-cycle it: waiting ${Math.round(a.deadlines.boot)} s for the machine to boot again (failure ${a.failures.total} of ${settings.maxFailures})`, { action: 'wait', failures: a.failures.total })
      rebootAt(a, clock.now())
      return
    }
    const wait = backoff(a.failures.total)
    const seen = await sharedRows(a.machineId)
    a.repairing = true
    a.scheduledAt = clock.now()
    a.dueAt = a.scheduledAt + wait
    a.seen = seen
    lifecycle.record(a.machineId, 'boot.repair', `next boot PXE and a power cycle in ${Math.round(wait / 1000)} s (failure ${a.failures.total} of ${settings.maxFailures})`, { action: 'scheduled', inMs: wait, failures: a.failures.total, ...(seen ? { seen } : {}) })
    schedule(a, wait)
  }

  /** Queues the repair of `a` in `wait` ms (counted in flight until it has run or is cancelled). */
  function schedule(a: Attempt, wait: number): void {
    metrics?.repairing.inc()
    timers.set(a.machineId, setTimer(() => {
      timers.delete(a.machineId)
      queue.push(a.machineId)
      drain()
    }, wait))
  }

  /** After a rebuild: repairs scheduled (by this process before a restart, or by the old leader) and never done. */
  function resume(): void {
    for (const a of attempts.values()) {
      if (a.repairing && a.scheduledAt !== null && !timers.has(a.machineId)) schedule(a, Math.max(0, a.dueAt - clock.now()))
    }
  }

  /** Forgets every attempt and scheduled repair (the role moved: the view is rebuilt from the timeline). */
  function forget(): void {
    for (const id of [...timers.keys(), ...queue]) cancel(id)
    attempts.clear()
  }

  /** Whether this instance may act: always alone; with others, while it holds the leader lease and has rebuilt as leader. */
  const mayAct = () => !deps.shared || (acting && deps.shared.leadership.isLeader())

  /** The shared rows as they stand; null without them (an inventory without BMC leases) or when they cannot be read. */
  async function sharedRows(machineId: string): Promise<SharedRows | null> {
    const leases = inventory.bmcLeases
    if (!leases) return null
    try {
      const [reboot, lease] = await Promise.all([leases.lastReboot(machineId), leases.get(machineId)])
      return { reboot, lease: lease?.acquiredAt ?? null }
    } catch (err) {
      log.warn({ err, machineId }, 'repair: cannot read the shared reboot record when scheduling a repair; it is told apart by time')
      return null
    }
  }

  type Earlier = { kind: 'busy' } | { kind: 'done'; at: number } | { kind: 'unknown'; holder: string; operation: string | null }

  /**
   * What became of this repair before it is sent: one command, one action. Another instance is operating the BMC now
   * (a repair of the old leader's in flight: wait for it), the machine was rebooted since the repair was decided (by
   * the old leader just before it stopped, or a person: done), or an operation begun since then was left unfinished
   * by an instance that stopped (its outcome unknown: not sent again, the deadline catches a machine that did not
   * come back).
   *
   * "Since it was decided" is told by the rows, not by the time: the decision kept them as it found them (`seen`), and
   * a reboot record or lease other than those came later. scheduledAt is on the clock of the instance that decided,
   * which for a repair resumed from the old leader is not this host's: by it, a reboot the old leader sent just after
   * deciding would look older than the decision on a host whose clock is behind its (sent again), or one from before
   * it newer on a host ahead (not sent). The rows' own times are all the database's. A repair scheduled without them
   * (by an older version, or when they could not be read) is told by time, as on one host.
   */
  async function earlier(a: Attempt): Promise<Earlier | null> {
    const leases = inventory.bmcLeases
    if (!leases || a.scheduledAt === null) return null
    const now = clock.now()
    const seen = a.seen
    if (seen) {
      // The record only ever moves forward (recordReboot): another value is a later reboot.
      const stored = await leases.lastReboot(a.machineId)
      if (stored !== null && stored !== seen.reboot) return { kind: 'done', at: (await leases.lastReboot(a.machineId, now)) ?? now }
    } else {
      const last = await leases.lastReboot(a.machineId, now)
      if (last !== null && last >= a.scheduledAt) return { kind: 'done', at: last }
    }
    const me = deps.shared?.leadership.holder
    const lease = me === undefined ? null : await leases.get(a.machineId, now)
    if (lease && lease.holder !== me && !READ_ONLY_OPERATIONS.has(lease.operation ?? '')) {
      if (lease.expiresAt > now) return { kind: 'busy' }
      // Taken after the decision: a lease other than the one it found (one extended by its holder keeps its time).
      const begun = seen
        ? await leases.get(a.machineId).then((l) => l?.acquiredAt != null && l.acquiredAt !== seen.lease)
        : lease.acquiredAt !== null && lease.acquiredAt >= a.scheduledAt
      if (begun) return { kind: 'unknown', holder: lease.holder, operation: lease.operation }
    }
    return null
  }

  function cancel(machineId: string): void {
    const t = timers.get(machineId)
    if (t) {
      t.cancel()
      timers.delete(machineId)
      metrics?.repairing.dec()
    }
    const i = queue.indexOf(machineId)
    if (i >= 0) {
      queue.splice(i, 1)
      metrics?.repairing.dec()
    }
  }

  /** Runs queued repairs, at most maxConcurrentRepairs at once. */
  function drain(): void {
    while (running < settings.maxConcurrentRepairs && queue.length > 0) {
      const id = queue.shift()!
      running++
      track(repairNow(id).finally(() => {
        running--
        metrics?.repairing.dec()
        drain()
      }))
    }
  }

  async function repairNow(machineId: string): Promise<void> {
    const a = attempts.get(machineId)
    // Leadership went meanwhile: the next leader finds the repair scheduled and not done on the timeline.
    if (!a || !mayAct()) return
    const m = await inventory.machines.get(machineId)
    if (!m || m.state !== 'provisioning') {
      attempts.delete(machineId)
      return
    }
    const before = await earlier(a).catch((err) => {
      log.warn({ err, machineId }, 'repair: cannot read the shared reboot record; power-cycling')
      return null
    })
    if (before?.kind === 'busy') {
      schedule(a, deps.shared?.busyRetryMs ?? 5_000)
      return
    }
    if (!mayAct() || attempts.get(machineId) !== a) return
    if (before) {
      const line = before.kind === 'done'
        ? `rebooted ${Math.max(0, Math.round((clock.now() - before.at) / 1000))} s ago, after this repair was decided: not power-cycled again; boot attempt ${a.failures.total + 1}`
        : `a power operation (${before.operation ?? 'unknown'}) by instance ${before.holder} began after this repair was decided and never finished (that instance stopped): its outcome is unknown, so nothing is sent again; the deadline runs on`
      lifecycle.record(machineId, 'boot.repair', line, { action: 'pxe-cycle', ok: before.kind === 'done', already: before.kind })
      a.repairing = false
      a.scheduledAt = null
      rebootAt(a, before.kind === 'done' ? before.at : clock.now())
      return
    }
    try {
      // One command, one action: the power manager verifies the boot override and never re-sends a reboot blindly.
      await deps.power!.netbootNow(machineId, { ...(m.firmware ? { mode: m.firmware } : {}), ifTooSoon: 'defer' })
      metrics?.repairs.inc({ result: 'ok' })
      lifecycle.record(machineId, 'boot.repair', `next boot PXE${m.firmware ? ` (${m.firmware})` : ''} and power cycle: done; boot attempt ${a.failures.total + 1}`, { action: 'pxe-cycle', ok: true, failures: a.failures.total })
    } catch (err) {
      metrics?.repairs.inc({ result: 'failed' })
      lifecycle.record(machineId, 'boot.repair', `power cycle failed: ${(err as Error).message}; the deadline runs on`, { action: 'pxe-cycle', ok: false, error: (err as Error).message })
    } finally {
      a.repairing = false
      a.scheduledAt = null
      rebootAt(a, clock.now())
    }
  }

  /** One timeline event. `live` is false while replaying the timeline at start: count, but act on nothing. */
  async function onEvent(e: RackbootEvent, live: boolean): Promise<void> {
    const id = e.machineId
    if (!id) return
    const d = e.data as Record<string, unknown>
    if (e.type === 'machine.state') {
      if (d.to === 'provisioning') {
        const m = await inventory.machines.get(id)
        const profile = m && deps.profileFor ? await deps.profileFor(m).catch(() => null) : null
        // A retry (from failed) or a new allocation starts counting afresh.
        begin(id, e.at, deadlinesOf(profile))
      } else if (d.from === 'provisioning') {
        const a = attempts.get(id)
        if (live && d.to === 'installed' && a && a.failures.total > 0) metrics?.repairs.inc({ result: 'succeeded' })
        cancel(id)
        attempts.delete(id)
        waiting.delete(id)
      }
      return
    }
    const a = attempts.get(id)
    if (!a) return
    switch (e.type) {
      case 'boot.script':
        // Waiting in the admission queue is not a failed boot: the boot deadline runs from its last ask.
        if (d.queued === true) {
          a.phaseSince = e.at
          return
        }
        if (d.decision === 'install') {
          a.admitted = true
          // A new boot: what failed in the last one was counted there.
          a.failedThisBoot = false
          advance(a, 'download', e.at)
          if (BOOT_PHASES.indexOf(a.phase) <= BOOT_PHASES.indexOf('config')) {
            a.scripts++
            if (live && a.scripts >= settings.bootLoopScripts && !a.repairing) {
              fail(a, a.phase, 'loop', `boot loop: ${a.scripts} boot scripts in one attempt without a config fetch`, { scripts: a.scripts })
            }
          }
        }
        return
      case 'boot.asset': {
        const path = String(d.path ?? '')
        if (!isKernelOrInitrd(path)) return
        if (Number(d.status) >= 400) {
          if (live && !a.repairing) fail(a, 'download', 'download', `${path}: HTTP ${String(d.status)}${Number(d.status) === 404 ? ' (the file is missing on the server)' : ''}`, { path, status: d.status })
          return
        }
        if (d.complete) a.assets.add(path.split('/').pop()!)
        if (a.assets.has('vmlinuz') && a.assets.has('initramfs.xz')) advance(a, 'config', e.at)
        return
      }
      case 'boot.config':
        if (d.status === 200) advance(a, 'installing', e.at)
        else if (d.status === 503 && live && !a.repairing) fail(a, 'config', 'config', String(e.message).replace(/^config not served: /, 'config not served: '))
        return
      case 'boot.talos':
        if (d.hint === 'installing') advance(a, 'installed', e.at)
        else if (d.hint === 'failed' && live && !a.repairing) fail(a, a.phase, 'talos', e.message.replace(/^Talos reported a failure: /, 'Talos reported: '))
        return
      case 'boot.failure': {
        const phase = (BOOT_PHASES as readonly string[]).includes(String(d.phase)) ? (d.phase as BootPhase) : a.phase
        a.failures.total++
        a.failures.byPhase[phase] = (a.failures.byPhase[phase] ?? 0) + 1
        a.failedThisBoot = true
        if (!live) a.phaseSince = e.at
        // Shared: every instance reads every failure; only the one acting counts it, so the sum over instances is right.
        if (live || !deps.shared) metrics?.failures.inc({ phase, kind: String(d.kind ?? 'other') })
        if (live) await climb(a, phase, String(d.reason ?? e.message))
        return
      }
      case 'boot.repair':
        // Replayed: a repair scheduled and not yet done is resumed by whoever acts; a power cycle that was done (or
        // may have been) starts a new attempt.
        if (live) return
        if (d.action === 'scheduled') {
          a.repairing = true
          a.scheduledAt = e.at
          a.dueAt = e.at + (Number(d.inMs) || 0)
          a.seen = sharedRowsOf(d.seen)
        } else if (d.action === 'pxe-cycle') {
          a.repairing = false
          a.scheduledAt = null
          rebootAt(a, e.at)
        }
        return
      default:
        return
    }
  }

  function rackOf(m: Machine): string | null {
    return m.rack ?? m.labels.rack ?? null
  }

  /** This instance's name on the install slots it gives (the leader lease's holder when shared). */
  const slotHolder = deps.shared?.leadership.holder ?? `${hostname()}:${process.pid}`

  /**
   * Two steps. This instance's view walks its line in order and says whether the machine is next (a slot free that
   * nobody ahead of it here is owed); then the database decides (install-slots.ts), counting every instance's slots,
   * so two instances asked in the same instant cannot both give the last one. Order holds within an instance; across
   * instances the first to claim wins.
   */
  async function admit(m: Machine): Promise<Admission> {
    if (settings.maxProvisioning <= 0 && settings.maxProvisioningPerRack <= 0) return { ok: true }
    const a = attempts.get(m.id)
    if (a?.admitted) return { ok: true }
    const rack = rackOf(m)
    // Not in this instance's view yet (it is rebuilding, or has not read the machine's move to provisioning): no
    // place in line here, but the database still decides.
    let position = 1
    if (a) {
      const local = walk(a, m.id, rack)
      if (!local.ok) return local
      position = local.position
    }
    const line = () => `waiting for an install slot, number ${position} of ${Math.max(position, waiting.size)} in line`
    const slots = inventory.installSlots
    if (slots) {
      const limits = { overall: settings.maxProvisioning, perRack: settings.maxProvisioningPerRack }
      let claim: InstallSlotClaim
      try {
        claim = await slots.claim(m.id, rack, limits, slotHolder, clock.now())
      } catch (err) {
        log.warn({ err, machineId: m.id }, 'admission: cannot claim an install slot in the database; holding')
        return { ok: false, position, waiting: Math.max(position, waiting.size), reason: `${line()}: the database, which counts the machines installing across all instances, cannot be reached (${(err as Error).message})` }
      }
      if (!claim.ok) {
        const why = claim.bound === 'rack'
          ? `rack ${rack} has ${claim.rackInstalling} machines installing across all instances (provisioning.maxPerRack ${settings.maxProvisioningPerRack})`
          : `${claim.installing} machines installing across all instances (provisioning.maxConcurrent ${settings.maxProvisioning})`
        return { ok: false, position, waiting: Math.max(position, waiting.size), reason: `${line()}: ${why}` }
      }
    }
    waiting.delete(m.id)
    // The attempt may have ended while the claim ran (the slot then no longer counts).
    if (a && attempts.get(m.id) === a) a.admitted = true
    return { ok: true }
  }

  /** This instance's line: whether `a` is next in it, or its place and why it waits. */
  function walk(a: Attempt, machineId: string, rack: string | null): { ok: true; position: number } | (Admission & { ok: false }) {
    const now = clock.now()
    a.rack = rack
    for (const [id, w] of waiting) if (now - w.asked > 15 * 60_000 || !attempts.has(id)) waiting.delete(id)
    const me = waiting.get(machineId)
    if (me) {
      me.asked = now
      me.rack = rack
    } else waiting.set(machineId, { since: now, asked: now, rack })
    let active = 0
    const perRack = new Map<string, number>()
    for (const x of attempts.values()) {
      if (!x.admitted) continue
      active++
      if (x.rack) perRack.set(x.rack, (perRack.get(x.rack) ?? 0) + 1)
    }
    const fits = (r: string | null) =>
      (settings.maxProvisioning <= 0 || active < settings.maxProvisioning) &&
      (settings.maxProvisioningPerRack <= 0 || !r || (perRack.get(r) ?? 0) < settings.maxProvisioningPerRack)
    // Walk the line in order, giving free slots to those ahead first (they keep them for when they ask again).
    let position = 0
    for (const [id, w] of waiting) {
      position++
      if (!fits(w.rack)) {
        if (id === machineId) break
        continue
      }
      // Next in line here: it stays in line until the database has given it the slot.
      if (id === machineId) return { ok: true, position }
      active++
      if (w.rack) perRack.set(w.rack, (perRack.get(w.rack) ?? 0) + 1)
    }
    const rackFull = settings.maxProvisioningPerRack > 0 && rack && (perRack.get(rack) ?? 0) >= settings.maxProvisioningPerRack
    const reason = rackFull
      ? `rack ${rack} has ${perRack.get(rack)} machines installing (provisioning.maxPerRack ${settings.maxProvisioningPerRack})`
      : `${active} machines installing (provisioning.maxConcurrent ${settings.maxProvisioning})`
    return { ok: false, position, waiting: waiting.size, reason: `waiting for an install slot, number ${position} of ${waiting.size} in line: ${reason}` }
  }

  /** Rebuilds every provisioning machine's attempt from its timeline, up to seq `upTo` (the rest is followed on). */
  async function rebuild(upTo = Infinity): Promise<void> {
    let after: string | undefined
    for (;;) {
      const page = await inventory.machines.list({ state: 'provisioning', limit: 500, ...(after ? { after } : {}) })
      for (const m of page.items) {
        const profile = deps.profileFor ? await deps.profileFor(m).catch(() => null) : null
        const ordered = (await inventory.events.list({ machineId: m.id, newest: true, limit: 500 })).filter((e) => e.seq <= upTo)
        const start = ordered.map((e) => e.type === 'machine.state' && (e.data as { to?: string }).to === 'provisioning').lastIndexOf(true)
        begin(m.id, start >= 0 ? ordered[start]!.at : m.updatedAt, deadlinesOf(profile))
        for (const e of ordered.slice(start + 1)) await onEvent({ type: e.type as RackbootEvent['type'], machineId: m.id, at: e.at, message: e.message, data: e.data }, false)
      }
      if (!page.next) break
      after = page.next
    }
  }

  async function sweep(): Promise<void> {
    const now = clock.now()
    // A follower, or a leader whose lease lapsed: the deadlines are the leader's.
    if (!mayAct()) return
    for (const a of attempts.values()) {
      if (a.repairing) continue
      const limit = a.deadlines[a.phase] * 1000
      if (now - a.phaseSince > limit) {
        fail(a, a.phase, 'deadline', `waited ${Math.round(limit / 1000)} s for ${PHASE_WAITS_FOR[a.phase]}`, { deadlineSeconds: a.deadlines[a.phase] })
      }
    }
    await pending
  }

  function serially(fn: () => Promise<void>): Promise<void> {
    work = work.then(fn).catch((err) => log.warn({ err }, 'repair: cannot follow the events table'))
    track(work)
    return work
  }

  /** Reads the events table from the cursor on: every instance's events, in seq order. */
  async function readOn(): Promise<void> {
    if (role === null) return
    for (;;) {
      const rows = await inventory.events.list({ since: cursor, types: LADDER_EVENTS, limit: 500 })
      for (const e of rows) {
        cursor = e.seq
        const event: RackbootEvent = { type: e.type as RackbootEvent['type'], machineId: e.machineId, at: e.at, message: e.message, data: e.data }
        await onEvent(event, mayAct()).catch((err) => log.warn({ err, machineId: e.machineId }, 'repair: cannot handle an event'))
      }
      if (rows.length < 500) return
    }
  }

  function wake(): void {
    if (readQueued) return
    readQueued = true
    void serially(async () => {
      readQueued = false
      await readOn()
    })
  }

  /** Rebuilds the view for the role this instance holds now, if that changed: up to the newest seq, then follows on. */
  async function applyRole(): Promise<void> {
    const leader = deps.shared!.leadership.isLeader()
    if (stopped || role === leader) return
    // Nothing acts on a half-built view.
    acting = false
    role = null
    forget()
    const newest = await inventory.events.list({ newest: true, limit: 1 })
    const head = newest[0]?.seq ?? 0
    await rebuild(head)
    cursor = head
    role = leader
    acting = leader
    if (acting) {
      log.info({ holder: deps.shared!.leadership.holder, machines: attempts.size }, 'repair: leading; deadlines and repairs are this instance\'s')
      resume()
    }
    await readOn()
  }

  return {
    async start() {
      stopped = false
      if (deps.shared) {
        const shared = deps.shared
        unwatch = shared.watch?.(wake) ?? null
        poller = setInterval(wake, shared.pollMs ?? 5_000)
        poller.unref()
        await shared.leadership.start()
        await serially(applyRole)
      } else {
        await rebuild()
        resume()
        unsubscribe = deps.bus.subscribe((e) => {
          track(onEvent(e, true).catch((err) => log.warn({ err, machineId: e.machineId }, 'repair: cannot handle an event')))
        })
      }
      sweeper = setInterval(() => {
        // The role is checked on the sweeper's beat too: a lapsed lease is noticed without waiting for a renewal, and a
        // rebuild that failed (the database was unreachable) is tried again.
        if (deps.shared && !stopped && (role === null || deps.shared.leadership.isLeader() !== role)) void serially(applyRole)
        void sweep().catch((err) => log.warn({ err }, 'repair: sweep failed'))
      }, settings.sweepMs)
      sweeper.unref()
    },
    async stop() {
      stopped = true
      unsubscribe?.()
      unsubscribe = null
      unwatch?.()
      unwatch = null
      if (poller) clearInterval(poller)
      poller = null
      if (sweeper) clearInterval(sweeper)
      sweeper = null
      for (const id of [...timers.keys()]) cancel(id)
      await pending
      if (deps.shared) {
        await deps.shared.leadership.stop()
        await work
        forget()
        acting = false
        role = null
      }
    },
    sweep,
    roleChanged() {
      if (deps.shared && !stopped) void serially(applyRole)
    },
    catchUp() {
      return deps.shared ? serially(readOn) : Promise.resolve()
    },
    admit,
    queue() {
      let i = 0
      return [...waiting].map(([machineId, w]) => ({ machineId, rack: w.rack, since: w.since, position: ++i }))
    },
    status(machineId) {
      const a = attempts.get(machineId)
      if (!a) return null
      return {
        machineId, phase: a.phase, phaseSince: a.phaseSince, deadlineAt: a.phaseSince + a.deadlines[a.phase] * 1000,
        failures: a.failures.total, phaseFailures: a.failures.byPhase[a.phase] ?? 0, repairing: a.repairing,
      }
    },
    async idle() {
      for (;;) {
        const p = pending
        await p
        if (p === pending) return
      }
    },
  }
}
