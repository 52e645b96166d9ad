// DHCPv6 wire format (RFC 8415 §8, §9): client/server messages and relay-forw/relay-repl envelopes. decode never
// trusts a length and is bounded in every dimension a hostile sender controls: datagram size, options per message,
// relay nesting (walked iteratively, never by recursion). encode builds replies, wrapped in relay-repl envelopes
// that mirror the relay-forw chain the request came through.
import { bytesToIpv6, ipv6ToBytes } from './address.js'
import { MessageType6, Option6, decodeOptions, encodeOptions, type OptionsFailure, type Options6 } from './options.js'

export interface Dhcp6Message {
  /** msg-type (1..11 for client/server messages). */
  type: number
  /** 24-bit transaction id. */
  transactionId: number
  options: Options6
}

/** One relay-forw (or relay-repl) envelope; `options` holds everything but the Relay Message option. */
export interface Dhcp6RelayHop {
  type: typeof MessageType6.RelayForw | typeof MessageType6.RelayRepl
  hopCount: number
  linkAddress: string
  peerAddress: string
  options: Options6
}

export interface Dhcp6Decoded {
  message: Dhcp6Message
  /** Relay envelopes, outermost (the relay that sent the datagram) first; empty for a message from the link. */
  relays: Dhcp6RelayHop[]
}

export interface Dhcp6Limits {
  /** Datagrams longer than this are dropped unread (default 4096: a firmware SOLICIT is about 100 bytes). */
  maxBytes: number
  /** Options per message or envelope (default 64). */
  maxOptions: number
  /** Relay envelopes (RFC 8415 HOP_COUNT_LIMIT is 8; default 8). */
  maxRelayDepth: number
}

export const DEFAULT_LIMITS6: Readonly<Dhcp6Limits> = Object.freeze({ maxBytes: 4096, maxOptions: 64, maxRelayDepth: 8 })

export type Decode6Failure =
  | 'too-short'
  | 'too-large'
  | OptionsFailure
  | 'relay-too-deep'
  | 'relay-without-message'
  | 'relay-too-short'

export type Decode6Result = ({ ok: true } & Dhcp6Decoded) | { ok: false; reason: Decode6Failure }

const CLIENT_HEADER = 4
const RELAY_HEADER = 34

const isRelay = (t: number): t is 12 | 13 => t === MessageType6.RelayForw || t === MessageType6.RelayRepl

export function decode6(buf: Buffer, limits: Dhcp6Limits = DEFAULT_LIMITS6): Decode6Result {
  if (buf.length > limits.maxBytes) return { ok: false, reason: 'too-large' }
  const relays: Dhcp6RelayHop[] = []
  let cur = buf
  for (;;) {
    if (cur.length < CLIENT_HEADER) return { ok: false, reason: 'too-short' }
    const type = cur[0]!
    if (!isRelay(type)) {
      const opts = decodeOptions(cur, CLIENT_HEADER, cur.length, limits.maxOptions)
      if (!opts.ok) return { ok: false, reason: opts.reason }
      return { ok: true, message: { type, transactionId: cur.readUIntBE(1, 3), options: opts.options }, relays }
    }
    if (relays.length >= limits.maxRelayDepth) return { ok: false, reason: 'relay-too-deep' }
    if (cur.length < RELAY_HEADER) return { ok: false, reason: 'relay-too-short' }
    const opts = decodeOptions(cur, RELAY_HEADER, cur.length, limits.maxOptions)
    if (!opts.ok) return { ok: false, reason: opts.reason }
    const inner = opts.options.filter((o) => o.code === Option6.RelayMsg)
    // Exactly one Relay Message option (RFC 8415 §9.1).
    if (inner.length !== 1) return { ok: false, reason: 'relay-without-message' }
    relays.push({
      type,
      hopCount: cur[1]!,
      linkAddress: bytesToIpv6(cur, 2),
      peerAddress: bytesToIpv6(cur, 18),
      options: opts.options.filter((o) => o.code !== Option6.RelayMsg),
    })
    cur = inner[0]!.data
  }
}

export function encodeMessage6(m: Dhcp6Message): Buffer {
  const h = Buffer.alloc(CLIENT_HEADER)
  h[0] = m.type
  h.writeUIntBE(m.transactionId & 0xffffff, 1, 3)
  return Buffer.concat([h, encodeOptions(m.options)])
}

function encodeRelayHop(hop: Dhcp6RelayHop, inner: Buffer): Buffer {
  const h = Buffer.alloc(RELAY_HEADER)
  h[0] = hop.type
  h[1] = hop.hopCount
  const link = ipv6ToBytes(hop.linkAddress)
  const peer = ipv6ToBytes(hop.peerAddress)
  if (!link || !peer) throw new RangeError('relay envelope with a malformed address')
  link.copy(h, 2)
  peer.copy(h, 18)
  return Buffer.concat([h, encodeOptions([...hop.options, { code: Option6.RelayMsg, data: inner }])])
}

/** A message, inside its relay envelopes (outermost first), as bytes. */
export function encode6(d: Dhcp6Decoded): Buffer {
  let out = encodeMessage6(d.message)
  for (let i = d.relays.length - 1; i >= 0; i--) out = encodeRelayHop(d.relays[i]!, out)
  return out
}

/**
 * The relay-repl envelopes for a reply to a request that came through `relays` (RFC 8415 §19.3): same hop count,
 * link and peer addresses, and the Interface-Id option echoed; nothing else of the relay's is copied back.
 */
export function replyEnvelopes(relays: readonly Dhcp6RelayHop[]): Dhcp6RelayHop[] {
  return relays.map((r) => ({
    type: MessageType6.RelayRepl,
    hopCount: r.hopCount,
    linkAddress: r.linkAddress,
    peerAddress: r.peerAddress,
    options: r.options.filter((o) => o.code === Option6.InterfaceId),
  }))
}
