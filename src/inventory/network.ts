import { isIP } from 'node:net'
import Type from 'typebox'
import type { ValueProblem } from './disk-selector.js'
import { isMac, normalizeMac } from './identifiers.js'
import type { MachineNetwork, StaticLinkAddresses } from './types.js'

// A machine's static network settings: shape (one TypeBox schema for the inventory files and the API) and the
// checks both run, so a file and an API call are refused for the same mistakes with the same words.

export const StaticLinkAddressesSchema = Type.Object({
  link: Type.Optional(Type.String({ minLength: 1, maxLength: 15, description: 'Link name (eth0, enp1s0f0); give link or mac' })),
  mac: Type.Optional(Type.String({ maxLength: 32, description: "The link's permanent MAC; give link or mac" })),
  addresses: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 32, description: 'Addresses in CIDR form: 198.18.0.20/24, fd00::20/64' }),
  gateway: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'Default gateway via this link' })),
  mtu: Type.Optional(Type.Integer({ minimum: 68, maximum: 65535 })),
}, { additionalProperties: false })

export const MachineNetworkSchema = Type.Object({
  addresses: Type.Array(StaticLinkAddressesSchema, { maxItems: 64, description: 'Static addresses, per link' }),
  nameservers: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: 16, description: 'DNS servers (IPv4 or IPv6 addresses)' })),
}, { additionalProperties: false, description: 'Static addresses and nameservers written into the Talos config; without it the machine uses DHCP' })

const LINK_NAME = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,14}$/

/** An IPv4 or IPv6 address without a zone, e.g. 198.18.0.1 or fd00::1. */
export function isIpAddress(value: string): 4 | 6 | 0 {
  if (value.includes('%')) return 0
  return isIP(value) as 4 | 6 | 0
}

/** The family of an address in CIDR form (198.18.0.20/24, fd00::20/64), or 0 when it is not one. */
export function cidrFamily(value: string): 4 | 6 | 0 {
  const m = /^([^/\s]+)\/(\d{1,3})$/.exec(value)
  if (!m) return 0
  const family = isIpAddress(m[1]!)
  const prefix = Number(m[2])
  if (family === 4 && prefix <= 32) return 4
  if (family === 6 && prefix <= 128) return 6
  return 0
}

/** What is wrong with a machine's network settings (after their schema passed). Empty when usable. */
export function checkMachineNetwork(network: MachineNetwork): ValueProblem[] {
  const problems: ValueProblem[] = []
  const seenLinks = new Map<string, number>()
  const seenAddresses = new Map<string, number>()
  network.addresses.forEach((entry, i) => {
    const at = (...rest: (string | number)[]) => ['addresses', i, ...rest]
    if ((entry.link === undefined) === (entry.mac === undefined)) {
      problems.push({ path: at(), message: entry.link === undefined ? 'give the link by name (link) or by MAC (mac)' : 'give link or mac, not both' })
    } else if (entry.link !== undefined && !LINK_NAME.test(entry.link)) {
      problems.push({ path: at('link'), message: `not a link name: '${entry.link}'` })
    } else if (entry.mac !== undefined && !isMac(entry.mac)) {
      problems.push({ path: at('mac'), message: `not a MAC address: '${entry.mac}'` })
    } else {
      const key = entry.link !== undefined ? `link ${entry.link}` : `MAC ${normalizeMac(entry.mac!)}`
      const prev = seenLinks.get(key)
      if (prev !== undefined) problems.push({ path: at(entry.link !== undefined ? 'link' : 'mac'), message: `${key} already has addresses in addresses[${prev}]` })
      else seenLinks.set(key, i)
    }
    const families = new Set<number>()
    entry.addresses.forEach((a, j) => {
      const family = cidrFamily(a)
      if (family === 0) {
        problems.push({ path: at('addresses', j), message: `not an address in CIDR form (198.18.0.20/24, fd00::20/64): '${a}'` })
        return
      }
      families.add(family)
      const ip = a.slice(0, a.indexOf('/')).toLowerCase()
      const prev = seenAddresses.get(ip)
      if (prev !== undefined) problems.push({ path: at('addresses', j), message: `address ${ip} is given twice` })
      else seenAddresses.set(ip, i)
    })
    if (entry.gateway !== undefined) {
      const family = isIpAddress(entry.gateway)
      if (family === 0) problems.push({ path: at('gateway'), message: `not an IP address: '${entry.gateway}'` })
      else if (families.size > 0 && !families.has(family)) {
        problems.push({ path: at('gateway'), message: `gateway ${entry.gateway} is IPv${family}, but this link has no IPv${family} address` })
      }
    }
  })
  network.nameservers?.forEach((ns, i) => {
    if (isIpAddress(ns) === 0) problems.push({ path: ['nameservers', i], message: `not an IP address: '${ns}'` })
  })
  return problems
}

/** The settings as stored: MACs lower-case with colons, only the fields that were given. */
export function normalizeMachineNetwork(network: MachineNetwork): MachineNetwork {
  const addresses = network.addresses.map((e): StaticLinkAddresses => ({
    ...(e.link !== undefined ? { link: e.link } : {}),
    ...(e.mac !== undefined ? { mac: normalizeMac(e.mac) } : {}),
    addresses: [...e.addresses],
    ...(e.gateway !== undefined ? { gateway: e.gateway } : {}),
    ...(e.mtu !== undefined ? { mtu: e.mtu } : {}),
  }))
  return { addresses, ...(network.nameservers !== undefined ? { nameservers: [...network.nameservers] } : {}) }
}
