// DHCPv6 message types, option codes and the typed readers/writers of the options rackboot uses (RFC 8415 §21,
// RFC 5970 for netboot, RFC 6939 for the client link-layer address, RFC 3646 for DNS). Options are raw bytes by
// code, in the order they came; readers return undefined for a value that does not parse, never throw.
import { bytesToIpv6, ipv6ToBytes } from './address.js'

export const MessageType6 = {
  Solicit: 1,
  Advertise: 2,
  Request: 3,
  Confirm: 4,
  Renew: 5,
  Rebind: 6,
  Reply: 7,
  Release: 8,
  Decline: 9,
  Reconfigure: 10,
  InformationRequest: 11,
  RelayForw: 12,
  RelayRepl: 13,
} as const
export type MessageType6 = (typeof MessageType6)[keyof typeof MessageType6]

const NAMES: Record<number, string> = {
  1: 'solicit', 2: 'advertise', 3: 'request', 4: 'confirm', 5: 'renew', 6: 'rebind', 7: 'reply', 8: 'release',
  9: 'decline', 10: 'reconfigure', 11: 'information-request', 12: 'relay-forw', 13: 'relay-repl',
}

/** Metric label of a message type: a fixed set, so a hostile type byte cannot grow the label space. */
export function messageName6(type: number): string {
  return NAMES[type] ?? 'unknown'
}

export const Option6 = {
  ClientId: 1,
  ServerId: 2,
  IaNa: 3,
  IaTa: 4,
  IaAddr: 5,
  Oro: 6,
  Preference: 7,
  ElapsedTime: 8,
  RelayMsg: 9,
  Auth: 11,
  Unicast: 12,
  StatusCode: 13,
  RapidCommit: 14,
  UserClass: 15,
  VendorClass: 16,
  VendorOpts: 17,
  InterfaceId: 18,
  DnsServers: 23,
  DomainList: 24,
  IaPd: 25,
  BootfileUrl: 59,
  BootfileParam: 60,
  ClientArchType: 61,
  Nii: 62,
  ClientLinkLayerAddr: 79,
} as const

export const StatusCode6 = {
  Success: 0,
  UnspecFail: 1,
  NoAddrsAvail: 2,
  NoBinding: 3,
  NotOnLink: 4,
  UseMulticast: 5,
} as const

/** IANA enterprise number of Intel, under which PXE and UEFI HTTP boot send their vendor class (option 16). */
export const PXE_ENTERPRISE = 343

export interface Option6Value {
  code: number
  data: Buffer
}

/** Options in wire order; a code may repeat (IA_NA, IAADDR, vendor class). */
export type Options6 = Option6Value[]

export function firstOption(options: Options6, code: number): Buffer | undefined {
  for (const o of options) if (o.code === code) return o.data
  return undefined
}

export function allOptions(options: Options6, code: number): Buffer[] {
  return options.filter((o) => o.code === code).map((o) => o.data)
}

export function hasOption(options: Options6, code: number): boolean {
  return options.some((o) => o.code === code)
}

export function encodeOptions(options: Options6): Buffer {
  const parts: Buffer[] = []
  for (const o of options) {
    if (o.data.length > 0xffff) throw new RangeError(`option ${o.code} of ${o.data.length} bytes`)
    const h = Buffer.alloc(4)
    h.writeUInt16BE(o.code, 0)
    h.writeUInt16BE(o.data.length, 2)
    parts.push(h, o.data)
  }
  return Buffer.concat(parts)
}

export type OptionsFailure = 'truncated-option' | 'option-overrun' | 'too-many-options'

/**
 * Reads options from buf[start, end). Bounded: at most `maxOptions`; a header cut short or a length running past
 * `end` fails the whole list (RFC 8415 §16: a message that does not parse is discarded). Values are views.
 */
export function decodeOptions(buf: Buffer, start: number, end: number, maxOptions: number): { ok: true; options: Options6 } | { ok: false; reason: OptionsFailure } {
  const options: Options6 = []
  let i = start
  while (i < end) {
    if (options.length >= maxOptions) return { ok: false, reason: 'too-many-options' }
    if (i + 4 > end) return { ok: false, reason: 'truncated-option' }
    const code = buf.readUInt16BE(i)
    const len = buf.readUInt16BE(i + 2)
    if (i + 4 + len > end) return { ok: false, reason: 'option-overrun' }
    options.push({ code, data: buf.subarray(i + 4, i + 4 + len) })
    i += 4 + len
  }
  return { ok: true, options }
}

/** Most sub-options read inside an IA_NA or IAADDR. */
export const MAX_SUB_OPTIONS = 32

export interface IaNa {
  iaid: number
  t1: number
  t2: number
  options: Options6
}

/** Option 3 (RFC 8415 §21.4). */
export function decodeIaNa(data: Buffer): IaNa | undefined {
  if (data.length < 12) return undefined
  const sub = decodeOptions(data, 12, data.length, MAX_SUB_OPTIONS)
  if (!sub.ok) return undefined
  return { iaid: data.readUInt32BE(0), t1: data.readUInt32BE(4), t2: data.readUInt32BE(8), options: sub.options }
}

export function encodeIaNa(ia: IaNa): Buffer {
  const h = Buffer.alloc(12)
  h.writeUInt32BE(ia.iaid >>> 0, 0)
  h.writeUInt32BE(ia.t1 >>> 0, 4)
  h.writeUInt32BE(ia.t2 >>> 0, 8)
  return Buffer.concat([h, encodeOptions(ia.options)])
}

export interface IaAddr {
  address: string
  preferred: number
  valid: number
  options: Options6
}

/** Option 5 (RFC 8415 §21.6). */
export function decodeIaAddr(data: Buffer): IaAddr | undefined {
  if (data.length < 24) return undefined
  const sub = decodeOptions(data, 24, data.length, MAX_SUB_OPTIONS)
  if (!sub.ok) return undefined
  return { address: bytesToIpv6(data, 0), preferred: data.readUInt32BE(16), valid: data.readUInt32BE(20), options: sub.options }
}

export function encodeIaAddr(a: IaAddr): Buffer {
  const bytes = ipv6ToBytes(a.address)
  if (!bytes) throw new RangeError(`not an IPv6 address: ${a.address}`)
  const t = Buffer.alloc(8)
  t.writeUInt32BE(a.preferred >>> 0, 0)
  t.writeUInt32BE(a.valid >>> 0, 4)
  return Buffer.concat([bytes, t, encodeOptions(a.options)])
}

/** Option 13. */
export function encodeStatus(code: number, message = ''): Option6Value {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(code, 0)
  return { code: Option6.StatusCode, data: Buffer.concat([b, Buffer.from(message, 'utf8')]) }
}

export function decodeStatus(data: Buffer): { code: number; message: string } | undefined {
  if (data.length < 2) return undefined
  return { code: data.readUInt16BE(0), message: data.toString('utf8', 2) }
}

/** Option 6, the Option Request Option: the codes the client asks for. */
export function decodeOro(data: Buffer | undefined): number[] {
  if (!data || data.length % 2 !== 0) return []
  const out: number[] = []
  for (let i = 0; i < data.length; i += 2) out.push(data.readUInt16BE(i))
  return out
}

/** Option 61 (RFC 5970 §3.3): the client's architecture types, first preferred. */
export function decodeClientArchs(data: Buffer | undefined): number[] | undefined {
  if (!data || data.length === 0 || data.length % 2 !== 0) return undefined
  const out: number[] = []
  for (let i = 0; i < data.length; i += 2) out.push(data.readUInt16BE(i))
  return out
}

/** Length-prefixed opaque items (user class 15, and vendor class 16 after its enterprise number). */
function decodeOpaqueList(data: Buffer, start: number): Buffer[] | undefined {
  const out: Buffer[] = []
  let i = start
  while (i < data.length) {
    if (i + 2 > data.length) return undefined
    const len = data.readUInt16BE(i)
    if (i + 2 + len > data.length) return undefined
    out.push(data.subarray(i + 2, i + 2 + len))
    i += 2 + len
  }
  return out
}

function encodeOpaqueList(items: readonly string[]): Buffer {
  return Buffer.concat(items.map((s) => {
    const d = Buffer.from(s, 'latin1')
    const h = Buffer.alloc(2)
    h.writeUInt16BE(d.length, 0)
    return Buffer.concat([h, d])
  }))
}

/**
 * Option 15 (RFC 8415 §21.15). iPXE sends "iPXE" framed as RFC 8415 says; a client that sends the bare string
 * (no length prefix) is read as one class too.
 */
export function decodeUserClass6(data: Buffer | undefined): string[] {
  if (!data || data.length === 0) return []
  const items = decodeOpaqueList(data, 0)
  if (items && items.every((i) => i.length > 0)) return items.map((i) => i.toString('latin1'))
  return [data.toString('latin1').replace(/\0+$/, '')]
}

export function encodeUserClass6(classes: readonly string[]): Buffer {
  return encodeOpaqueList(classes)
}

export interface VendorClass6 {
  enterprise: number
  classes: string[]
}

/** Option 16 (RFC 8415 §21.16). */
export function decodeVendorClass6(data: Buffer | undefined): VendorClass6 | undefined {
  if (!data || data.length < 4) return undefined
  const items = decodeOpaqueList(data, 4)
  if (!items) return undefined
  return { enterprise: data.readUInt32BE(0), classes: items.map((i) => i.toString('latin1')) }
}

export function encodeVendorClass6(v: VendorClass6): Buffer {
  const h = Buffer.alloc(4)
  h.writeUInt32BE(v.enterprise >>> 0, 0)
  return Buffer.concat([h, encodeOpaqueList(v.classes)])
}

/** Option 79 (RFC 6939): hardware type and address, set by a relay. */
export function decodeLinkLayer(data: Buffer | undefined): { hwtype: number; address: Buffer } | undefined {
  if (!data || data.length < 3 || data.length > 2 + 20) return undefined
  return { hwtype: data.readUInt16BE(0), address: data.subarray(2) }
}

/** Option 23: a list of IPv6 addresses. */
export function encodeAddressList(addresses: readonly string[]): Buffer {
  return Buffer.concat(addresses.map((a) => {
    const b = ipv6ToBytes(a)
    if (!b) throw new RangeError(`not an IPv6 address: ${a}`)
    return b
  }))
}

export function decodeAddressList(data: Buffer | undefined): string[] {
  if (!data || data.length % 16 !== 0) return []
  const out: string[] = []
  for (let i = 0; i < data.length; i += 16) out.push(bytesToIpv6(data, i))
  return out
}

/** Option 8, hundredths of a second since the client began this exchange. */
export function decodeElapsed(data: Buffer | undefined): number | undefined {
  return data && data.length === 2 ? data.readUInt16BE(0) : undefined
}

export function u8(v: number): Buffer {
  return Buffer.from([v & 0xff])
}

export function u16(v: number): Buffer {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(v & 0xffff, 0)
  return b
}
