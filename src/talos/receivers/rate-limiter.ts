// A token bucket per peer key, for senders that have not authenticated: each key earns `ratePerSecond` tokens up to
// `burst`. At most `maxKeys` buckets are kept (least recently used forgotten first), so a sender cycling through
// addresses costs a bounded map; a forgotten key starts again with a full bucket, which is what an idle one has anyway.

export interface PeerRateLimiterOptions {
  ratePerSecond: number
  burst: number
  /** Buckets kept; the least recently used is forgotten past this. */
  maxKeys: number
  /** Milliseconds; injected so tests can move time. */
  now: () => number
}

export interface PeerRateLimiter {
  /** Takes one token: true when `key` is within its rate. */
  take(key: string): boolean
  /**
   * Reserves one token, even one not yet earned: the milliseconds to wait before using it (0: now), or null when that
   * wait would exceed `maxWaitMs` (then nothing is reserved).
   */
  reserve(key: string, maxWaitMs: number): number | null
  /** Milliseconds until `key` holds `tokens` tokens (at most `burst`); 0 when it holds them now. */
  msUntil(key: string, tokens: number): number
  /** Buckets held now. */
  readonly size: number
  /** Buckets forgotten because `maxKeys` were held. */
  readonly forgotten: number
}

interface Bucket {
  tokens: number
  at: number
}

export function createPeerRateLimiter(options: PeerRateLimiterOptions): PeerRateLimiter {
  const rate = Math.max(options.ratePerSecond, Number.MIN_VALUE)
  const burst = Math.max(1, options.burst)
  const maxKeys = Math.max(1, Math.floor(options.maxKeys))
  // Map order is recency order: touched buckets move to the end, the front is forgotten first.
  const buckets = new Map<string, Bucket>()
  let forgotten = 0

  /** The key's bucket, refilled up to now and moved to the most recent end. */
  function bucket(key: string): Bucket {
    const t = options.now()
    let b = buckets.get(key)
    if (b) {
      buckets.delete(key)
      // A clock that steps back earns nothing rather than a negative amount.
      if (t > b.at) {
        b.tokens = Math.min(burst, b.tokens + ((t - b.at) * rate) / 1000)
        b.at = t
      }
    } else {
      b = { tokens: burst, at: t }
      if (buckets.size >= maxKeys) {
        const oldest = buckets.keys().next()
        if (!oldest.done) {
          buckets.delete(oldest.value)
          forgotten++
        }
      }
    }
    buckets.set(key, b)
    return b
  }

  return {
    take(key) {
      const b = bucket(key)
      if (b.tokens < 1) return false
      b.tokens -= 1
      return true
    },

    reserve(key, maxWaitMs) {
      const b = bucket(key)
      const waitMs = b.tokens >= 1 ? 0 : Math.ceil(((1 - b.tokens) * 1000) / rate)
      if (waitMs > maxWaitMs) return null
      b.tokens -= 1
      return waitMs
    },

    msUntil(key, tokens) {
      const b = bucket(key)
      const want = Math.min(burst, tokens)
      return b.tokens >= want ? 0 : Math.ceil(((want - b.tokens) * 1000) / rate)
    },

    get size() {
      return buckets.size
    },

    get forgotten() {
      return forgotten
    },
  }
}
