// What a DHCPv6 request says about the client, derived once per message (as dhcp/facts.ts does for DHCPv4). Pure.
import { clientArch, type ClientArch } from '../dhcp/client-arch.js'
import type { ClientType, RequestFacts } from '../dhcp/facts.js'
import { macFromLinkLocal } from './address.js'
import type { Dhcp6Decoded } from './codec.js'
import { isValidDuid, macFromDuid } from './duid.js'
import {
  Option6, PXE_ENTERPRISE, decodeClientArchs, decodeLinkLayer, decodeOro, decodeUserClass6, decodeVendorClass6,
  firstOption, hasOption, messageName6,
} from './options.js'

export interface RequestFacts6 {
  message: string
  transactionId: number
  /** Client DUID as lower-case hex, or null when absent or malformed. */
  duid: string | null
  /**
   * From option 79 (the relay closest to the client), else from a DUID-LL(T), else from the client's EUI-64
   * link-local address (the datagram's source, or the peer-address of the relay closest to it); lower-case
   * colon-separated.
   */
  mac: string | null
  /** Option 61, first preferred. */
  archs: number[]
  /** From option 61's first entry, else from the Arch field of a PXE/HTTP vendor class. */
  arch: ClientArch | null
  /** Option 16 entries under enterprise 343 (Intel: PXE and UEFI HTTP boot). */
  vendorClass: string | null
  clientType: ClientType | null
  /** Option 15 entries. */
  userClass: string[]
  /** The client is iPXE (user class "iPXE"): it gets its boot script, never a binary again. */
  isIpxe: boolean
  /** Option 6. */
  requested: number[]
  rapidCommit: boolean
  /** The link-address of the relay closest to the client; null when the message came from the link. */
  linkAddress: string | null
  /** A network-boot client: PXE or HTTP firmware (vendor class or arch type), or iPXE. */
  isNetboot: boolean
}

const MAC_HW_ETHERNET = 1

function macFromLinkLayer(d: Dhcp6Decoded): string | null {
  for (let i = d.relays.length - 1; i >= 0; i--) {
    const ll = decodeLinkLayer(firstOption(d.relays[i]!.options, Option6.ClientLinkLayerAddr))
    if (ll && ll.hwtype === MAC_HW_ETHERNET && ll.address.length === 6) {
      return [...ll.address].map((b) => b.toString(16).padStart(2, '0')).join(':')
    }
  }
  return null
}

/** `source`: the address the datagram came from (the client's own when no relay forwarded it). */
function macFromPeer(d: Dhcp6Decoded, source: string | null): string | null {
  const peer = d.relays.length > 0 ? d.relays[d.relays.length - 1]!.peerAddress : source
  return peer ? macFromLinkLocal(peer) : null
}

export function requestFacts6(d: Dhcp6Decoded, source: string | null = null): RequestFacts6 {
  const o = d.message.options
  const duidRaw = firstOption(o, Option6.ClientId)
  const duid = isValidDuid(duidRaw) ? duidRaw : null
  const vc = decodeVendorClass6(firstOption(o, Option6.VendorClass))
  const vendorClass = vc && vc.enterprise === PXE_ENTERPRISE ? (vc.classes[0] ?? null) : null
  const clientType: ClientType | null = vendorClass?.startsWith('PXEClient') ? 'PXEClient' : vendorClass?.startsWith('HTTPClient') ? 'HTTPClient' : null
  const archs = decodeClientArchs(firstOption(o, Option6.ClientArchType)) ?? []
  const vcArch = vendorClass ? /^(?:PXEClient|HTTPClient):Arch:(\d{5})/.exec(vendorClass)?.[1] : undefined
  const archCode = archs[0] ?? (vcArch !== undefined ? Number(vcArch) : undefined)
  const userClass = decodeUserClass6(firstOption(o, Option6.UserClass))
  const isIpxe = userClass.includes('iPXE')
  let linkAddress: string | null = null
  if (d.relays.length > 0) linkAddress = d.relays[d.relays.length - 1]!.linkAddress
  return {
    message: messageName6(d.message.type),
    transactionId: d.message.transactionId,
    duid: duid ? duid.toString('hex') : null,
    mac: macFromLinkLayer(d) ?? (duid ? macFromDuid(duid) : null) ?? macFromPeer(d, source),
    archs,
    arch: archCode === undefined ? null : clientArch(archCode),
    vendorClass,
    clientType,
    userClass,
    isIpxe,
    requested: decodeOro(firstOption(o, Option6.Oro)),
    rapidCommit: hasOption(o, Option6.RapidCommit),
    linkAddress,
    isNetboot: clientType !== null || isIpxe || archs.length > 0,
  }
}

/**
 * The DHCPv4 facts shape that dhcp/boot-file.ts chooseBoot reads, so both protocols choose loaders by one table.
 * A client that names an arch (option 61) but no vendor class is taken for PXE, or for HTTP boot when the arch is an
 * HTTP one: RFC 5970 clients need not send option 16.
 */
export function bootFacts(f: RequestFacts6, receivedAt: number): RequestFacts {
  const clientType: ClientType | null = f.clientType ?? (f.arch ? (f.arch.http ? 'HTTPClient' : 'PXEClient') : null)
  return {
    message: 'unknown',
    xid: f.transactionId,
    mac: f.mac ?? '',
    clientId: f.duid,
    hostname: null,
    arch: f.arch,
    vendorClass: f.vendorClass,
    clientType,
    undi: null,
    userClass: f.userClass,
    isIpxe: f.isIpxe,
    ipxe: null,
    uuid: null,
    giaddr: null,
    ciaddr: null,
    requestedIp: null,
    serverId: null,
    relayAgent: null,
    linkSelection: null,
    maxMessageSize: null,
    isNetboot: f.isNetboot,
    bootServerRequest: false,
    receivedAt,
  }
}
