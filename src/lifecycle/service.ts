import { Counter, type Registry } from 'prom-client'
import type { EventBus, EventType, RackbootEvent } from '../events/bus.js'
import { RackbootError, NotFoundError } from '../errors.js'
import type { Inventory, Machine, MachineInput, MachineState } from '../inventory/index.js'
import { normalizeMac, isMac, isUuid, normalizeUuid } from '../inventory/index.js'
import type { Logger } from '../log.js'
import { canTransition } from './transitions.js'

export interface Clock {
  now(): number
}

export const systemClock: Clock = { now: () => Date.now() }

/** What a protocol server saw of a machine: any of these identify it. */
export interface MachineFacts {
  mac?: string | null
  uuid?: string | null
  serial?: string | null
  manufacturer?: string | null
  product?: string | null
  arch?: Machine['arch']
  firmware?: Machine['firmware']
}

export interface LifecycleDeps {
  inventory: Inventory
  bus: EventBus
  log: Logger
  clock?: Clock
  /** Events kept per machine on its timeline. */
  timelineLimit?: number
  /** Where rackboot_boot_steps_total{step} is counted; absent: not counted. */
  registry?: Registry
}

export interface Lifecycle {
  /** Finds the machine by MAC, then SMBIOS uuid, then serial; creates it as `new` when unknown. */
  identify(facts: MachineFacts, source: string): Promise<{ machine: Machine; created: boolean }>
  /** Finds without creating. */
  find(facts: MachineFacts): Promise<Machine | null>
  /** Moves a machine between states (the only writer of state); throws on a transition that does not exist. */
  transition(id: string, to: MachineState, cause: string, options?: { from?: MachineState }): Promise<Machine>
  accept(id: string, cause: string): Promise<Machine>
  setMaintenance(id: string, on: boolean, cause: string): Promise<Machine>
  update(id: string, input: MachineInput, cause: string): Promise<Machine>
  remove(id: string, cause: string): Promise<void>
  /** Records something that happened to a machine (a boot event) on its timeline and the bus. */
  record(machineId: string | null, type: EventType, message: string, data?: Record<string, unknown>): void
}

// The steps of a boot as the timeline names them; boot.failure and boot.repair have their own counters (repair.ts).
const BOOT_STEPS: ReadonlySet<EventType> = new Set<EventType>(['boot.dhcp', 'boot.tftp', 'boot.script', 'boot.asset', 'boot.agent', 'boot.config', 'boot.talos'])

function bootStepCounter(registry: Registry): Counter<'step'> {
  const existing = registry.getSingleMetric('rackboot_boot_steps_total') as Counter<'step'> | undefined
  if (existing) return existing
  const counter = new Counter({ name: 'rackboot_boot_steps_total', help: 'Boot events recorded on machine timelines, by step (dhcp, tftp, script, asset, agent, config, talos)', labelNames: ['step'] as const, registers: [registry] })
  // Every step exported from the start at 0, so rate() sees the first boot.
  for (const type of BOOT_STEPS) counter.inc({ step: type.slice('boot.'.length) }, 0)
  return counter
}

export function createLifecycle(deps: LifecycleDeps): Lifecycle {
  const { inventory, bus, log } = deps
  const clock = deps.clock ?? systemClock
  const steps = deps.registry ? bootStepCounter(deps.registry) : null

  function publish(type: EventType, machineId: string | null, message: string, data: Record<string, unknown> = {}): void {
    const event: RackbootEvent = { type, machineId, at: clock.now(), message, data }
    bus.publish(event)
  }

  async function find(facts: MachineFacts): Promise<Machine | null> {
    if (facts.mac && isMac(facts.mac)) {
      const m = await inventory.machines.byMac(facts.mac)
      if (m) return m
    }
    if (facts.uuid && isUuid(facts.uuid)) {
      const m = await inventory.machines.byUuid(facts.uuid)
      if (m) return m
    }
    if (facts.serial) {
      const m = await inventory.machines.bySerial(facts.serial)
      if (m) return m
    }
    return null
  }

  async function load(id: string): Promise<Machine> {
    const m = await inventory.machines.get(id)
    if (!m) throw new NotFoundError('machine', id)
    return m
  }

  async function transition(id: string, to: MachineState, cause: string, options: { from?: MachineState } = {}): Promise<Machine> {
    const m = await load(id)
    const from = options.from ?? m.state
    if (m.state !== from) {
      throw new RackbootError('RB_ERR_INVALID_TRANSITION', `machine ${id} is ${m.state}, not ${from}`, { details: { id, state: m.state, expected: from } })
    }
    if (from === to) return m
    if (!canTransition(from, to)) {
      throw new RackbootError('RB_ERR_INVALID_TRANSITION', `machine ${id} cannot go from ${from} to ${to}`, { details: { id, from, to } })
    }
    if (!(await inventory.machines.setState(id, from, to, clock.now()))) {
      throw new RackbootError('RB_ERR_CONFLICT', `machine ${id} changed state meanwhile; try again`, { details: { id, from, to } })
    }
    // Tokens mean one boot of one state: an agent token dies when the machine leaves the state it was issued for, a
    // config token at any move but into provisioning (installed included; the next boot script issues a fresh one).
    await inventory.bootTokens.revoke(id, to === 'provisioning' ? 'agent' : null, clock.now())
    // An install slot (admission, repair.ts) is one attempt's: gone when the machine leaves provisioning, and a new
    // attempt is admitted afresh. A slot this misses (a crash, the database gone) no longer counts once the machine is
    // out of provisioning: the count joins its state.
    if ((from === 'provisioning' || to === 'provisioning') && inventory.installSlots) {
      await inventory.installSlots.release(id).catch((err: unknown) => log.warn({ err, machineId: id }, 'cannot release the install slot of a machine that changed state'))
    }
    log.info({ machineId: id, from, to, cause }, 'machine state changed')
    publish('machine.state', id, `${from} → ${to}: ${cause}`, { from, to, cause })
    return load(id)
  }

  return {
    find,
    async identify(facts, source) {
      const existing = await find(facts)
      if (existing) return { machine: existing, created: false }
      const input: MachineInput = {
        uuid: facts.uuid && isUuid(facts.uuid) ? normalizeUuid(facts.uuid) : null,
        serial: facts.serial || null,
        manufacturer: facts.manufacturer || null,
        product: facts.product || null,
        arch: facts.arch ?? null,
        firmware: facts.firmware ?? null,
        nics: facts.mac && isMac(facts.mac) ? [{ mac: normalizeMac(facts.mac), name: null, boot: true }] : [],
      }
      try {
        const machine = await inventory.machines.create({ ...input, state: 'new' }, clock.now())
        log.info({ machineId: machine.id, mac: facts.mac, source }, 'new machine')
        publish('machine.created', machine.id, `new machine seen by ${source}`, { source, mac: facts.mac ?? null, serial: input.serial, uuid: input.uuid })
        return { machine, created: true }
      } catch (err) {
        // Two packets of one boot can race to create the machine: the loser finds the winner's row.
        const again = await find(facts)
        if (again) return { machine: again, created: false }
        throw err
      }
    },
    transition,
    accept(id, cause) {
      return transition(id, 'ready', cause, { from: 'discovered' })
    },
    async setMaintenance(id, on, cause) {
      const m = await load(id)
      if (on) return transition(id, 'maintenance', cause)
      if (m.state !== 'maintenance') return m
      return transition(id, m.hardware ? 'discovered' : 'new', cause)
    },
    async update(id, input, cause) {
      const m = await inventory.machines.update(id, input, clock.now())
      publish('machine.updated', id, `updated: ${cause}`, { fields: Object.keys(input), cause })
      return m
    },
    async remove(id, cause) {
      if (!(await inventory.machines.delete(id))) throw new NotFoundError('machine', id)
      publish('machine.deleted', id, `deleted: ${cause}`, { cause })
    },
    record(machineId, type, message, data = {}) {
      if (steps && BOOT_STEPS.has(type)) steps.inc({ step: type.slice('boot.'.length) })
      publish(type, machineId, message, data)
    },
  }
}

/** Events written in one transaction at most. */
const TIMELINE_BATCH = 200

/**
 * Persists every bus event on the timeline (the events table), keeping at most `limit` per machine.
 * Writes are queued so the bus stays synchronous and cheap for the protocol servers. The events queued while the
 * previous ones were written go together, in publish order, in one transaction: one commit for the lot instead of one
 * each (a boot storm publishes several per request).
 */
export function attachTimeline(deps: { inventory: Inventory; bus: EventBus; log: Logger; limit?: number }): { flush(): Promise<void>; detach(): void } {
  const limit = deps.limit ?? 500
  let chain: Promise<void> = Promise.resolve()
  const queue: RackbootEvent[] = []
  const appended = new Map<string, number>()
  const row = (event: RackbootEvent) => ({ machineId: event.machineId, type: event.type, at: event.at, message: event.message, data: event.data })
  const alone = (event: RackbootEvent): Promise<PromiseSettledResult<unknown>> =>
    deps.inventory.events.append(row(event)).then((value) => ({ status: 'fulfilled' as const, value }), (reason: unknown) => ({ status: 'rejected' as const, reason }))
  async function write(batch: RackbootEvent[]): Promise<void> {
    let results: PromiseSettledResult<unknown>[]
    // One event goes alone: a transaction (its repositories, BEGIN, COMMIT) costs more than the autocommit it saves.
    if (batch.length === 1) results = [await alone(batch[0]!)]
    else {
      try {
        await deps.inventory.transaction(async (tx) => {
          for (const event of batch) await tx.events.append(row(event))
        })
        results = batch.map(() => ({ status: 'fulfilled', value: null }))
      } catch {
        // One event that cannot be stored must not cost the others theirs: each on its own.
        results = []
        for (const event of batch) results.push(await alone(event))
      }
    }
    const trims = new Set<string>()
    results.forEach((r, i) => {
      const event = batch[i]!
      if (r.status === 'rejected') {
        deps.log.error({ err: r.reason, type: event.type }, 'cannot record timeline event')
        return
      }
      if (!event.machineId) return
      const n = (appended.get(event.machineId) ?? 0) + 1
      appended.set(event.machineId, n)
      // Trim now and then, not on every write.
      if (n % 50 === 0) trims.add(event.machineId)
    })
    for (const id of trims) await deps.inventory.events.trim(id, limit).catch((err) => deps.log.error({ err, machineId: id }, 'cannot trim a timeline'))
  }
  // A bounded batch: its transaction holds the connection, and every other query waits meanwhile.
  async function drain(): Promise<void> {
    while (queue.length > 0) await write(queue.splice(0, TIMELINE_BATCH))
  }
  const detach = deps.bus.subscribe((event) => {
    queue.push(event)
    if (queue.length > 1) return
    chain = chain.then(drain).catch((err) => deps.log.error({ err }, 'cannot record timeline events'))
  })
  return { flush: () => chain, detach }
}
