import { isIPv6 } from 'node:net'
import type { Inventory, Machine } from '../inventory/index.js'
import { normalizeIp } from '../talos/receivers/peer.js'
import type { NeighbourTable } from './neighbours.js'
import type { Clock, MachineFacts } from './service.js'

// Who is asking, as the network says rather than as the client claims. A client's MAC, serial and uuid in
// /boot.ipxe are claims anyone on the segment can make; what vouches for them is an address rackboot's own DHCP
// bound to that MAC (relayed segments included), or, for directly attached clients where rackboot hands out no
// addresses, the kernel's neighbour table. Only a setting that trusts claims (README "Security model") believes
// a claim nothing vouches for.

export type Attestation = { mac: string; via: 'lease' | 'neighbour' }

export type IdentityVerdict =
  /** The claim holds: `machine` is the inventory's machine for the attested MAC (null: not known yet). */
  | { ok: true; via: Attestation['via'] | 'trusted'; mac: string | null; machine: Machine | null }
  /** Refused: the reason names the claim and what the network says; `claimed` is the machine the claim named, if any. */
  | { ok: false; reason: string; claimed: Machine | null }

export interface IdentityVerifier {
  /** What the network says about an address: the MAC it was leased to or that the kernel resolved it to. */
  attest(ip: string): Promise<Attestation | null>
  /** Checks a boot's claimed identity against the network's word for its address. */
  check(facts: MachineFacts, clientIp: string | null): Promise<IdentityVerdict>
  /** Whether an address belongs to a machine: the network vouches for one of its MACs there. */
  addressBelongs(machine: Machine, ip: string): Promise<boolean>
}

export interface IdentityDeps {
  inventory: Inventory
  clock: Clock
  /** The kernel's neighbour table; absent: leases only. */
  neighbours?: NeighbourTable
  /**
   * Which addresses the neighbour table may vouch for: all (no DHCP of rackboot's on the segment), or IPv6 only
   * (full DHCP: rackboot's leases are the word for IPv4, but an address a host formed itself by SLAAC, as the
   * discovery agent and Talos do on an IPv6-only segment, has no binding: NDP's answer is the network's word there).
   */
  neighboursFor?: 'all' | 'ipv6'
  /** Believe claims nothing vouches for (security.trustClaimedIdentity). */
  trustClaims: boolean
}

export function createIdentityVerifier(deps: IdentityDeps): IdentityVerifier {
  const { inventory, clock } = deps

  async function attest(rawIp: string): Promise<Attestation | null> {
    const ip = normalizeIp(rawIp)
    const lease = await inventory.leases.byIp(ip)
    if (lease && lease.state === 'bound' && lease.expiresAt > clock.now()) return { mac: lease.mac, via: 'lease' }
    if (deps.neighboursFor === 'ipv6' && !isIPv6(ip)) return null
    const mac = (await deps.neighbours?.macOf(ip).catch(() => null)) ?? null
    return mac ? { mac, via: 'neighbour' } : null
  }

  async function leasedTo(mac: string): Promise<string[]> {
    const now = clock.now()
    return (await inventory.leases.list({ mac })).filter((l) => l.state === 'bound' && l.expiresAt > now).map((l) => l.ip)
  }

  async function claimed(facts: MachineFacts): Promise<Machine | null> {
    if (facts.mac) {
      const m = await inventory.machines.byMac(facts.mac)
      if (m) return m
    }
    if (facts.uuid) {
      const m = await inventory.machines.byUuid(facts.uuid)
      if (m) return m
    }
    return facts.serial ? inventory.machines.bySerial(facts.serial) : null
  }

  /** A claimed serial or uuid that names another machine, or disagrees with this one's. */
  async function disagreement(machine: Machine, facts: MachineFacts): Promise<string | null> {
    if (facts.uuid) {
      if (machine.uuid && machine.uuid !== facts.uuid) return `uuid ${facts.uuid} is not ${machine.uuid}, the uuid of ${machine.name ?? machine.id}`
      const other = machine.uuid ? null : await inventory.machines.byUuid(facts.uuid)
      if (other && other.id !== machine.id) return `uuid ${facts.uuid} belongs to ${other.name ?? other.id}`
    }
    if (facts.serial) {
      if (machine.serial && machine.serial !== facts.serial) return `serial ${facts.serial} is not ${machine.serial}, the serial of ${machine.name ?? machine.id}`
      const other = machine.serial ? null : await inventory.machines.bySerial(facts.serial)
      if (other && other.id !== machine.id) return `serial ${facts.serial} belongs to ${other.name ?? other.id}`
    }
    return null
  }

  return {
    attest,
    async addressBelongs(machine, ip) {
      const a = await attest(ip)
      return !!a && machine.nics.some((n) => n.mac === a.mac)
    },
    async check(facts, rawIp) {
      const ip = rawIp ? normalizeIp(rawIp) : null
      const a = ip ? await attest(ip) : null
      const claim = facts.mac ?? facts.uuid ?? facts.serial ?? '?'
      if (!a) {
        if (!deps.trustClaims) {
          return { ok: false, reason: `identity claim for ${claim} from ${ip ?? 'an unknown address'} refused: no lease or neighbour entry vouches for that address`, claimed: await claimed(facts) }
        }
        const machine = await claimed(facts)
        return { ok: true, via: 'trusted', mac: facts.mac ?? null, machine }
      }
      if (facts.mac && facts.mac !== a.mac) {
        const where = await leasedTo(facts.mac)
        const said = a.via === 'lease' ? `${ip} is leased to ${a.mac}` : `${ip} is ${a.mac} in the neighbour table`
        return {
          ok: false,
          reason: `identity claim for ${facts.mac} from ${ip} refused: ${where.length ? `leased to ${where.join(', ')}; ` : ''}${said}`,
          claimed: await claimed(facts),
        }
      }
      const byMac = await inventory.machines.byMac(a.mac)
      if (byMac) {
        const wrong = await disagreement(byMac, facts)
        if (wrong) return { ok: false, reason: `identity claim from ${ip} (${a.mac}) refused: ${wrong}`, claimed: byMac }
        return { ok: true, via: a.via, mac: a.mac, machine: byMac }
      }
      // The MAC is new to the inventory. A serial or uuid claim may name a machine registered without NICs (a
      // purchase manifest): the first boot binds its MAC. A machine with NICs of its own is not taken over.
      const named = await claimed({ uuid: facts.uuid ?? null, serial: facts.serial ?? null })
      if (named) {
        if (named.nics.length > 0 || named.state !== 'new') {
          return { ok: false, reason: `identity claim from ${ip} (${a.mac}) refused: ${facts.uuid && named.uuid === facts.uuid ? `uuid ${facts.uuid}` : `serial ${facts.serial}`} belongs to ${named.name ?? named.id}, whose NICs are ${named.nics.map((n) => n.mac).join(', ') || 'none'} (add ${a.mac} to it if it is this machine's)`, claimed: named }
        }
        const wrong = await disagreement(named, facts)
        if (wrong) return { ok: false, reason: `identity claim from ${ip} (${a.mac}) refused: ${wrong}`, claimed: named }
        return { ok: true, via: a.via, mac: a.mac, machine: named }
      }
      return { ok: true, via: a.via, mac: a.mac, machine: null }
    },
  }
}
