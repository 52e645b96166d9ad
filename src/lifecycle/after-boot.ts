// After a machine has network-booted, undo what only that boot needed: a "next boot only" override that the BMC
// kept for every boot (it reads Once back as Continuous) is cleared, and a virtual media image is ejected. Without
// this the machine would network-boot again on every reboot after its install.
import type { EventBus, RackbootEvent } from '../events/bus.js'
import type { Inventory } from '../inventory/index.js'
import type { Logger } from '../log.js'
import type { Lifecycle } from './service.js'

/** What this needs of the power layer (src/power PowerManager fits). */
export interface AfterBootPower {
  setBootDevice(machineId: string, override: { device: 'none' }): Promise<unknown>
  ejectMedia(machineId: string): Promise<void>
}

export interface AfterBootDeps {
  inventory: Pick<Inventory, 'bmcs'>
  lifecycle: Pick<Lifecycle, 'record'>
  bus: EventBus
  power: AfterBootPower
  log: Logger
}

export interface AfterBoot {
  start(): void
  /** Stops listening and waits for the clean-ups running. */
  stop(): Promise<void>
  /** Runs the clean-up for one machine now (tests, and the event handler). */
  tidy(machineId: string): Promise<void>
}

/** The boot script fetched: the firmware has used the override and loaded iPXE from wherever it booted. */
const BOOTED: ReadonlySet<RackbootEvent['type']> = new Set(['boot.script'])

export function createAfterBoot(deps: AfterBootDeps): AfterBoot {
  const running = new Map<string, Promise<void>>()
  let unsubscribe: (() => void) | null = null

  async function tidy(machineId: string): Promise<void> {
    const bmc = await deps.inventory.bmcs.get(machineId)
    if (!bmc?.clearOverrideAfterBoot) return
    const done: string[] = []
    const failed: string[] = []
    if (bmc.bootMethod === 'virtual-media') {
      await deps.power.ejectMedia(machineId).then(() => done.push('virtual media ejected'),
        (err: Error) => failed.push(`eject failed: ${err.message}`))
    }
    await deps.power.setBootDevice(machineId, { device: 'none' }).then(() => done.push('boot override cleared'),
      (err: Error) => failed.push(`clearing the boot override failed: ${err.message}`))
    // The mark stays when something failed: the next boot tries again.
    if (failed.length === 0) await deps.inventory.bmcs.setClearOverrideAfterBoot(machineId, false)
    deps.lifecycle.record(machineId, 'power', `after the network boot: ${[...done, ...failed].join('; ')}`,
      { action: 'after-boot', ok: failed.length === 0, done, failed })
  }

  return {
    start() {
      unsubscribe = deps.bus.subscribe((e) => {
        if (!e.machineId || !BOOTED.has(e.type) || running.has(e.machineId)) return
        const id = e.machineId
        const p = tidy(id).catch((err) => deps.log.warn({ machineId: id, err: (err as Error).message }, 'after-boot clean-up failed'))
          .finally(() => running.delete(id))
        running.set(id, p)
      })
    },
    async stop() {
      unsubscribe?.()
      unsubscribe = null
      await Promise.all([...running.values()])
    },
    tidy,
  }
}
