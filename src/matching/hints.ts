import type { HardwareBounds, NumberRange } from '../inventory/index.js'
import type { Node } from './parser.js'

// Bounds on the hardware summary columns implied by a selector, so SQL can skip machines that cannot match
// before the selector runs in JS. Only comparisons joined by `and` at the top count (never under `or`/`not`),
// and bounds are loosened to whole column units: the SQL pre-filter may let extra machines through, never
// keep a matching one out.

export function boundsOf(node: Node, into: HardwareBounds = {}): HardwareBounds {
  if (node.kind === 'and') {
    for (const item of node.items) boundsOf(item, into)
    return into
  }
  if (node.kind !== 'cmp' || !node.path.hint || typeof node.value !== 'number') return into
  const { column, factor } = node.path.hint
  const v = node.value * factor
  const range: NumberRange = { ...into[column] }
  const tighten = (key: 'min' | 'max', value: number) => {
    const cur = range[key]
    range[key] = cur === undefined ? value : key === 'min' ? Math.max(cur, value) : Math.min(cur, value)
  }
  switch (node.op) {
    case '>=':
    case '>':
      tighten('min', Math.floor(v))
      break
    case '<=':
    case '<':
      tighten('max', Math.ceil(v))
      break
    case '==':
      tighten('min', Math.floor(v))
      tighten('max', Math.ceil(v))
      break
    default:
      return into
  }
  into[column] = range
  return into
}

export function mergeBounds(a: HardwareBounds, b: HardwareBounds): HardwareBounds {
  const out: HardwareBounds = { ...a }
  for (const [k, r] of Object.entries(b) as [keyof HardwareBounds, NumberRange][]) {
    const cur = out[k] ?? {}
    const min = cur.min === undefined ? r.min : r.min === undefined ? cur.min : Math.max(cur.min, r.min)
    const max = cur.max === undefined ? r.max : r.max === undefined ? cur.max : Math.min(cur.max, r.max)
    out[k] = { ...(min !== undefined ? { min } : {}), ...(max !== undefined ? { max } : {}) }
  }
  return out
}
