// A relay forwarding DISCOVERs for a subnet rackboot has no pool for: without a word, its machines just never boot.
// One warning per giaddr with the fix, and a timeline step for a machine the inventory knows. giaddr is whatever the
// packet says (a hostile LAN can forge it): giaddrs and MACs are remembered in bounded sets, and warnings about new
// giaddrs are capped per minute (the rest are counted and said with the next one).
import type { Logger } from '../log.js'
import type { RequestFacts } from './facts.js'
import type { DhcpProblemPort } from './ports.js'
import { createRecentKeys } from './recent-keys.js'

export interface UnservedRelayDeps {
  log: Logger
  problems?: DhcpProblemPort | undefined
  now: () => number
  /** giaddrs remembered (default 1024). */
  maxRelays?: number
  /** Warnings about new giaddrs per minute (default 10). */
  warningsPerMinute?: number
}

export type UnservedRelayReporter = (facts: RequestFacts) => void

/** What fixes it: a pool for the relay's subnet, or a relay that points elsewhere. */
export function unservedRelayMessage(giaddr: string, linkSelection?: string | null): string {
  const addr = linkSelection ?? giaddr
  return `DHCP relay ${giaddr} forwards requests for ${linkSelection ? `link ${linkSelection}` : 'its subnet'}, which rackboot does not serve: ` +
    `add a dhcp.subnets entry whose subnet covers ${addr} (with a range for its machines), or point the relay at the DHCP server of that subnet`
}

export function createUnservedRelayReporter(deps: UnservedRelayDeps): UnservedRelayReporter {
  const relays = createRecentKeys({ max: deps.maxRelays ?? 1024, windowMs: Number.POSITIVE_INFINITY, now: deps.now })
  const machines = createRecentKeys({ max: 1024, windowMs: 10 * 60_000, now: deps.now })
  const perMinute = deps.warningsPerMinute ?? 10
  let minute = { start: -Infinity, warned: 0, suppressed: 0 }
  // Each report is an inventory lookup: at most this many a second, whatever the MACs.
  const lookupsPerSecond = 20
  let second = { start: -Infinity, n: 0 }
  return (facts) => {
    if (!facts.giaddr) return
    const message = unservedRelayMessage(facts.giaddr, facts.linkSelection)
    if (relays.fresh(facts.giaddr)) {
      const t = deps.now()
      if (t - minute.start >= 60_000) minute = { start: t, warned: 0, suppressed: minute.suppressed }
      if (minute.warned < perMinute) {
        minute.warned++
        deps.log.warn({ giaddr: facts.giaddr, linkSelection: facts.linkSelection ?? null, mac: facts.mac, otherRelaysNotWarned: minute.suppressed }, message)
        minute.suppressed = 0
      } else {
        minute.suppressed++
      }
    }
    // The port looks the MAC up without creating a machine; once per machine and 10 minutes.
    if (!deps.problems) return
    const t = deps.now()
    if (t - second.start >= 1000) second = { start: t, n: 0 }
    if (second.n >= lookupsPerSecond || !machines.fresh(facts.mac)) return
    second.n++
    deps.problems.report(facts, { kind: 'unserved-relay', giaddr: facts.giaddr, message })
  }
}
