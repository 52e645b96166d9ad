// Reads of the shared lease store, batched. On PostgreSQL a DHCP server asks the store about every client it has not
// seen (another instance may have granted it a lease); one query per DISCOVER made the round trips, not the work,
// the cost of a boot storm (a socket write and a backend wake-up each). Here one query is in flight at a time and the
// lookups that arrive meanwhile go together in the next one: a lone DISCOVER waits for nothing, a burst of N costs
// about one query instead of N.
import type { LeaseRepository } from '../inventory/index.js'
import type { Lease } from '../inventory/types.js'

export interface LeaseLookups {
  byIp(ip: string): Promise<Lease | null>
  /** The newest lease of a client: by client id when given, else by MAC (as LeaseRepository.byClient). */
  byClient(mac: string, clientId: string | null): Promise<Lease | null>
}

type Want = { kind: 'ip'; ip: string } | { kind: 'client'; mac: string; clientId: string | null }

interface Pending {
  want: Want
  resolve(lease: Lease | null): void
  reject(err: unknown): void
}

/** Lookups per query: bounds the statement's size (and its parameters) whatever the burst. */
export const MAX_LOOKUPS_PER_QUERY = 256

function answer(want: Want, rows: readonly Lease[]): Lease | null {
  if (want.kind === 'ip') return rows.find((l) => l.ip === want.ip) ?? null
  let best: Lease | null = null
  for (const l of rows) {
    if (want.clientId ? l.clientId !== want.clientId : l.mac !== want.mac) continue
    if (!best || l.updatedAt > best.updatedAt) best = l
  }
  return best
}

export function createLeaseLookups(leases: LeaseRepository): LeaseLookups {
  const lookupMany = leases.lookupMany?.bind(leases)
  if (!lookupMany) {
    return { byIp: (ip) => leases.byIp(ip), byClient: (mac, clientId) => leases.byClient(mac, clientId) }
  }
  let queue: Pending[] = []
  let busy = false

  const flush = (): void => {
    if (busy || queue.length === 0) return
    const batch = queue.slice(0, MAX_LOOKUPS_PER_QUERY)
    queue = queue.slice(batch.length)
    busy = true
    const ips = new Set<string>()
    const clientIds = new Set<string>()
    const macs = new Set<string>()
    for (const { want } of batch) {
      if (want.kind === 'ip') ips.add(want.ip)
      else if (want.clientId) clientIds.add(want.clientId)
      else macs.add(want.mac)
    }
    lookupMany({ ips: [...ips], clientIds: [...clientIds], macs: [...macs] }).then(
      (rows) => {
        for (const p of batch) p.resolve(answer(p.want, rows))
      },
      (err: unknown) => {
        for (const p of batch) p.reject(err)
      },
    ).finally(() => {
      busy = false
      flush()
    })
  }

  const ask = (want: Want): Promise<Lease | null> =>
    new Promise((resolve, reject) => {
      queue.push({ want, resolve, reject })
      flush()
    })

  return {
    byIp: (ip) => ask({ kind: 'ip', ip }),
    byClient: (mac, clientId) => ask({ kind: 'client', mac, clientId }),
  }
}
