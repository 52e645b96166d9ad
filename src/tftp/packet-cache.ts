// Boot files cut into DATA packets once and shared. In a boot storm hundreds of machines fetch the same iPXE
// binary at the same blksize; each transfer reading and re-packing the file costs reads, allocations and garbage
// per block. A file is cached by identity (device, inode, size, mtime: a replaced or edited file is a new entry,
// never stale) and blksize, as one slab of ready packets whose block numbers wrap at 65536 like the wire's, so
// every transfer sends views into the same memory. Least recently used entries go once the total passes the bound.
import { packetize } from './packet.js'

export { packetize }

export interface PacketCacheOptions {
  /** Total bytes kept; 0 disables the cache. */
  maxBytes: number
  /** Larger files are not cached (streamed per transfer as before). Default: maxBytes / 2. */
  maxFileBytes?: number
  /** Told of every lookup: served from the cache, read into it, or not cacheable. */
  onLookup?: (result: 'hit' | 'miss' | 'skip') => void
}

export interface PacketCache {
  /**
   * The file's DATA packets for `blksize` (packet i is block i + 1), from the cache or built by reading the whole
   * file with `read` (the file's bytes, or its packets already cut, source.ts readPackets); null when the file is not cacheable (too large, or the cache is off). Concurrent callers for
   * the same entry share one read.
   */
  packets(identity: string, size: number, blksize: number, read: () => Promise<Buffer | readonly Buffer[]>): Promise<readonly Buffer[] | null>
  /**
   * Like packets(), without waiting for a whole-file read: a cached entry (or one an earlier request is building)
   * comes back as `packets`; on a miss the build starts for later requests and `packets` is null, so the caller
   * streams this one (the first transfer of a 40 MiB file would otherwise send nothing until all of it was read
   * and cut). `built`, for a build started here, resolves (never rejects) when it ends: to its error, or null;
   * `read` is in use until then.
   */
  lookup(identity: string, size: number, blksize: number, read: () => Promise<Buffer | readonly Buffer[]>): { packets: Promise<readonly Buffer[]> | null; built: Promise<unknown> | null }
  readonly bytes: number
  readonly entries: number
}

export function createPacketCache(o: PacketCacheOptions): PacketCache {
  const maxFile = o.maxFileBytes ?? Math.floor(o.maxBytes / 2)
  // Map order is recency order: a hit is deleted and set again.
  const entries = new Map<string, { size: number; packets: Promise<readonly Buffer[]> }>()
  let bytes = 0

  const evict = (): void => {
    for (const [key, e] of entries) {
      if (bytes <= o.maxBytes) break
      entries.delete(key)
      bytes -= e.size
    }
  }

  /** The entry's packets and whether this call started building them; null when not cacheable. */
  const find = (identity: string, size: number, blksize: number, read: () => Promise<Buffer | readonly Buffer[]>): { packets: Promise<readonly Buffer[]>; miss: boolean } | null => {
    if (o.maxBytes <= 0 || size > maxFile) {
      o.onLookup?.('skip')
      return null
    }
    const key = `${identity}|${blksize}`
    const hit = entries.get(key)
    if (hit) {
      entries.delete(key)
      entries.set(key, hit)
      o.onLookup?.('hit')
      return { packets: hit.packets, miss: false }
    }
    o.onLookup?.('miss')
    const built = read().then((data) => {
      const got = Buffer.isBuffer(data) ? data.length : data.reduce((n, p) => n + p.length - 4, 0)
      if (got !== size) throw new Error(`read ${got} of ${size} bytes (file changed while cached?)`)
      return Buffer.isBuffer(data) ? packetize(data, blksize) : data
    })
    const e = { size, packets: built }
    entries.set(key, e)
    bytes += size
    evict()
    // A failed read is not remembered: the next request tries again.
    built.catch(() => {
      if (entries.get(key) === e) {
        entries.delete(key)
        bytes -= size
      }
    })
    return { packets: built, miss: true }
  }

  return {
    async packets(identity, size, blksize, read) {
      const found = find(identity, size, blksize, read)
      return found ? await found.packets : null
    },
    lookup(identity, size, blksize, read) {
      const found = find(identity, size, blksize, read)
      if (found === null) return { packets: null, built: null }
      if (!found.miss) return { packets: found.packets, built: null }
      return { packets: null, built: found.packets.then(() => null, (err: unknown) => err ?? new Error('cache build failed')) }
    },
    get bytes() {
      return bytes
    },
    get entries() {
      return entries.size
    },
  }
}
