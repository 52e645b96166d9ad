// How many machines unauthenticated boots may add to the inventory: per source address and overall, per minute.
// A refused boot holds and asks again later; nothing is created, so a flood costs no rows.

export interface NewMachineLimit {
  /** Takes one creation for this address now; false when a bound says no (and which). */
  take(ip: string, now: number): { ok: true } | { ok: false; bound: 'per-address' | 'overall' }
}

/** Token buckets refilled continuously; at most `maxAddresses` address buckets are kept (oldest dropped). */
export function createNewMachineLimit(options: { perAddressPerMinute: number; perMinute: number; maxAddresses?: number }): NewMachineLimit {
  const maxAddresses = options.maxAddresses ?? 65_536
  const perAddress = new Map<string, { tokens: number; at: number }>()
  const overall = { tokens: options.perMinute, at: 0 }
  const refill = (b: { tokens: number; at: number }, rate: number, now: number) => {
    b.tokens = Math.min(rate, b.tokens + ((now - b.at) / 60_000) * rate)
    b.at = now
  }
  return {
    take(ip, now) {
      let b = perAddress.get(ip)
      if (!b) {
        b = { tokens: options.perAddressPerMinute, at: now }
        if (perAddress.size >= maxAddresses) perAddress.delete(perAddress.keys().next().value!)
      } else {
        perAddress.delete(ip)
      }
      perAddress.set(ip, b)
      refill(b, options.perAddressPerMinute, now)
      if (overall.at === 0) overall.at = now
      refill(overall, options.perMinute, now)
      if (b.tokens < 1) return { ok: false, bound: 'per-address' }
      if (overall.tokens < 1) return { ok: false, bound: 'overall' }
      b.tokens -= 1
      overall.tokens -= 1
      return { ok: true }
    },
  }
}
