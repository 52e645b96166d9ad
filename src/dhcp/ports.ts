// What the DHCP module needs from the rest of rackboot, as small interfaces (the lead wires real ones in).
import type { ClientArch } from './client-arch.js'
import type { RequestFacts } from './facts.js'
import type { MessageName } from './options.js'

export type { LeaseRepository, ReservationRepository } from '../inventory/repositories.js'

export interface DhcpBootEvent {
  message: MessageName
  /** What rackboot is about to answer. */
  reply: 'offer' | 'ack' | 'nak' | 'none'
  mode: 'full' | 'proxy'
  /** The address offered or acknowledged (full mode). */
  ip?: string
  /** The subnet (CIDR) the request was served from (full mode). */
  subnet?: string
  /** The boot file or URL rackboot would give before any per-machine override. */
  bootFile?: string
}

export interface DhcpBootAdvice {
  /**
   * Do not network-boot this machine (e.g. maintenance). Proxy mode stays silent; full mode still serves the
   * address but without boot options, so the firmware falls through to the next boot device.
   */
  ignore?: boolean
  reason?: string
  /** A boot file name (TFTP) or an http(s):// URL (iPXE or UEFI HTTP clients) for this machine. */
  bootFile?: string
  nextServer?: string
}

/**
 * The lifecycle's view of DHCP traffic: records the event on the machine's boot timeline (creating unknown machines
 * as `new`) and returns per-machine advice. A slow or failing port never blocks the reply (timeout, counted).
 */
export interface DhcpBootPort {
  inspect(facts: RequestFacts, event: DhcpBootEvent): Promise<DhcpBootAdvice | void>
}

export interface DhcpUrls {
  /** Boot script URL for iPXE, with iPXE ${...} variables left for iPXE to expand. */
  scriptUrl: string
  /** http:// URL of a loader (a name from dhcp.bootFiles / archBootFiles) for a UEFI HTTP boot client. */
  httpBootUrl(loader: string, arch: ClientArch): string
}

/** Whether a loader DHCP is about to offer can be served. Called per reply: answer from a cache, never block. */
export interface DhcpLoaderCheck {
  /** Why `file` cannot be served (not on disk), with the fix; null when it is there. */
  missing(file: string, setting: string | undefined): string | null
}

/** Something about a client that will keep it from booting, for its machine's timeline (never creates machines). */
export interface DhcpProblem {
  kind: 'missing-loader' | 'unserved-relay'
  /** One line with the fix. */
  message: string
  /** missing-loader: the file offered; unserved-relay: the relay's giaddr. */
  file?: string
  giaddr?: string
}

/** Where DHCP reports problems of known machines (the lifecycle's timeline). Fire and forget. */
export interface DhcpProblemPort {
  report(facts: RequestFacts, problem: DhcpProblem): void
}

/** A port that records nothing and advises nothing. */
export const noopBootPort: DhcpBootPort = { inspect: async () => undefined }
