// TFTP wire format (RFC 1350, OACK from RFC 2347). Decoding never throws: a datagram that does not parse is a value
// saying why, so the socket handlers can drop and count it.

export const Opcode = {
  RRQ: 1,
  WRQ: 2,
  DATA: 3,
  ACK: 4,
  ERROR: 5,
  OACK: 6,
} as const
export type Opcode = (typeof Opcode)[keyof typeof Opcode]

/** RFC 1350 error codes, plus 8 from RFC 2347 (option negotiation refused). */
export const ErrorCode = {
  NOT_DEFINED: 0,
  FILE_NOT_FOUND: 1,
  ACCESS_VIOLATION: 2,
  DISK_FULL: 3,
  ILLEGAL_OPERATION: 4,
  UNKNOWN_TID: 5,
  FILE_EXISTS: 6,
  NO_SUCH_USER: 7,
  OPTION_REFUSED: 8,
} as const
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]

export type TransferMode = 'octet' | 'netascii' | 'mail'

export interface RequestPacket {
  op: typeof Opcode.RRQ | typeof Opcode.WRQ
  filename: string
  /** Lower-cased as sent; anything but octet/netascii/mail is kept so the server can refuse it by name. */
  mode: string
  /** RFC 2347 options, names lower-cased; the first occurrence of a repeated name wins. */
  options: Map<string, string>
}
export interface DataPacket {
  op: typeof Opcode.DATA
  block: number
  data: Buffer
}
export interface AckPacket {
  op: typeof Opcode.ACK
  block: number
}
export interface ErrorPacket {
  op: typeof Opcode.ERROR
  code: number
  message: string
}
export interface OackPacket {
  op: typeof Opcode.OACK
  options: Map<string, string>
}
export type Packet = RequestPacket | DataPacket | AckPacket | ErrorPacket | OackPacket

export type DropReason =
  | 'short'
  | 'bad_opcode'
  | 'unterminated'
  | 'empty_filename'
  | 'bad_option'
  | 'too_long'

export type DecodeResult = { ok: true; packet: Packet } | { ok: false; reason: DropReason }

/** Longest request accepted. RFC 2347 asks for at most 512 octets; some clients send a little more. */
export const MAX_REQUEST_BYTES = 2048
/** Largest blksize RFC 2348 allows (65535 - 20 IP - 8 UDP - 4 TFTP - ... as the RFC states it). */
export const MAX_BLKSIZE = 65464
export const MIN_BLKSIZE = 8

const fail = (reason: DropReason): DecodeResult => ({ ok: false, reason })

/**
 * Splits NUL-terminated strings from `start`. Every string must be terminated: a trailing fragment without its NUL
 * is malformed (RFC 1350 and 2347 both end each field with a 0 byte).
 */
function splitStrings(buf: Buffer, start: number): string[] | null {
  const out: string[] = []
  let from = start
  while (from < buf.length) {
    const nul = buf.indexOf(0, from)
    if (nul < 0) return null
    // latin1 keeps every byte as one char, so no byte is silently rewritten as it would be by a UTF-8 decode.
    out.push(buf.toString('latin1', from, nul))
    from = nul + 1
  }
  return out
}

function decodeRequest(op: typeof Opcode.RRQ | typeof Opcode.WRQ, buf: Buffer): DecodeResult {
  if (buf.length > MAX_REQUEST_BYTES) return fail('too_long')
  const fields = splitStrings(buf, 2)
  if (fields === null || fields.length < 2) return fail('unterminated')
  const filename = fields[0]!
  if (filename.length === 0) return fail('empty_filename')
  const mode = fields[1]!.toLowerCase()
  // Options come in name/value pairs; a dangling name is malformed. Some clients pad with trailing NULs: allow
  // empty strings only at the very end.
  let rest = fields.slice(2)
  while (rest.length > 0 && rest[rest.length - 1] === '' && rest.length % 2 === 1) rest = rest.slice(0, -1)
  if (rest.length % 2 !== 0) return fail('bad_option')
  const options = new Map<string, string>()
  for (let i = 0; i < rest.length; i += 2) {
    const name = rest[i]!.toLowerCase()
    if (name.length === 0) return fail('bad_option')
    if (!options.has(name)) options.set(name, rest[i + 1]!)
  }
  return { ok: true, packet: { op, filename, mode, options } }
}

export function decode(buf: Buffer): DecodeResult {
  if (buf.length < 4) return fail('short')
  const op = buf.readUInt16BE(0)
  switch (op) {
    case Opcode.RRQ:
    case Opcode.WRQ:
      return decodeRequest(op, buf)
    case Opcode.DATA:
      return { ok: true, packet: { op, block: buf.readUInt16BE(2), data: buf.subarray(4) } }
    case Opcode.ACK:
      // Trailing bytes after the block number are ignored, as tftpd-hpa does.
      return { ok: true, packet: { op, block: buf.readUInt16BE(2) } }
    case Opcode.ERROR: {
      // The message should be NUL-terminated; a missing terminator is tolerated (the code is what matters).
      const end = buf.indexOf(0, 4)
      const message = buf.toString('latin1', 4, end < 0 ? buf.length : end)
      return { ok: true, packet: { op, code: buf.readUInt16BE(2), message } }
    }
    case Opcode.OACK: {
      const fields = splitStrings(buf, 2)
      if (fields === null || fields.length % 2 !== 0) return fail('bad_option')
      const options = new Map<string, string>()
      for (let i = 0; i < fields.length; i += 2) options.set(fields[i]!.toLowerCase(), fields[i + 1]!)
      return { ok: true, packet: { op, options } }
    }
    default:
      return fail('bad_opcode')
  }
}

/** The opcode and block of an ACK without building an object: the hot path of every transfer. -1 if not an ACK. */
export function ackBlock(buf: Buffer): number {
  return buf.length >= 4 && buf[0] === 0 && buf[1] === Opcode.ACK ? buf.readUInt16BE(2) : -1
}

function strings(parts: string[]): Buffer {
  let len = 0
  for (const p of parts) len += Buffer.byteLength(p, 'latin1') + 1
  const out = Buffer.alloc(len)
  let at = 0
  for (const p of parts) {
    at += out.write(p, at, 'latin1')
    out[at++] = 0
  }
  return out
}

export function encodeRequest(op: typeof Opcode.RRQ | typeof Opcode.WRQ, filename: string, mode: string, options?: Map<string, string> | Record<string, string>): Buffer {
  const parts = [filename, mode]
  const entries = options instanceof Map ? [...options] : Object.entries(options ?? {})
  for (const [k, v] of entries) parts.push(k, v)
  const header = Buffer.alloc(2)
  header.writeUInt16BE(op, 0)
  return Buffer.concat([header, strings(parts)])
}

export function encodeAck(block: number): Buffer {
  const out = Buffer.alloc(4)
  out.writeUInt16BE(Opcode.ACK, 0)
  out.writeUInt16BE(block & 0xffff, 2)
  return out
}

export function encodeData(block: number, data: Buffer): Buffer {
  const out = Buffer.allocUnsafe(4 + data.length)
  writeDataHeader(out, 0, block)
  data.copy(out, 4)
  return out
}

/** Writes a DATA header at `at`; the block number wraps to 0 after 65535 (the rollover most clients expect). */
export function writeDataHeader(buf: Buffer, at: number, block: number): void {
  buf[at] = 0
  buf[at + 1] = Opcode.DATA
  buf[at + 2] = (block >>> 8) & 0xff
  buf[at + 3] = block & 0xff
}

export function encodeError(code: number, message: string): Buffer {
  // Messages are ASCII by convention; anything else is replaced so the packet stays well formed.
  const text = message.replace(/[^\x20-\x7e]/g, '?').slice(0, 400)
  const header = Buffer.alloc(4)
  header.writeUInt16BE(Opcode.ERROR, 0)
  header.writeUInt16BE(code & 0xffff, 2)
  return Buffer.concat([header, strings([text])])
}

export function encodeOack(options: Map<string, string>): Buffer {
  const parts: string[] = []
  for (const [k, v] of options) parts.push(k, v)
  const header = Buffer.alloc(2)
  header.writeUInt16BE(Opcode.OACK, 0)
  return Buffer.concat([header, strings(parts)])
}

/**
 * DATA packets laid out as packetize() lays them out, for `length` payload bytes, headers written and payloads not
 * yet filled; `payloads` are the payload views, in order, for a read straight into the slab (no copy).
 */
export function packetSlab(length: number, blksize: number, firstBlock = 1, count = Math.floor(length / blksize) + 1): { packets: Buffer[]; payloads: Buffer[] } {
  const slab = Buffer.allocUnsafe(count * 4 + length)
  const packets = new Array<Buffer>(count)
  const payloads = new Array<Buffer>(count)
  let pos = 0
  for (let i = 0; i < count; i++) {
    const n = Math.max(0, Math.min(blksize, length - i * blksize))
    writeDataHeader(slab, pos, firstBlock + i)
    packets[i] = slab.subarray(pos, pos + 4 + n)
    payloads[i] = slab.subarray(pos + 4, pos + 4 + n)
    pos += 4 + n
  }
  return { packets, payloads }
}

/**
 * Cuts content into DATA packets in one slab, each packet a view of its header and payload. Blocks are numbered from
 * `firstBlock` (wrapping at 65536 on the wire). Without `count`, the whole content plus the final short (possibly
 * empty) block that ends a transfer; with it, exactly `count` blocks of `data`, the last ones possibly short or empty.
 */
export function packetize(data: Buffer, blksize: number, firstBlock = 1, count = Math.floor(data.length / blksize) + 1): Buffer[] {
  const { packets, payloads } = packetSlab(data.length, blksize, firstBlock, count)
  for (let i = 0; i < count; i++) if (payloads[i]!.length > 0) data.copy(payloads[i]!, 0, i * blksize)
  return packets
}
