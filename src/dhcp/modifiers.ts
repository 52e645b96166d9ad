// Building replies functionally (insomniacslk/dhcp's modifiers): handlers collect Modifiers, then make one call.
import { BOOTREPLY, FLAG_BROADCAST, type DhcpPacket } from './codec.js'
import { encodeIpxeOptions } from './ipxe-options.js'
import { OptionCode, setIp, setIps, setString, setU32, setU8, type DhcpOptions } from './options.js'
import { encodePxeVendor, type PxeVendorOptions } from './pxe-vendor.js'

export type Modifier = (p: DhcpPacket) => void

/** A reply to `req`: BOOTREPLY with its xid, flags, giaddr and chaddr copied (RFC 2131 table 3), then `mods`. */
export function replyTo(req: DhcpPacket, ...mods: Modifier[]): DhcpPacket {
  const p: DhcpPacket = {
    op: BOOTREPLY,
    htype: req.htype,
    hlen: req.hlen,
    hops: 0,
    xid: req.xid,
    secs: 0,
    flags: req.flags,
    ciaddr: '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: req.giaddr,
    // Shared, not copied: encode only reads it, and no modifier writes it.
    chaddr: req.chaddr,
    sname: '',
    file: '',
    options: new Map(),
  }
  for (const m of mods) m(p)
  return p
}

/** Option 53; set first so it is encoded first. */
export const withMessageType = (type: number): Modifier => (p) => {
  if (p.options.size === 0) return setU8(p.options, OptionCode.MessageType, type)
  const rest = [...p.options]
  p.options.clear()
  setU8(p.options, OptionCode.MessageType, type)
  for (const [k, v] of rest) if (k !== OptionCode.MessageType) p.options.set(k, v)
}

export const withServerId = (ip: string): Modifier => (p) => setIp(p.options, OptionCode.ServerIdentifier, ip)
export const withYiaddr = (ip: string): Modifier => (p) => void (p.yiaddr = ip)
export const withCiaddr = (ip: string): Modifier => (p) => void (p.ciaddr = ip)
export const withNextServer = (ip: string): Modifier => (p) => void (p.siaddr = ip)
export const withBroadcastFlag = (): Modifier => (p) => void (p.flags |= FLAG_BROADCAST)
export const withOption = (code: number, value: Buffer): Modifier => (p) => void p.options.set(code, value)
export const withMessage = (text: string): Modifier => (p) => setString(p.options, OptionCode.Message, text)
export const withHostName = (name: string): Modifier => (p) => setString(p.options, OptionCode.HostName, name)

/** Options 51, 58, 59: lease time with T1 = 1/2 and T2 = 7/8 of it (RFC 2131 §4.4.5). */
export const withLeaseTime = (seconds: number): Modifier => (p) => {
  setU32(p.options, OptionCode.IpAddressLeaseTime, seconds)
  setU32(p.options, OptionCode.RenewalTime, Math.floor(seconds / 2))
  setU32(p.options, OptionCode.RebindingTime, Math.floor((seconds * 7) / 8))
}

export interface NetworkOptions {
  subnetMask?: string
  routers?: readonly string[]
  dnsServers?: readonly string[]
  domainName?: string
  broadcastAddress?: string
}

/** Options 1, 3, 6, 15, 28. */
export const withNetwork = (n: NetworkOptions): Modifier => (p) => {
  const o: DhcpOptions = p.options
  if (n.subnetMask) setIp(o, OptionCode.SubnetMask, n.subnetMask)
  if (n.routers?.length) setIps(o, OptionCode.Router, n.routers)
  if (n.dnsServers?.length) setIps(o, OptionCode.DomainNameServer, n.dnsServers)
  if (n.domainName) setString(o, OptionCode.DomainName, n.domainName)
  if (n.broadcastAddress) setIp(o, OptionCode.BroadcastAddress, n.broadcastAddress)
}

/**
 * The boot file: in `file` when it fits (what PXE ROMs read), and always as option 67 (what iPXE and UEFI HTTP
 * boot read first, and the only place for URLs longer than the 127 bytes `file` holds).
 */
export const withBootFile = (name: string): Modifier => (p) => {
  p.file = Buffer.byteLength(name, 'latin1') <= 127 ? name : ''
  setString(p.options, OptionCode.BootfileName, name)
}

/** Option 60 in a reply: "PXEClient" for PXE, "HTTPClient" for UEFI HTTP boot (required by the firmware). */
export const withVendorClass = (value: string): Modifier => (p) => setString(p.options, OptionCode.VendorClassIdentifier, value)

/** Option 43 with PXE sub-options. */
export const withPxeVendor = (v: Omit<PxeVendorOptions, 'raw'>): Modifier => (p) => void p.options.set(OptionCode.VendorSpecific, encodePxeVendor(v))

/** Option 175 for iPXE, e.g. 176 no-pxedhcp. */
export const withIpxeOptions = (v: { noPxedhcp?: boolean }): Modifier => (p) => {
  const b = encodeIpxeOptions(v)
  if (b.length > 0) p.options.set(OptionCode.Ipxe, b)
}

/**
 * Echoes option 61 (RFC 6842), 97 (PXE clients expect their GUID back) and option 82 (RFC 3046 §2.2: "MUST be
 * copied"), placing 82 last. Apply it after every other modifier.
 */
export const withEchoes = (req: DhcpPacket): Modifier => (p) => {
  const cid = req.options.get(OptionCode.ClientIdentifier)
  if (cid) p.options.set(OptionCode.ClientIdentifier, cid)
  const guid = req.options.get(OptionCode.ClientMachineIdentifier)
  if (guid) p.options.set(OptionCode.ClientMachineIdentifier, guid)
  const rai = req.options.get(OptionCode.RelayAgentInformation)
  if (rai) {
    p.options.delete(OptionCode.RelayAgentInformation)
    p.options.set(OptionCode.RelayAgentInformation, rai)
  }
}
