// Kernel log lines kept in memory per peer IP: a ring of the last `perMachineLines` lines for each of at most
// `maxPeers` peers (the peer written to least recently is forgotten first). Memory is bounded by
// perMachineLines × maxPeers lines of at most MAX_MSG_CHARS each. The lead maps peers to machines.
import type { KernelLogLine, KernelLogRecord } from './kernel-log-line.js'

export interface KernelLogStoreOptions {
  /** Lines kept per peer (default 2000). */
  perMachineLines?: number
  /** Peers kept (default 1024). */
  maxPeers?: number
  /** Called when a subscriber throws (the others still run). */
  onListenerError?: (err: unknown) => void
}

export interface KernelLogQuery {
  /** Only lines after this cursor (exclusive); the oldest `limit` of them, for paging forward. */
  since?: number
  /** At most this many lines: the newest ones when `since` is absent. */
  limit?: number
}

export type KernelLogListener = (peer: string, line: KernelLogLine) => void

export interface KernelLogPeerSummary {
  peer: string
  lines: number
  /** Cursor of the newest line. */
  lastCursor: number
  lastReceivedAt: number
}

export interface KernelLogStoreStats {
  peers: number
  lines: number
  evictedPeers: number
  listenerErrors: number
}

export interface KernelLogStore {
  /** Keeps one line for `peer` and tells subscribers; returns the line with its cursor. */
  append(peer: string, record: KernelLogRecord): KernelLogLine
  /** The peer's lines, oldest first. */
  lines(peer: string, query?: KernelLogQuery): KernelLogLine[]
  peers(): KernelLogPeerSummary[]
  /** Drops a peer's lines (e.g. when its machine is released). */
  forget(peer: string): void
  /** Live tail: the listener hears every appended line; call the returned function to stop. */
  subscribe(listener: KernelLogListener): () => void
  stats(): KernelLogStoreStats
}

class Ring {
  private readonly items: KernelLogLine[] = []
  private start = 0

  constructor(private readonly capacity: number) {}

  get size(): number {
    return this.items.length
  }

  push(line: KernelLogLine): void {
    if (this.items.length < this.capacity) {
      this.items.push(line)
    } else {
      this.items[this.start] = line
      this.start = (this.start + 1) % this.capacity
    }
  }

  /** The i-th oldest line. */
  at(i: number): KernelLogLine {
    return this.items[(this.start + i) % this.items.length] as KernelLogLine
  }

  newest(): KernelLogLine | undefined {
    return this.items.length === 0 ? undefined : this.at(this.items.length - 1)
  }

  /** Index of the first line whose cursor is greater than `cursor` (cursors only grow, so binary search). */
  firstAfter(cursor: number): number {
    let lo = 0
    let hi = this.items.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.at(mid).cursor <= cursor) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  slice(from: number, to: number): KernelLogLine[] {
    const out: KernelLogLine[] = []
    for (let i = from; i < to; i++) out.push(this.at(i))
    return out
  }
}

export function createKernelLogStore(options: KernelLogStoreOptions = {}): KernelLogStore {
  const perPeer = Math.max(1, Math.floor(options.perMachineLines ?? 2000))
  const maxPeers = Math.max(1, Math.floor(options.maxPeers ?? 1024))
  // Map order is recency order: a peer is moved to the end on every append, evicted from the front.
  const rings = new Map<string, Ring>()
  const listeners = new Set<KernelLogListener>()
  let cursor = 0
  let evictedPeers = 0
  let listenerErrors = 0

  return {
    append(peer, record) {
      let ring = rings.get(peer)
      if (ring) {
        rings.delete(peer)
      } else {
        ring = new Ring(perPeer)
        if (rings.size >= maxPeers) {
          const oldest = rings.keys().next()
          if (!oldest.done) {
            rings.delete(oldest.value)
            evictedPeers++
          }
        }
      }
      rings.set(peer, ring)
      const line: KernelLogLine = { cursor: ++cursor, ...record }
      ring.push(line)
      for (const listener of listeners) {
        try {
          listener(peer, line)
        } catch (err) {
          listenerErrors++
          options.onListenerError?.(err)
        }
      }
      return line
    },

    lines(peer, query = {}) {
      const ring = rings.get(peer)
      if (!ring) return []
      const limit = query.limit === undefined ? ring.size : Math.max(0, Math.floor(query.limit))
      if (query.since !== undefined) {
        const from = ring.firstAfter(query.since)
        return ring.slice(from, Math.min(ring.size, from + limit))
      }
      return ring.slice(Math.max(0, ring.size - limit), ring.size)
    },

    peers() {
      const out: KernelLogPeerSummary[] = []
      for (const [peer, ring] of rings) {
        const newest = ring.newest()
        if (newest) out.push({ peer, lines: ring.size, lastCursor: newest.cursor, lastReceivedAt: newest.receivedAt })
      }
      return out
    },

    forget(peer) {
      rings.delete(peer)
    },

    subscribe(listener) {
      listeners.add(listener)
      return () => {
        listeners.delete(listener)
      }
    },

    stats() {
      let lines = 0
      for (const ring of rings.values()) lines += ring.size
      return { peers: rings.size, lines, evictedPeers, listenerErrors }
    },
  }
}
