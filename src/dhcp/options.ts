// DHCPv4 option codes and typed accessors. Options live as raw bytes by code (`Map<number, Buffer>`, insertion
// ordered); these getters read them with length checks and return undefined for absent or malformed values, so a
// bad option never throws out of a handler. Unknown options are kept as they came and can be echoed.

/** Option codes used by rackboot (RFC 2132 unless noted). */
export const OptionCode = {
  Pad: 0,
  SubnetMask: 1,
  TimeOffset: 2,
  Router: 3,
  DomainNameServer: 6,
  HostName: 12,
  DomainName: 15,
  InterfaceMtu: 26,
  BroadcastAddress: 28,
  NtpServers: 42,
  /** Vendor specific information; PXE sub-options for PXE clients (see pxe-vendor.ts). */
  VendorSpecific: 43,
  RequestedIpAddress: 50,
  IpAddressLeaseTime: 51,
  /** Option overload: 1 = file, 2 = sname, 3 = both carry options. */
  OptionOverload: 52,
  MessageType: 53,
  ServerIdentifier: 54,
  ParameterRequestList: 55,
  Message: 56,
  MaxMessageSize: 57,
  RenewalTime: 58,
  RebindingTime: 59,
  VendorClassIdentifier: 60,
  ClientIdentifier: 61,
  TftpServerName: 66,
  BootfileName: 67,
  /** RFC 3004 user class (iPXE sends a plain string instead, see user-class.ts). */
  UserClass: 77,
  /** RFC 3046 relay agent information (see relay-agent.ts). */
  RelayAgentInformation: 82,
  /** RFC 4578 client system architecture. */
  ClientSystemArchitecture: 93,
  /** RFC 4578 client network device interface (UNDI version). */
  ClientNetworkInterface: 94,
  /** RFC 4578 client machine identifier (UUID/GUID). */
  ClientMachineIdentifier: 97,
  /** RFC 3011 subnet selection. */
  SubnetSelection: 118,
  /** RFC 3442 classless static routes. */
  ClasslessStaticRoute: 121,
  /** iPXE encapsulated options (see ipxe-options.ts). */
  Ipxe: 175,
  End: 255,
} as const
export type OptionCode = (typeof OptionCode)[keyof typeof OptionCode]

/** DHCP message types (option 53). */
export const MessageType = {
  Discover: 1,
  Offer: 2,
  Request: 3,
  Decline: 4,
  Ack: 5,
  Nak: 6,
  Release: 7,
  Inform: 8,
} as const
export type MessageType = (typeof MessageType)[keyof typeof MessageType]

const MESSAGE_NAMES: Record<number, string> = {
  1: 'discover', 2: 'offer', 3: 'request', 4: 'decline', 5: 'ack', 6: 'nak', 7: 'release', 8: 'inform',
}
export type MessageName = 'discover' | 'offer' | 'request' | 'decline' | 'ack' | 'nak' | 'release' | 'inform'

/** Lower-case name of a message type, or 'unknown'. */
export function messageName(type: number | undefined): MessageName | 'unknown' {
  return ((type !== undefined && MESSAGE_NAMES[type]) || 'unknown') as MessageName | 'unknown'
}

/** Raw options by code, in the order they were read or set. */
export type DhcpOptions = Map<number, Buffer>

// ---- IPv4 addresses as dotted strings ----

/** Dotted quad to an unsigned 32-bit integer; NaN when it is not one. Hot path: no regex, no split. */
export function ipToInt(ip: string): number {
  let n = 0
  let part = 0
  let digits = 0
  let dots = 0
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i)
    if (c === 46) {
      if (digits === 0 || ++dots > 3) return Number.NaN
      n = n * 256 + part
      part = 0
      digits = 0
    } else if (c >= 48 && c <= 57) {
      part = part * 10 + (c - 48)
      if (++digits > 3 || part > 255) return Number.NaN
    } else return Number.NaN
  }
  if (dots !== 3 || digits === 0) return Number.NaN
  return n * 256 + part
}

export function intToIp(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`
}

export function isIpv4(ip: string): boolean {
  return !Number.isNaN(ipToInt(ip))
}

export function readIp(buf: Buffer, offset: number): string {
  return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`
}

export function ipBytes(ip: string): Buffer {
  const b = Buffer.allocUnsafe(4)
  writeIp(b, 0, ip)
  return b
}

/** Writes a dotted quad at `offset`; throws TypeError for anything else. */
export function writeIp(buf: Buffer, offset: number, ip: string): void {
  const n = ipToInt(ip)
  if (Number.isNaN(n)) throw new TypeError(`not an IPv4 address: ${ip}`)
  buf.writeUInt32BE(n >>> 0, offset)
}

// ---- generic typed getters ----

export function getU8(opts: DhcpOptions, code: number): number | undefined {
  const v = opts.get(code)
  return v && v.length === 1 ? v[0] : undefined
}

export function getU16(opts: DhcpOptions, code: number): number | undefined {
  const v = opts.get(code)
  return v && v.length === 2 ? v.readUInt16BE(0) : undefined
}

export function getU32(opts: DhcpOptions, code: number): number | undefined {
  const v = opts.get(code)
  return v && v.length === 4 ? v.readUInt32BE(0) : undefined
}

export function getIp(opts: DhcpOptions, code: number): string | undefined {
  const v = opts.get(code)
  return v && v.length === 4 ? readIp(v, 0) : undefined
}

export function getIps(opts: DhcpOptions, code: number): string[] | undefined {
  const v = opts.get(code)
  if (!v || v.length === 0 || v.length % 4 !== 0) return undefined
  const out: string[] = []
  for (let i = 0; i < v.length; i += 4) out.push(readIp(v, i))
  return out
}

/** A text option; trailing NULs (some clients send them) are dropped. */
export function getString(opts: DhcpOptions, code: number): string | undefined {
  const v = opts.get(code)
  if (!v || v.length === 0) return undefined
  let end = v.length
  while (end > 0 && v[end - 1] === 0) end--
  return v.toString('latin1', 0, end)
}

export function setU8(opts: DhcpOptions, code: number, value: number): void {
  opts.set(code, Buffer.from([value & 255]))
}

export function setU16(opts: DhcpOptions, code: number, value: number): void {
  const b = Buffer.allocUnsafe(2)
  b.writeUInt16BE(value & 0xffff, 0)
  opts.set(code, b)
}

export function setU32(opts: DhcpOptions, code: number, value: number): void {
  const b = Buffer.allocUnsafe(4)
  b.writeUInt32BE(value >>> 0, 0)
  opts.set(code, b)
}

export function setIp(opts: DhcpOptions, code: number, ip: string): void {
  opts.set(code, ipBytes(ip))
}

export function setIps(opts: DhcpOptions, code: number, ips: readonly string[]): void {
  if (ips.length === 0) return
  opts.set(code, Buffer.concat(ips.map(ipBytes)))
}

export function setString(opts: DhcpOptions, code: number, value: string): void {
  opts.set(code, Buffer.from(value, 'latin1'))
}

// ---- named accessors (RFC 2132 / 4578) ----

/** Option 53. */
export const getMessageType = (o: DhcpOptions): number | undefined => getU8(o, OptionCode.MessageType)
/** Option 50. */
export const getRequestedIp = (o: DhcpOptions): string | undefined => getIp(o, OptionCode.RequestedIpAddress)
/** Option 54. */
export const getServerId = (o: DhcpOptions): string | undefined => getIp(o, OptionCode.ServerIdentifier)
/** Option 51, seconds. */
export const getLeaseTime = (o: DhcpOptions): number | undefined => getU32(o, OptionCode.IpAddressLeaseTime)
/** Option 12. */
export const getHostName = (o: DhcpOptions): string | undefined => getString(o, OptionCode.HostName)
/** Option 60. */
export const getVendorClass = (o: DhcpOptions): string | undefined => getString(o, OptionCode.VendorClassIdentifier)

/** Option 57; values below the RFC minimum (576) are treated as 576. */
export function getMaxMessageSize(o: DhcpOptions): number | undefined {
  const v = getU16(o, OptionCode.MaxMessageSize)
  return v === undefined ? undefined : Math.max(576, v)
}

/** Option 55: the codes the client asks for. */
export function getParameterList(o: DhcpOptions): number[] | undefined {
  const v = o.get(OptionCode.ParameterRequestList)
  return v && v.length > 0 ? [...v] : undefined
}

/** Option 61 as lower-case hex (binary: type byte + identifier), or undefined. */
export function getClientId(o: DhcpOptions): string | undefined {
  const v = o.get(OptionCode.ClientIdentifier)
  return v && v.length >= 2 ? v.toString('hex') : undefined
}

/** Option 93: the architecture types (RFC 4578 allows a list; the first is the client's own). */
export function getClientArchs(o: DhcpOptions): number[] | undefined {
  const v = o.get(OptionCode.ClientSystemArchitecture)
  if (!v || v.length === 0 || v.length % 2 !== 0) return undefined
  const out: number[] = []
  for (let i = 0; i < v.length; i += 2) out.push(v.readUInt16BE(i))
  return out
}

/** Option 94: network interface type (1 = UNDI) and version. */
export function getClientNdi(o: DhcpOptions): { type: number; major: number; minor: number } | undefined {
  const v = o.get(OptionCode.ClientNetworkInterface)
  return v && v.length === 3 ? { type: v[0]!, major: v[1]!, minor: v[2]! } : undefined
}

/** Option 97: type 0 followed by a 16-byte UUID, formatted as SMBIOS prints it (first three fields little-endian). */
export function getClientUuid(o: DhcpOptions): string | undefined {
  const v = o.get(OptionCode.ClientMachineIdentifier)
  if (!v || v.length !== 17 || v[0] !== 0) return undefined
  return formatGuid(v.subarray(1))
}

/** PXE GUIDs are stored as in SMBIOS: time_low, time_mid, time_hi little-endian, the rest as bytes. */
export function formatGuid(b: Buffer): string {
  const le = (start: number, len: number) => Buffer.from(b.subarray(start, start + len)).reverse().toString('hex')
  const hex = b.toString('hex')
  return `${le(0, 4)}-${le(4, 2)}-${le(6, 2)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`
}

/** The inverse of formatGuid: 16 bytes in SMBIOS order. */
export function guidBytes(uuid: string): Buffer {
  const hex = uuid.replace(/-/g, '')
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new TypeError(`not a UUID: ${uuid}`)
  const b = Buffer.from(hex, 'hex')
  b.subarray(0, 4).reverse()
  b.subarray(4, 6).reverse()
  b.subarray(6, 8).reverse()
  return b
}

// ---- encapsulated sub-options (43, 82, 175 share the plain code/length/value layout) ----

/** Parses code/length/value sub-options (PAD 0 and END 255 honoured); undefined when a length runs past the end. */
export function parseSubOptions(buf: Buffer): Map<number, Buffer> | undefined {
  const out = new Map<number, Buffer>()
  let i = 0
  while (i < buf.length) {
    const code = buf[i]!
    if (code === 0) {
      i += 1
      continue
    }
    if (code === 255) break
    if (i + 1 >= buf.length) return undefined
    const len = buf[i + 1]!
    if (i + 2 + len > buf.length) return undefined
    const value = buf.subarray(i + 2, i + 2 + len)
    const prev = out.get(code)
    out.set(code, prev ? Buffer.concat([prev, value]) : Buffer.from(value))
    i += 2 + len
  }
  return out
}

/** Serialises sub-options in map order; values over 255 bytes are split (RFC 3396 applies to encapsulated options). */
export function encodeSubOptions(subs: Iterable<[number, Buffer]>, options: { end?: boolean } = {}): Buffer {
  const parts: Buffer[] = []
  for (const [code, value] of subs) {
    if (value.length === 0) parts.push(Buffer.from([code, 0]))
    for (let i = 0; i < value.length; i += 255) {
      const chunk = value.subarray(i, Math.min(value.length, i + 255))
      parts.push(Buffer.from([code, chunk.length]), chunk)
    }
  }
  if (options.end) parts.push(Buffer.from([255]))
  return Buffer.concat(parts)
}
