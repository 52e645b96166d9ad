import type { Inventory } from '../inventory/index.js'

// Which machine an IP address belongs to, for traffic that carries no identity of its own (Talos's event sink and
// kernel log, TFTP). Only what the network vouched for is kept: the address a boot script went to after its identity
// claim was checked, or a config was served to; otherwise the DHCP lease (or the neighbour table) says.
import { normalizeIp } from '../talos/receivers/peer.js'
import { createIdentityVerifier, type IdentityVerifier } from './identity.js'
import { systemClock } from './service.js'

export interface PeerDirectory {
  remember(ip: string, machineId: string): void
  resolve(ip: string): Promise<string | null>
  /** Every address a machine is known by: where its boots came from, and its NICs' leases. */
  addressesOf(machineId: string): Promise<string[]>
}

export function createPeerDirectory(deps: { inventory: Inventory; identity?: IdentityVerifier; max?: number }): PeerDirectory {
  const max = deps.max ?? 100_000
  const known = new Map<string, string>()
  // What the network says: by default rackboot's own leases (bound, unexpired), as the identity check reads them.
  const identity = deps.identity ?? createIdentityVerifier({ inventory: deps.inventory, clock: systemClock, trustClaims: false })
  return {
    remember(ip, machineId) {
      const key = normalizeIp(ip)
      known.delete(key)
      known.set(key, machineId)
      if (known.size > max) known.delete(known.keys().next().value!)
    },
    async resolve(ip) {
      const key = normalizeIp(ip)
      const hit = known.get(key)
      if (hit) return hit
      const a = await identity.attest(key)
      return a ? ((await deps.inventory.machines.byMac(a.mac))?.id ?? null) : null
    },
    async addressesOf(machineId) {
      const out = new Set<string>()
      for (const [ip, id] of known) if (id === machineId) out.add(ip)
      const m = await deps.inventory.machines.get(machineId)
      for (const nic of m?.nics ?? []) for (const l of await deps.inventory.leases.list({ mac: nic.mac })) out.add(l.ip)
      return [...out]
    },
  }
}
