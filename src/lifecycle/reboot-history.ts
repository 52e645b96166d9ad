import type { Inventory } from '../inventory/index.js'

// When a machine was last rebooted through its BMC, from its timeline rather than from one process's memory: the
// minimum interval between reboots then holds across a server restart and between the server and the CLI, which
// both record their power operations there.

const REBOOTS = new Set(['cycle', 'reset', 'pxe-boot'])

export function rebootHistory(inventory: Pick<Inventory, 'events'>): (machineId: string) => Promise<number | null> {
  return async (machineId) => {
    const events = await inventory.events.list({ machineId, types: ['power'], limit: 50, newest: true })
    let last: number | null = null
    for (const e of events) {
      const action = e.data.action
      // `reboot`: an attempt the power manager marks as booting the machine (a PXE boot's power on included).
      if (e.data.reboot !== true && (typeof action !== 'string' || !REBOOTS.has(action))) continue
      // Failed reboots count too: a command that timed out may have rebooted the machine all the same. The command
      // went out when the attempt began, `ms` before the result was recorded.
      const ms = typeof e.data.ms === 'number' ? e.data.ms : 0
      const at = e.at - ms
      if (last === null || at > last) last = at
    }
    return last
  }
}
