// DHCPv6 bindings when several rackboot instances share one database (PostgreSQL): the database decides who holds an
// address, as for DHCPv4 (dhcp/handlers/full.ts). Every offer and binding is claimed in the leases table before its
// reply leaves (LeaseRepository.claimMany through DHCPv4's group-commit writer): a claim is refused while another
// client's live row holds the address. What the table says about an address or a client is adopted by the local
// Lease6Store, so a refused claim moves on to another address and a binding another instance granted is renewed.
import { createLeaseWriter, type ClaimingLeaseRepository, type LeaseWriter } from '../dhcp/lease-writer.js'
import type { Lease } from '../inventory/types.js'
import { bigintToIpv6, ipv6ToBigint } from './address.js'
import type { ClientRef, Lease6, Lease6Store } from './leases.js'

export interface Shared6 {
  /** Claims the lease in the shared table; false when another client holds the address there. Rejects when the store fails. */
  claim(lease: Lease6): Promise<boolean>
  /** Marks the client's row released (best effort: refused when someone else holds the address by now). */
  released(lease: Lease6): Promise<void>
  /** Loads what the table holds for an address and/or a client's IA into the local store. Rejects when the store fails. */
  learn(what: { address?: bigint; client?: ClientRef }): Promise<void>
  /** Loads every row of the prefix changed since `since` (ms): what the other instances granted or released lately. */
  sync(since: number): Promise<void>
}

/** A binding's client id in the leases table: `duid:<hex>/<iaid>`. */
export const leaseClientId = (duid: string, iaid: number): string => `duid:${duid}/${iaid}`

/** The store's entry for a row: null for a row that holds nothing (released, expired, another prefix, not an address). */
export function bindingOfRow(row: Lease, subnet: string): Lease6 | null {
  const address = ipv6ToBigint(row.ip)
  if (address === null || row.subnet !== subnet) return null
  if (row.state !== 'bound' && row.state !== 'offered' && row.state !== 'declined') return null
  const id = /^duid:([0-9a-f]+)\/(\d+)$/.exec(row.clientId ?? '')
  // A declined address belongs to nobody (as Lease6Store.decline keeps it); a row of a client id this code did not
  // write still holds the address, for a client no DHCPv6 message can name.
  if (row.state === 'declined' || !id) return { address, duid: '', iaid: 0, state: row.state === 'declined' ? 'declined' : 'bound', expiresAt: row.expiresAt, mac: row.mac }
  return { address, duid: id[1]!, iaid: Number(id[2]), state: row.state, expiresAt: row.expiresAt, mac: row.mac }
}

export function createShared6(deps: { leases: ClaimingLeaseRepository; store: Lease6Store; subnet: string; now: () => number }): Shared6 {
  const writer: LeaseWriter = createLeaseWriter({ leases: deps.leases, claim: true })
  const row = (l: Lease6, mac: string, state: Lease['state'], expiresAt: number): Lease => ({
    ip: bigintToIpv6(l.address), mac, clientId: leaseClientId(l.duid, l.iaid), subnet: deps.subnet, state, hostname: null,
    expiresAt, updatedAt: deps.now(),
  })
  return {
    async claim(l) {
      // The table's rows are per MAC: a client no MAC is known for cannot be told apart from another one there.
      if (!l.mac) return false
      return writer.write(row(l, l.mac, l.state, l.expiresAt))
    },
    async released(l) {
      if (l.mac) await writer.write(row(l, l.mac, 'released', deps.now()))
    },
    async sync(since) {
      for (const r of await deps.leases.list({ subnet: deps.subnet, updatedSince: since })) {
        const address = ipv6ToBigint(r.ip)
        if (address !== null) deps.store.adopt(address, bindingOfRow(r, deps.subnet))
      }
    },
    async learn({ address, client }) {
      const [atAddress, ofClient] = await Promise.all([
        address !== undefined ? deps.leases.byIp(bigintToIpv6(address)) : null,
        client ? deps.leases.byClient(client.mac ?? '', leaseClientId(client.duid, client.iaid)) : null,
      ])
      if (address !== undefined) deps.store.adopt(address, atAddress ? bindingOfRow(atAddress, deps.subnet) : null)
      const b = ofClient ? bindingOfRow(ofClient, deps.subnet) : null
      if (b && client && b.duid === client.duid && b.iaid === client.iaid) deps.store.adopt(b.address, b)
    },
  }
}
