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
   * file with `read`; null when the file is not cacheable (too large, or the cache is off). Concurrent callers for
   * the same entry share one read.
   */
  packets(identity: string, size: number, blksize: number, read: () => Promise<Buffer>): Promise<readonly Buffer[] | null>
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

  return {
    async packets(identity, size, blksize, read) {
      if (o.maxBytes <= 0 || size > maxFile) {
        o.onLookup?.('skip')
        return null
      }
      const key = `${identity}|${blksize}`
      let e = entries.get(key)
      if (e) {
        entries.delete(key)
        entries.set(key, e)
        o.onLookup?.('hit')
        return e.packets
      }
      o.onLookup?.('miss')
      const built = read().then((data) => {
        if (data.length !== size) throw new Error(`read ${data.length} of ${size} bytes (file changed while cached?)`)
        return packetize(data, blksize)
      })
      e = { size, packets: built }
      entries.set(key, e)
      bytes += size
      evict()
      try {
        return await built
      } catch (err) {
        // A failed read is not remembered: the next request tries again.
        if (entries.get(key) === e) {
          entries.delete(key)
          bytes -= size
        }
        throw err
      }
    },
    get bytes() {
      return bytes
    },
    get entries() {
      return entries.size
    },
  }
}
