import type { Bmc, Inventory, Machine, MachineClass } from '../../../inventory/index.js'
import { compileSelector } from '../../../matching/index.js'
import { machineView, type MachineExtras } from './schemas.js'

/**
 * The class each machine matches, for a page of them: every class's selectors compiled once (chooseClass compiles
 * them per machine). Same rule as chooseClass: of the classes whose selectors all hold (a class with none, or one
 * that does not compile, never matches), the one with the most selectors, a tie broken by name.
 */
export function classMatcher(classes: readonly MachineClass[]): (m: Machine) => { name: string; profile: string | null } | null {
  const compiled = classes.flatMap((c) => {
    if (c.selectors.length === 0) return []
    try {
      return [{ name: c.name, profile: c.profile, specificity: c.selectors.length, selector: compileSelector(c.selectors) }]
    } catch {
      return []
    }
  }).sort((a, b) => b.specificity - a.specificity || a.name.localeCompare(b.name))
  return (m) => {
    const hit = compiled.find((c) => c.selector.matches(m))
    return hit ? { name: hit.name, profile: hit.profile } : null
  }
}

/**
 * What machineView needs beyond the machines themselves, for many at once (a page: three reads side by side, two
 * when the caller has read the classes already).
 */
export async function machineExtras(inventory: Inventory, machines: readonly Machine[], known?: readonly MachineClass[]): Promise<{ bmcs: Map<string, Bmc>; extras: (m: Machine) => MachineExtras }> {
  const ids = machines.map((m) => m.id)
  const [bmcs, addresses, classes] = await Promise.all([
    ids.length > 0 ? inventory.bmcs.many(ids) : Promise.resolve(new Map<string, Bmc>()),
    inventory.queries.addresses(ids, Date.now()),
    known ?? (ids.length > 0 ? inventory.classes.list() : Promise.resolve([] as MachineClass[])),
  ])
  const match = classMatcher(classes)
  return { bmcs, extras: (m) => ({ address: addresses.get(m.id) ?? null, class: match(m) }) }
}

/** Machines as the API shows them (BMC summary, last power state, address, class), in one batch. */
export async function machineViews(inventory: Inventory, machines: readonly Machine[], classes?: readonly MachineClass[]) {
  const { bmcs, extras } = await machineExtras(inventory, machines, classes)
  return machines.map((m) => machineView(m, bmcs.get(m.id) ?? null, extras(m)))
}

/** One machine as the API shows it. */
export async function oneMachineView(inventory: Inventory, m: Machine) {
  return (await machineViews(inventory, [m]))[0]!
}
