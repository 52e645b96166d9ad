// Option 175, iPXE's encapsulated options (iPXE include/ipxe/dhcp.h): feature flags the client announces, and
// settings the server can send, such as 176 "no-pxedhcp" (do not wait for ProxyDHCP offers).
import { encodeSubOptions, parseSubOptions } from './options.js'

export const IpxeSubOption = {
  Priority: 1,
  KeepSan: 8,
  SkipSanBoot: 9,
  Syslogs: 85,
  NoPxedhcp: 176,
  BusId: 177,
  SanRetry: 187,
  Username: 190,
  Password: 191,
  Version: 235,
} as const

/** Feature sub-options iPXE sets to 1 when built in. */
const FEATURES: Record<number, string> = {
  0x10: 'pxeext', 0x11: 'iscsi', 0x12: 'aoe', 0x13: 'http', 0x14: 'https', 0x15: 'tftp', 0x16: 'ftp', 0x17: 'dns',
  0x18: 'bzimage', 0x19: 'multiboot', 0x1a: 'slam', 0x1b: 'srp', 0x20: 'nbi', 0x21: 'pxe', 0x22: 'elf',
  0x23: 'comboot', 0x24: 'efi', 0x25: 'fcoe', 0x26: 'vlan', 0x27: 'menu', 0x28: 'sdi', 0x29: 'nfs',
}

export interface IpxeInfo {
  /** Names of the features the client announced (http, https, efi, ...). */
  features: string[]
  /** iPXE version as major.minor.patch, when sent. */
  version?: string
  raw: Map<number, Buffer>
}

export function decodeIpxeOptions(value: Buffer): IpxeInfo | undefined {
  const raw = parseSubOptions(value)
  if (!raw) return undefined
  const features: string[] = []
  for (const [code, v] of raw) {
    const name = FEATURES[code]
    if (name && v.length >= 1 && v[v.length - 1] !== 0) features.push(name)
  }
  const out: IpxeInfo = { features, raw }
  const ver = raw.get(IpxeSubOption.Version)
  if (ver && ver.length === 3) out.version = `${ver[0]}.${ver[1]}.${ver[2]}`
  return out
}

/** Option 175 as sent by the server. */
export function encodeIpxeOptions(opts: { noPxedhcp?: boolean; priority?: number }): Buffer {
  const subs: [number, Buffer][] = []
  if (opts.priority !== undefined) subs.push([IpxeSubOption.Priority, Buffer.from([opts.priority & 255])])
  if (opts.noPxedhcp) subs.push([IpxeSubOption.NoPxedhcp, Buffer.from([1])])
  return encodeSubOptions(subs)
}
