import { createHash, randomBytes } from 'node:crypto'
import { Counter, Histogram, type Registry } from 'prom-client'
import { NotFoundError, RackbootError } from '../errors.js'
import type {
  AllocatedMachine, Allocation, Inventory, Machine, MachineAllocation, MachineRole, PowerOutcome, Profile,
} from '../inventory/index.js'
import type { Logger } from '../log.js'
import { andSelectors, compileSelector, type Selector } from '../matching/index.js'
import { generateConfig, installDiskOf, loadPatch, parseSecretsBundle, parseTalosVersion, type RenderedConfig } from '../talos/index.js'
import { systemClock, type Clock, type Lifecycle } from './service.js'

// Allocation and release for the cluster API (DESIGN.md: "asks for N machines of a class, gets them atomically").
// Selection and the ready → provisioning moves happen in ONE inventory transaction, guarded by
// `UPDATE ... WHERE state = 'ready'`, together with the allocation record (idempotency key, request hash,
// result): all or nothing, never one machine to two callers. Events go out through the lifecycle after commit.
// Allocation and replacement run with row locks (PostgreSQL: READ COMMITTED, the chosen machines locked FOR UPDATE
// SKIP LOCKED as they are read, so concurrent callers take different machines instead of aborting each other; calls
// with one idempotency key in turn); release keeps the backend's default (SERIALIZABLE there).

export interface AllocationRequest {
  /** A class name: its selectors must hold, and its profile applies unless `profile` is given. */
  class?: string | null
  /** An inline selector (ANDed with the class's). */
  selector?: string | null
  count: number
  /** A cluster made through the API: the machines' Talos config is generated from its secrets. */
  cluster?: string | null
  role?: MachineRole | null
  profile?: string | null
  /** Talos config patches for these machines (strategic merge documents or RFC 6902 lists). */
  patches?: unknown[]
  idempotencyKey?: string | null
  /** PXE-boot the machines now through their BMCs. */
  powerOn?: boolean
}

export interface AllocationResult {
  allocation: Allocation
  /** True when the idempotency key was seen before: the stored result, nothing new done. */
  replayed: boolean
}

export interface ReleaseResult {
  machine: Machine
  /** False when the machine was already released (a repeated release is not an error). */
  released: boolean
  allocation: MachineAllocation | null
  power: PowerOutcome | null
}

/** What allocation needs of the power layer (src/power PowerManager fits). */
export interface PowerPort {
  /** Network boot now by the BMC's boot method (PXE, UEFI HTTP, virtual media), in the machine's firmware mode. */
  netbootNow(machineId: string, options?: { mode?: 'uefi' | 'bios' }): Promise<unknown>
}

export interface AllocatorDeps {
  inventory: Inventory
  lifecycle: Lifecycle
  log: Logger
  clock?: Clock
  power?: PowerPort | null
  registry?: Registry
  /** Rows examined per query while looking for matching machines. */
  scanBatch?: number
  /** How long a request waits for power operations before answering 'requested' for the rest. */
  powerWaitMs?: number
  /** Why a profile's boot files are not on this server (with the command that fetches them), or null when they are. */
  missingAssets?: (profile: Profile) => string | null
}

export interface ReplaceResult {
  /** The allocation that took the replacement (one machine, same class, role, cluster, profile and patches). */
  allocation: Allocation
  replayed: boolean
  /** What became of the machine replaced: released (wiped, back to the pool) or kept quarantined in `failed`. */
  replaced: { id: string; action: 'released' | 'quarantined' } | null
}

export interface Allocator {
  allocate(request: AllocationRequest, cause?: string): Promise<AllocationResult>
  /** Atomically takes a ready machine like this one into its place, and releases it (or keeps it quarantined if failed). */
  replace(machineId: string, options?: { idempotencyKey?: string | null; powerOn?: boolean; cause?: string }): Promise<ReplaceResult>
  release(machineId: string, options?: { cause?: string; pxeBoot?: boolean }): Promise<ReleaseResult>
}

export const MAX_ALLOCATION_COUNT = 1000

function invalid(message: string, details?: unknown, statusCode = 400): RackbootError {
  return new RackbootError('RB_ERR_VALIDATION', message, { details, statusCode })
}

/** JSON with sorted keys, so equal requests hash equally whatever their key order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`
  if (value !== null && typeof value === 'object') {
    return `{${Object.keys(value).sort().filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

/** Allocation ids sort by creation time: a-<ms base36><random>. */
function newAllocationId(now: number): string {
  return `a-${now.toString(36).padStart(9, '0')}${randomBytes(4).toString('hex')}`
}

interface Plan {
  selector: Selector
  className: string | null
  profile: Profile
  cluster: string | null
  role: MachineRole | null
  patches: unknown[]
  hash: string
}

export function createAllocator(deps: AllocatorDeps): Allocator {
  const { inventory, lifecycle, log } = deps
  const clock = deps.clock ?? systemClock
  const batch = deps.scanBatch ?? 1024
  const powerWaitMs = deps.powerWaitMs ?? 20_000
  const metrics = deps.registry ? {
    allocations: new Counter({ name: 'rackboot_api_allocations_total', help: 'Allocation requests by result', labelNames: ['result'] as const, registers: [deps.registry] }),
    machines: new Counter({ name: 'rackboot_api_allocated_machines_total', help: 'Machines handed out by allocations', registers: [deps.registry] }),
    releases: new Counter({ name: 'rackboot_api_releases_total', help: 'Machines released', registers: [deps.registry] }),
    seconds: new Histogram({ name: 'rackboot_api_allocation_seconds', help: 'Time to select and commit an allocation', buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5], registers: [deps.registry] }),
  } : null

  async function plan(req: AllocationRequest): Promise<Plan> {
    if (!Number.isInteger(req.count) || req.count < 1 || req.count > MAX_ALLOCATION_COUNT) {
      throw invalid(`count must be a whole number from 1 to ${MAX_ALLOCATION_COUNT}`, { count: req.count })
    }
    if (!req.class && !req.selector) throw invalid('an allocation needs a class or a selector')
    let selector = compileSelector(req.selector ? [req.selector] : [])
    let classProfile: string | null = null
    if (req.class) {
      const cls = await inventory.classes.get(req.class)
      if (!cls) throw invalid(`no class named '${req.class}'`, { class: req.class }, 422)
      let classSelector: Selector
      try {
        classSelector = compileSelector(cls.selectors)
      } catch (err) {
        throw invalid(`class '${cls.name}' has a selector that does not parse: ${(err as Error).message}`, { class: cls.name, cause: (err as RackbootError).details ?? null }, 422)
      }
      selector = andSelectors(classSelector, selector)
      classProfile = cls.profile
    }
    const profileName = req.profile ?? classProfile
    if (!profileName) throw invalid('no profile: name one, or use a class that has one', { class: req.class ?? null }, 422)
    const profile = await inventory.profiles.get(profileName)
    if (!profile) throw invalid(`no profile named '${profileName}'`, { profile: profileName }, 422)
    if (!profile.talosVersion) throw invalid(`profile '${profile.name}' names no Talos version, so nothing could be installed`, { profile: profile.name }, 422)
    const missing = deps.missingAssets?.(profile)
    if (missing) throw invalid(`profile '${profile.name}': ${missing}`, { profile: profile.name, reason: 'missing-assets' }, 422)
    const cluster = req.cluster ?? null
    if (cluster && !(await inventory.clusters.get(cluster))) throw invalid(`no cluster named '${cluster}'`, { cluster }, 422)
    const role: MachineRole | null = req.role ?? (cluster ? 'worker' : null)
    const patches = req.patches ?? []
    patches.forEach((p, i) => {
      try {
        loadPatch(p as never, `patches[${i}]`)
      } catch (err) {
        throw invalid((err as Error).message, { index: i })
      }
    })
    const hash = createHash('sha256')
      .update(canonical({
        class: req.class ?? null, selector: req.selector ?? null, count: req.count, cluster, role: req.role ?? null,
        profile: req.profile ?? null, patches, powerOn: req.powerOn ?? false,
      }))
      .digest('hex')
    return { selector, className: req.class ?? null, profile, cluster, role, patches, hash }
  }

  /**
   * Ready machines matching the plan, `count` of them or a 409 that says how many there were (and how many were
   * skipped). With row locks (PostgreSQL) the machines are locked as they are read, pages no larger than what is
   * still needed (a machine locked and then found not to match stays locked until the end, for nothing).
   */
  async function choose(tx: Inventory, p: Plan, count: number, exclude: ReadonlySet<string> = new Set(), lock = tx.rowLocks !== undefined): Promise<Machine[]> {
    const chosen: Machine[] = []
    const skipped: string[] = []
    let after: string | undefined
    // Small pages first (most selectors match most machines), growing when they do not.
    let grow = 1
    let limit = lock ? count : Math.min(batch, Math.max(16, count * 2))
    while (chosen.length < count) {
      const page = await tx.queries.scanMachines({ state: 'ready', hardware: p.selector.bounds, limit, ...(after ? { after } : {}), ...(lock ? { lock } : {}) })
      grow *= 4
      limit = lock ? Math.min(batch, (count - chosen.length) * grow) : Math.min(batch, limit * 4)
      for (const m of page.items) {
        if (exclude.has(m.id) || !p.selector.matches(m)) continue
        // A machine that cannot install (no reported disk satisfies the profile's install-disk selector) is skipped.
        const disk = installDiskOf(m, p.profile)
        if (disk && !disk.ok) {
          if (skipped.length < 1000) skipped.push(`${m.name ?? m.id}: ${disk.reason}`)
          continue
        }
        chosen.push(m)
        if (chosen.length === count) break
      }
      if (!page.next) break
      after = page.next
    }
    if (chosen.length < count && lock && tx.rowLocks) {
      // Machines other transactions hold were skipped, and they may not all keep them: if there were enough without
      // locking, the answer is not known yet. The transaction runs again alone, where it waits instead of skipping.
      const all = await choose(tx, p, count, exclude, false).catch((err: unknown) => {
        if (isConflict(err)) return null
        throw err
      })
      if (all) throw tx.rowLocks.contended(`${count} ready machines were there, but other allocations held some of them; try again`)
    }
    if (chosen.length < count) {
      const why = skipped.length ? `; ${skipped.length} matching machine${skipped.length === 1 ? '' : 's'} skipped: no disk satisfies the install-disk selector of profile ${p.profile.name} (${skipped.slice(0, 3).join('; ')}${skipped.length > 3 ? '; ...' : ''})` : ''
      throw new RackbootError('RB_ERR_CONFLICT', `not enough ready machines: ${count} asked, ${chosen.length} available${p.className ? ` in class ${p.className}` : ''}${why}`, {
        details: { reason: 'insufficient-machines', requested: count, available: chosen.length, skipped: skipped.length, skippedWhy: skipped.slice(0, 20) },
      })
    }
    return chosen
  }

  /** ready → provisioning in the caller's transaction. A new allocation is a new boot: no token from before it is good. */
  async function take(tx: Inventory, m: Machine, now: number): Promise<void> {
    // The guard holds on any backend: a machine another transaction took is not ready any more.
    if (!(await tx.machines.setState(m.id, 'ready', 'provisioning', now))) {
      throw new RackbootError('RB_ERR_CONFLICT', `machine ${m.id} was taken meanwhile; try again`, { details: { reason: 'lost-race', id: m.id } })
    }
    await tx.bootTokens.revoke(m.id, null, now)
  }

  /** Ends a machine's allocation in the caller's transaction, moving it to released (or, null, leaving its state). */
  async function leave(tx: Inventory, m: Machine, to: 'released' | null, now: number): Promise<MachineAllocation | null> {
    if (to && !(await tx.machines.setState(m.id, m.state, to, now))) {
      throw new RackbootError('RB_ERR_CONFLICT', `machine ${m.id} changed state meanwhile; try again`, { details: { id: m.id } })
    }
    await tx.bootTokens.revoke(m.id, null, now)
    return tx.allocations.release(m.id, now)
  }

  function replay(existing: Allocation, hash: string): AllocationResult {
    if (existing.requestHash !== hash) {
      throw new RackbootError('RB_ERR_CONFLICT', `idempotency key '${existing.idempotencyKey}' was used for a different request (allocation ${existing.id}); use a new key`, {
        statusCode: 422,
        details: { reason: 'idempotency-key-reused', allocationId: existing.id },
      })
    }
    return { allocation: existing, replayed: true }
  }

  async function powerUp(ids: string[]): Promise<{ outcomes: Map<string, PowerOutcome>; done: Promise<unknown> }> {
    const out = new Map<string, PowerOutcome>()
    const power = deps.power
    const one = async (id: string) => {
      if (!power) {
        out.set(id, { status: 'skipped', message: 'no power manager: power the machine on yourself (it will network-boot)' })
        return
      }
      const bmc = await inventory.bmcs.get(id)
      if (!bmc) {
        out.set(id, { status: 'skipped', message: 'machine has no BMC: power it on yourself (it will network-boot)' })
        return
      }
      const how = bmc.bootMethod === 'virtual-media' ? 'virtual media boot' : bmc.bootMethod === 'uefi-http' ? 'UEFI HTTP boot' : 'PXE boot'
      out.set(id, { status: 'requested', message: `${how} requested through ${bmc.type} BMC ${bmc.address}` })
      try {
        // The override carries the machine's firmware mode: without one IPMI means legacy BIOS and Redfish keeps
        // whatever mode was set last.
        const firmware = (await inventory.machines.get(id))?.firmware
        await power.netbootNow(id, firmware ? { mode: firmware } : {})
        out.set(id, { status: 'done', message: `${how} started through ${bmc.type} BMC ${bmc.address}` })
      } catch (err) {
        out.set(id, { status: 'failed', message: `${how} through ${bmc.type} BMC ${bmc.address} failed: ${(err as Error).message}` })
      }
    }
    const all = Promise.all(ids.map((id) => one(id).catch((err) => {
      out.set(id, { status: 'failed', message: `power request failed: ${(err as Error).message}` })
    })))
    let timer: NodeJS.Timeout | undefined
    await Promise.race([all, new Promise<void>((resolve) => (timer = setTimeout(resolve, powerWaitMs)))])
    clearTimeout(timer)
    return { outcomes: out, done: all }
  }

  return {
    async allocate(req, cause = 'allocated through the API') {
      const started = process.hrtime.bigint()
      let p: Plan
      try {
        p = await plan(req)
      } catch (err) {
        metrics?.allocations.inc({ result: 'rejected' })
        throw err
      }
      const key = req.idempotencyKey || null
      const now = clock.now()
      let result: AllocationResult & { taken: Machine[] }
      try {
        result = await inventory.transaction(async (tx) => {
          if (key) {
            // Calls with one key run one after the other (with row locks: the second then reads the first's result).
            await tx.rowLocks?.name(`idempotency-key ${key}`)
            const existing = await tx.allocations.byKey(key)
            if (existing) return { ...replay(existing, p.hash), taken: [] }
          }
          const chosen = await choose(tx, p, req.count)
          for (const m of chosen) await take(tx, m, now)
          const allocation: Allocation = {
            id: newAllocationId(now),
            idempotencyKey: key,
            requestHash: p.hash,
            class: p.className,
            selector: req.selector ?? null,
            count: req.count,
            cluster: p.cluster,
            role: p.role,
            profile: p.profile.name,
            patches: p.patches,
            machines: chosen.map((m) => ({
              id: m.id, name: m.name, uuid: m.uuid, serial: m.serial, macs: m.nics.map((n) => n.mac), role: p.role,
              power: req.powerOn ? { status: 'requested', message: 'PXE boot requested' } : null,
            })),
            createdAt: now,
          }
          await tx.allocations.create(allocation, chosen.map((m) => ({
            machineId: m.id, class: p.className, cluster: p.cluster, role: p.role, profile: p.profile.name,
            previousProfile: m.profile, patches: p.patches,
          })))
          return { allocation, replayed: false, taken: chosen }
        }, { rowLocks: true })
      } catch (err) {
        metrics?.allocations.inc({ result: isConflict(err) ? 'insufficient' : 'failed' })
        throw err
      }
      metrics?.seconds.observe(Number(process.hrtime.bigint() - started) / 1e9)
      if (result.replayed) {
        metrics?.allocations.inc({ result: 'replayed' })
        return { allocation: result.allocation, replayed: true }
      }
      metrics?.allocations.inc({ result: 'allocated' })
      metrics?.machines.inc(result.taken.length)
      const a = result.allocation
      for (const m of result.taken) {
        log.info({ machineId: m.id, from: 'ready', to: 'provisioning', allocation: a.id, cluster: a.cluster, role: a.role }, 'machine state changed')
        lifecycle.record(m.id, 'machine.state', `ready → provisioning: ${cause} (${a.id}${a.cluster ? `, cluster ${a.cluster} as ${a.role}` : ''}, profile ${a.profile})`, {
          from: 'ready', to: 'provisioning', cause, allocation: a.id, cluster: a.cluster, role: a.role, profile: a.profile,
        })
      }
      if (req.powerOn) {
        const { outcomes, done } = await powerUp(result.taken.map((m) => m.id))
        const withPower = (): AllocatedMachine[] => a.machines.map((m) => ({ ...m, power: outcomes.get(m.id) ?? m.power }))
        a.machines = withPower()
        await inventory.allocations.setMachines(a.id, a.machines)
        // Operations still running when we answered: record their outcome when they end.
        if (a.machines.some((m) => m.power?.status === 'requested')) {
          void done
            .then(() => inventory.allocations.setMachines(a.id, withPower()))
            .catch((err) => log.warn({ err, allocation: a.id }, 'cannot record power outcomes'))
        }
      }
      return { allocation: a, replayed: false }
    },

    async replace(machineId, options = {}) {
      const cause = options.cause ?? 'replacement through the API'
      const hash = createHash('sha256').update(canonical({ replace: machineId, powerOn: options.powerOn ?? false })).digest('hex')
      const key = options.idempotencyKey || null
      // A retried call: the first answer, whatever happened since (the old machine is no longer allocated).
      const seen = key ? await inventory.allocations.byKey(key) : null
      if (seen) {
        const result = replay(seen, hash)
        const oldState = (await inventory.machines.get(machineId))?.state
        return { ...result, replaced: { id: machineId, action: oldState === 'failed' ? 'quarantined' : 'released' } }
      }
      const cur = await inventory.allocations.current(machineId)
      if (!cur) {
        const m = await inventory.machines.get(machineId)
        if (!m) throw new NotFoundError('machine', machineId)
        throw new RackbootError('RB_ERR_INVALID_TRANSITION', `machine ${m.id} is ${m.state} and not allocated: nothing to replace`, { details: { id: m.id, state: m.state } })
      }
      const orig = await inventory.allocations.byId(cur.allocationId)
      const p = await plan({
        class: cur.class, selector: orig?.selector ?? null, count: 1, cluster: cur.cluster, role: cur.role, profile: cur.profile, patches: cur.patches,
      })
      const now = clock.now()
      const r = await inventory.transaction(async (tx) => {
        if (key) {
          await tx.rowLocks?.name(`idempotency-key ${key}`)
          const existing = await tx.allocations.byKey(key)
          if (existing) return { ...replay(existing, hash), taken: null, old: null }
        }
        // The machine replaced is held until commit: a release or another replace of it waits, then sees this one's.
        await tx.rowLocks?.machines([machineId])
        const old = await tx.machines.get(machineId)
        if (!old) throw new NotFoundError('machine', machineId)
        if (old.state !== 'provisioning' && old.state !== 'installed' && old.state !== 'failed') {
          throw new RackbootError('RB_ERR_INVALID_TRANSITION', `machine ${old.id} is ${old.state}: only provisioning, installed or failed machines are replaced`, { details: { id: old.id, state: old.state } })
        }
        // Still in the allocation looked at above: a replace or release that ran meanwhile (a quarantined machine keeps
        // its failed state) must not be answered with a second replacement.
        if ((await tx.allocations.current(old.id))?.allocationId !== cur.allocationId) {
          throw new RackbootError('RB_ERR_CONFLICT', `machine ${old.id} was replaced or released meanwhile`, { details: { reason: 'lost-race', id: old.id } })
        }
        const [fresh] = await choose(tx, p, 1, new Set([old.id]))
        await take(tx, fresh!, now)
        // The old machine leaves the cluster: a failed one stays quarantined for a person, any other is wiped.
        const action: 'released' | 'quarantined' = old.state === 'failed' ? 'quarantined' : 'released'
        await leave(tx, old, action === 'released' ? 'released' : null, now)
        const allocation: Allocation = {
          id: newAllocationId(now), idempotencyKey: key, requestHash: hash, class: p.className, selector: orig?.selector ?? null, count: 1,
          cluster: p.cluster, role: p.role, profile: p.profile.name, patches: p.patches,
          machines: [{ id: fresh!.id, name: fresh!.name, uuid: fresh!.uuid, serial: fresh!.serial, macs: fresh!.nics.map((n) => n.mac), role: p.role, power: options.powerOn ? { status: 'requested', message: 'PXE boot requested' } : null }],
          createdAt: now,
        }
        await tx.allocations.create(allocation, [{ machineId: fresh!.id, class: p.className, cluster: p.cluster, role: p.role, profile: p.profile.name, previousProfile: fresh!.profile, patches: p.patches }])
        return { allocation, replayed: false, taken: fresh!, old: { machine: old, action } }
      }, { rowLocks: true })
      if (r.replayed || !r.taken || !r.old) return { allocation: r.allocation, replayed: true, replaced: null }
      metrics?.allocations.inc({ result: 'replaced' })
      metrics?.machines.inc(1)
      const a = r.allocation
      lifecycle.record(r.taken.id, 'machine.state', `ready → provisioning: ${cause}, in place of ${r.old.machine.name ?? r.old.machine.id} (${a.id}${a.cluster ? `, cluster ${a.cluster} as ${a.role}` : ''}, profile ${a.profile})`, {
        from: 'ready', to: 'provisioning', cause, allocation: a.id, cluster: a.cluster, role: a.role, profile: a.profile, replaces: r.old.machine.id,
      })
      if (r.old.action === 'released') {
        metrics?.releases.inc()
        lifecycle.record(machineId, 'machine.state', `${r.old.machine.state} → released: replaced by ${r.taken.name ?? r.taken.id}`, {
          from: r.old.machine.state, to: 'released', cause: 'replaced', replacedBy: r.taken.id, cluster: a.cluster,
        })
      } else {
        lifecycle.record(machineId, 'machine.updated', `replaced by ${r.taken.name ?? r.taken.id} and left the cluster; stays quarantined`, { replacedBy: r.taken.id, cluster: a.cluster })
      }
      const power = (options.powerOn ? [r.taken.id] : []).concat(r.old.action === 'released' ? [machineId] : [])
      if (power.length > 0) {
        const { outcomes } = await powerUp(power)
        if (options.powerOn) {
          a.machines = a.machines.map((m) => ({ ...m, power: outcomes.get(m.id) ?? m.power }))
          await inventory.allocations.setMachines(a.id, a.machines)
        }
      }
      return { allocation: a, replayed: false, replaced: { id: machineId, action: r.old.action } }
    },

    async release(machineId, options = {}) {
      const cause = options.cause ?? 'released through the API'
      const now = clock.now()
      const r = await inventory.transaction(async (tx) => {
        const m = await tx.machines.get(machineId)
        if (!m) throw new NotFoundError('machine', machineId)
        if (m.state === 'released') return { machine: m, from: null, allocation: null }
        if (m.state !== 'provisioning' && m.state !== 'installed') {
          throw new RackbootError('RB_ERR_INVALID_TRANSITION', `machine ${m.id} is ${m.state}: only provisioning or installed machines can be released`, {
            details: { id: m.id, state: m.state },
          })
        }
        const allocation = await leave(tx, m, 'released', now)
        return { machine: (await tx.machines.get(m.id))!, from: m.state, allocation }
      })
      if (!r.from) return { machine: r.machine, released: false, allocation: null, power: null }
      metrics?.releases.inc()
      log.info({ machineId, from: r.from, to: 'released', allocation: r.allocation?.allocationId ?? null }, 'machine state changed')
      lifecycle.record(machineId, 'machine.state', `${r.from} → released: ${cause}`, {
        from: r.from, to: 'released', cause, allocation: r.allocation?.allocationId ?? null, cluster: r.allocation?.cluster ?? null,
      })
      let power: PowerOutcome | null = null
      if (options.pxeBoot ?? true) power = (await powerUp([machineId])).outcomes.get(machineId) ?? null
      return { machine: r.machine, released: true, allocation: r.allocation, power }
    },
  }
}

function isConflict(err: unknown): boolean {
  return err instanceof RackbootError && err.code === 'RB_ERR_CONFLICT'
}

/**
 * The base Talos config of an allocated machine whose profile has no baseConfig: generated from its cluster's
 * secrets for its role. Null when the machine is not allocated to a cluster.
 */
export async function baseConfigFor(
  inventory: Inventory, machine: Machine, profile: Profile,
  /** The machine's current allocation when the caller has it already (null: none); absent, it is read here. */
  current?: MachineAllocation | null,
): Promise<{ config: RenderedConfig; cluster: string; role: MachineRole } | null> {
  const allocation = current === undefined ? await inventory.allocations.current(machine.id) : current
  if (!allocation?.cluster) return null
  const cluster = await inventory.clusters.get(allocation.cluster)
  const secrets = cluster ? await inventory.clusters.secrets(cluster.name) : null
  if (!cluster || !secrets) throw new RackbootError('RB_ERR_INTERNAL', `cluster ${allocation.cluster} of machine ${machine.id} no longer exists`, { statusCode: 503 })
  const role = allocation.role ?? 'worker'
  const talosVersion = profile.talosVersion ?? cluster.talosVersion
  parseTalosVersion(talosVersion)
  const config = generateConfig({
    secrets: parseSecretsBundle(secrets),
    clusterName: cluster.name,
    endpoint: cluster.endpoint,
    talosVersion,
    role,
    ...(cluster.kubernetesVersion ? { kubernetesVersion: cluster.kubernetesVersion } : {}),
    ...(profile.schematic ? { schematic: profile.schematic } : {}),
  })
  return { config, cluster: cluster.name, role }
}
