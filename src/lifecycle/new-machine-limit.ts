import { createPeerRateLimiter } from '../talos/receivers/rate-limiter.js'

// How many machines unauthenticated boots may add to the inventory: per source address and overall, per minute.
// A refused boot holds and asks again later; nothing is created, so a flood costs no rows.

export interface NewMachineLimit {
  /** Takes one creation for this address now; false when a bound says no (and which). */
  take(ip: string, now: number): { ok: true } | { ok: false; bound: 'per-address' | 'overall' }
}

/** Two token buckets (per address, at most `maxAddresses` kept; overall), each full at a minute's worth. */
export function createNewMachineLimit(options: { perAddressPerMinute: number; perMinute: number; maxAddresses?: number }): NewMachineLimit {
  let clock = 0
  const now = () => clock
  const perAddress = createPeerRateLimiter({ ratePerSecond: options.perAddressPerMinute / 60, burst: options.perAddressPerMinute, maxKeys: options.maxAddresses ?? 65_536, now })
  const overall = createPeerRateLimiter({ ratePerSecond: options.perMinute / 60, burst: options.perMinute, maxKeys: 1, now })
  return {
    take(ip, at) {
      clock = at
      // Both must have a token before either is spent: a refusal costs the other bound nothing.
      if (perAddress.msUntil(ip, 1) > 0) return { ok: false, bound: 'per-address' }
      if (overall.msUntil('*', 1) > 0) return { ok: false, bound: 'overall' }
      perAddress.take(ip)
      overall.take('*')
      return { ok: true }
    },
  }
}
