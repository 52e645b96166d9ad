// The gap between iPXE's DHCP lease and its request for the boot script. iPXE configures IPv6 beside DHCPv4 and
// fetches nothing until that ends: on a segment where no router advertises, it waits out its router solicitations,
// about 16 s of every boot (lab.md). rackboot's own advertisements end that where it owns the segment; a relayed
// segment needs its router to advertise. Nothing else shows the operator why every boot there is 16 s slow, so the
// gap goes on the timeline with the fix.

/** A gap longer than this is not iPXE's normal pace (the script follows the lease within ~1 s on a good segment). */
export const IPXE_SLOW_MS = 8000
/** Machines remembered: bounded whatever the network sends (the oldest lease is forgotten first). */
const MAX_MACHINES = 50_000

export interface IpxeWait {
  /** An iPXE DHCP exchange ended in an ACK for this machine; `relayed` when it came through a relay (giaddr). */
  leased(machineId: string, at: number, relayed: boolean): void
  /** The machine asked for its boot script: the gap since its iPXE lease, when it was slow; null otherwise. */
  scriptAsked(machineId: string, at: number): { waitedMs: number; relayed: boolean; fix: string } | null
}

export function ipxeWaitFix(relayed: boolean): string {
  return relayed
    ? 'iPXE waited for IPv6 autoconfiguration: have the relayed segment\'s router send router advertisements (no prefix is needed), or give iPXE an IPv6 config; see the README, "Datacenter with relays"'
    : 'iPXE waited for IPv6 autoconfiguration: set dhcp.routerAdverts: on (and dhcp.interface) so rackboot advertises on the segment; see the README, "Datacenter with relays"'
}

export function createIpxeWait(options: { slowMs?: number; maxMachines?: number } = {}): IpxeWait {
  const slowMs = options.slowMs ?? IPXE_SLOW_MS
  const max = options.maxMachines ?? MAX_MACHINES
  const leases = new Map<string, { at: number; relayed: boolean }>()
  return {
    leased(machineId, at, relayed) {
      leases.delete(machineId) // re-inserted last: the Map's order is the eviction order
      leases.set(machineId, { at, relayed })
      if (leases.size > max) leases.delete(leases.keys().next().value!)
    },
    scriptAsked(machineId, at) {
      const lease = leases.get(machineId)
      if (!lease) return null
      // One script per lease: a hold loop's later requests are not iPXE's wait.
      leases.delete(machineId)
      const waitedMs = at - lease.at
      if (waitedMs < slowMs) return null
      // Longer than a lease's worth of waiting is another boot (a machine powered off between), not this wait.
      if (waitedMs > 120_000) return null
      return { waitedMs, relayed: lease.relayed, fix: ipxeWaitFix(lease.relayed) }
    },
  }
}
