// Builders for client requests in tests, shaped like what real firmware sends (shared/reference/lab.md).
import { chaddrFromMac, emptyPacket, encode, type DhcpPacket } from '../../src/dhcp/codec.js'
import { OptionCode, guidBytes, setIp, setString, setU16, setU8 } from '../../src/dhcp/options.js'
import { encodeUserClass } from '../../src/dhcp/user-class.js'
import type { RequestMeta } from '../../src/dhcp/facts.js'

export interface RequestSpec {
  type: number
  mac: string
  xid?: number
  clientId?: string
  vendorClass?: string
  arch?: number
  userClass?: readonly string[]
  userClassForm?: 'rfc3004' | 'plain'
  ipxe?: boolean
  uuid?: string
  giaddr?: string
  ciaddr?: string
  requestedIp?: string
  serverId?: string
  hostname?: string
  flags?: number
  maxSize?: number
  /** Raw options added last. */
  extra?: [number, Buffer][]
}

export function request(spec: RequestSpec): DhcpPacket {
  const p = emptyPacket()
  p.xid = spec.xid ?? 0x1234_5678
  p.chaddr = chaddrFromMac(spec.mac)
  if (spec.giaddr) {
    p.giaddr = spec.giaddr
    p.hops = 1
  }
  if (spec.ciaddr) p.ciaddr = spec.ciaddr
  if (spec.flags !== undefined) p.flags = spec.flags
  const o = p.options
  setU8(o, OptionCode.MessageType, spec.type)
  if (spec.clientId) o.set(OptionCode.ClientIdentifier, Buffer.from(spec.clientId, 'hex'))
  if (spec.requestedIp) setIp(o, OptionCode.RequestedIpAddress, spec.requestedIp)
  if (spec.serverId) setIp(o, OptionCode.ServerIdentifier, spec.serverId)
  if (spec.hostname) setString(o, OptionCode.HostName, spec.hostname)
  if (spec.maxSize) setU16(o, OptionCode.MaxMessageSize, spec.maxSize)
  if (spec.vendorClass) setString(o, OptionCode.VendorClassIdentifier, spec.vendorClass)
  if (spec.arch !== undefined) setU16(o, OptionCode.ClientSystemArchitecture, spec.arch)
  if (spec.arch !== undefined) o.set(OptionCode.ClientNetworkInterface, Buffer.from([1, 3, 0]))
  if (spec.uuid) o.set(OptionCode.ClientMachineIdentifier, Buffer.concat([Buffer.from([0]), guidBytes(spec.uuid)]))
  if (spec.userClass) o.set(OptionCode.UserClass, encodeUserClass(spec.userClass, spec.userClassForm ?? 'plain'))
  if (spec.ipxe) o.set(OptionCode.Ipxe, Buffer.from([0x13, 1, 1, 0x15, 1, 1, 0x24, 1, 1]))
  for (const [code, value] of spec.extra ?? []) o.set(code, value)
  return p
}

/** What firmware sends, per lab.md's table. */
export const FIRMWARE = {
  ipxeBios: { vendorClass: 'PXEClient:Arch:00000:UNDI:002001', arch: 0, userClass: ['iPXE'], ipxe: true },
  ovmfPxe: { vendorClass: 'PXEClient:Arch:00007:UNDI:003000', arch: 7 },
  ipxeEfi: { vendorClass: 'PXEClient:Arch:00007:UNDI:003010', arch: 7, userClass: ['iPXE'], ipxe: true },
  ovmfHttp: { vendorClass: 'HTTPClient:Arch:00016:UNDI:003000', arch: 16 },
  aavmfPxe: { vendorClass: 'PXEClient:Arch:00011:UNDI:003000', arch: 11 },
  aavmfHttp: { vendorClass: 'HTTPClient:Arch:00019:UNDI:003000', arch: 19 },
  biosPxe: { vendorClass: 'PXEClient:Arch:00000:UNDI:002001', arch: 0 },
} as const

export function meta(overrides: Partial<RequestMeta> = {}): RequestMeta {
  return { source: { address: '0.0.0.0', port: 68 }, localPort: 67, receivedAt: Date.now(), ...overrides }
}

export function wire(spec: RequestSpec): Buffer {
  return encode(request(spec))
}
