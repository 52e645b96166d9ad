// RMCP / IPMI LAN framing: the IPMI message (§13.8), the IPMI v1.5 session wrapper used only for the
// session-less Get Channel Authentication Capabilities, and the IPMI v2.0 (RMCP+) session wrapper (§13.6).
import { AUTH_TYPE_NONE, AUTH_TYPE_RMCP_PLUS, RMCP_HEADER } from './constants.js'

export const BMC_ADDRESS = 0x20
export const CONSOLE_ADDRESS = 0x81

function checksum(bytes: Buffer, start: number, end: number): number {
  let sum = 0
  for (let i = start; i < end; i++) sum = (sum + (bytes[i] ?? 0)) & 0xff
  return (0x100 - sum) & 0xff
}

export interface IpmiRequest {
  netFn: number
  cmd: number
  /** 6-bit request sequence, echoed by the BMC; pairs a response with its request. */
  rqSeq: number
  data: Buffer
}

export interface IpmiResponse {
  netFn: number
  cmd: number
  rqSeq: number
  completionCode: number
  data: Buffer
}

export function encodeRequest(req: IpmiRequest): Buffer {
  const msg = Buffer.alloc(7 + req.data.length)
  msg[0] = BMC_ADDRESS
  msg[1] = (req.netFn << 2) & 0xfc
  msg[2] = checksum(msg, 0, 2)
  msg[3] = CONSOLE_ADDRESS
  msg[4] = (req.rqSeq << 2) & 0xfc
  msg[5] = req.cmd
  req.data.copy(msg, 6)
  msg[msg.length - 1] = checksum(msg, 3, msg.length - 1)
  return msg
}

/** Decodes a response message; null when it is too short or a checksum is wrong. */
export function decodeResponse(msg: Buffer): IpmiResponse | null {
  if (msg.length < 8) return null
  if (checksum(msg, 0, 2) !== msg[2]) return null
  if (checksum(msg, 3, msg.length - 1) !== msg[msg.length - 1]) return null
  return {
    netFn: (msg[1] ?? 0) >> 2,
    rqSeq: (msg[4] ?? 0) >> 2,
    cmd: msg[5] ?? 0,
    completionCode: msg[6] ?? 0,
    data: Buffer.from(msg.subarray(7, msg.length - 1)),
  }
}

/** RMCP + IPMI v1.5 session header with auth type none, session 0: only for pre-session commands. */
export function encodeV15(message: Buffer): Buffer {
  const head = Buffer.alloc(10)
  head[0] = AUTH_TYPE_NONE // auth type; sequence (4) and session ID (4) stay 0
  head[9] = message.length
  return Buffer.concat([RMCP_HEADER, head, message])
}

export interface V20Packet {
  payloadType: number
  encrypted: boolean
  authenticated: boolean
  sessionId: number
  sequence: number
  /** As on the wire (still encrypted when `encrypted`). */
  payload: Buffer
  /** Bytes covered by the AuthCode (AuthType/Format .. Next Header), when authenticated. */
  covered: Buffer | null
  authCode: Buffer | null
}

export type DecodedPacket =
  | { format: 'v15'; sessionId: number; message: Buffer }
  | ({ format: 'v20' } & V20Packet)

/**
 * Decodes an RMCP datagram. `authCodeLength` is the session's AuthCode length (the trailer cannot be parsed
 * without it). Returns null for anything that is not an IPMI-class RMCP packet of a known shape.
 */
export function decodePacket(buf: Buffer, authCodeLength = 0): DecodedPacket | null {
  if (buf.length < 5 || buf[0] !== 0x06 || (buf[3] ?? 0) & 0x80 || ((buf[3] ?? 0) & 0x0f) !== 0x07) return null
  const authType = buf[4] ?? 0
  if (authType === AUTH_TYPE_RMCP_PLUS) {
    if (buf.length < 16) return null
    const typeByte = buf[5] ?? 0
    const payloadType = typeByte & 0x3f
    if (payloadType === 0x02) return null // OEM explicit payloads carry extra header bytes; never used here
    const sessionId = buf.readUInt32LE(6)
    const sequence = buf.readUInt32LE(10)
    const length = buf.readUInt16LE(14)
    if (16 + length > buf.length) return null
    const payload = Buffer.from(buf.subarray(16, 16 + length))
    const authenticated = (typeByte & 0x40) !== 0
    let covered: Buffer | null = null
    let authCode: Buffer | null = null
    if (authenticated) {
      if (authCodeLength === 0 || buf.length < 16 + length + 2 + authCodeLength) return null
      covered = Buffer.from(buf.subarray(4, buf.length - authCodeLength))
      authCode = Buffer.from(buf.subarray(buf.length - authCodeLength))
    }
    return { format: 'v20', payloadType, encrypted: (typeByte & 0x80) !== 0, authenticated, sessionId, sequence,
      payload, covered, authCode }
  }
  // IPMI v1.5: auth type, sequence (4), session ID (4), [auth code (16) unless type none], length, message
  const codeLength = authType === AUTH_TYPE_NONE ? 0 : 16
  const lengthAt = 4 + 1 + 4 + 4 + codeLength
  if (buf.length < lengthAt + 1) return null
  const length = buf[lengthAt] ?? 0
  if (lengthAt + 1 + length > buf.length) return null
  return { format: 'v15', sessionId: buf.readUInt32LE(9), message: Buffer.from(buf.subarray(lengthAt + 1, lengthAt + 1 + length)) }
}

export interface V20Encode {
  payloadType: number
  sessionId: number
  sequence: number
  /** Already encrypted when `encrypted`. */
  payload: Buffer
  encrypted: boolean
  /** When given, the packet is authenticated: pad, pad length, next header and this function's AuthCode. */
  sign?: (covered: Buffer) => Buffer
}

export function encodeV20(p: V20Encode): Buffer {
  const head = Buffer.alloc(12)
  head[0] = AUTH_TYPE_RMCP_PLUS
  head[1] = (p.encrypted ? 0x80 : 0) | (p.sign ? 0x40 : 0) | (p.payloadType & 0x3f)
  head.writeUInt32LE(p.sessionId >>> 0, 2)
  head.writeUInt32LE(p.sequence >>> 0, 6)
  head.writeUInt16LE(p.payload.length, 10)
  if (!p.sign) return Buffer.concat([RMCP_HEADER, head, p.payload])
  // Integrity pad: 0xFF bytes so that AuthType .. Next Header is a multiple of 4 bytes.
  const padLength = (4 - ((head.length + p.payload.length + 2) % 4)) % 4
  const trailer = Buffer.alloc(padLength + 2, 0xff)
  trailer[padLength] = padLength
  trailer[padLength + 1] = 0x07 // next header: always 07h
  const covered = Buffer.concat([head, p.payload, trailer])
  return Buffer.concat([RMCP_HEADER, covered, p.sign(covered)])
}
