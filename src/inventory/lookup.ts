import { NotFoundError, RackbootError } from '../errors.js'
import { isMac, isUuid } from './identifiers.js'
import type { Inventory } from './repositories.js'
import type { Machine } from './types.js'

/** Machines a serial may name before the conflict stops listing them. */
const SERIAL_CANDIDATES = 10

/**
 * A machine by however a person knows it: id, a MAC, its SMBIOS uuid, its name, and (when `serial` is set) a serial
 * that only one machine has. NotFoundError (RB_ERR_MACHINE_NOT_FOUND, naming the ref) when nothing matches;
 * RB_ERR_CONFLICT naming the candidates' ids when the serial is several machines'.
 */
export async function findMachineByRef(inventory: Pick<Inventory, 'machines'>, ref: string, options: { serial?: boolean } = {}): Promise<Machine> {
  const m = (await inventory.machines.get(ref))
    ?? (isMac(ref) ? await inventory.machines.byMac(ref) : null)
    ?? (isUuid(ref) ? await inventory.machines.byUuid(ref) : null)
    ?? (await inventory.machines.byName(ref))
  if (m) return m
  if (options.serial) {
    // Serials are not unique in the wild ("To Be Filled By O.E.M."): one match is the machine, several are a question.
    const { items } = await inventory.machines.list({ serial: ref, limit: SERIAL_CANDIDATES + 1 })
    if (items.length === 1) return items[0]!
    if (items.length > 1) {
      const ids = items.slice(0, SERIAL_CANDIDATES).map((c) => c.id)
      const more = items.length > SERIAL_CANDIDATES ? ' and more' : ''
      throw new RackbootError('RB_ERR_CONFLICT', `serial '${ref}' belongs to more than one machine (${ids.join(', ')}${more}): name one by id, name or MAC`, {
        details: { ref, candidates: ids, more: items.length > SERIAL_CANDIDATES },
      })
    }
  }
  throw new NotFoundError('machine', ref)
}
