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
  /** http:// URL of the loader for a UEFI HTTP boot client of this architecture. */
  httpBootUrl(arch: ClientArch): string
}

/** A port that records nothing and advises nothing. */
export const noopBootPort: DhcpBootPort = { inspect: async () => undefined }
