import { Counter, Gauge, type Registry } from 'prom-client'
import type { EventBus, RackbootEvent } from '../events/bus.js'
import type { Inventory, Machine, Profile } from '../inventory/index.js'
import type { Logger } from '../log.js'
import { systemClock, type Clock, type Lifecycle } from './service.js'

// Failure as routine (DESIGN.md): a provisioning machine moves through boot phases, each with a deadline. A missed
// deadline, a failure Talos reports, a failed download or a boot loop is a failure with a phase and a reason, on the
// timeline ('boot.failure'). The ladder then repairs what is cheap (next boot PXE and a power cycle through the
// power manager, with backoff and a bound on repairs at once) and quarantines a machine that keeps failing in state
// `failed`. Everything it knows is rebuilt from the timeline at start, so a restart forgets nothing.

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
   * first come, first served; a rack at its bound does not hold back machines of other racks.
   */
  admit(machine: Machine): Admission
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
    attempts.set(machineId, { machineId, phase: 'boot', phaseSince: at, scripts: 0, assets: new Set(), failures: { total: 0, byPhase: {} }, repairing: false, failedThisBoot: false, admitted: false, rack: null, deadlines })
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
    a.repairing = true
    metrics?.repairing.inc()
    lifecycle.record(a.machineId, 'boot.repair', `next boot PXE and a power cycle in ${Math.round(wait / 1000)} s (failure ${a.failures.total} of ${settings.maxFailures})`, { action: 'scheduled', inMs: wait, failures: a.failures.total })
    timers.set(a.machineId, setTimer(() => {
      timers.delete(a.machineId)
      queue.push(a.machineId)
      drain()
    }, wait))
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
    if (!a) return
    const m = await inventory.machines.get(machineId)
    if (!m || m.state !== 'provisioning') {
      attempts.delete(machineId)
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
        metrics?.failures.inc({ phase, kind: String(d.kind ?? 'other') })
        if (live) await climb(a, phase, String(d.reason ?? e.message))
        return
      }
      case 'boot.repair':
        // Replayed: a power cycle that was done starts a new attempt.
        if (!live && d.action === 'pxe-cycle') {
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

  function admit(m: Machine): Admission {
    const a = attempts.get(m.id)
    if (!a || a.admitted || (settings.maxProvisioning <= 0 && settings.maxProvisioningPerRack <= 0)) return { ok: true }
    const now = clock.now()
    a.rack = rackOf(m)
    for (const [id, w] of waiting) if (now - w.asked > 15 * 60_000 || !attempts.has(id)) waiting.delete(id)
    const me = waiting.get(m.id)
    if (me) me.asked = now
    else waiting.set(m.id, { since: now, asked: now, rack: a.rack })
    let active = 0
    const perRack = new Map<string, number>()
    for (const x of attempts.values()) {
      if (!x.admitted) continue
      active++
      if (x.rack) perRack.set(x.rack, (perRack.get(x.rack) ?? 0) + 1)
    }
    const fits = (rack: string | null) =>
      (settings.maxProvisioning <= 0 || active < settings.maxProvisioning) &&
      (settings.maxProvisioningPerRack <= 0 || !rack || (perRack.get(rack) ?? 0) < settings.maxProvisioningPerRack)
    // Walk the queue in order, giving free slots to those ahead first (they keep them for when they ask again).
    let position = 0
    for (const [id, w] of waiting) {
      position++
      if (!fits(w.rack)) {
        if (id === m.id) break
        continue
      }
      if (id === m.id) {
        waiting.delete(id)
        a.admitted = true
        return { ok: true }
      }
      active++
      if (w.rack) perRack.set(w.rack, (perRack.get(w.rack) ?? 0) + 1)
    }
    const rackFull = settings.maxProvisioningPerRack > 0 && a.rack && (perRack.get(a.rack) ?? 0) >= settings.maxProvisioningPerRack
    const reason = rackFull
      ? `rack ${a.rack} has ${perRack.get(a.rack!)} machines installing (provisioning.maxPerRack ${settings.maxProvisioningPerRack})`
      : `${active} machines installing (provisioning.maxConcurrent ${settings.maxProvisioning})`
    return { ok: false, position, waiting: waiting.size, reason: `waiting for an install slot, number ${position} of ${waiting.size} in line: ${reason}` }
  }

  async function rebuild(): Promise<void> {
    let after: string | undefined
    for (;;) {
      const page = await inventory.machines.list({ state: 'provisioning', limit: 500, ...(after ? { after } : {}) })
      for (const m of page.items) {
        const profile = deps.profileFor ? await deps.profileFor(m).catch(() => null) : null
        const ordered = await inventory.events.list({ machineId: m.id, newest: true, limit: 500 })
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
    for (const a of attempts.values()) {
      if (a.repairing) continue
      const limit = a.deadlines[a.phase] * 1000
      if (now - a.phaseSince > limit) {
        fail(a, a.phase, 'deadline', `waited ${Math.round(limit / 1000)} s for ${PHASE_WAITS_FOR[a.phase]}`, { deadlineSeconds: a.deadlines[a.phase] })
      }
    }
    await pending
  }

  return {
    async start() {
      await rebuild()
      unsubscribe = deps.bus.subscribe((e) => {
        track(onEvent(e, true).catch((err) => log.warn({ err, machineId: e.machineId }, 'repair: cannot handle an event')))
      })
      sweeper = setInterval(() => void sweep().catch((err) => log.warn({ err }, 'repair: sweep failed')), settings.sweepMs)
      sweeper.unref()
    },
    async stop() {
      unsubscribe?.()
      unsubscribe = null
      if (sweeper) clearInterval(sweeper)
      sweeper = null
      for (const id of [...timers.keys()]) cancel(id)
      await pending
    },
    sweep,
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
