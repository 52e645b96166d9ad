import type { MachineState } from '../inventory/index.js'

// Which state changes exist, and the cause a transition is recorded with. Pure data: the service enforces it.
export const TRANSITIONS: Readonly<Record<MachineState, readonly MachineState[]>> = {
  new: ['discovered', 'maintenance'],
  discovered: ['ready', 'new', 'maintenance'],
  ready: ['provisioning', 'discovered', 'maintenance'],
  provisioning: ['installed', 'released', 'maintenance', 'failed'],
  // An installed machine that network-boots again may be reinstalled or quarantined (boot.installedReturns).
  installed: ['released', 'maintenance', 'provisioning', 'failed'],
  released: ['ready', 'maintenance'],
  maintenance: ['new', 'discovered', 'ready'],
  // Quarantined after the repair ladder: a person retries it, sends it to maintenance, or it is released (replace).
  failed: ['provisioning', 'maintenance', 'released'],
}

export function canTransition(from: MachineState, to: MachineState): boolean {
  return TRANSITIONS[from].includes(to)
}
