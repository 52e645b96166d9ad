// A small ASN.1 DER writer: just what X.509 certificates need (ITU-T X.690 §8 and §10).
// node:crypto signs and exports keys but cannot build a certificate, so the TBSCertificate is assembled here.

export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const

/** Definite-length encoding: short form below 128, else 0x80|n followed by n length bytes (X.690 §8.1.3). */
export function encodeLength(length: number): Buffer {
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`bad DER length ${length}`)
  if (length < 0x80) return Buffer.from([length])
  const bytes: number[] = []
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n % 256)
  return Buffer.from([0x80 | bytes.length, ...bytes])
}

export function tlv(tag: number, content: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([tag]), encodeLength(content.length), content])
}

export function sequence(...items: Uint8Array[]): Buffer {
  return tlv(Tag.SEQUENCE, Buffer.concat(items))
}

/** SET OF, with members sorted by their encodings as DER requires (X.690 §11.6). */
export function setOf(...items: Uint8Array[]): Buffer {
  const sorted = items.map((i) => Buffer.from(i)).sort(Buffer.compare)
  return tlv(Tag.SET, Buffer.concat(sorted))
}

/** A non-negative INTEGER, minimal two's complement (a leading 0x00 when the top bit is set). */
export function integer(value: bigint | number | Uint8Array): Buffer {
  let bytes: Buffer
  if (typeof value === 'bigint' || typeof value === 'number') {
    const n = BigInt(value)
    if (n < 0n) throw new RangeError('negative INTEGER is not supported')
    const hex = n.toString(16)
    bytes = Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex')
  } else {
    bytes = Buffer.from(value)
  }
  let start = 0
  while (start < bytes.length - 1 && bytes[start] === 0) start++
  bytes = bytes.subarray(start)
  if (bytes.length === 0) bytes = Buffer.from([0])
  if ((bytes[0]! & 0x80) !== 0) bytes = Buffer.concat([Buffer.from([0]), bytes])
  return tlv(Tag.INTEGER, bytes)
}

export function boolean(value: boolean): Buffer {
  return tlv(Tag.BOOLEAN, Buffer.from([value ? 0xff : 0x00]))
}

export function nullValue(): Buffer {
  return Buffer.from([Tag.NULL, 0x00])
}

function base128(n: bigint): number[] {
  const out = [Number(n & 0x7fn)]
  for (n >>= 7n; n > 0n; n >>= 7n) out.unshift(Number(n & 0x7fn) | 0x80)
  return out
}

/** OBJECT IDENTIFIER from dotted form ("1.2.840.10045.2.1"), X.690 §8.19. */
export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((p) => {
    if (!/^\d+$/.test(p)) throw new RangeError(`bad OID '${dotted}'`)
    return BigInt(p)
  })
  if (arcs.length < 2 || arcs[0]! > 2n || (arcs[0]! < 2n && arcs[1]! > 39n)) throw new RangeError(`bad OID '${dotted}'`)
  const bytes = base128(arcs[0]! * 40n + arcs[1]!)
  for (const arc of arcs.slice(2)) bytes.push(...base128(arc))
  return tlv(Tag.OID, Buffer.from(bytes))
}

/** BIT STRING with the count of unused bits in the last byte. */
export function bitString(bytes: Uint8Array, unusedBits = 0): Buffer {
  if (unusedBits < 0 || unusedBits > 7 || (bytes.length === 0 && unusedBits !== 0)) throw new RangeError('bad unused bits')
  return tlv(Tag.BIT_STRING, Buffer.concat([Buffer.from([unusedBits]), bytes]))
}

/**
 * A named-bit BIT STRING (e.g. KeyUsage): bit 0 is the most significant bit of the first byte, and trailing zero
 * bits are dropped (X.690 §11.2.2), as Go's crypto/x509 does for key usage.
 */
export function namedBits(bits: readonly number[]): Buffer {
  if (bits.length === 0) return bitString(Buffer.alloc(0))
  const last = Math.max(...bits)
  const bytes = Buffer.alloc(Math.floor(last / 8) + 1)
  for (const bit of bits) bytes[bit >> 3]! |= 0x80 >> (bit & 7)
  return bitString(bytes, 7 - (last & 7))
}

export function octetString(bytes: Uint8Array): Buffer {
  return tlv(Tag.OCTET_STRING, bytes)
}

const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/

export function isPrintableString(s: string): boolean {
  return PRINTABLE.test(s)
}

export function printableString(s: string): Buffer {
  if (!isPrintableString(s)) throw new RangeError(`not a PrintableString: '${s}'`)
  return tlv(Tag.PRINTABLE_STRING, Buffer.from(s, 'ascii'))
}

export function utf8String(s: string): Buffer {
  return tlv(Tag.UTF8_STRING, Buffer.from(s, 'utf8'))
}

/** PrintableString when the characters allow it, else UTF8String (Go's encoding of pkix.Name values). */
export function directoryString(s: string): Buffer {
  return isPrintableString(s) ? printableString(s) : utf8String(s)
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0')
}

function checkTime(date: Date): void {
  if (Number.isNaN(date.getTime())) throw new RangeError('invalid date')
}

/** UTCTime YYMMDDHHMMSSZ (seconds precision, UTC). */
export function utcTime(date: Date): Buffer {
  checkTime(date)
  const y = date.getUTCFullYear()
  if (y < 1950 || y > 2049) throw new RangeError(`UTCTime cannot hold year ${y}`)
  const s = `${pad(y % 100)}${pad(date.getUTCMonth() + 1)}${pad(date.getUTCDate())}${pad(date.getUTCHours())}${pad(date.getUTCMinutes())}${pad(date.getUTCSeconds())}Z`
  return tlv(Tag.UTC_TIME, Buffer.from(s, 'ascii'))
}

/** GeneralizedTime YYYYMMDDHHMMSSZ (no fractional seconds, as RFC 5280 §4.1.2.5.2 requires). */
export function generalizedTime(date: Date): Buffer {
  checkTime(date)
  const y = date.getUTCFullYear()
  if (y < 0 || y > 9999) throw new RangeError(`GeneralizedTime cannot hold year ${y}`)
  const s = `${pad(y, 4)}${pad(date.getUTCMonth() + 1)}${pad(date.getUTCDate())}${pad(date.getUTCHours())}${pad(date.getUTCMinutes())}${pad(date.getUTCSeconds())}Z`
  return tlv(Tag.GENERALIZED_TIME, Buffer.from(s, 'ascii'))
}

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050. */
export function x509Time(date: Date): Buffer {
  const y = date.getUTCFullYear()
  return y >= 1950 && y <= 2049 ? utcTime(date) : generalizedTime(date)
}

/** [n] EXPLICIT: a constructed context-specific tag around a complete encoding. */
export function explicit(tagNumber: number, inner: Uint8Array): Buffer {
  if (tagNumber < 0 || tagNumber > 30) throw new RangeError('tag number out of range')
  return tlv(0xa0 | tagNumber, inner)
}

/** [n] IMPLICIT for a primitive value: the contents bytes under a context-specific primitive tag. */
export function implicitPrimitive(tagNumber: number, contents: Uint8Array): Buffer {
  if (tagNumber < 0 || tagNumber > 30) throw new RangeError('tag number out of range')
  return tlv(0x80 | tagNumber, contents)
}

/** One decoded TLV: where its contents lie in the buffer it was read from. */
export interface Element {
  tag: number
  /** Offset of the tag byte. */
  start: number
  /** Offset of the first contents byte. */
  contentStart: number
  /** Offset just past the contents. */
  end: number
}

/** Reads the DER element at `offset` (single-byte tags, definite lengths only: all that X.509 uses). */
export function readElement(buf: Uint8Array, offset = 0): Element {
  if (offset + 2 > buf.length) throw new RangeError('truncated DER element')
  const tag = buf[offset]!
  if ((tag & 0x1f) === 0x1f) throw new RangeError('multi-byte DER tags are not supported')
  let pos = offset + 1
  const first = buf[pos++]!
  let length: number
  if (first < 0x80) length = first
  else {
    const n = first & 0x7f
    if (n === 0 || n > 4) throw new RangeError('unsupported DER length')
    if (pos + n > buf.length) throw new RangeError('truncated DER length')
    length = 0
    for (let i = 0; i < n; i++) length = length * 256 + buf[pos++]!
  }
  const end = pos + length
  if (end > buf.length) throw new RangeError('DER element runs past the end of its buffer')
  return { tag, start: offset, contentStart: pos, end }
}

/** The elements directly inside a constructed element. */
export function children(buf: Uint8Array, parent: Element): Element[] {
  const out: Element[] = []
  for (let pos = parent.contentStart; pos < parent.end; ) {
    const el = readElement(buf, pos)
    out.push(el)
    pos = el.end
  }
  return out
}

/** Dotted form of an OBJECT IDENTIFIER element's contents. */
export function decodeOid(contents: Uint8Array): string {
  const arcs: bigint[] = []
  let n = 0n
  for (const b of contents) {
    n = (n << 7n) | BigInt(b & 0x7f)
    if ((b & 0x80) === 0) {
      arcs.push(n)
      n = 0n
    }
  }
  const first = arcs.shift() ?? 0n
  const head = first < 80n ? [first / 40n, first % 40n] : [2n, first - 80n]
  return [...head, ...arcs].join('.')
}
