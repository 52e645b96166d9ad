import type { MachineState } from '../inventory/index.js'

// Which state changes exist, and the cause a transition is recorded with. Pure data: the service enforces it.
export const TRANSITIONS: Readonly<Record<MachineState, readonly MachineState[]>> = {
  new: ['discovered', 'maintenance'],
  discovered: ['ready', 'new', 'maintenance'],
  ready: ['provisioning', 'discovered', 'maintenance'],
  provisioning: ['installed', 'released', 'maintenance'],
  installed: ['released', 'maintenance'],
  released: ['ready', 'maintenance'],
  maintenance: ['new', 'discovered', 'ready'],
}

export function canTransition(from: MachineState, to: MachineState): boolean {
  return TRANSITIONS[from].includes(to)
}
