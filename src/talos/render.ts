import { isIPv6 } from 'node:net'
import { RackbootError } from '../errors.js'
import {
  cloneValue,
  isRecord,
  isV1Alpha1Document,
  parseConfigDocuments,
  stringifyConfigDocuments,
  type ConfigDocument,
} from './documents.js'
import type { RenderedConfig } from './generate.js'
import { applyPatch, loadPatch, type PatchInput } from './patches.js'
import { contractGreater, parseTalosVersion, type TalosVersion } from './version.js'

// One machine's config: the profile's base config, then class patches, profile patches and machine patches
// (each list in order, Talos strategic-merge / JSON-patch semantics), then the per-machine values rackboot knows
// (hostname, install disk, static addresses). Values are written directly, not merged, so they replace
// whatever the base and patches said, in the place the target Talos version reads them from.

export interface StaticAddress {
  /** Link name (eth0, enp1s0f0); or give `mac` to select the link by its permanent MAC. */
  link?: string
  mac?: string
  /** Addresses in CIDR form, e.g. 198.18.0.20/24. */
  addresses: readonly string[]
  /** Default gateway via this link. */
  gateway?: string
  mtu?: number
}

export interface InstallDiskValue {
  /** Device path, e.g. /dev/nvme0n1. */
  path: string
  /** When given, the disk is selected by serial instead of by path (device names can change between boots). */
  serial?: string
}

export interface MachineValues {
  hostname?: string
  /** Device path, or a disk with its serial. */
  installDisk?: string | InstallDiskValue
  installImage?: string
  addresses?: readonly StaticAddress[]
  nameservers?: readonly string[]
}

export interface RenderMachineConfigInput {
  /** The base config (YAML text or documents), e.g. generateConfig(...) output or a profile's baseConfig. */
  base: string | readonly ConfigDocument[] | RenderedConfig
  talosVersion: string | TalosVersion
  classPatches?: readonly PatchInput[]
  profilePatches?: readonly PatchInput[]
  machinePatches?: readonly PatchInput[]
  values?: MachineValues
}

function invalid(message: string, details?: unknown): RackbootError {
  return new RackbootError('RB_ERR_VALIDATION', message, { details })
}

function typedDoc(docs: ConfigDocument[], kind: string, name?: string): ConfigDocument {
  let doc = docs.find((d) => d.kind === kind && d.apiVersion === 'v1alpha1' && (name === undefined || d.name === name))
  if (!doc) {
    doc = name === undefined ? { apiVersion: 'v1alpha1', kind } : { apiVersion: 'v1alpha1', kind, name }
    docs.push(doc)
  }
  return doc
}

function v1alpha1Doc(docs: ConfigDocument[]): ConfigDocument {
  let doc = docs.find(isV1Alpha1Document)
  if (!doc) {
    doc = { version: 'v1alpha1' }
    docs.unshift(doc)
  }
  return doc
}

function section(parent: Record<string, unknown>, key: string): Record<string, unknown> {
  const existing = parent[key]
  if (isRecord(existing)) return existing
  const created: Record<string, unknown> = {}
  parent[key] = created
  return created
}

function setHostname(docs: ConfigDocument[], v: TalosVersion, hostname: string): void {
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(hostname)) throw invalid(`invalid hostname '${hostname}'`)
  const hasHostnameDoc = docs.some((d) => d.kind === 'HostnameConfig')
  if (contractGreater(v, 1, 11) || hasHostnameDoc) {
    // HostnameConfig: a fixed hostname needs auto: off (they are mutually exclusive otherwise).
    const doc = typedDoc(docs, 'HostnameConfig')
    doc.hostname = hostname
    doc.auto = 'off'
    // The legacy field would conflict with the document.
    const main = docs.find(isV1Alpha1Document)
    const network = main && isRecord(main.machine) && isRecord(main.machine.network) ? main.machine.network : null
    if (network) delete network.hostname
    return
  }
  section(section(v1alpha1Doc(docs), 'machine'), 'network').hostname = hostname
}

function setInstall(docs: ConfigDocument[], v: TalosVersion, disk: string | InstallDiskValue | undefined, image: string | undefined): void {
  const value = typeof disk === 'string' ? { path: disk } : disk
  if (value && !/^\/dev\/\S+$/.test(value.path)) throw invalid(`install disk must be a /dev path, got '${value.path}'`)
  const main = docs.find(isV1Alpha1Document)
  const legacyInstall = main && isRecord(main.machine) && isRecord(main.machine.install)
  // Up to 1.13 machine.install is the only way; from 1.14 UnattendedInstallConfig, unless the config already uses
  // machine.install (Talos rejects both at once).
  if (!contractGreater(v, 1, 13) || legacyInstall) {
    const install = section(section(v1alpha1Doc(docs), 'machine'), 'install')
    if (value?.serial) {
      delete install.disk
      install.diskSelector = { serial: value.serial }
    } else if (value) {
      delete install.diskSelector
      install.disk = value.path
    }
    if (image) install.image = image
    return
  }
  const doc = typedDoc(docs, 'UnattendedInstallConfig')
  if (value) {
    const provisioning = section(doc, 'provisioning')
    const match = value.serial ? `disk.serial == ${JSON.stringify(value.serial)}` : `disk.dev_path == ${JSON.stringify(value.path)}`
    provisioning.diskSelector = { match }
    if (provisioning.wipe === undefined) provisioning.wipe = false
  }
  if (image) section(doc, 'installer').image = image
  if (!isRecord(doc.installer)) doc.installer = {}
}

function linkAlias(address: StaticAddress): string {
  return address.link ?? `net-${address.mac!.toLowerCase().replace(/[^0-9a-f]/g, '')}`
}

function checkAddress(address: StaticAddress): void {
  if (!address.link && !address.mac) throw invalid('a static address needs a link name or a MAC')
  if (address.mac && !/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(address.mac)) throw invalid(`invalid MAC '${address.mac}'`)
  for (const a of address.addresses) {
    if (!/^[0-9a-fA-F:.]+\/\d{1,3}$/.test(a)) throw invalid(`address must be in CIDR form, got '${a}'`)
  }
}

function setAddresses(docs: ConfigDocument[], v: TalosVersion, addresses: readonly StaticAddress[]): void {
  for (const address of addresses) checkAddress(address)
  if (contractGreater(v, 1, 11)) {
    for (const address of addresses) {
      const name = linkAlias(address)
      if (address.mac && !address.link) {
        const alias = typedDoc(docs, 'LinkAliasConfig', name)
        alias.selector = { match: `mac(link.permanent_addr) == ${JSON.stringify(address.mac.toLowerCase())}` }
      }
      const link = typedDoc(docs, 'LinkConfig', name)
      link.up = true
      if (address.mtu) link.mtu = address.mtu
      link.addresses = address.addresses.map((a) => ({ address: a }))
      if (address.gateway) link.routes = [{ gateway: address.gateway }]
    }
    return
  }
  // Legacy machine.network.interfaces, one entry per link (by name or by MAC selector).
  const network = section(section(v1alpha1Doc(docs), 'machine'), 'network')
  const interfaces = Array.isArray(network.interfaces) ? (network.interfaces as unknown[]) : []
  network.interfaces = interfaces
  for (const address of addresses) {
    const match = (i: unknown): boolean =>
      isRecord(i) && (address.link ? i.interface === address.link : isRecord(i.deviceSelector) && i.deviceSelector.hardwareAddr === address.mac!.toLowerCase())
    const idx = interfaces.findIndex(match)
    const entry: Record<string, unknown> = address.link ? { interface: address.link } : { deviceSelector: { hardwareAddr: address.mac!.toLowerCase() } }
    entry.addresses = [...address.addresses]
    if (address.gateway) entry.routes = [{ network: isIPv6(address.gateway) ? '::/0' : '0.0.0.0/0', gateway: address.gateway }]
    if (address.mtu) entry.mtu = address.mtu
    entry.dhcp = false
    if (idx >= 0) interfaces[idx] = { ...(interfaces[idx] as Record<string, unknown>), ...entry }
    else interfaces.push(entry)
  }
}

function setNameservers(docs: ConfigDocument[], v: TalosVersion, nameservers: readonly string[]): void {
  if (contractGreater(v, 1, 11)) {
    typedDoc(docs, 'ResolverConfig').nameservers = nameservers.map((address) => ({ address }))
    return
  }
  section(section(v1alpha1Doc(docs), 'machine'), 'network').nameservers = [...nameservers]
}

/** Writes per-machine values into a config (returns new documents; the input is not changed). */
export function applyMachineValues(config: readonly ConfigDocument[], talosVersion: string | TalosVersion, values: MachineValues): ConfigDocument[] {
  const v = parseTalosVersion(talosVersion)
  const docs = config.map((d) => cloneValue(d))
  if (values.hostname !== undefined) setHostname(docs, v, values.hostname)
  if (values.installDisk !== undefined || values.installImage !== undefined) setInstall(docs, v, values.installDisk, values.installImage)
  if (values.addresses?.length) setAddresses(docs, v, values.addresses)
  if (values.nameservers?.length) setNameservers(docs, v, values.nameservers)
  return docs
}

/** base + class patches + profile patches + machine patches + per-machine values, in that order. */
export function renderMachineConfig(input: RenderMachineConfigInput): RenderedConfig {
  const base = input.base
  let docs: ConfigDocument[] =
    typeof base === 'string' ? parseConfigDocuments(base, 'base config') : 'documents' in base ? base.documents.slice() : base.slice()
  const stages: Array<[string, readonly PatchInput[] | undefined]> = [
    ['class patch', input.classPatches],
    ['profile patch', input.profilePatches],
    ['machine patch', input.machinePatches],
  ]
  for (const [label, patches] of stages) {
    patches?.forEach((p, i) => {
      const source = `${label} ${i}`
      docs = applyPatch(docs, loadPatch(p, source), source)
    })
  }
  if (input.values) docs = applyMachineValues(docs, input.talosVersion, input.values)
  return { documents: docs, yaml: stringifyConfigDocuments(docs) }
}
