// In-memory LeaseRepository and ReservationRepository for DHCP unit tests, plus a failing lease store.
import type { LeaseRepository, ReservationRepository } from '../../src/inventory/repositories.js'
import type { Lease, Reservation } from '../../src/inventory/types.js'

export interface MemoryLeases extends LeaseRepository {
  readonly rows: Map<string, Lease>
  puts: number
}

export function memoryLeases(initial: Lease[] = []): MemoryLeases {
  const rows = new Map<string, Lease>(initial.map((l) => [l.ip, { ...l }]))
  const repo: MemoryLeases = {
    rows,
    puts: 0,
    async byIp(ip) {
      const l = rows.get(ip)
      return l ? { ...l } : null
    },
    async byClient(mac, clientId) {
      const all = [...rows.values()].filter((l) => (clientId ? l.clientId === clientId : l.mac === mac))
      all.sort((a, b) => b.updatedAt - a.updatedAt)
      return all[0] ? { ...all[0] } : null
    },
    async activeIn(subnet, now) {
      return [...rows.values()].filter((l) => l.subnet === subnet && (l.state === 'offered' || l.state === 'bound') && l.expiresAt > now).map((l) => ({ ...l }))
    },
    async list(filter = {}) {
      return [...rows.values()]
        .filter((l) => (!filter.subnet || l.subnet === filter.subnet) && (!filter.state || l.state === filter.state) && (!filter.mac || l.mac === filter.mac))
        .map((l) => ({ ...l }))
    },
    async put(lease) {
      repo.puts += 1
      rows.set(lease.ip, { ...lease })
    },
    async remove(ip) {
      return rows.delete(ip)
    },
    async expire(now) {
      let n = 0
      for (const l of rows.values()) {
        if ((l.state === 'offered' || l.state === 'bound') && l.expiresAt <= now) {
          l.state = 'expired'
          n++
        }
      }
      return n
    },
  }
  return repo
}

export function failingLeases(): LeaseRepository {
  const fail = async (): Promise<never> => {
    throw new Error('intentional storage failure')
  }
  return { byIp: fail, byClient: fail, activeIn: async () => [], list: async () => [], put: fail, remove: fail, expire: fail }
}

export function memoryReservations(initial: Reservation[] = []): ReservationRepository & { rows: Map<string, Reservation> } {
  const rows = new Map<string, Reservation>(initial.map((r) => [r.ip, { ...r }]))
  return {
    rows,
    async list() {
      return [...rows.values()].map((r) => ({ ...r }))
    },
    async byMac(mac) {
      return [...rows.values()].find((r) => r.mac === mac) ?? null
    },
    async byClientId(clientId) {
      return [...rows.values()].find((r) => r.clientId === clientId) ?? null
    },
    async byIp(ip) {
      return rows.get(ip) ?? null
    },
    async setForMachine(machineId, list) {
      for (const [ip, r] of rows) if (r.machineId === machineId) rows.delete(ip)
      for (const r of list) rows.set(r.ip, { ...r, machineId })
    },
    async put(r) {
      rows.set(r.ip, { ...r })
    },
    async remove(ip) {
      return rows.delete(ip)
    },
  }
}
