import { NotFoundError } from '../errors.js'
import { isMac, isUuid } from './identifiers.js'
import type { Inventory } from './repositories.js'
import type { Machine } from './types.js'

/**
 * A machine by however a person knows it: id, a MAC, its SMBIOS uuid, its name, and (when `serial` is set) a serial
 * that only one machine has. NotFoundError otherwise.
 */
export async function findMachineByRef(inventory: Pick<Inventory, 'machines'>, ref: string, options: { serial?: boolean } = {}): Promise<Machine> {
  const m = (await inventory.machines.get(ref))
    ?? (isMac(ref) ? await inventory.machines.byMac(ref) : null)
    ?? (isUuid(ref) ? await inventory.machines.byUuid(ref) : null)
    ?? (await inventory.machines.byName(ref))
    ?? (options.serial ? await inventory.machines.bySerial(ref) : null)
  if (!m) throw new NotFoundError('machine', ref)
  return m
}
