// Option negotiation for read requests: RFC 2347 (OACK), 2348 (blksize), 2349 (timeout, tsize), 7440 (windowsize).
// Pure: the requested options and the limits in, the granted values and the OACK contents out.
import { MAX_BLKSIZE, MIN_BLKSIZE } from './packet.js'

export interface NegotiationLimits {
  /** settings.tftp.maxBlockSize */
  maxBlockSize: number
  /** settings.tftp.mtu: a block never exceeds mtu - 32 (20 IP + 8 UDP + 4 TFTP header). */
  mtu: number
  /** settings.tftp.maxWindowSize */
  maxWindowSize: number
  /** settings.tftp.retransmitMs: the first retransmission timeout when the client names none. */
  retransmitMs: number
}

export interface Negotiated {
  blksize: number
  windowsize: number
  /** First retransmission timeout in ms: the client's RFC 2349 timeout if it gave one, else the setting. */
  timeoutMs: number
  /** Whether the client chose the timeout (then it is honoured as is, not shortened). */
  clientTimeout: boolean
  /** What goes into the OACK; empty means no OACK (the transfer starts with DATA 1, RFC 2347). */
  oack: Map<string, string>
}

export const DEFAULT_BLKSIZE = 512
/** A window never spans half the 16-bit block space, so an ACK's block number maps to one block unambiguously. */
export const MAX_WINDOWSIZE = 32767
/** IP (20) + UDP (8) + TFTP DATA header (4). */
export const HEADER_OVERHEAD = 32

/** The largest block the settings allow, whatever the client asks. */
export function blockSizeCap(limits: Pick<NegotiationLimits, 'maxBlockSize' | 'mtu'>): number {
  return Math.max(MIN_BLKSIZE, Math.min(limits.maxBlockSize, limits.mtu - HEADER_OVERHEAD, MAX_BLKSIZE))
}

/** A decimal option value, strictly: digits only, no sign, no spaces, no exponent. */
function parseDecimal(value: string): number | null {
  if (!/^[0-9]{1,10}$/.test(value)) return null
  return Number(value)
}

/**
 * Decides the transfer parameters. Options that are malformed or out of range are left out of the OACK, which
 * RFC 2347 allows (the client then uses the default for that option). `size` is the byte count the client will
 * receive, or null when not known in advance (then tsize is not acknowledged).
 */
export function negotiate(requested: Map<string, string>, limits: NegotiationLimits, size: number | null): Negotiated {
  const oack = new Map<string, string>()
  let blksize = DEFAULT_BLKSIZE
  let windowsize = 1
  let timeoutMs = limits.retransmitMs
  let clientTimeout = false

  const b = requested.get('blksize')
  if (b !== undefined) {
    const v = parseDecimal(b)
    if (v !== null && v >= MIN_BLKSIZE && v <= MAX_BLKSIZE) {
      blksize = Math.min(v, blockSizeCap(limits))
      oack.set('blksize', String(blksize))
    }
  }

  const t = requested.get('timeout')
  if (t !== undefined) {
    const v = parseDecimal(t)
    if (v !== null && v >= 1 && v <= 255) {
      timeoutMs = v * 1000
      clientTimeout = true
      oack.set('timeout', String(v))
    }
  }

  // RFC 2349: in a read request the client sends tsize 0 and the server answers with the size.
  if (requested.has('tsize') && size !== null && parseDecimal(requested.get('tsize')!) !== null) {
    oack.set('tsize', String(size))
  }

  const w = requested.get('windowsize')
  if (w !== undefined) {
    const v = parseDecimal(w)
    if (v !== null && v >= 1 && v <= 65535) {
      windowsize = Math.max(1, Math.min(v, limits.maxWindowSize, MAX_WINDOWSIZE))
      oack.set('windowsize', String(windowsize))
    }
  }

  return { blksize, windowsize, timeoutMs, clientTimeout, oack }
}
