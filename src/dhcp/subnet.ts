// Subnets as integers, parsed once from the settings.
import { RackbootError } from '../errors.js'
import type { DhcpSubnetSettings } from '../settings/schema.js'
import { intToIp, ipToInt } from './options.js'

export interface Subnet {
  /** Normalised CIDR (network address / prefix): the key leases are stored under. */
  cidr: string
  network: number
  prefix: number
  mask: number
  broadcast: number
  rangeStart: number
  rangeEnd: number
  maskIp: string
  broadcastIp: string
  routers: string[]
  dnsServers: string[]
  domainName?: string
  leaseSeconds: number
}

function invalid(message: string): RackbootError {
  return new RackbootError('RB_ERR_SETTINGS', message)
}

export function parseSubnet(s: DhcpSubnetSettings): Subnet {
  const [net, bitsText] = s.subnet.split('/')
  const prefix = Number(bitsText)
  const base = ipToInt(net ?? '')
  if (Number.isNaN(base) || !Number.isInteger(prefix) || prefix < 0 || prefix > 30) {
    throw invalid(`dhcp subnet ${s.subnet}: expected a.b.c.d/prefix with a prefix of 0-30`)
  }
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0
  const network = (base & mask) >>> 0
  const broadcast = (network | (~mask >>> 0)) >>> 0
  const rangeStart = ipToInt(s.rangeStart)
  const rangeEnd = ipToInt(s.rangeEnd)
  for (const [name, v] of [['rangeStart', rangeStart], ['rangeEnd', rangeEnd]] as const) {
    if (Number.isNaN(v) || ((v & mask) >>> 0) !== network || v === network || v === broadcast) {
      throw invalid(`dhcp subnet ${s.subnet}: ${name} is not a host address inside the subnet`)
    }
  }
  if (rangeStart > rangeEnd) throw invalid(`dhcp subnet ${s.subnet}: rangeStart comes after rangeEnd`)
  const out: Subnet = {
    cidr: `${intToIp(network)}/${prefix}`,
    network,
    prefix,
    mask,
    broadcast,
    rangeStart,
    rangeEnd,
    maskIp: intToIp(mask),
    broadcastIp: intToIp(broadcast),
    routers: [...s.routers],
    dnsServers: [...s.dnsServers],
    leaseSeconds: s.leaseSeconds,
  }
  if (s.domainName) out.domainName = s.domainName
  return out
}

export function subnetContains(s: Subnet, ip: number): boolean {
  return ((ip & s.mask) >>> 0) === s.network
}

/** A usable host address of the subnet (not the network or broadcast address). */
export function isHostAddress(s: Subnet, ip: number): boolean {
  return subnetContains(s, ip) && ip !== s.network && ip !== s.broadcast
}

export function findSubnet(subnets: readonly Subnet[], ip: string | number): Subnet | undefined {
  const n = typeof ip === 'number' ? ip : ipToInt(ip)
  if (Number.isNaN(n)) return undefined
  // Longest prefix first, so a narrower relayed subnet inside a wider one wins.
  let best: Subnet | undefined
  for (const s of subnets) if (subnetContains(s, n) && (!best || s.prefix > best.prefix)) best = s
  return best
}
