// Kernel log lines kept in memory per peer IP: the last `perMachineLines` lines of each of at most `maxPeers` peers,
// and at most `maxBytes` in all. The senders are not authenticated, so the byte bound is what holds: every line is
// charged its approximate heap cost (lineCost), and past the bound the peer written to least recently loses its
// oldest lines first, then the peer itself; the peer being written goes last. The lead maps peers to machines.
import type { Registry } from '../../metrics.js'
import type { KernelLogLine, KernelLogRecord, KernelLogTransport } from './kernel-log-line.js'
import { createKernelLogStoreMetrics, type KernelLogStoreMetrics } from './metrics.js'

export interface KernelLogStoreOptions {
  /** Lines kept per peer (default 2000). */
  perMachineLines?: number
  /** Peers kept (default 1024). */
  maxPeers?: number
  /** Approximate heap bytes of all lines and peers together (default 64 MiB); see lineCost. */
  maxBytes?: number
  /** Where the store's gauges and eviction counters go; none: stats() only. */
  metrics?: Registry
  /** Called when a subscriber throws (the others still run). */
  onListenerError?: (err: unknown) => void
}

export interface KernelLogQuery {
  /** Only lines after this cursor (exclusive); the oldest `limit` of them, for paging forward. */
  since?: number
  /** At most this many lines: the newest ones when `since` is absent. */
  limit?: number
}

/** Hears every appended line; `line.transport` says how it came (count only TCP lines for state changes). */
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
  /** Approximate heap bytes held (lines and per-peer bookkeeping), never above maxBytes after an append. */
  bytes: number
  maxBytes: number
  /** Peers dropped whole: past maxPeers, or when the byte bound took their last line. */
  evictedPeers: number
  /** Lines dropped to stay under maxBytes (a peer's own ring turning over is not counted). */
  evictedLines: number
  evictedBytes: number
  listenerErrors: number
}

export interface KernelLogStore {
  /** Keeps one line for `peer` and tells subscribers; returns the line with its cursor and transport. */
  append(peer: string, record: KernelLogRecord, transport: KernelLogTransport): KernelLogLine
  /** The peer's lines, oldest first. */
  lines(peer: string, query?: KernelLogQuery): KernelLogLine[]
  peers(): KernelLogPeerSummary[]
  /** Drops a peer's lines (e.g. when its machine is released). */
  forget(peer: string): void
  /** Live tail: the listener hears every appended line; call the returned function to stop. */
  subscribe(listener: KernelLogListener): () => void
  stats(): KernelLogStoreStats
}

/**
 * Heap charged per line besides its strings: the object (ten properties), heap numbers for receivedAt, seq and clock,
 * and up to two ring slots (a ring's array grows by doubling). Each string is charged STRING_OVERHEAD_BYTES and two
 * bytes a character (V8 stores ASCII and Latin-1 in one). Measured on Node 20 x64, a line costs 0.5 to 1 of its
 * charge; kernel-log-store.test.ts checks the heap against stats().bytes.
 */
export const LINE_OVERHEAD_BYTES = 176
export const STRING_OVERHEAD_BYTES = 24
/** Heap charged per peer besides its address: the Map entry, the ring and its first array (measured about 200). */
export const PEER_OVERHEAD_BYTES = 256

const stringCost = (s: string | undefined): number => (s === undefined ? 0 : STRING_OVERHEAD_BYTES + 2 * s.length)

/** Approximate heap bytes of one line, an upper bound for what V8 holds for it. */
export function lineCost(line: KernelLogRecord): number {
  return LINE_OVERHEAD_BYTES + stringCost(line.msg) + stringCost(line.facility) + stringCost(line.priority) +
    stringCost(line.talosLevel) + stringCost(line.talosTime)
}

const peerCost = (peer: string): number => PEER_OVERHEAD_BYTES + stringCost(peer)

/** A peer's lines: a circular buffer that grows by doubling up to `capacity` and can give up its oldest line. */
class Ring {
  private items: Array<KernelLogLine | undefined> = new Array<KernelLogLine | undefined>(4)
  private head = 0
  private count = 0
  /** Sum of lineCost over the lines held. */
  bytes = 0

  constructor(private readonly capacity: number) {}

  get size(): number {
    return this.count
  }

  /** Adds a line; returns the oldest one when the ring was full and it had to go. */
  push(line: KernelLogLine, cost: number): KernelLogLine | undefined {
    const dropped = this.count === this.capacity ? this.shift() : undefined
    if (this.count === this.items.length) this.grow()
    this.items[(this.head + this.count) % this.items.length] = line
    this.count++
    this.bytes += cost
    return dropped
  }

  /** Removes and returns the oldest line. */
  shift(): KernelLogLine | undefined {
    if (this.count === 0) return undefined
    const line = this.items[this.head]
    this.items[this.head] = undefined
    this.head = (this.head + 1) % this.items.length
    this.count--
    if (line) this.bytes -= lineCost(line)
    return line
  }

  private grow(): void {
    const next = new Array<KernelLogLine | undefined>(Math.min(this.capacity, this.items.length * 2))
    for (let i = 0; i < this.count; i++) next[i] = this.at(i)
    this.items = next
    this.head = 0
  }

  /** The i-th oldest line. */
  at(i: number): KernelLogLine {
    return this.items[(this.head + i) % this.items.length] as KernelLogLine
  }

  newest(): KernelLogLine | undefined {
    return this.count === 0 ? undefined : this.at(this.count - 1)
  }

  /** Index of the first line whose cursor is greater than `cursor` (cursors only grow, so binary search). */
  firstAfter(cursor: number): number {
    let lo = 0
    let hi = this.count
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
  const maxBytes = Math.max(1, Math.floor(options.maxBytes ?? 64 * 1024 * 1024))
  const metrics: KernelLogStoreMetrics | null = options.metrics ? createKernelLogStoreMetrics(options.metrics) : null
  // Map order is recency order: a peer is moved to the end on every append, evicted from the front.
  const rings = new Map<string, Ring>()
  const listeners = new Set<KernelLogListener>()
  let cursor = 0
  let bytes = 0
  let lineCount = 0
  let evictedPeers = 0
  let evictedLines = 0
  let evictedBytes = 0
  let listenerErrors = 0

  function removePeer(peer: string, ring: Ring): void {
    rings.delete(peer)
    bytes -= ring.bytes + peerCost(peer)
    lineCount -= ring.size
  }

  function evictPeer(peer: string, ring: Ring): void {
    removePeer(peer, ring)
    evictedPeers++
    metrics?.evictedPeers.inc()
  }

  /** Takes oldest lines from the least recently written peers until the store fits in maxBytes. */
  function evictOverBound(): void {
    let lines = 0
    let freed = 0
    while (bytes > maxBytes) {
      const oldest = rings.entries().next()
      if (oldest.done) break
      const [peer, ring] = oldest.value
      const line = ring.shift()
      if (line) {
        const cost = lineCost(line)
        bytes -= cost
        lineCount--
        lines++
        freed += cost
      }
      if (ring.size === 0) evictPeer(peer, ring)
    }
    if (lines > 0) {
      evictedLines += lines
      evictedBytes += freed
      metrics?.evictedLines.inc(lines)
      metrics?.evictedBytes.inc(freed)
    }
  }

  function publishGauges(): void {
    metrics?.bytes.set(bytes)
    metrics?.lines.set(lineCount)
    metrics?.peers.set(rings.size)
  }

  return {
    append(peer, record, transport) {
      let ring = rings.get(peer)
      if (ring) {
        rings.delete(peer)
      } else {
        ring = new Ring(perPeer)
        if (rings.size >= maxPeers) {
          const oldest = rings.entries().next()
          if (!oldest.done) evictPeer(oldest.value[0], oldest.value[1])
        }
        bytes += peerCost(peer)
      }
      rings.set(peer, ring)
      const line: KernelLogLine = { cursor: ++cursor, transport, ...record }
      const cost = lineCost(record)
      const turnedOver = ring.push(line, cost)
      bytes += cost
      lineCount++
      if (turnedOver) {
        bytes -= lineCost(turnedOver)
        lineCount--
      }
      evictOverBound()
      publishGauges()
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
      const ring = rings.get(peer)
      if (!ring) return
      removePeer(peer, ring)
      publishGauges()
    },

    subscribe(listener) {
      listeners.add(listener)
      return () => {
        listeners.delete(listener)
      }
    },

    stats() {
      return { peers: rings.size, lines: lineCount, bytes, maxBytes, evictedPeers, evictedLines, evictedBytes, listenerErrors }
    },
  }
}
