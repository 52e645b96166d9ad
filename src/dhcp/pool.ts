// The in-memory index of one subnet's addresses: who holds what until when. It is the authority on the hot path
// (this server is the only writer for its segments); every binding change is written through to the repository.
import type { Lease, LeaseState } from '../inventory/types.js'
import { intToIp, ipToInt } from './options.js'
import { isHostAddress, type Subnet } from './subnet.js'

export interface ClientKey {
  /** Lower-case colon-separated MAC. */
  mac: string
  /** Option 61 as lower-case hex, or null. */
  clientId: string | null
}

export interface PoolEntry {
  ip: number
  mac: string
  clientId: string | null
  state: LeaseState
  expiresAt: number
  hostname: string | null
  updatedAt: number
  /** On an offer: the address the client still holds bound elsewhere, released when the offer is acknowledged. */
  replaces?: number
}

/** Holds the address at `now`: offered or bound and not expired, or declined and still on probation. */
export function isActive(e: PoolEntry, now: number): boolean {
  return (e.state === 'offered' || e.state === 'bound' || e.state === 'declined') && e.expiresAt > now
}

const hwClientId = (mac: string): string => `01${mac.replace(/:/g, '')}`

/**
 * Whether an entry belongs to this client. Client id when both sides have one (RFC 2131 §4.2), else the MAC. The
 * firmware, iPXE and the installed OS of one machine often differ only in whether they send 61 = 01+MAC: that counts
 * as the same client.
 */
export function sameClient(e: Pick<PoolEntry, 'mac' | 'clientId'>, c: ClientKey): boolean {
  if (e.clientId && c.clientId) {
    if (e.clientId === c.clientId) return true
    return e.mac === c.mac && (e.clientId === hwClientId(e.mac) || c.clientId === hwClientId(c.mac))
  }
  return e.mac === c.mac
}

export function toLease(e: PoolEntry, subnet: Subnet): Lease {
  return {
    ip: intToIp(e.ip),
    mac: e.mac,
    clientId: e.clientId,
    subnet: subnet.cidr,
    state: e.state,
    hostname: e.hostname,
    expiresAt: e.expiresAt,
    updatedAt: e.updatedAt,
  }
}

export class LeasePool {
  readonly subnet: Subnet
  private readonly byIp = new Map<number, PoolEntry>()
  private readonly byMac = new Map<string, PoolEntry>()
  private readonly byClientId = new Map<string, PoolEntry>()
  /** Addresses never handed out from the pool (server, routers) and reserved ones (with their owner). */
  private readonly excluded: Set<number>
  private reserved = new Map<number, ClientKey>()
  /** Next address that may never have been used: allocation is O(1) until the range has been walked once. */
  private fresh: number
  /** Rotating scan position for reusing expired or released addresses once the range is used up. */
  private scan: number

  /** Where never-used addresses start being handed out, and how many of the range are still unwalked. */
  private freshLeft: number

  /**
   * `startAt` (an offset into the range) spreads servers that share one database over the range, so they do not all
   * offer the same next address and have all but one claim refused.
   */
  constructor(subnet: Subnet, excluded: Iterable<string> = [], startAt = 0) {
    this.subnet = subnet
    this.excluded = new Set([...excluded].map(ipToInt).filter((n) => !Number.isNaN(n)))
    const size = subnet.rangeEnd - subnet.rangeStart + 1
    this.fresh = subnet.rangeStart + (Math.abs(Math.trunc(startAt)) % size)
    this.freshLeft = size
    this.scan = this.fresh
  }

  get size(): number {
    return this.subnet.rangeEnd - this.subnet.rangeStart + 1
  }

  /**
   * Loads stored leases (any state; expired ones still give a returning client its old address). A lease older than
   * the entry already here is skipped, unless `force` (the store just said what it holds: it is the truth).
   */
  load(leases: Iterable<Lease>, force = false): void {
    for (const l of leases) {
      const ip = ipToInt(l.ip)
      if (Number.isNaN(ip) || !isHostAddress(this.subnet, ip)) continue
      const prev = this.byIp.get(ip)
      if (prev && prev.updatedAt > l.updatedAt && !force) continue
      if (prev) this.drop(prev)
      this.put({ ip, mac: l.mac, clientId: l.clientId, state: l.state, expiresAt: l.expiresAt, hostname: l.hostname, updatedAt: l.updatedAt })
    }
  }

  /** Replaces the reserved addresses of this subnet. */
  setReservations(reserved: Map<number, ClientKey>): void {
    this.reserved = reserved
  }

  reservedFor(ip: number): ClientKey | undefined {
    return this.reserved.get(ip)
  }

  entry(ip: number): PoolEntry | undefined {
    return this.byIp.get(ip)
  }

  /** The entry that currently records this client, whatever its state. */
  clientEntry(c: ClientKey): PoolEntry | undefined {
    if (c.clientId) {
      const e = this.byClientId.get(c.clientId)
      if (e && this.byIp.get(e.ip) === e && sameClient(e, c)) return e
    }
    const e = this.byMac.get(c.mac)
    if (e && this.byIp.get(e.ip) === e && sameClient(e, c)) return e
    return undefined
  }

  inRange(ip: number): boolean {
    return ip >= this.subnet.rangeStart && ip <= this.subnet.rangeEnd
  }

  /**
   * May `c` have this address at `now`? It must be a host address of the subnet, not excluded, not reserved for
   * someone else, inside the range unless reserved for `c`, and not held by another client.
   */
  available(ip: number, c: ClientKey, now: number): boolean {
    if (!isHostAddress(this.subnet, ip) || this.excluded.has(ip)) return false
    const owner = this.reserved.get(ip)
    if (owner) {
      if (!sameClient(owner, c)) return false
    } else if (!this.inRange(ip)) return false
    const e = this.byIp.get(ip)
    // A declined address stays out of use for everyone, the decliner included, until its probation ends.
    return !e || !isActive(e, now) || (e.state !== 'declined' && sameClient(e, c))
  }

  /** The active holder of an address, if any. */
  holder(ip: number, now: number): PoolEntry | undefined {
    const e = this.byIp.get(ip)
    return e && isActive(e, now) ? e : undefined
  }

  private free(ip: number, now: number): boolean {
    if (this.excluded.has(ip) || this.reserved.has(ip)) return false
    const e = this.byIp.get(ip)
    return !e || !isActive(e, now)
  }

  /** A free address from the range: never-used ones first, then expired or released ones. */
  allocate(now: number): number | undefined {
    const { rangeEnd, rangeStart } = this.subnet
    while (this.freshLeft > 0) {
      const ip = this.fresh
      this.fresh = this.fresh >= rangeEnd ? rangeStart : this.fresh + 1
      this.freshLeft--
      if (!this.byIp.has(ip) && !this.excluded.has(ip) && !this.reserved.has(ip)) return ip
    }
    const n = rangeEnd - rangeStart + 1
    for (let i = 0; i < n; i++) {
      const ip = this.scan
      this.scan = this.scan >= rangeEnd ? rangeStart : this.scan + 1
      if (this.free(ip, now)) return ip
    }
    return undefined
  }

  put(e: PoolEntry): void {
    this.byIp.set(e.ip, e)
    this.byMac.set(e.mac, e)
    if (e.clientId) this.byClientId.set(e.clientId, e)
  }

  /** Forgets an entry (an offer the client turned down), if it is still the current one. */
  drop(e: PoolEntry): void {
    if (this.byIp.get(e.ip) === e) this.byIp.delete(e.ip)
    if (this.byMac.get(e.mac) === e) this.byMac.delete(e.mac)
    if (e.clientId && this.byClientId.get(e.clientId) === e) this.byClientId.delete(e.clientId)
  }

  /** Addresses in use at `now` within the range, and the range size. */
  usage(now: number): { used: number; total: number } {
    let used = 0
    for (const e of this.byIp.values()) if (this.inRange(e.ip) && isActive(e, now)) used++
    return { used, total: this.size }
  }
}
