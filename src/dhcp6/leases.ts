// In-memory IA_NA bindings for one address range: who holds which address until when. Bounded like DHCPv4's pool:
// each client (DUID) holds at most `maxIasPerClient` addresses, the table at most `maxLeases` entries (an IPv6 range
// is far larger than memory), an address advertised is held only `offerMs`. Persistence (and, with several servers
// on one database, the claims that decide who holds an address) is the caller's: index.ts and shared.ts.
import { createHash } from 'node:crypto'
import { bigintToIpv6, inPrefix, type Ipv6Prefix } from './address.js'

export type Lease6State = 'offered' | 'bound' | 'declined'

export interface Lease6 {
  address: bigint
  /** Client DUID, hex. Empty for a declined address (it belongs to nobody). */
  duid: string
  iaid: number
  state: Lease6State
  expiresAt: number
  /** The client's MAC when known (option 79 or a DUID-LL(T)). */
  mac: string | null
}

export interface Range6 {
  /** The on-link prefix (CONFIRM and REBIND check addresses against it). */
  prefix: Ipv6Prefix
  start: bigint
  end: bigint
}

export interface Lease6StoreOptions {
  range: Range6
  maxLeases: number
  maxIasPerClient: number
  /** Addresses never handed out (the server's own). */
  exclude?: readonly bigint[]
  now: () => number
  /** Keep a journal of bindings made and ended, for drainChanges() (the store's persistence drains it per message). */
  journal?: boolean
}

/** What changed since the last drain: per address, the binding now held, or null when it ended. */
export type Lease6Changes = Map<bigint, Lease6 | null>

export type Allocation = { ok: true; lease: Lease6 } | { ok: false; reason: 'pool-exhausted' | 'table-full' | 'too-many-ias' }

export interface ClientRef {
  duid: string
  iaid: number
  mac: string | null
}

/** Probes past the hashed start before a large range counts as exhausted; a small range is walked entirely. */
const PROBES = 256
const WALK_ALL_BELOW = 65_536n

export class Lease6Store {
  readonly range: Range6
  private readonly byAddress = new Map<bigint, Lease6>()
  private readonly byClient = new Map<string, Map<number, Lease6>>()
  private readonly exclude: Set<bigint>
  private readonly size: bigint
  private changes: Lease6Changes = new Map()

  constructor(private readonly o: Lease6StoreOptions) {
    this.range = o.range
    this.size = o.range.end - o.range.start + 1n
    this.exclude = new Set((o.exclude ?? []).filter((a) => this.inRange(a)))
  }

  private note(address: bigint, lease: Lease6 | null): void {
    if (this.o.journal) this.changes.set(address, lease)
  }

  /** The journal since the last call (empty unless the store was made with journal: true). */
  drainChanges(): Lease6Changes {
    const out = this.changes
    this.changes = new Map()
    return out
  }

  /**
   * Puts back a binding read from storage at start-up: kept when it is in range, unexpired, and neither its address
   * nor its client's IA is held already; returns whether it was.
   */
  restore(lease: Lease6): boolean {
    if (!this.inRange(lease.address) || this.exclude.has(lease.address) || lease.expiresAt <= this.o.now()) return false
    if (this.at(lease.address) || this.find(lease.duid, lease.iaid)) return false
    const ias = this.byClient.get(lease.duid)
    if ((ias?.size ?? 0) >= this.o.maxIasPerClient || this.byAddress.size >= this.capacity()) return false
    this.byAddress.set(lease.address, lease)
    if (ias) ias.set(lease.iaid, lease)
    else this.byClient.set(lease.duid, new Map([[lease.iaid, lease]]))
    return true
  }

  inRange(a: bigint): boolean {
    return a >= this.range.start && a <= this.range.end
  }

  onLink(a: bigint): boolean {
    return inPrefix(a, this.range.prefix)
  }

  /** Entries held now (offered, bound, declined), after removing expired ones. */
  used(): number {
    this.sweep()
    return this.byAddress.size
  }

  capacity(): number {
    const n = this.size - BigInt(this.exclude.size)
    return Number(n < BigInt(this.o.maxLeases) ? n : BigInt(this.o.maxLeases))
  }

  clients(): number {
    return this.byClient.size
  }

  sweep(): void {
    const t = this.o.now()
    for (const l of this.byAddress.values()) if (l.expiresAt <= t) this.drop(l)
  }

  private drop(l: Lease6): void {
    if (this.byAddress.get(l.address) === l) this.byAddress.delete(l.address)
    const m = this.byClient.get(l.duid)
    if (m?.get(l.iaid) === l) {
      m.delete(l.iaid)
      if (m.size === 0) this.byClient.delete(l.duid)
    }
  }

  private live(l: Lease6 | undefined): Lease6 | undefined {
    if (!l) return undefined
    if (l.expiresAt <= this.o.now()) {
      this.drop(l)
      return undefined
    }
    return l
  }

  /** The client's live binding or offer for this IA. */
  find(duid: string, iaid: number): Lease6 | undefined {
    return this.live(this.byClient.get(duid)?.get(iaid))
  }

  /** The addresses a client holds or was offered (live entries), in IA order. */
  heldBy(duid: string): bigint[] {
    const ias = this.byClient.get(duid)
    if (!ias) return []
    return [...ias.values()].flatMap((l) => (this.live(l) ? [l.address] : []))
  }

  at(address: bigint): Lease6 | undefined {
    return this.live(this.byAddress.get(address))
  }

  /** Free for this client: in range, not excluded, and nobody else's (or its own). */
  private freeFor(a: bigint, c: ClientRef): boolean {
    if (!this.inRange(a) || this.exclude.has(a)) return false
    const l = this.at(a)
    return !l || (l.duid === c.duid && l.iaid === c.iaid)
  }

  private pick(c: ClientRef, hint: bigint | null): bigint | null {
    const own = this.find(c.duid, c.iaid)
    if (own) return own.address
    if (hint !== null && this.freeFor(hint, c)) return hint
    // Start where the client's identity hashes to: the same client gets the same address back after a restart.
    const h = createHash('sha256').update(`${c.duid}/${c.iaid}`).digest()
    const start = ((h.readBigUInt64BE(0) << 64n) | h.readBigUInt64BE(8)) % this.size
    const probes = this.size <= WALK_ALL_BELOW ? this.size : BigInt(PROBES)
    for (let i = 0n; i < probes; i++) {
      const a = this.range.start + ((start + i) % this.size)
      if (this.freeFor(a, c)) return a
    }
    return null
  }

  /** Holds (offered) or binds an address for the client's IA; `hint` is an address the client asked for. */
  take(c: ClientRef, state: 'offered' | 'bound', forMs: number, hint: bigint | null = null): Allocation {
    const existing = this.find(c.duid, c.iaid)
    if (!existing) {
      const ias = this.byClient.get(c.duid)
      if (ias && ias.size >= this.o.maxIasPerClient) return { ok: false, reason: 'too-many-ias' }
      if (this.byAddress.size >= this.capacity()) {
        this.sweep()
        if (this.byAddress.size >= this.capacity()) return { ok: false, reason: this.size <= BigInt(this.o.maxLeases) ? 'pool-exhausted' : 'table-full' }
      }
    }
    const a = this.pick(c, hint)
    if (a === null) return { ok: false, reason: 'pool-exhausted' }
    const t = this.o.now()
    // An offer never shortens or downgrades a binding the client already holds.
    if (existing && existing.address === a && existing.state === 'bound' && state === 'offered') return { ok: true, lease: existing }
    if (existing && existing.address !== a) {
      this.drop(existing)
      if (existing.state === 'bound') this.note(existing.address, null)
    }
    const lease: Lease6 = { address: a, duid: c.duid, iaid: c.iaid, state, expiresAt: t + forMs, mac: c.mac }
    if (state === 'bound') this.note(a, lease)
    this.byAddress.set(a, lease)
    let ias = this.byClient.get(c.duid)
    if (!ias) this.byClient.set(c.duid, (ias = new Map()))
    ias.set(c.iaid, lease)
    return { ok: true, lease }
  }

  /**
   * RENEW/REBIND of an address the client names. The binding is extended when it is the client's, re-created when
   * the address is free (a restart lost it), refused when another client holds it or it is outside the range.
   */
  extend(c: ClientRef, address: bigint, forMs: number): Lease6 | 'not-in-range' | 'taken' | 'full' {
    if (!this.inRange(address) || this.exclude.has(address)) return 'not-in-range'
    const own = this.find(c.duid, c.iaid)
    if (own && own.address !== address) return 'taken'
    const l = this.at(address)
    if (l && !(l.duid === c.duid && l.iaid === c.iaid)) return 'taken'
    if (l) {
      l.state = 'bound'
      l.expiresAt = this.o.now() + forMs
      if (c.mac) l.mac = c.mac
      this.note(address, l)
      return l
    }
    const r = this.take(c, 'bound', forMs, address)
    if (!r.ok) return 'full'
    return r.lease.address === address ? r.lease : (this.drop(r.lease), 'taken')
  }

  /**
   * Takes the shared store's word for an address (several servers on one database): `lease` replaces whatever this
   * store held there, and the IA's own entry elsewhere. An expired lease, or null, leaves the address free.
   */
  adopt(address: bigint, lease: Lease6 | null): void {
    const cur = this.byAddress.get(address)
    if (cur) this.drop(cur)
    if (!lease || lease.expiresAt <= this.o.now() || !this.inRange(address) || this.exclude.has(address)) return
    const mine = lease.duid ? this.byClient.get(lease.duid)?.get(lease.iaid) : undefined
    if (mine) this.drop(mine)
    this.byAddress.set(address, lease)
    if (!lease.duid) return
    let ias = this.byClient.get(lease.duid)
    if (!ias) this.byClient.set(lease.duid, (ias = new Map()))
    ias.set(lease.iaid, lease)
  }

  /** RELEASE: true when the address was the client's. */
  release(c: ClientRef, address: bigint): boolean {
    const l = this.at(address)
    if (!l || l.duid !== c.duid || l.iaid !== c.iaid) return false
    this.drop(l)
    this.note(address, null)
    return true
  }

  /** DECLINE: the address is in use by someone else on the link; out of the pool for `forMs`. */
  decline(c: ClientRef, address: bigint, forMs: number): boolean {
    const l = this.at(address)
    if (!l || l.duid !== c.duid || l.iaid !== c.iaid) return false
    this.drop(l)
    this.note(address, null)
    if (forMs > 0) this.byAddress.set(address, { address, duid: '', iaid: 0, state: 'declined', expiresAt: this.o.now() + forMs, mac: null })
    return true
  }

  /** For logs and tests. */
  list(): { address: string; duid: string; iaid: number; state: Lease6State; expiresAt: number; mac: string | null }[] {
    this.sweep()
    return [...this.byAddress.values()].map((l) => ({ ...l, address: bigintToIpv6(l.address) }))
  }
}
