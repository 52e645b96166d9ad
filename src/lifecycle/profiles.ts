import type { Inventory, Machine, MachineClass, Profile } from '../inventory/index.js'
import { chooseClass } from '../matching/index.js'

export interface ResolvedProfile {
  profile: Profile | null
  /** The class the machine matched (its patches apply), or null. */
  machineClass: MachineClass | null
  /** How the profile was chosen, for the timeline and `classes test`. */
  reason: string
}

/** A machine's own profile wins; otherwise its most specific class's. Class patches apply either way. */
export async function resolveProfile(inventory: Inventory, machine: Machine): Promise<ResolvedProfile> {
  const classes = await inventory.classes.list()
  const choice = chooseClass(machine, classes)
  const machineClass = choice.chosen ? classes.find((c) => c.name === choice.chosen!.name) ?? null : null
  const tie = choice.tiedWith.length ? ` (tied with ${choice.tiedWith.join(', ')}; chosen by name)` : ''
  if (machine.profile) {
    return { profile: await inventory.profiles.get(machine.profile), machineClass, reason: `machine's own profile ${machine.profile}` }
  }
  if (machineClass?.profile) {
    return { profile: await inventory.profiles.get(machineClass.profile), machineClass, reason: `class ${machineClass.name}${tie} gives profile ${machineClass.profile}` }
  }
  return { profile: null, machineClass, reason: machineClass ? `class ${machineClass.name} names no profile` : 'no profile, and no class matches' }
}
