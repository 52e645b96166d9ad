// The contract between the socket layer and the modes: a handler turns one decoded request into a reply, or into
// a typed "not for us" with its reason. Handlers never throw for expected outcomes.
import type { DhcpPacket } from './codec.js'
import type { RequestMeta } from './facts.js'
import type { MessageName } from './options.js'

export type { RequestMeta }

export interface DhcpReply {
  kind: 'reply'
  type: MessageName
  packet: DhcpPacket
  /** Largest datagram the client accepts (option 57), for the encoder. */
  maxSize?: number
}

/** Why no reply is sent. `reason` is a short fixed label (a metric label); `detail` is for the log. */
export interface DhcpIgnore {
  kind: 'ignore'
  reason: string
  detail?: string
}

/** Handled, and the protocol wants no reply (RELEASE, DECLINE). Not counted as dropped. */
export interface DhcpSilent {
  kind: 'silent'
  reason: string
}

export type DhcpResult = DhcpReply | DhcpIgnore | DhcpSilent

export const ignore = (reason: string, detail?: string): DhcpIgnore =>
  detail === undefined ? { kind: 'ignore', reason } : { kind: 'ignore', reason, detail }

export const silent = (reason: string): DhcpSilent => ({ kind: 'silent', reason })

export interface DhcpHandler {
  readonly mode: 'full' | 'proxy'
  handle(pkt: DhcpPacket, meta: RequestMeta): Promise<DhcpResult>
  /** Loads state (leases, reservations) before the sockets open. */
  start?(): Promise<void>
  stop?(): Promise<void>
}
