import type { Machine, MachineClass } from '../inventory/index.js'
import { compileSelector, type Selector } from './selector.js'

// Which class a machine belongs to, matchbox-style: of the classes whose every selector holds, the most specific
// (the most selectors) wins; a tie is broken by name, deterministically, and reported.

export interface SelectorResult {
  source: string
  ok: boolean
  /** A selector that does not parse never matches; the error says why. */
  error?: string
}

export interface ClassMatch {
  name: string
  profile: string | null
  matched: boolean
  specificity: number
  selectors: SelectorResult[]
}

export interface ClassChoice {
  chosen: ClassMatch | null
  /** Other classes that matched with the same specificity as the chosen one (the tie the name broke). */
  tiedWith: string[]
  all: ClassMatch[]
}

/** Selector texts kept compiled: classes are matched on every config fetch and boot, and change rarely. */
export const COMPILED_SELECTORS_KEPT = 1024

// Least recently used first (Map order). A selector that does not parse is kept as its error.
const compiled = new Map<string, Selector | { error: string }>()

/** The compiled selector for `source` (parsing it once while it stays in use), or why it does not parse. */
export function compiledSelector(source: string): Selector | { error: string } {
  let hit = compiled.get(source)
  if (hit) compiled.delete(source)
  else {
    try {
      hit = compileSelector(source)
    } catch (err) {
      hit = { error: (err as Error).message }
    }
  }
  compiled.set(source, hit)
  if (compiled.size > COMPILED_SELECTORS_KEPT) compiled.delete(compiled.keys().next().value!)
  return hit
}

/** How many selectors are kept compiled (tests). */
export function compiledSelectorCount(): number {
  return compiled.size
}

export function evaluateClass(machine: Machine, cls: MachineClass): ClassMatch {
  const selectors = cls.selectors.map((source): SelectorResult => {
    const selector = compiledSelector(source)
    if ('error' in selector) return { source, ok: false, error: selector.error }
    try {
      return { source, ok: selector.matches(machine) }
    } catch (err) {
      return { source, ok: false, error: (err as Error).message }
    }
  })
  return { name: cls.name, profile: cls.profile, matched: selectors.length > 0 && selectors.every((s) => s.ok), specificity: selectors.length, selectors }
}

export function chooseClass(machine: Machine, classes: readonly MachineClass[]): ClassChoice {
  const all = classes.map((c) => evaluateClass(machine, c))
  const matched = all.filter((m) => m.matched).sort((a, b) => b.specificity - a.specificity || a.name.localeCompare(b.name))
  const chosen = matched[0] ?? null
  return { chosen, tiedWith: chosen ? matched.slice(1).filter((m) => m.specificity === chosen.specificity).map((m) => m.name) : [], all }
}
