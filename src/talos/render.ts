import { createHash } from 'node:crypto'
import { isIPv6 } from 'node:net'
import { RackbootError } from '../errors.js'
import {
  cloneValue,
  deepFreeze,
  isRecord,
  isV1Alpha1Document,
  parseConfigDocuments,
  recordCopy,
  stringifyConfigDocuments,
  stringifyConfigDocumentsIncremental,
  type ConfigDocument,
} from './documents.js'
import type { RenderedConfig } from './generate.js'
import { applyPatch, loadPatch, type PatchInput } from './patches.js'
import { entryBytes, preparedConfigs, rememberRendered, renderedConfigs, type PreparedConfig, type RenderedEntry } from './render-cache.js'
import { contractGreater, formatTalosVersion, parseTalosVersion, type TalosVersion } from './version.js'

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

// Per-machine values are written copy-on-write: the documents given (a profile's deep-frozen documents, shared by
// every machine) are never changed; each object on the path to a value is copied once, the rest is shared.
class Writer {
  private readonly owned = new WeakSet<object>()
  readonly docs: ConfigDocument[]

  constructor(docs: readonly ConfigDocument[]) {
    this.docs = docs.slice()
  }

  own<T extends Record<string, unknown>>(obj: T): T {
    if (this.owned.has(obj)) return obj
    const copy = { ...obj }
    this.owned.add(copy)
    // The lint checks only what the copy changed (lint.ts).
    recordCopy(copy, obj)
    return copy
  }

  /** The document at `index`, writable. */
  doc(index: number): ConfigDocument {
    const d = this.own(this.docs[index]!)
    this.docs[index] = d
    return d
  }

  created<T extends object>(obj: T): T {
    this.owned.add(obj)
    return obj
  }

  /** parent[key] as a writable mapping (created when missing or not a mapping); parent must be writable. */
  section(parent: Record<string, unknown>, key: string): Record<string, unknown> {
    const existing = parent[key]
    const out = isRecord(existing) ? this.own(existing) : this.created({} as Record<string, unknown>)
    parent[key] = out
    return out
  }
}

function typedDoc(w: Writer, kind: string, name?: string): ConfigDocument {
  const i = w.docs.findIndex((d) => d.kind === kind && d.apiVersion === 'v1alpha1' && (name === undefined || d.name === name))
  if (i >= 0) return w.doc(i)
  const doc = w.created<ConfigDocument>(name === undefined ? { apiVersion: 'v1alpha1', kind } : { apiVersion: 'v1alpha1', kind, name })
  w.docs.push(doc)
  return doc
}

function v1alpha1Doc(w: Writer): ConfigDocument {
  const i = w.docs.findIndex(isV1Alpha1Document)
  if (i >= 0) return w.doc(i)
  const doc = w.created<ConfigDocument>({ version: 'v1alpha1' })
  w.docs.unshift(doc)
  return doc
}

function setHostname(w: Writer, v: TalosVersion, hostname: string): void {
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(hostname)) throw invalid(`invalid hostname '${hostname}'`)
  const hasHostnameDoc = w.docs.some((d) => d.kind === 'HostnameConfig')
  if (contractGreater(v, 1, 11) || hasHostnameDoc) {
    // HostnameConfig: a fixed hostname needs auto: off (they are mutually exclusive otherwise).
    const doc = typedDoc(w, 'HostnameConfig')
    doc.hostname = hostname
    doc.auto = 'off'
    // The legacy field would conflict with the document.
    const main = w.docs.find(isV1Alpha1Document)
    const network = main && isRecord(main.machine) && isRecord(main.machine.network) ? main.machine.network : null
    if (network && Object.hasOwn(network, 'hostname')) delete w.section(w.section(v1alpha1Doc(w), 'machine'), 'network').hostname
    return
  }
  w.section(w.section(v1alpha1Doc(w), 'machine'), 'network').hostname = hostname
}

function setInstall(w: Writer, v: TalosVersion, disk: string | InstallDiskValue | undefined, image: string | undefined): void {
  const value = typeof disk === 'string' ? { path: disk } : disk
  if (value && !/^\/dev\/\S+$/.test(value.path)) throw invalid(`install disk must be a /dev path, got '${value.path}'`)
  const main = w.docs.find(isV1Alpha1Document)
  const legacyInstall = main && isRecord(main.machine) && isRecord(main.machine.install)
  // Up to 1.13 machine.install is the only way; from 1.14 UnattendedInstallConfig, unless the config already uses
  // machine.install (Talos rejects both at once).
  if (!contractGreater(v, 1, 13) || legacyInstall) {
    const install = w.section(w.section(v1alpha1Doc(w), 'machine'), 'install')
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
  const doc = typedDoc(w, 'UnattendedInstallConfig')
  if (value) {
    const provisioning = w.section(doc, 'provisioning')
    const match = value.serial ? `disk.serial == ${JSON.stringify(value.serial)}` : `disk.dev_path == ${JSON.stringify(value.path)}`
    provisioning.diskSelector = { match }
    if (provisioning.wipe === undefined) provisioning.wipe = false
  }
  if (image) w.section(doc, 'installer').image = image
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

function setAddresses(w: Writer, v: TalosVersion, addresses: readonly StaticAddress[]): void {
  for (const address of addresses) checkAddress(address)
  if (contractGreater(v, 1, 11)) {
    for (const address of addresses) {
      const name = linkAlias(address)
      if (address.mac && !address.link) {
        const alias = typedDoc(w, 'LinkAliasConfig', name)
        alias.selector = { match: `mac(link.permanent_addr) == ${JSON.stringify(address.mac.toLowerCase())}` }
      }
      const link = typedDoc(w, 'LinkConfig', name)
      link.up = true
      if (address.mtu) link.mtu = address.mtu
      link.addresses = address.addresses.map((a) => ({ address: a }))
      if (address.gateway) link.routes = [{ gateway: address.gateway }]
    }
    return
  }
  // Legacy machine.network.interfaces, one entry per link (by name or by MAC selector).
  const network = w.section(w.section(v1alpha1Doc(w), 'machine'), 'network')
  const interfaces = Array.isArray(network.interfaces) ? (network.interfaces as unknown[]).slice() : []
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

function setNameservers(w: Writer, v: TalosVersion, nameservers: readonly string[]): void {
  if (contractGreater(v, 1, 11)) {
    typedDoc(w, 'ResolverConfig').nameservers = nameservers.map((address) => ({ address }))
    return
  }
  w.section(w.section(v1alpha1Doc(w), 'machine'), 'network').nameservers = [...nameservers]
}

/** Per-machine values over documents that are not changed: the result shares every object it did not write. */
function writeMachineValues(config: readonly ConfigDocument[], v: TalosVersion, values: MachineValues): ConfigDocument[] {
  const w = new Writer(config)
  if (values.hostname !== undefined) setHostname(w, v, values.hostname)
  if (values.installDisk !== undefined || values.installImage !== undefined) setInstall(w, v, values.installDisk, values.installImage)
  if (values.addresses?.length) setAddresses(w, v, values.addresses)
  if (values.nameservers?.length) setNameservers(w, v, values.nameservers)
  return w.docs
}

/** Writes per-machine values into a config (returns new documents; the input is not changed). */
export function applyMachineValues(config: readonly ConfigDocument[], talosVersion: string | TalosVersion, values: MachineValues): ConfigDocument[] {
  return writeMachineValues(config, parseTalosVersion(talosVersion), values).map((d) => cloneValue(d))
}

function applyStages(input: RenderMachineConfigInput): ConfigDocument[] {
  const base = input.base
  // A rendered or generated config is read from its YAML text, the same text its cache key is made of.
  let docs: ConfigDocument[] =
    typeof base === 'string' ? parseConfigDocuments(base, 'base config') : 'yaml' in base ? parseConfigDocuments(base.yaml, 'base config') : base.slice()
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
  return docs
}

// Everything the prepared config is made of, as one hash: the Talos version, the base (its YAML text, or documents
// as JSON) and each patch list as JSON, stage by stage. Inputs with the same JSON make the same config (YAML and JSON
// data hold nothing JSON text drops, and the prepared documents are read back from their own YAML anyway).
// The hash of a base text is remembered by that text: a profile's base config (several KiB of certificates) is the
// same string every request, and a Map finds a string it has seen by its cached hash, without reading it again.
const MAX_KEYED_BASES = 256
let keysByBase = new Map<string, Map<string, string>>()

function preparedKey(input: RenderMachineConfigInput, v: TalosVersion): string {
  const base = input.base
  const text = typeof base === 'string' || 'yaml' in base
  const baseText = typeof base === 'string' ? base : 'yaml' in base ? base.yaml : JSON.stringify(base)
  const rest = JSON.stringify([formatTalosVersion(v), text ? 'text' : 'documents', input.classPatches ?? [], input.profilePatches ?? [], input.machinePatches ?? []])
  let keys = keysByBase.get(baseText)
  const hit = keys?.get(rest)
  if (hit !== undefined) return hit
  const key = createHash('sha256').update(rest).update('\0').update(baseText).digest('base64url')
  if (!keys) {
    if (keysByBase.size >= MAX_KEYED_BASES) keysByBase = new Map()
    keysByBase.set(baseText, (keys = new Map()))
  }
  if (keys.size >= MAX_KEYED_BASES) keys.clear()
  keys.set(rest, key)
  return key
}

function prepare(input: RenderMachineConfigInput, v: TalosVersion): PreparedConfig {
  const key = preparedKey(input, v)
  const hit = preparedConfigs.get(key)
  if (hit) return hit
  // Read back from its own YAML: the documents are then exactly what parsing the served text gives (lint.ts relies
  // on it when it checks documents instead of text), and share nothing with the caller's objects.
  const yaml = stringifyConfigDocuments(applyStages(input))
  const documents = deepFreeze(parseConfigDocuments(yaml, 'rendered config'))
  const prepared: PreparedConfig = { key, documents }
  preparedConfigs.set(key, prepared, entryBytes(yaml))
  return prepared
}

function result(entry: RenderedEntry): RenderedConfig {
  let documents: ConfigDocument[] | undefined
  return {
    yaml: entry.yaml,
    // The caller's own copy, made when asked for: the cached documents are shared and frozen.
    get documents() {
      return (documents ??= entry.documents.map((d) => cloneValue(d)))
    },
  }
}

/**
 * base + class patches + profile patches + machine patches + per-machine values, in that order.
 * Cached (render-cache.ts): base and patches are applied once per distinct (Talos version, base, patch lists), and a
 * machine's config is written once per distinct values on top of that; a repeated call costs a hash and a lookup.
 */
export function renderMachineConfig(input: RenderMachineConfigInput): RenderedConfig {
  const v = parseTalosVersion(input.talosVersion)
  const prepared = prepare(input, v)
  const key = `${prepared.key}\0${input.values ? JSON.stringify(input.values) : ''}`
  let entry = renderedConfigs.get(key)
  if (!entry) {
    const docs = deepFreeze(input.values ? writeMachineValues(prepared.documents, v, input.values) : prepared.documents.slice())
    entry = { yaml: stringifyConfigDocumentsIncremental(docs), documents: docs }
    renderedConfigs.set(key, entry, entryBytes(entry.yaml))
  }
  rememberRendered(entry)
  return result(entry)
}
