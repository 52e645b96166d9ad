import type { HardwareBounds, Machine } from '../inventory/index.js'
import { boundsOf, mergeBounds } from './hints.js'
import { compileNode, parseSelector } from './parser.js'

/** A compiled selector (or the conjunction of a class's selectors): parse once, match many machines. */
export interface Selector {
  readonly sources: readonly string[]
  matches(machine: Machine): boolean
  /** What SQL can check first (hardware summary columns). */
  readonly bounds: HardwareBounds
}

/** Compiles one selector or a list that must all hold; an empty list matches every machine. Throws RB_ERR_VALIDATION. */
export function compileSelector(sources: string | readonly string[]): Selector {
  const list = typeof sources === 'string' ? [sources] : [...sources]
  const tests: ((m: unknown) => boolean)[] = []
  let bounds: HardwareBounds = {}
  for (const source of list) {
    const node = parseSelector(source)
    tests.push(compileNode(node))
    bounds = mergeBounds(bounds, boundsOf(node))
  }
  return {
    sources: list,
    bounds,
    matches: (machine) => tests.every((t) => t(machine)),
  }
}

/** Both selectors must hold. */
export function andSelectors(a: Selector, b: Selector): Selector {
  return {
    sources: [...a.sources, ...b.sources],
    bounds: mergeBounds(a.bounds, b.bounds),
    matches: (m) => a.matches(m) && b.matches(m),
  }
}
