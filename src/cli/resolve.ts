import { NotFoundError } from '../errors.js'
import { isMac, isUuid, type Inventory, type Machine } from '../inventory/index.js'

/** A tech names a machine however they know it: id, name, MAC, SMBIOS uuid or serial. */
export async function resolveMachine(inventory: Inventory, ref: string): Promise<Machine> {
  const m =
    (await inventory.machines.get(ref)) ??
    (await inventory.machines.byName(ref)) ??
    (isMac(ref) ? await inventory.machines.byMac(ref) : null) ??
    (isUuid(ref) ? await inventory.machines.byUuid(ref) : null) ??
    (await inventory.machines.bySerial(ref))
  if (!m) throw new NotFoundError('machine', ref)
  return m
}
