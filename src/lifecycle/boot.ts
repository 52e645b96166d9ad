import type { Inventory, Machine, Profile, HardwareFacts, Arch, Firmware, Nic } from '../inventory/index.js'
import { normalizeMac, isMac, isUuid, normalizeUuid } from '../inventory/index.js'
import type { Logger } from '../log.js'
import { decideBoot, type BootDecision, type BootPolicy } from './decide.js'
import type { Clock, Lifecycle, MachineFacts } from './service.js'
import { RackbootError } from '../errors.js'
import type { PeerDirectory } from './peers.js'
import { resolveProfile } from './profiles.js'

/** What iPXE told us about itself when it asked for its script. */
export interface IpxeFacts extends MachineFacts {
  /** ${buildarch}: i386, x86_64, arm64 ... */
  buildArch?: string | null
  /** ${platform}: pcbios or efi. */
  platform?: string | null
}

export interface BootPlan {
  machine: Machine
  decision: BootDecision
  /** Per-boot token for the discovery agent's report, when the decision is discovery. */
  agentToken?: string
  /** Per-boot token for the Talos config fetch, when the decision is install. */
  configToken?: string
}

/** The hardware report the discovery agent POSTs (src/agent). */
export interface AgentReport {
  agentVersion?: string
  machineId?: string
  smbios?: { uuid?: string; serial?: string; manufacturer?: string; product?: string; boardSerial?: string; [k: string]: unknown }
  cpu?: { model?: string; sockets?: number; cores?: number; threads?: number }
  memory?: { totalBytes: number }
  disks?: HardwareFacts['disks']
  nics?: HardwareFacts['nics']
  bmc?: { address?: string; mac?: string }
  /** Set by a wipe run: which disks were erased, and which could not be. */
  wiped?: string[]
  wipeFailed?: string[]
}

export interface BootServiceDeps {
  inventory: Inventory
  lifecycle: Lifecycle
  log: Logger
  clock: Clock
  policy: BootPolicy & { autoAccept: boolean }
  /** How long a boot token stays valid: a slow boot must still finish. */
  tokenTtlMs?: number
  /** Remembers which machine asked from which address (for Talos's event sink and kernel log). */
  peers?: PeerDirectory
}

export interface BootService {
  plan(facts: IpxeFacts, clientIp: string | null): Promise<BootPlan>
  /** Takes a discovery agent report presented with its boot token. */
  agentReport(token: string, clientIp: string | null, report: AgentReport): Promise<Machine>
  /** The profile that applies to a machine (its own, else none until classes pick one). */
  profileFor(machine: Machine): Promise<Profile | null>
}

// iPXE's ${buildarch} to our arch; ${platform} to firmware.
export function archFromIpxe(buildArch: string | null | undefined): Arch | null {
  if (!buildArch) return null
  if (buildArch === 'x86_64' || buildArch === 'i386') return 'amd64'
  if (buildArch === 'arm64') return 'arm64'
  return null
}

export function firmwareFromIpxe(platform: string | null | undefined): Firmware | null {
  if (platform === 'efi') return 'uefi'
  if (platform === 'pcbios') return 'bios'
  return null
}

/** iPXE sends "" or a placeholder for unset SMBIOS strings; keep only real values. */
function fact(value: string | null | undefined): string | null {
  if (!value) return null
  const v = value.trim()
  if (!v || /^(to be filled by o\.e\.m\.|default string|not specified|none|0+|system serial number)$/i.test(v)) return null
  return v
}

export function createBootService(deps: BootServiceDeps): BootService {
  const { inventory, lifecycle, log, clock } = deps
  const ttl = deps.tokenTtlMs ?? 60 * 60 * 1000

  async function profileFor(machine: Machine): Promise<Profile | null> {
    return (await resolveProfile(inventory, machine)).profile
  }

  return {
    profileFor,
    async plan(raw, clientIp) {
      const facts: MachineFacts = {
        mac: raw.mac && isMac(raw.mac) ? normalizeMac(raw.mac) : null,
        uuid: raw.uuid && isUuid(raw.uuid) ? normalizeUuid(raw.uuid) : null,
        serial: fact(raw.serial),
        manufacturer: fact(raw.manufacturer),
        product: fact(raw.product),
        arch: archFromIpxe(raw.buildArch),
        firmware: firmwareFromIpxe(raw.platform),
      }
      if (!facts.mac && !facts.uuid && !facts.serial) {
        throw new RackbootError('RB_ERR_VALIDATION', 'a boot request needs at least one of mac, uuid or serial')
      }
      let { machine } = await lifecycle.identify(facts, 'ipxe')
      // Fill in what iPXE knows and the inventory does not yet (never overwrite a tech's values).
      const fill: Record<string, unknown> = {}
      for (const key of ['uuid', 'serial', 'manufacturer', 'product', 'arch', 'firmware'] as const) {
        if (facts[key] && !machine[key]) fill[key] = facts[key]
      }
      if (facts.mac && !machine.nics.some((n) => n.mac === facts.mac)) {
        fill.nics = [...machine.nics, { mac: facts.mac, name: null, boot: machine.nics.every((n) => !n.boot) } satisfies Nic]
      }
      if (Object.keys(fill).length > 0) {
        try {
          machine = await inventory.machines.update(machine.id, fill, clock.now())
        } catch (err) {
          log.warn({ err, machineId: machine.id }, 'cannot record boot facts')
        }
      }
      if (clientIp) deps.peers?.remember(clientIp, machine.id)
      const profile = await profileFor(machine)
      const decision = decideBoot(machine, profile, deps.policy)
      const plan: BootPlan = { machine, decision }
      if (decision.kind === 'discovery') {
        plan.agentToken = await inventory.bootTokens.issue({ machineId: machine.id, purpose: 'agent', clientIp, ttlMs: ttl }, clock.now())
      } else if (decision.kind === 'install') {
        plan.configToken = await inventory.bootTokens.issue({ machineId: machine.id, purpose: 'config', clientIp, ttlMs: ttl }, clock.now())
      }
      lifecycle.record(machine.id, 'boot.script', `boot script: ${decision.kind} (${decision.reason})`, {
        decision: decision.kind,
        reason: decision.reason,
        clientIp,
        arch: facts.arch ?? null,
        firmware: facts.firmware ?? null,
      })
      return plan
    },

    async agentReport(token, clientIp, report) {
      const now = clock.now()
      const bt = await inventory.bootTokens.verify(token, 'agent', now)
      if (!bt) throw new RackbootError('RB_ERR_FORBIDDEN', 'invalid or expired agent token')
      if (report.machineId && report.machineId !== bt.machineId) {
        throw new RackbootError('RB_ERR_FORBIDDEN', 'the agent token belongs to another machine')
      }
      const machine = await inventory.machines.get(bt.machineId)
      if (!machine) throw new RackbootError('RB_ERR_MACHINE_NOT_FOUND', `machine ${bt.machineId} no longer exists`)
      const facts: HardwareFacts = {
        ...(report.cpu ? { cpu: report.cpu } : {}),
        ...(report.memory ? { memory: report.memory } : {}),
        disks: report.disks ?? [],
        nics: (report.nics ?? []).map((n) => ({ ...n, mac: isMac(n.mac) ? normalizeMac(n.mac) : n.mac })),
        ...(report.bmc ? { bmc: report.bmc } : {}),
        ...(report.smbios ? { smbios: Object.fromEntries(Object.entries(report.smbios).filter(([, v]) => typeof v === 'string')) as Record<string, string> } : {}),
      }
      await inventory.machines.setHardware(machine.id, facts, now)
      // Identity from SMBIOS and NICs, where the inventory has none yet.
      const fill: Record<string, unknown> = {}
      const s = report.smbios ?? {}
      if (!machine.uuid && s.uuid && isUuid(s.uuid)) fill.uuid = normalizeUuid(s.uuid)
      if (!machine.serial && fact(s.serial)) fill.serial = fact(s.serial)
      if (!machine.manufacturer && fact(s.manufacturer)) fill.manufacturer = fact(s.manufacturer)
      if (!machine.product && fact(s.product)) fill.product = fact(s.product)
      const known = new Set(machine.nics.map((n) => n.mac))
      const extra = (facts.nics ?? []).filter((n) => isMac(n.mac) && !known.has(n.mac)).map((n) => ({ mac: n.mac, name: n.name ?? null, boot: false }))
      const named = machine.nics.map((n) => ({ ...n, name: n.name ?? facts.nics?.find((f) => f.mac === n.mac)?.name ?? null }))
      if (extra.length > 0 || named.some((n, i) => n.name !== machine.nics[i]!.name)) fill.nics = [...named, ...extra]
      if (Object.keys(fill).length > 0) {
        try {
          await inventory.machines.update(machine.id, fill, now)
        } catch (err) {
          // Another machine already claims one of these identities: keep the report, flag it on the timeline.
          log.warn({ err, machineId: machine.id }, 'agent report identity conflicts with another machine')
          lifecycle.record(machine.id, 'boot.agent', `identity conflict: ${(err as Error).message}`, { conflict: true })
        }
      }
      const disks = facts.disks ?? []
      lifecycle.record(machine.id, 'boot.agent', `hardware report: ${report.cpu?.cores ?? '?'} cores, ${Math.round((report.memory?.totalBytes ?? 0) / 2 ** 30)} GiB, ${disks.length} disks, ${(facts.nics ?? []).length} NICs`, {
        clientIp,
        tokenIp: bt.clientIp,
        wiped: report.wiped ?? null,
      })
      if (machine.state === 'new') {
        await lifecycle.transition(machine.id, 'discovered', 'discovery agent reported hardware', { from: 'new' })
        if (deps.policy.autoAccept) await lifecycle.transition(machine.id, 'ready', 'auto-accept rule', { from: 'discovered' })
      } else if (machine.state === 'released' && report.wiped) {
        if (report.wipeFailed?.length) {
          // A disk that kept its data must not go back to the pool: the machine stays released, and says why.
          lifecycle.record(machine.id, 'boot.agent', `wipe failed on ${report.wipeFailed.join(', ')}: machine stays released`, { wipeFailed: report.wipeFailed })
        } else {
          await lifecycle.transition(machine.id, 'ready', `disks wiped (${report.wiped.join(', ') || 'none'})`, { from: 'released' })
        }
      }
      return (await inventory.machines.get(machine.id))!
    },
  }
}
