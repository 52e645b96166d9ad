// Builders of DHCPv6 client messages and relay envelopes for tests.
import { duidLlt } from '../../src/dhcp6/duid.js'
import { encode6, type Dhcp6Decoded, type Dhcp6Message, type Dhcp6RelayHop } from '../../src/dhcp6/codec.js'
import {
  MessageType6, Option6, PXE_ENTERPRISE, encodeIaAddr, encodeIaNa, encodeUserClass6, encodeVendorClass6, u16, type Options6,
} from '../../src/dhcp6/options.js'

export const CLIENT_MAC = '52:54:00:12:34:56'
export const CLIENT_DUID = duidLlt(CLIENT_MAC, Date.UTC(2020, 0, 1))

export interface ClientMessageOptions {
  duid?: Buffer | null
  serverId?: Buffer
  /** IA_NAs: iaid and optional addresses inside. */
  ias?: { iaid: number; addresses?: string[] }[]
  oro?: number[]
  arch?: number
  vendorClass?: string
  userClass?: string
  rapidCommit?: boolean
  xid?: number
  extra?: Options6
}

export function clientMessage(type: number, o: ClientMessageOptions = {}): Dhcp6Message {
  const options: Options6 = []
  const duid = o.duid === undefined ? CLIENT_DUID : o.duid
  if (duid) options.push({ code: Option6.ClientId, data: duid })
  if (o.serverId) options.push({ code: Option6.ServerId, data: o.serverId })
  options.push({ code: Option6.ElapsedTime, data: u16(0) })
  for (const ia of o.ias ?? []) {
    options.push({
      code: Option6.IaNa,
      data: encodeIaNa({
        iaid: ia.iaid, t1: 0, t2: 0,
        options: (ia.addresses ?? []).map((address) => ({ code: Option6.IaAddr, data: encodeIaAddr({ address, preferred: 0, valid: 0, options: [] }) })),
      }),
    })
  }
  if (o.oro) options.push({ code: Option6.Oro, data: Buffer.concat(o.oro.map(u16)) })
  if (o.arch !== undefined) options.push({ code: Option6.ClientArchType, data: u16(o.arch) })
  if (o.vendorClass) options.push({ code: Option6.VendorClass, data: encodeVendorClass6({ enterprise: PXE_ENTERPRISE, classes: [o.vendorClass] }) })
  if (o.userClass) options.push({ code: Option6.UserClass, data: encodeUserClass6([o.userClass]) })
  if (o.rapidCommit) options.push({ code: Option6.RapidCommit, data: Buffer.alloc(0) })
  options.push(...(o.extra ?? []))
  return { type, transactionId: o.xid ?? 0x123456, options }
}

export const direct = (m: Dhcp6Message): Dhcp6Decoded => ({ message: m, relays: [] })

export function relayed(m: Dhcp6Message, hops: Partial<Dhcp6RelayHop>[]): Dhcp6Decoded {
  return {
    message: m,
    relays: hops.map((h, i) => ({
      type: MessageType6.RelayForw,
      hopCount: h.hopCount ?? hops.length - 1 - i,
      linkAddress: h.linkAddress ?? '::',
      peerAddress: h.peerAddress ?? 'fe80::1',
      options: h.options ?? [],
    })),
  }
}

export const wire = (d: Dhcp6Decoded): Buffer => encode6(d)
