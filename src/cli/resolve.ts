import { findMachineByRef, type Inventory, type Machine } from '../inventory/index.js'

/** A tech names a machine however they know it: id, name, MAC, SMBIOS uuid or serial. */
export function resolveMachine(inventory: Inventory, ref: string): Promise<Machine> {
  return findMachineByRef(inventory, ref, { serial: true })
}
