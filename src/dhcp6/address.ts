// IPv6 addresses as 16-byte buffers, bigints (for range arithmetic) and RFC 5952 text. Pure; never throws on the
// wire side (bytesToIpv6 of fewer than 16 bytes is the caller's bug, so it does throw).
import { isIPv6 } from 'node:net'

const TWO_128 = 1n << 128n

/** 16 bytes of an IPv6 address literal (a zone `%eth0` is ignored), or null when it is not one. */
export function ipv6ToBytes(text: string): Buffer | null {
  const s = text.split('%')[0]!
  if (!isIPv6(s)) return null
  let head = s
  let tail = ''
  const dbl = s.indexOf('::')
  if (dbl >= 0) {
    head = s.slice(0, dbl)
    tail = s.slice(dbl + 2)
  }
  const parse = (part: string): number[] | null => {
    if (part === '') return []
    const groups: number[] = []
    const items = part.split(':')
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!
      if (item.includes('.')) {
        // embedded IPv4 (last item only)
        const v4 = item.split('.').map(Number)
        if (i !== items.length - 1 || v4.length !== 4) return null
        groups.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!)
      } else groups.push(parseInt(item, 16))
    }
    return groups
  }
  const h = parse(head)
  const t = parse(tail)
  if (!h || !t) return null
  const fill = dbl >= 0 ? 8 - h.length - t.length : 0
  if (fill < 0 || (dbl < 0 && h.length !== 8)) return null
  const groups = [...h, ...new Array<number>(fill).fill(0), ...t]
  const out = Buffer.alloc(16)
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2))
  return out
}

/** RFC 5952 text of 16 bytes at `offset`. */
export function bytesToIpv6(buf: Buffer, offset = 0): string {
  if (buf.length < offset + 16) throw new RangeError('an IPv6 address needs 16 bytes')
  const g: number[] = []
  for (let i = 0; i < 8; i++) g.push(buf.readUInt16BE(offset + i * 2))
  // Longest run of two or more zero groups, first one on a tie, becomes "::".
  let bestStart = -1
  let bestLen = 1
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue }
    let j = i
    while (j < 8 && g[j] === 0) j++
    if (j - i > bestLen) { bestStart = i; bestLen = j - i }
    i = j
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':')
  if (bestStart < 0) return hex(g)
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`
}

export function bytesToBigint(buf: Buffer, offset = 0): bigint {
  return (buf.readBigUInt64BE(offset) << 64n) | buf.readBigUInt64BE(offset + 8)
}

export function bigintToBytes(v: bigint): Buffer {
  const out = Buffer.alloc(16)
  const x = ((v % TWO_128) + TWO_128) % TWO_128
  out.writeBigUInt64BE(x >> 64n, 0)
  out.writeBigUInt64BE(x & 0xffff_ffff_ffff_ffffn, 8)
  return out
}

/** The address as a bigint, or null when the text is not an IPv6 literal. */
export function ipv6ToBigint(text: string): bigint | null {
  const b = ipv6ToBytes(text)
  return b ? bytesToBigint(b) : null
}

export function bigintToIpv6(v: bigint): string {
  return bytesToIpv6(bigintToBytes(v))
}

export interface Ipv6Prefix {
  /** Network address (host bits cleared). */
  network: bigint
  length: number
  text: string
}

/** "2001:db8:1::/64" → prefix; null when malformed. */
export function parsePrefix(text: string): Ipv6Prefix | null {
  const m = /^([0-9a-fA-F:.]+)\/(\d{1,3})$/.exec(text.trim())
  if (!m) return null
  const length = Number(m[2])
  const addr = ipv6ToBigint(m[1]!)
  if (addr === null || length > 128) return null
  const network = length === 0 ? 0n : (addr >> BigInt(128 - length)) << BigInt(128 - length)
  return { network, length, text: `${bigintToIpv6(network)}/${length}` }
}

export function inPrefix(addr: bigint, p: Ipv6Prefix): boolean {
  if (p.length === 0) return true
  const shift = BigInt(128 - p.length)
  return addr >> shift === p.network >> shift
}

/** fe80::/10 */
export function isLinkLocal(text: string): boolean {
  const b = ipv6ToBytes(text)
  return !!b && b[0] === 0xfe && (b[1]! & 0xc0) === 0x80
}

/**
 * The MAC inside a link-local address formed by modified EUI-64 (RFC 4291 appendix A: fe80::XXXX:XXff:feXX:XXXX, the
 * universal/local bit flipped), or null: the source of a directly attached client, or the peer-address a relay
 * names, is then a MAC claim as good as DHCPv4's chaddr. Privacy or stable-opaque addresses give none.
 */
export function macFromLinkLocal(text: string): string | null {
  const b = ipv6ToBytes(text.split('%')[0]!)
  if (!b || b[0] !== 0xfe || (b[1]! & 0xc0) !== 0x80 || b[11] !== 0xff || b[12] !== 0xfe) return null
  const mac = [b[8]! ^ 0x02, b[9]!, b[10]!, b[13]!, b[14]!, b[15]!]
  return mac.map((x) => x.toString(16).padStart(2, '0')).join(':')
}
