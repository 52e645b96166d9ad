import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { normalizeMac, isMac } from '../inventory/index.js'

// The kernel's neighbour table: which MAC answered for an address on a directly attached segment. Where rackboot
// hands out no addresses (ProxyDHCP beside a site's DHCP server) this is what the network says about a client.

export interface NeighbourTable {
  /** The MAC the kernel has resolved `ip` to (a complete entry), or null. */
  macOf(ip: string): Promise<string | null>
}

/** Parses /proc/net/arp: complete entries only (flag 0x2), lower-case colon MACs. */
export function parseProcArp(text: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f.length < 4) continue
    const [ip, , flags, mac] = f as [string, string, string, string]
    if ((Number.parseInt(flags, 16) & 0x2) === 0 || !isMac(mac) || mac === '00:00:00:00:00:00') continue
    out.set(ip, normalizeMac(mac))
  }
  return out
}

/** Parses `ip -j -6 neigh show`: entries that are not FAILED or INCOMPLETE. */
export function parseIpNeighJson(text: string): Map<string, string> {
  const out = new Map<string, string>()
  let rows: unknown
  try {
    rows = JSON.parse(text)
  } catch {
    return out
  }
  if (!Array.isArray(rows)) return out
  for (const r of rows as Array<{ dst?: unknown; lladdr?: unknown; state?: unknown }>) {
    const states = Array.isArray(r.state) ? (r.state as unknown[]).map(String) : []
    if (typeof r.dst !== 'string' || typeof r.lladdr !== 'string' || !isMac(r.lladdr)) continue
    if (states.includes('FAILED') || states.includes('INCOMPLETE')) continue
    out.set(r.dst.toLowerCase(), normalizeMac(r.lladdr))
  }
  return out
}

/**
 * Reads the table at most once per `maxAgeMs` (a boot storm asks thousands of times a second), IPv4 from
 * /proc/net/arp, IPv6 through `ip -j -6 neigh` (iproute2).
 */
export function createKernelNeighbourTable(options: { maxAgeMs?: number; now?: () => number; readTable?: (family: 4 | 6) => Promise<Map<string, string>> } = {}): NeighbourTable {
  const maxAge = options.maxAgeMs ?? 1000
  const now = options.now ?? Date.now
  // Each read is numbered: a lookup that misses reads again unless a read begun after the lookup began is cached,
  // since only such a read surely saw the entry the client's own connection made.
  let reads = 0
  const cache: Record<4 | 6, { at: number; seq: number; table: Promise<Map<string, string>> } | null> = { 4: null, 6: null }
  const read = options.readTable ?? ((family: 4 | 6): Promise<Map<string, string>> =>
    family === 4
      ? readFile('/proc/net/arp', 'utf8').then(parseProcArp, () => new Map())
      : new Promise((resolve) => {
          execFile('ip', ['-j', '-6', 'neigh', 'show'], { timeout: 2000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout) => resolve(err ? new Map() : parseIpNeighJson(stdout)))
        }))
  return {
    async macOf(address) {
      // A link-local peer comes with its zone (fe80::1%eth0); the table lists the address alone.
      const ip = address.split('%')[0]!
      const family = isIP(ip)
      if (family !== 4 && family !== 6) return null
      const begun = reads
      const fresh = () => (cache[family] = { at: now(), seq: ++reads, table: read(family) })
      let c = cache[family]
      if (!c || now() - c.at > maxAge) c = fresh()
      const hit = (await c.table).get(ip.toLowerCase())
      if (hit) return hit
      c = cache[family]!
      if (c.seq <= begun) c = fresh()
      return (await c.table).get(ip.toLowerCase()) ?? null
    },
  }
}
