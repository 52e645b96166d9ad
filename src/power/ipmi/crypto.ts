// RMCP+ key exchange (RAKP) and per-packet protection on node:crypto: IPMI v2.0 §13.28-13.32.
// Pure functions of their inputs, so they can be checked against values computed by another implementation.
import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { AuthAlg, ConfAlg, IntegrityAlg } from './constants.js'

export interface CipherSuite {
  id: number
  auth: number
  integrity: number
  confidentiality: number
  /** Hash of the RAKP HMACs, the SIK and K1/K2. */
  hash: 'sha1' | 'sha256'
  /** RAKP4 integrity check value length: the HMAC truncated (12 for SHA1, 16 for SHA256). */
  rakp4IcvLength: number
  /** Per-packet AuthCode length: HMAC-SHA1-96 = 12, HMAC-SHA256-128 = 16. */
  authCodeLength: number
}

/** The suites rackboot speaks: 17 (RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128) and 3 (the SHA1 variant). */
export const CIPHER_SUITES: Record<3 | 17, CipherSuite> = {
  3: {
    id: 3,
    auth: AuthAlg.RAKP_HMAC_SHA1,
    integrity: IntegrityAlg.HMAC_SHA1_96,
    confidentiality: ConfAlg.AES_CBC_128,
    hash: 'sha1',
    rakp4IcvLength: 12,
    authCodeLength: 12,
  },
  17: {
    id: 17,
    auth: AuthAlg.RAKP_HMAC_SHA256,
    integrity: IntegrityAlg.HMAC_SHA256_128,
    confidentiality: ConfAlg.AES_CBC_128,
    hash: 'sha256',
    rakp4IcvLength: 16,
    authCodeLength: 16,
  },
}

export function suiteByAlgorithms(auth: number, integrity: number, confidentiality: number): CipherSuite | null {
  for (const suite of Object.values(CIPHER_SUITES)) {
    if (suite.auth === auth && suite.integrity === integrity && suite.confidentiality === confidentiality) return suite
  }
  return null
}

/** Everything both sides know after RAKP2; the inputs of every HMAC in the exchange. */
export interface RakpContext {
  consoleSessionId: number // SIDm
  bmcSessionId: number // SIDc
  consoleRandom: Buffer // Rm, 16 bytes
  bmcRandom: Buffer // Rc, 16 bytes
  bmcGuid: Buffer // GUIDc, 16 bytes
  /** ROLEm: the whole privilege byte sent in RAKP1, lookup bit included. */
  role: number
  username: Buffer
}

function u32le(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(n >>> 0)
  return b
}

function hmac(hash: 'sha1' | 'sha256', key: Buffer, ...parts: Buffer[]): Buffer {
  const h = createHmac(hash, key)
  for (const p of parts) h.update(p)
  return h.digest()
}

function nameField(ctx: RakpContext): Buffer {
  return Buffer.concat([Buffer.from([ctx.role, ctx.username.length]), ctx.username])
}

/** RAKP2 key exchange auth code the BMC must send: HMAC_Kuid(SIDm, SIDc, Rm, Rc, GUIDc, ROLEm, ULENGTHm, UNAMEm). */
export function rakp2AuthCode(suite: CipherSuite, kuid: Buffer, ctx: RakpContext): Buffer {
  return hmac(suite.hash, kuid, u32le(ctx.consoleSessionId), u32le(ctx.bmcSessionId), ctx.consoleRandom,
    ctx.bmcRandom, ctx.bmcGuid, nameField(ctx))
}

/** RAKP3 auth code the console sends: HMAC_Kuid(Rc, SIDm, ROLEm, ULENGTHm, UNAMEm). */
export function rakp3AuthCode(suite: CipherSuite, kuid: Buffer, ctx: RakpContext): Buffer {
  return hmac(suite.hash, kuid, ctx.bmcRandom, u32le(ctx.consoleSessionId), nameField(ctx))
}

/** Session Integrity Key: HMAC_KG(Rm, Rc, ROLEm, ULENGTHm, UNAMEm), KG being the BMC key or else Kuid. */
export function sessionIntegrityKey(suite: CipherSuite, kg: Buffer, ctx: RakpContext): Buffer {
  return hmac(suite.hash, kg, ctx.consoleRandom, ctx.bmcRandom, nameField(ctx))
}

/** RAKP4 integrity check value: HMAC_SIK(Rm, SIDc, GUIDc), truncated per suite. */
export function rakp4Icv(suite: CipherSuite, sik: Buffer, ctx: RakpContext): Buffer {
  return hmac(suite.hash, sik, ctx.consoleRandom, u32le(ctx.bmcSessionId), ctx.bmcGuid).subarray(0, suite.rakp4IcvLength)
}

// K1 and K2 are HMAC_SIK over 20 bytes of 0x01 / 0x02 (§13.32); the constants stay 20 bytes for SHA256 too.
const CONST_1 = Buffer.alloc(20, 0x01)
const CONST_2 = Buffer.alloc(20, 0x02)

export interface SessionKeys {
  sik: Buffer
  /** Integrity key (whole HMAC output). */
  k1: Buffer
  /** AES-CBC-128 key: the first 16 bytes of K2. */
  aesKey: Buffer
}

export function deriveKeys(suite: CipherSuite, kuid: Buffer, kg: Buffer | null, ctx: RakpContext): SessionKeys {
  const sik = sessionIntegrityKey(suite, kg && kg.length > 0 ? kg : kuid, ctx)
  const k1 = hmac(suite.hash, sik, CONST_1)
  const k2 = hmac(suite.hash, sik, CONST_2)
  return { sik, k1, aesKey: k2.subarray(0, 16) }
}

/** Per-packet AuthCode over AuthType/Format .. Next Header, with K1. */
export function packetAuthCode(suite: CipherSuite, k1: Buffer, covered: Buffer): Buffer {
  return hmac(suite.hash, k1, covered).subarray(0, suite.authCodeLength)
}

export function equalCodes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b)
}

/**
 * AES-CBC-128 confidentiality payload (§13.29): IV, then the data followed by pad bytes 1, 2, 3, ... and the pad
 * length, encrypted without PKCS padding.
 */
export function encryptPayload(aesKey: Buffer, plain: Buffer, iv: Buffer = randomBytes(16)): Buffer {
  const padLength = (16 - ((plain.length + 1) % 16)) % 16
  const pad = Buffer.alloc(padLength + 1)
  for (let i = 0; i < padLength; i++) pad[i] = i + 1
  pad[padLength] = padLength
  const cipher = createCipheriv('aes-128-cbc', aesKey, iv)
  cipher.setAutoPadding(false)
  return Buffer.concat([iv, cipher.update(Buffer.concat([plain, pad])), cipher.final()])
}

/** Inverse of encryptPayload; null when the length or the pad is wrong (a packet to drop, not a crash). */
export function decryptPayload(aesKey: Buffer, data: Buffer): Buffer | null {
  if (data.length < 32 || data.length % 16 !== 0) return null
  const decipher = createDecipheriv('aes-128-cbc', aesKey, data.subarray(0, 16))
  decipher.setAutoPadding(false)
  const plain = Buffer.concat([decipher.update(data.subarray(16)), decipher.final()])
  const padLength = plain[plain.length - 1] ?? 0
  if (padLength > 15) return null
  const end = plain.length - 1 - padLength
  for (let i = 0; i < padLength; i++) if (plain[end + i] !== i + 1) return null
  return plain.subarray(0, end)
}
