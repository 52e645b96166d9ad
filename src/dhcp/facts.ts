// What a request says about the client, derived once per packet: the single input the boot choice and the
// lifecycle see from DHCP (smee's NewInfo). Pure: no I/O, never throws on odd options.
import { clientArch, type ClientArch } from './client-arch.js'
import { hardwareAddress, type DhcpPacket } from './codec.js'
import { decodeIpxeOptions, type IpxeInfo } from './ipxe-options.js'
import {
  OptionCode, getClientArchs, getClientId, getClientNdi, getClientUuid, getHostName, getIp, getMaxMessageSize,
  getMessageType, getRequestedIp, getServerId, getVendorClass, messageName, type MessageName,
} from './options.js'
import { decodeRelayAgentInfo, type RelayAgentInfo } from './relay-agent.js'
import { decodeUserClass } from './user-class.js'

/** Where and when a datagram arrived. */
export interface RequestMeta {
  /** Sender address and port. */
  source: { address: string; port: number }
  /** Local port it arrived on. */
  localPort: number
  /** It arrived on the PXE boot-server socket (4011), not the DHCP one. */
  bootServer?: boolean
  /** Milliseconds since the epoch. */
  receivedAt: number
  /** The provisioning interface, when known (Node cannot tell which interface a broadcast came in on). */
  iface?: string
}

export type ClientType = 'PXEClient' | 'HTTPClient'

export interface RequestFacts {
  message: MessageName | 'unknown'
  xid: number
  /** Lower-case colon-separated chaddr. */
  mac: string
  /** Option 61 as lower-case hex (type byte first), or null. */
  clientId: string | null
  /** Option 12. */
  hostname: string | null
  /** From option 93 (first entry), else from the Arch field of option 60; null when neither says. */
  arch: ClientArch | null
  /** Option 60 as sent. */
  vendorClass: string | null
  /** PXEClient / HTTPClient from option 60. */
  clientType: ClientType | null
  /** Option 94 UNDI version, e.g. "3.0". */
  undi: string | null
  /** Option 77 entries. */
  userClass: string[]
  /** The client is iPXE already (user class "iPXE" or option 175 present): it gets its script, never a binary. */
  isIpxe: boolean
  /** Option 175 as announced by iPXE. */
  ipxe: IpxeInfo | null
  /** Option 97, the SMBIOS system UUID (lower case). */
  uuid: string | null
  /** null when the request did not come through a relay. */
  giaddr: string | null
  ciaddr: string | null
  /** Option 50. */
  requestedIp: string | null
  /** Option 54. */
  serverId: string | null
  /** Option 82. */
  relayAgent: RelayAgentInfo | null
  /** RFC 3011 option 118 / RFC 3527 link selection, when a relay names the client's subnet explicitly. */
  linkSelection: string | null
  /** Option 57, or null. */
  maxMessageSize: number | null
  /** A network-boot client: PXE or HTTP firmware, or iPXE. */
  isNetboot: boolean
  /** Arrived on the PXE boot-server port (4011). */
  bootServerRequest: boolean
  receivedAt: number
}

const ZERO = '0.0.0.0'

/** Reads the Arch field of "PXEClient:Arch:00007:UNDI:003000". */
function archFromVendorClass(vc: string): number | undefined {
  const m = /^(?:PXEClient|HTTPClient):Arch:(\d{5})/.exec(vc)
  return m ? Number(m[1]) : undefined
}

export function requestFacts(pkt: DhcpPacket, meta: RequestMeta): RequestFacts {
  const o = pkt.options
  const vendorClass = getVendorClass(o) ?? null
  const clientType: ClientType | null = vendorClass?.startsWith('PXEClient')
    ? 'PXEClient'
    : vendorClass?.startsWith('HTTPClient')
      ? 'HTTPClient'
      : null
  const archCode = getClientArchs(o)?.[0] ?? (vendorClass ? archFromVendorClass(vendorClass) : undefined)
  const uc = o.get(OptionCode.UserClass)
  const userClass = uc ? decodeUserClass(uc) : []
  const ipxeRaw = o.get(OptionCode.Ipxe)
  const ipxe = ipxeRaw ? (decodeIpxeOptions(ipxeRaw) ?? null) : null
  const isIpxe = ipxeRaw !== undefined || userClass.includes('iPXE')
  const relayRaw = o.get(OptionCode.RelayAgentInformation)
  const relayAgent = relayRaw ? (decodeRelayAgentInfo(relayRaw) ?? null) : null
  const ndi = getClientNdi(o)
  const subnetSelection = getIp(o, OptionCode.SubnetSelection)
  return {
    message: messageName(getMessageType(o)),
    xid: pkt.xid,
    mac: hardwareAddress(pkt),
    clientId: getClientId(o) ?? null,
    hostname: getHostName(o) ?? null,
    arch: archCode === undefined ? null : clientArch(archCode),
    vendorClass,
    clientType,
    undi: ndi ? `${ndi.major}.${ndi.minor}` : null,
    userClass,
    isIpxe,
    ipxe,
    uuid: getClientUuid(o) ?? null,
    giaddr: pkt.giaddr === ZERO ? null : pkt.giaddr,
    ciaddr: pkt.ciaddr === ZERO ? null : pkt.ciaddr,
    requestedIp: getRequestedIp(o) ?? null,
    serverId: getServerId(o) ?? null,
    relayAgent,
    linkSelection: subnetSelection ?? relayAgent?.linkSelection ?? null,
    maxMessageSize: getMaxMessageSize(o) ?? null,
    isNetboot: clientType !== null || isIpxe,
    bootServerRequest: meta.bootServer === true,
    receivedAt: meta.receivedAt,
  }
}
