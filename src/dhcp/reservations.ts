// A snapshot of the inventory's reservations, indexed for the hot path and reloaded periodically (and on demand).
import type { Reservation } from '../inventory/types.js'
import type { ReservationRepository } from '../inventory/repositories.js'
import { ipToInt } from './options.js'
import type { ClientKey } from './pool.js'

export interface ReservationIndex {
  forClient(c: ClientKey): Reservation | undefined
  /** Reserved addresses by integer IP, with their owner. */
  byIp: Map<number, ClientKey>
  size: number
}

const normMac = (mac: string): string => mac.toLowerCase().replace(/-/g, ':')
const normId = (id: string): string => id.toLowerCase().replace(/[:\s-]/g, '')

export function indexReservations(list: readonly Reservation[]): ReservationIndex {
  const byMac = new Map<string, Reservation>()
  const byClientId = new Map<string, Reservation>()
  const byIp = new Map<number, ClientKey>()
  for (const r of list) {
    const ip = ipToInt(r.ip)
    if (Number.isNaN(ip)) continue
    const mac = r.mac ? normMac(r.mac) : null
    const clientId = r.clientId ? normId(r.clientId) : null
    if (mac) byMac.set(mac, r)
    if (clientId) byClientId.set(clientId, r)
    // A reservation by client id alone is owned by that id; the MAC check in sameClient then never matches.
    byIp.set(ip, { mac: mac ?? '', clientId })
  }
  return {
    forClient(c) {
      return (c.clientId ? byClientId.get(c.clientId) : undefined) ?? byMac.get(c.mac)
    },
    byIp,
    size: list.length,
  }
}

export async function loadReservations(repo: ReservationRepository): Promise<ReservationIndex> {
  return indexReservations(await repo.list())
}
