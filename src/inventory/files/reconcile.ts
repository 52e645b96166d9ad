import { isDeepStrictEqual } from 'node:util'
import { normalizeMac, normalizeUuid } from '../identifiers.js'
import { normalizeMachineNetwork } from '../network.js'
import type { Inventory } from '../repositories.js'
import type { Bmc, BmcInput, Machine, MachineInput, Nic, Reservation } from '../types.js'
import { parseKg, resolveSecretRef } from './bmc-settings.js'
import { InventoryFileError, locate, type DesiredInventory, type DesiredMachine, type InventoryProblem } from './load.js'
import type { FileMachine } from './schema.js'

export const MANAGED_BY = 'inventory'

export type ChangeAction = 'created' | 'updated' | 'deleted'

export interface Change {
  kind: 'machine' | 'class' | 'profile'
  name: string
  action: ChangeAction
  /** Fields that changed (updates only). */
  fields?: string[]
  id?: string
}

export interface ImportReport {
  changes: Change[]
  unchanged: number
  warnings: string[]
}

export interface ImportOptions {
  prune?: boolean
  now: number
  env?: NodeJS.ProcessEnv
  /**
   * Where `passwordFrom`/`kgFrom` references are read; default: this process's environment and files. An import
   * through the API passes the values its caller read where it runs: the server never reads its own environment or
   * files for a remote caller (an admin token must not be able to send any server file to a BMC address it names).
   */
  resolveSecret?: (ref: string) => { value?: string; warning?: string }
  /** Compute the report without writing anything. */
  dryRun?: boolean
}

class DryRunRollback extends Error {}

/** Reconciles the declared inventory into the database in one transaction: all of it, or nothing. */
export async function importInventory(inventory: Inventory, desired: DesiredInventory, options: ImportOptions): Promise<ImportReport> {
  let report: ImportReport | undefined
  try {
    await inventory.transaction(async (tx) => {
      report = await reconcile(tx, desired, options)
      if (options.dryRun) throw new DryRunRollback()
    })
  } catch (err) {
    if (!(err instanceof DryRunRollback)) throw err
  }
  return report!
}

function machineInput(m: FileMachine, existing: Machine | null): MachineInput {
  const input: MachineInput = { name: m.name, managedBy: MANAGED_BY }
  if (m.serial !== undefined) input.serial = m.serial
  if (m.uuid !== undefined) input.uuid = normalizeUuid(m.uuid)
  if (m.manufacturer !== undefined) input.manufacturer = m.manufacturer
  if (m.product !== undefined) input.product = m.product
  if (m.arch !== undefined) input.arch = m.arch
  if (m.firmware !== undefined) input.firmware = m.firmware
  if (m.labels !== undefined) input.labels = Object.fromEntries(Object.entries(m.labels).sort(([a], [b]) => a.localeCompare(b)))
  if (m.rack !== undefined) input.rack = m.rack
  if (m.unit !== undefined) input.rackUnit = m.unit
  if (m.alwaysPxe !== undefined) input.alwaysPxe = m.alwaysPxe
  if (m.profile !== undefined) input.profile = m.profile
  if (m.network !== undefined) input.network = normalizeMachineNetwork(m.network)
  if (m.nics !== undefined) {
    // Declared NICs win for their MACs; NICs the machine already has (e.g. discovered) are kept.
    const declared: Nic[] = m.nics.map((n) => ({ mac: normalizeMac(n.mac), name: n.name ?? null, boot: n.boot ?? false }))
    const macs = new Set(declared.map((n) => n.mac))
    const kept = (existing?.nics ?? []).filter((n) => !macs.has(n.mac)).map((n) => ({ ...n, boot: declared.some((d) => d.boot) ? false : n.boot }))
    input.nics = [...declared, ...kept].sort((a, b) => a.mac.localeCompare(b.mac))
  }
  return input
}

function changedFields(existing: Machine, input: MachineInput): string[] {
  const out: string[] = []
  for (const [key, value] of Object.entries(input)) {
    const current = (existing as unknown as Record<string, unknown>)[key]
    if (!isDeepStrictEqual(current, value)) out.push(key)
  }
  return out
}

/** The BMC fields an import sets (secrets aside), for telling whether anything changed. */
function bmcFields(b: Bmc | BmcInput) {
  return {
    type: b.type, address: b.address, port: b.port ?? null, username: b.username ?? null, credentialsRef: b.credentialsRef ?? null, kgRef: b.kgRef ?? null,
    insecure: b.insecure ?? false, fingerprint: b.fingerprint ?? null, systemId: b.systemId ?? null, caPem: b.caPem ?? null,
    auth: b.auth ?? 'auto', cipherSuites: b.cipherSuites ?? null, privilege: b.privilege ?? null, bootVerify: b.bootVerify ?? null,
    bootMethod: b.bootMethod ?? 'pxe',
  }
}

/** What the files say a machine's BMC is, secrets resolved; warnings for secrets that cannot be read. */
async function desiredBmc(tx: Inventory, entry: { value: DesiredMachine; file: string; pointer: string[]; source?: { text: string; shown: string } }, machineId: string, resolveSecret: (ref: string) => { value?: string; warning?: string }, warnings: string[]): Promise<BmcInput> {
  const m = entry.value
  const b = m.bmc!
  // Every setting is given, defaults included: a setting taken out of the file goes back to its default.
  const want: BmcInput = {
    type: b.type,
    address: b.address,
    port: b.port ?? null,
    username: b.username ?? null,
    credentialsRef: b.passwordFrom ?? null,
    kgRef: b.kgFrom ?? null,
    insecure: b.insecure ?? false,
    fingerprint: b.fingerprint?.toLowerCase().replaceAll(':', '') ?? null,
    systemId: b.systemId ?? null,
    caPem: m.bmcCaPem ?? null,
    auth: b.auth ?? 'auto',
    cipherSuites: (b.cipherSuites as (3 | 17)[] | undefined) ?? null,
    privilege: b.privilege ?? null,
    bootVerify: b.bootVerify ?? null,
    bootMethod: b.bootMethod ?? 'pxe',
  }
  const current = b.passwordFrom || b.kgFrom ? await tx.bmcs.credentials(machineId) : null
  if (b.passwordFrom) {
    const { value, warning } = resolveSecret(b.passwordFrom)
    if (warning) warnings.push(`machine ${m.name}: BMC password not set: ${warning}`)
    else if (current?.password !== value) want.password = value!
  }
  if (b.kgFrom) {
    const { value, warning } = resolveSecret(b.kgFrom)
    if (warning) warnings.push(`machine ${m.name}: BMC K_G not set: ${warning}`)
    else {
      const kg = parseKg(value!)
      if ('error' in kg) {
        // Named by its reference only: the value is a secret.
        throw new InventoryFileError([{ ...locate(entry.file, [...entry.pointer, 'bmc'], 'kgFrom', entry.source), message: `${b.kgFrom} ${kg.error}` }])
      }
      if (current?.kg?.toString('hex') !== kg.hex) want.kg = kg.hex
    }
  } else {
    // A K_G the files gave and no longer name is removed, as is any on a BMC the files say is Redfish; one set
    // through the API or CLI for an IPMI BMC stays.
    const have = await tx.bmcs.get(machineId)
    if (have?.hasKg && (b.type !== 'ipmi' || have.kgRef)) want.kg = null
  }
  return want
}

async function reconcile(tx: Inventory, desired: DesiredInventory, options: ImportOptions): Promise<ImportReport> {
  const { now } = options
  const env = options.env ?? process.env
  const resolveSecret = options.resolveSecret ?? ((ref: string) => resolveSecretRef(ref, env))
  const report: ImportReport = { changes: [], unchanged: 0, warnings: [] }

  // References to profiles must resolve, to the files or to what the database already has.
  const profileNames = new Set([...desired.profiles.map((p) => p.value.name), ...(await tx.profiles.list()).map((p) => p.name)])
  const problems: InventoryProblem[] = []
  for (const entry of [...desired.machines, ...desired.classes]) {
    const profile = entry.value.profile
    if (profile && !profileNames.has(profile)) {
      problems.push({ ...locate(entry.file, entry.pointer, 'profile', entry.source), message: `unknown profile '${profile}'` })
    }
  }
  if (problems.length > 0) throw new InventoryFileError(problems)

  for (const { value: p } of desired.profiles) {
    const want = {
      name: p.name,
      description: p.description ?? null,
      talosVersion: p.talosVersion ?? null,
      arch: p.arch ?? null,
      schematic: p.schematic ?? null,
      kernelArgs: p.kernelArgs ?? [],
      baseConfig: p.baseConfigText,
      patches: p.patches ?? [],
      installDisk: p.installDisk ?? null,
      deadlines: p.deadlines ?? null,
      managedBy: MANAGED_BY,
    }
    const have = await tx.profiles.get(p.name)
    if (have && isDeepStrictEqual({ ...have, createdAt: 0, updatedAt: 0 }, { ...want, createdAt: 0, updatedAt: 0 })) report.unchanged++
    else {
      await tx.profiles.put(want, now)
      report.changes.push({ kind: 'profile', name: p.name, action: have ? 'updated' : 'created' })
    }
  }

  for (const { value: c } of desired.classes) {
    const want = { name: c.name, description: c.description ?? null, selectors: c.selectors, profile: c.profile ?? null, patches: c.patches ?? [], managedBy: MANAGED_BY }
    const have = await tx.classes.get(c.name)
    if (have && isDeepStrictEqual({ ...have, createdAt: 0, updatedAt: 0 }, { ...want, createdAt: 0, updatedAt: 0 })) report.unchanged++
    else {
      await tx.classes.put(want, now)
      report.changes.push({ kind: 'class', name: c.name, action: have ? 'updated' : 'created' })
    }
  }

  const declaredIds = new Set<string>()
  for (const entry of desired.machines) {
    const m = entry.value
    // A declared machine may already be known: by name, else by serial, a MAC or its uuid (it booted before it was declared).
    let existing = await tx.machines.byName(m.name)
    if (!existing && m.serial) existing = await tx.machines.bySerial(m.serial)
    for (const n of m.nics ?? []) if (!existing) existing = await tx.machines.byMac(n.mac)
    if (!existing && m.uuid) existing = await tx.machines.byUuid(m.uuid)
    const input = machineInput(m, existing)
    let machine: Machine
    const fields: string[] = []
    if (!existing) {
      machine = await tx.machines.create(input, now)
    } else {
      fields.push(...changedFields(existing, input))
      machine = fields.length > 0 ? await tx.machines.update(existing.id, input, now) : existing
    }
    declaredIds.add(machine.id)

    const reservations: Omit<Reservation, 'machineId'>[] = (m.nics ?? [])
      .filter((n) => n.ip)
      .map((n) => ({ ip: n.ip!, mac: normalizeMac(n.mac), clientId: null, hostname: m.name }))
    const currentRes = (await tx.reservations.list()).filter((r) => r.machineId === machine.id).map(({ machineId: _, ...r }) => r)
    const sortByIp = (a: { ip: string }, b: { ip: string }) => a.ip.localeCompare(b.ip)
    if (m.nics !== undefined && !isDeepStrictEqual(currentRes.sort(sortByIp), [...reservations].sort(sortByIp))) {
      await tx.reservations.setForMachine(machine.id, reservations)
      fields.push('reservations')
    }

    if (m.bmc) {
      const want = await desiredBmc(tx, entry, machine.id, resolveSecret, report.warnings)
      const have = await tx.bmcs.get(machine.id)
      const same = have && want.password === undefined && want.kg === undefined && isDeepStrictEqual(bmcFields(have), bmcFields(want))
      if (!same) {
        await tx.bmcs.put(machine.id, want)
        fields.push('bmc')
      }
    }

    if (!existing) report.changes.push({ kind: 'machine', name: m.name, action: 'created', id: machine.id })
    else if (fields.length > 0) report.changes.push({ kind: 'machine', name: m.name, action: 'updated', fields, id: machine.id })
    else report.unchanged++
  }

  if (options.prune) {
    // Only what the files own is pruned: discovered machines and API-made classes are never touched.
    let after: string | undefined
    const doomed: Machine[] = []
    do {
      const page = await tx.machines.list({ limit: 1000, ...(after ? { after } : {}) })
      doomed.push(...page.items.filter((m) => m.managedBy === MANAGED_BY && !declaredIds.has(m.id)))
      after = page.next ?? undefined
    } while (after)
    for (const m of doomed) {
      await tx.machines.delete(m.id)
      report.changes.push({ kind: 'machine', name: m.name ?? m.id, action: 'deleted', id: m.id })
    }
    const classNames = new Set(desired.classes.map((c) => c.value.name))
    for (const c of await tx.classes.list()) {
      if (c.managedBy === MANAGED_BY && !classNames.has(c.name)) {
        await tx.classes.delete(c.name)
        report.changes.push({ kind: 'class', name: c.name, action: 'deleted' })
      }
    }
    const profileSet = new Set(desired.profiles.map((p) => p.value.name))
    for (const p of await tx.profiles.list()) {
      if (p.managedBy === MANAGED_BY && !profileSet.has(p.name)) {
        await tx.profiles.delete(p.name)
        report.changes.push({ kind: 'profile', name: p.name, action: 'deleted' })
      }
    }
  }
  return report
}
