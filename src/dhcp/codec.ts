// DHCPv4 wire format (RFC 2131 §2, RFC 2132, RFC 3396). decode never trusts a length; encode splits long options,
// uses option overload (52) when the options do not fit the client's maximum size, and pads to BOOTP's 300 bytes.
import { RackbootError } from '../errors.js'
import { OptionCode, readIp, writeIp, type DhcpOptions } from './options.js'

export const BOOTREQUEST = 1
export const BOOTREPLY = 2
export const MAGIC_COOKIE = 0x63825363
/** Fixed BOOTP header (236) plus the magic cookie. */
export const HEADER_SIZE = 240
/** RFC 951: BOOTP messages are at least 300 bytes; some old PXE ROMs drop shorter replies. */
export const MIN_PACKET_SIZE = 300
/** RFC 2131 §2: every client accepts a 576-byte IP datagram; minus IP (20) and UDP (8) headers. */
export const DEFAULT_MAX_DHCP_SIZE = 576 - 28
export const FLAG_BROADCAST = 0x8000

const SNAME_OFFSET = 44
const SNAME_SIZE = 64
const FILE_OFFSET = 108
const FILE_SIZE = 128

export interface DhcpPacket {
  /** 1 = BOOTREQUEST, 2 = BOOTREPLY. */
  op: number
  htype: number
  hlen: number
  hops: number
  xid: number
  secs: number
  flags: number
  ciaddr: string
  yiaddr: string
  siaddr: string
  giaddr: string
  /** All 16 bytes of chaddr; the hardware address is the first `hlen`. */
  chaddr: Buffer
  /** Server host name, when the field is not overloaded with options. */
  sname: string
  /** Boot file name, when the field is not overloaded with options. */
  file: string
  options: DhcpOptions
}

export type DecodeFailure =
  | 'too-short'
  | 'bad-magic-cookie'
  | 'bad-op'
  | 'bad-hlen'
  | 'truncated-option'
  | 'bad-overload'

export type DecodeResult = { ok: true; packet: DhcpPacket } | { ok: false; reason: DecodeFailure }

/** Reads options from buf[start, end) into `out`, joining repeated codes (RFC 3396). Returns a failure or null. */
function readOptions(buf: Buffer, start: number, end: number, out: DhcpOptions): DecodeFailure | null {
  let i = start
  while (i < end) {
    const code = buf[i]!
    if (code === OptionCode.Pad) {
      i += 1
      continue
    }
    if (code === OptionCode.End) return null
    if (i + 1 >= end) return 'truncated-option'
    const len = buf[i + 1]!
    const from = i + 2
    const to = from + len
    if (to > end) return 'truncated-option'
    // A view, not a copy: Node hands every datagram its own buffer, and decode copies what it was given.
    const value = buf.subarray(from, to)
    const prev = out.get(code)
    out.set(code, prev ? Buffer.concat([prev, value]) : value)
    i = to
  }
  // No END: tolerated (some clients omit it), as long as no option ran past the end.
  return null
}

function cString(buf: Buffer, offset: number, size: number): string {
  let end = offset
  const limit = offset + size
  while (end < limit && buf[end] !== 0) end++
  return buf.toString('latin1', offset, end)
}

/**
 * Decodes a datagram; malformed input is a value, never an exception. The packet's options and chaddr are views into
 * one copy of the datagram, or into `input` itself when the caller `owns` it (a buffer nobody else keeps or reuses,
 * as dgram gives each datagram: one allocation and copy less per packet).
 */
export function tryDecode(input: Buffer, owns = false): DecodeResult {
  const buf = owns ? input : Buffer.from(input)
  if (buf.length < HEADER_SIZE) return { ok: false, reason: 'too-short' }
  if (buf.readUInt32BE(236) !== MAGIC_COOKIE) return { ok: false, reason: 'bad-magic-cookie' }
  const op = buf[0]!
  if (op !== BOOTREQUEST && op !== BOOTREPLY) return { ok: false, reason: 'bad-op' }
  const hlen = buf[2]!
  if (hlen > 16) return { ok: false, reason: 'bad-hlen' }
  const options: DhcpOptions = new Map()
  const failure = readOptions(buf, HEADER_SIZE, buf.length, options)
  if (failure) return { ok: false, reason: failure }

  let sname = ''
  let file = ''
  const overload = options.get(OptionCode.OptionOverload)
  let overloadValue = 0
  if (overload) {
    if (overload.length !== 1 || overload[0]! < 1 || overload[0]! > 3) return { ok: false, reason: 'bad-overload' }
    overloadValue = overload[0]!
    options.delete(OptionCode.OptionOverload)
    // RFC 3396 §6: options field first, then file, then sname.
    if (overloadValue & 1) {
      const f = readOptions(buf, FILE_OFFSET, FILE_OFFSET + FILE_SIZE, options)
      if (f) return { ok: false, reason: f }
    }
    if (overloadValue & 2) {
      const f = readOptions(buf, SNAME_OFFSET, SNAME_OFFSET + SNAME_SIZE, options)
      if (f) return { ok: false, reason: f }
    }
  }
  if (!(overloadValue & 2)) sname = cString(buf, SNAME_OFFSET, SNAME_SIZE)
  if (!(overloadValue & 1)) file = cString(buf, FILE_OFFSET, FILE_SIZE)

  return {
    ok: true,
    packet: {
      op,
      htype: buf[1]!,
      hlen,
      hops: buf[3]!,
      xid: buf.readUInt32BE(4),
      secs: buf.readUInt16BE(8),
      flags: buf.readUInt16BE(10),
      ciaddr: readIp(buf, 12),
      yiaddr: readIp(buf, 16),
      siaddr: readIp(buf, 20),
      giaddr: readIp(buf, 24),
      chaddr: buf.subarray(28, 44),
      sname,
      file,
      options,
    },
  }
}

/** Decodes a datagram or throws RB_ERR_VALIDATION with `details.reason`. */
export function decode(buf: Buffer): DhcpPacket {
  const r = tryDecode(buf)
  if (!r.ok) throw new RackbootError('RB_ERR_VALIDATION', `malformed DHCP packet: ${r.reason}`, { details: { reason: r.reason } })
  return r.packet
}

/** Serialises one option as TLVs, splitting values over 255 bytes into consecutive instances (RFC 3396). */
function optionChunks(code: number, value: Buffer): Buffer[] {
  if (value.length === 0) return [Buffer.from([code, 0])]
  const out: Buffer[] = []
  for (let i = 0; i < value.length; i += 255) {
    const part = value.subarray(i, Math.min(i + 255, value.length))
    const tlv = Buffer.allocUnsafe(part.length + 2)
    tlv[0] = code
    tlv[1] = part.length
    part.copy(tlv, 2)
    out.push(tlv)
  }
  return out
}

/** Splits TLVs further so they can fill a field exactly: an option may continue in the next field (RFC 3396). */
function splitTlv(tlv: Buffer, room: number): [Buffer, Buffer] | null {
  // Need at least code+len+1 data byte in this field and a non-empty remainder.
  if (room < 3 || tlv.length - 2 <= room - 2) return null
  const code = tlv[0]!
  const data = tlv.subarray(2)
  const first = data.subarray(0, room - 2)
  const rest = data.subarray(room - 2)
  return [Buffer.concat([Buffer.from([code, first.length]), first]), Buffer.concat([Buffer.from([code, rest.length]), rest])]
}

export interface EncodeOptions {
  /** Largest DHCP message (UDP payload) the receiver accepts; options overflow into file/sname beyond it. */
  maxSize?: number
}

function writeField(out: Buffer, offset: number, size: number, text: string, name: string): void {
  const bytes = Buffer.from(text, 'latin1')
  if (bytes.length >= size) throw new RangeError(`${name} is ${bytes.length} bytes; the field holds ${size - 1}`)
  bytes.copy(out, offset)
}

const skipOnEncode = (code: number): boolean =>
  code === OptionCode.Pad || code === OptionCode.End || code === OptionCode.OptionOverload // 52 is decided here

/** Writes one option at `at`, split into 255-byte instances (RFC 3396); returns the next offset. */
function writeTlvs(out: Buffer, at: number, code: number, value: Buffer): number {
  if (value.length === 0) {
    out[at] = code
    out[at + 1] = 0
    return at + 2
  }
  for (let i = 0; i < value.length; i += 255) {
    const n = Math.min(255, value.length - i)
    out[at] = code
    out[at + 1] = n
    value.copy(out, at + 2, i, i + n)
    at += n + 2
  }
  return at
}

function writeHeader(out: Buffer, p: DhcpPacket, overload: number): void {
  out[0] = p.op
  out[1] = p.htype
  out[2] = p.hlen
  out[3] = p.hops
  out.writeUInt32BE(p.xid >>> 0, 4)
  out.writeUInt16BE(p.secs & 0xffff, 8)
  out.writeUInt16BE(p.flags & 0xffff, 10)
  writeIp(out, 12, p.ciaddr)
  writeIp(out, 16, p.yiaddr)
  writeIp(out, 20, p.siaddr)
  writeIp(out, 24, p.giaddr)
  p.chaddr.copy(out, 28, 0, Math.min(16, p.chaddr.length))
  if (!(overload & 2)) writeField(out, SNAME_OFFSET, SNAME_SIZE, p.sname, 'sname')
  if (!(overload & 1)) writeField(out, FILE_OFFSET, FILE_SIZE, p.file, 'file')
  out.writeUInt32BE(MAGIC_COOKIE, 236)
}

/**
 * A zero-filled buffer from Node's shared pool (Buffer.alloc gives each reply an ArrayBuffer of its own: a malloc and
 * a free per reply, ~3x the cost of a pooled slice). A slice stays valid while referenced; the pool is never reused.
 */
const zeroed = (size: number): Buffer => {
  const out = Buffer.allocUnsafe(size)
  // The typed array's own fill: Buffer#fill checks its arguments and calls into C++ (twice the cost for 300 bytes).
  fillBytes.call(out, 0)
  return out
}
const fillBytes = Uint8Array.prototype.fill

/** Serialises a packet. Message type (53) goes first; options keep their order otherwise. */
export function encode(p: DhcpPacket, options: EncodeOptions = {}): Buffer {
  const limit = Math.max(options.maxSize ?? DEFAULT_MAX_DHCP_SIZE, MIN_PACKET_SIZE)
  const plainRoom = limit - HEADER_SIZE - 1 // END
  // Fast path (nearly every reply): everything fits the options area; write it in place, no intermediate buffers.
  let plainTotal = 0
  for (const [code, value] of p.options) {
    if (skipOnEncode(code)) continue
    plainTotal += value.length === 0 ? 2 : value.length + 2 * Math.ceil(value.length / 255)
  }
  if (plainTotal <= plainRoom) {
    const out = zeroed(Math.max(MIN_PACKET_SIZE, HEADER_SIZE + plainTotal + 1))
    writeHeader(out, p, 0)
    let at = HEADER_SIZE
    const mt = p.options.get(OptionCode.MessageType)
    if (mt) at = writeTlvs(out, at, OptionCode.MessageType, mt)
    for (const [code, value] of p.options) {
      if (code === OptionCode.MessageType || skipOnEncode(code)) continue
      at = writeTlvs(out, at, code, value)
    }
    out[at] = OptionCode.End
    return out
  }

  const tlvs: Buffer[] = []
  const mt = p.options.get(OptionCode.MessageType)
  if (mt) tlvs.push(...optionChunks(OptionCode.MessageType, mt))
  for (const [code, value] of p.options) {
    if (code === OptionCode.MessageType || skipOnEncode(code)) continue
    tlvs.push(...optionChunks(code, value))
  }
  const total = tlvs.reduce((n, b) => n + b.length, 0)

  // Fields that can carry options: the options area (up to the limit), then file, then sname when they are empty.
  // When even those cannot hold everything, send one larger datagram instead (most clients take 1500 bytes).
  let overload = 0
  const areas: { offset: number; size: number; bit: number }[] = []
  if (total > plainRoom) {
    if (p.file === '') areas.push({ offset: FILE_OFFSET, size: FILE_SIZE, bit: 1 })
    if (p.sname === '') areas.push({ offset: SNAME_OFFSET, size: SNAME_SIZE, bit: 2 })
    const capacity = plainRoom - 3 + areas.reduce((n, a) => n + a.size - 1, 0)
    // Each field switch may cost 2 bytes of a split TLV header: keep a margin.
    if (areas.length === 0 || total + 2 * areas.length > capacity) areas.length = 0
  }

  const mainTlvs: Buffer[] = []
  const areaTlvs: Buffer[][] = areas.map(() => [])
  if (areas.length === 0) mainTlvs.push(...tlvs)
  else {
    // Reserve 3 bytes for option 52 in the options area; each overloaded field ends with END.
    const rooms = [plainRoom - 3, ...areas.map((a) => a.size - 1)]
    const buckets = [mainTlvs, ...areaTlvs]
    let bucket = 0
    let used = 0
    for (let tlv of tlvs) {
      for (;;) {
        const room = rooms[bucket]! - used
        if (tlv.length <= room || bucket === buckets.length - 1) {
          buckets[bucket]!.push(tlv)
          used += tlv.length
          break
        }
        const split = splitTlv(tlv, room)
        if (split) {
          buckets[bucket]!.push(split[0])
          tlv = split[1]
        }
        bucket += 1
        used = 0
      }
    }
    areas.forEach((a, i) => {
      if (areaTlvs[i]!.length > 0) overload |= a.bit
    })
    if (overload) mainTlvs.unshift(Buffer.from([OptionCode.OptionOverload, 1, overload]))
  }

  const mainLen = mainTlvs.reduce((n, b) => n + b.length, 0)
  const size = Math.max(MIN_PACKET_SIZE, HEADER_SIZE + mainLen + 1)
  const out = zeroed(size)
  writeHeader(out, p, overload)
  let at = HEADER_SIZE
  for (const b of mainTlvs) {
    b.copy(out, at)
    at += b.length
  }
  out[at] = OptionCode.End
  areas.forEach((a, i) => {
    const list = areaTlvs[i]!
    if (list.length === 0) return
    let o = a.offset
    for (const b of list) {
      b.copy(out, o)
      o += b.length
    }
    if (o < a.offset + a.size) out[o] = OptionCode.End
  })
  return out
}

const HEX_BYTE = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

/** The client's hardware address as lower-case colon-separated hex (Ethernet: 6 bytes). */
export function hardwareAddress(p: DhcpPacket): string {
  const c = p.chaddr
  const n = Math.min(p.hlen, 16, c.length)
  // Ethernet, nearly every packet: one template, no hex string to slice (the MAC keys the pool's maps).
  if (n === 6) return `${HEX_BYTE[c[0]!]}:${HEX_BYTE[c[1]!]}:${HEX_BYTE[c[2]!]}:${HEX_BYTE[c[3]!]}:${HEX_BYTE[c[4]!]}:${HEX_BYTE[c[5]!]}`
  let out = ''
  for (let i = 0; i < n; i++) out += i === 0 ? HEX_BYTE[c[i]!]! : `:${HEX_BYTE[c[i]!]!}`
  return out
}

/** A blank packet with every address zero, for building requests in tests and tools. */
export function emptyPacket(op: number = BOOTREQUEST): DhcpPacket {
  return {
    op, htype: 1, hlen: 6, hops: 0, xid: 0, secs: 0, flags: 0,
    ciaddr: '0.0.0.0', yiaddr: '0.0.0.0', siaddr: '0.0.0.0', giaddr: '0.0.0.0',
    chaddr: Buffer.alloc(16), sname: '', file: '', options: new Map(),
  }
}

/** Parses 'aa:bb:cc:dd:ee:ff' (or dashes) into a 16-byte chaddr. */
export function chaddrFromMac(mac: string): Buffer {
  const hex = mac.replace(/[:-]/g, '')
  if (!/^[0-9a-fA-F]{2,32}$/.test(hex) || hex.length % 2 !== 0) throw new TypeError(`not a hardware address: ${mac}`)
  const b = Buffer.alloc(16)
  Buffer.from(hex, 'hex').copy(b)
  return b
}
