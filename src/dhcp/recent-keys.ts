// "Have I said this lately?" for things keyed by what a client sends (a MAC, a giaddr): at most `max` keys are
// remembered, the oldest forgotten first, so a LAN forging endless values costs bounded memory.

export interface RecentKeys {
  /** True the first time `key` is seen, and again once `windowMs` has passed since it last said true. */
  fresh(key: string): boolean
  readonly size: number
}

export function createRecentKeys(o: { max: number; windowMs: number; now: () => number }): RecentKeys {
  const seen = new Map<string, number>()
  return {
    fresh(key) {
      const t = o.now()
      const at = seen.get(key)
      if (at !== undefined && t - at < o.windowMs) return false
      // Re-inserted at the end: insertion order is age order, the first key the oldest.
      seen.delete(key)
      seen.set(key, t)
      while (seen.size > o.max) seen.delete(seen.keys().next().value!)
      return true
    },
    get size() {
      return seen.size
    },
  }
}
