import type { Inventory, Machine, Profile, HardwareFacts, Arch, Firmware, Nic } from '../inventory/index.js'
import type { IpxeWait } from './ipxe-wait.js'
import { normalizeMac, isMac, isUuid, normalizeUuid } from '../inventory/index.js'
import { Counter, type Registry } from 'prom-client'
import type { Logger } from '../log.js'
import { decideBoot, type BootDecision, type BootPolicy } from './decide.js'
import type { Clock, Lifecycle, MachineFacts } from './service.js'
import { RackbootError } from '../errors.js'
import type { PeerDirectory } from './peers.js'
import { resolveProfile } from './profiles.js'
import { createIdentityVerifier, type IdentityVerifier } from './identity.js'
import { createNewMachineLimit, type NewMachineLimit } from './new-machine-limit.js'
import { createSecurityEvents, type SecurityEvents } from './security-events.js'
import { normalizeIp } from '../talos/receivers/peer.js'

type InstallAdmission = { ok: true } | { ok: false; position: number; waiting: number; reason: string }

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
  /** Told to wait for an install slot (admission): its place in line. */
  queued?: { position: number; waiting: number }
}

/** A boot the server will not plan: the network does not vouch for the claim, or a bound on new machines says no. */
export interface BootRefusal {
  refused: true
  /** One line for the machine's console and timeline. */
  reason: string
  /** The machine the claim named, if the inventory has it. */
  machine: Machine | null
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
  /** How long a boot token stays valid: a slow boot must still finish. Per purpose; both default to 30 and 60 minutes. */
  tokenTtlMs?: { agent?: number; config?: number }
  /** Remembers which machine asked from which address (for Talos's event sink and kernel log). */
  peers?: PeerDirectory
  /** What the network says about a client address; default: rackboot's own leases only, no trusted claims. */
  identity?: IdentityVerifier
  /** Bounds on machines created by unauthenticated boots; default 5 per address and 600 overall per minute. */
  newMachines?: NewMachineLimit
  security?: SecurityEvents
  registry?: Registry
  /**
   * Admission of installs (provisioning.maxConcurrent, maxPerRack): the repair ladder's admit, which claims the slot in
   * the database (so it may wait on it).
   */
  admission?: { admit(machine: Machine): InstallAdmission | Promise<InstallAdmission> }
  /** iPXE's lease times (from DHCP): a slow gap to the script goes on the timeline with its fix. */
  ipxeWait?: IpxeWait
}

export interface BootService {
  plan(facts: IpxeFacts, clientIp: string | null): Promise<BootPlan | BootRefusal>
  /** Takes a discovery agent report presented with its boot token. */
  agentReport(token: string, clientIp: string | null, report: AgentReport): Promise<Machine>
  /** The profile that applies to a machine (its own, else none until classes pick one). */
  profileFor(machine: Machine): Promise<Profile | null>
}

/**
 * A loader's arch claim to our arch: iPXE's ${buildarch} (x86_64, i386, arm64) or GRUB's ${grub_cpu} (x86_64, i386,
 * arm64). i386 loaders run on amd64 machines (BIOS undionly.kpxe, i386-pc GRUB). Anything else is no claim.
 */
export function archFromIpxe(buildArch: string | null | undefined): Arch | null {
  if (!buildArch) return null
  switch (buildArch.toLowerCase()) {
    case 'x86_64':
    case 'i386':
    case 'amd64':
      return 'amd64'
    case 'arm64':
    case 'aarch64':
      return 'arm64'
    default:
      return null
  }
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
  const agentTtl = deps.tokenTtlMs?.agent ?? 30 * 60_000
  const configTtl = deps.tokenTtlMs?.config ?? 60 * 60_000
  const identity = deps.identity ?? createIdentityVerifier({ inventory, clock, trustClaims: false })
  const newMachines = deps.newMachines ?? createNewMachineLimit({ perAddressPerMinute: 5, perMinute: 600 })
  const security = deps.security ?? createSecurityEvents({ lifecycle, log })
  const newMachineRefusals = deps.registry
    ? new Counter({ name: 'rackboot_boot_new_machines_refused_total', help: 'Boots of unknown machines told to wait by a bound on new machines (security.newMachines*)', labelNames: ['bound'] as const, registers: [deps.registry] })
    : null

  async function profileFor(machine: Machine): Promise<Profile | null> {
    return (await resolveProfile(inventory, machine)).profile
  }

  return {
    profileFor,
    async plan(raw, rawIp) {
      const clientIp = rawIp ? normalizeIp(rawIp) : null
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
      // The network, not the query string, says which machine this is.
      const verdict = await identity.check(facts, clientIp)
      if (!verdict.ok) {
        security.record('identity-refused', verdict.claimed?.id ?? null, 'boot.script', verdict.reason, { clientIp, mac: facts.mac ?? null, uuid: facts.uuid ?? null, serial: facts.serial ?? null })
        return { refused: true, reason: verdict.reason, machine: verdict.claimed }
      }
      if (verdict.mac) facts.mac = verdict.mac
      let machine: Machine
      if (verdict.machine) {
        machine = verdict.machine
        if (verdict.via !== 'trusted' && !machine.nics.some((n) => n.mac === verdict.mac)) {
          security.record('new-machine-bound', machine.id, 'boot.script', `${verdict.mac} bound to ${machine.name ?? machine.id} by its first boot from ${clientIp} (${facts.uuid ? `uuid ${facts.uuid}` : `serial ${facts.serial}`})`, { clientIp, mac: verdict.mac })
        }
      } else {
        const existing = verdict.via === 'trusted' ? await lifecycle.find(facts) : null
        if (existing) {
          machine = existing
        } else {
          const admitted = newMachines.take(clientIp ?? 'unknown', clock.now())
          if (!admitted.ok) {
            newMachineRefusals?.inc({ bound: admitted.bound })
            return { refused: true, reason: `too many new machines ${admitted.bound === 'per-address' ? `from ${clientIp}` : 'at once'}: waiting to be added`, machine: null }
          }
          machine = (await lifecycle.identify(facts, 'ipxe')).machine
        }
      }
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
      // An installed machine asking again: by setting, reinstall it or mark it failed (its disk may be gone).
      const returns = deps.policy.installedReturns ?? 'disk'
      if (machine.state === 'installed' && !machine.alwaysPxe && returns !== 'disk') {
        const to = returns === 'reinstall' ? 'provisioning' : 'failed'
        try {
          machine = await lifecycle.transition(machine.id, to, `installed machine network-booted again from ${clientIp ?? 'an unknown address'}: ${returns === 'reinstall' ? 'reinstalling' : 'marked failed'} (boot.installedReturns ${returns})`, { from: 'installed' })
        } catch (err) {
          log.warn({ err, machineId: machine.id }, 'cannot act on an installed machine that network-booted again')
        }
      }
      const profile = await profileFor(machine)
      // The loader is what is running: it picks the arch of what boots, whatever the inventory recorded before.
      const archConflict = facts.arch && machine.arch && facts.arch !== machine.arch ? ` (the loader runs ${facts.arch}, the inventory says ${machine.arch})` : ''
      if (archConflict) log.warn({ machineId: machine.id, loaderArch: facts.arch, recordedArch: machine.arch }, 'boot loader arch differs from the inventory')
      let decision = decideBoot(machine, profile, deps.policy, facts.arch ?? null)
      const plan: BootPlan = { machine, decision }
      if (decision.kind === 'install' && machine.state === 'provisioning' && deps.admission) {
        const admitted = await deps.admission.admit(machine)
        if (!admitted.ok) {
          decision = plan.decision = { kind: 'hold', mode: 'retry', reason: admitted.reason }
          plan.queued = { position: admitted.position, waiting: admitted.waiting }
        }
      }
      if (decision.kind === 'discovery') {
        plan.agentToken = await inventory.bootTokens.issue({ machineId: machine.id, purpose: 'agent', clientIp, ttlMs: agentTtl, machineState: machine.state }, clock.now())
      } else if (decision.kind === 'install') {
        plan.configToken = await inventory.bootTokens.issue({ machineId: machine.id, purpose: 'config', clientIp, ttlMs: configTtl, machineState: machine.state }, clock.now())
      }
      const waited = deps.ipxeWait?.scriptAsked(machine.id, clock.now())
      if (waited) {
        lifecycle.record(machine.id, 'boot.script', `iPXE asked for its script ${(waited.waitedMs / 1000).toFixed(1)} s after its DHCP lease${waited.relayed ? ' (relayed segment)' : ''}: ${waited.fix}`, {
          slow: true, ipxeWaitMs: waited.waitedMs, relayed: waited.relayed, fix: waited.fix,
        })
      }
      lifecycle.record(machine.id, 'boot.script', `boot script: ${decision.kind} (${decision.reason})${archConflict}`, {
        decision: decision.kind,
        reason: decision.reason,
        clientIp,
        via: verdict.via,
        ...(plan.queued ? { queued: true, position: plan.queued.position } : {}),
        arch: facts.arch ?? null,
        ...(decision.kind === 'discovery' || decision.kind === 'install' ? { bootArch: decision.arch } : {}),
        ...(archConflict ? { recordedArch: machine.arch } : {}),
        firmware: facts.firmware ?? null,
      })
      return plan
    },

    async agentReport(token, rawIp, report) {
      const now = clock.now()
      const clientIp = rawIp ? normalizeIp(rawIp) : 'unknown'
      const refuse = (machineId: string | null, why: string): never => {
        security.record('agent-token-refused', machineId, 'boot.agent', `agent report from ${clientIp} refused: ${why}`, { clientIp })
        throw new RackbootError('RB_ERR_FORBIDDEN', `agent report refused: ${why}`)
      }
      const c = await inventory.bootTokens.check(token, 'agent', now)
      if (!c.ok) return refuse(c.token?.machineId ?? null, c.reason === 'void' ? 'the token was voided (a newer boot, or its report was already taken)' : `${c.reason} agent token`)
      const bt = c.token
      if (report.machineId && report.machineId !== bt.machineId) return refuse(bt.machineId, 'the agent token belongs to another machine')
      const machine = await inventory.machines.get(bt.machineId)
      if (!machine) throw new RackbootError('RB_ERR_MACHINE_NOT_FOUND', `machine ${bt.machineId} no longer exists`)
      // One report, for the state the token was issued in: a released machine's wipe, a new machine's discovery.
      if (machine.state !== 'new' && machine.state !== 'released') return refuse(machine.id, `machine is ${machine.state}: no report expected`)
      if (bt.machineState && bt.machineState !== machine.state) return refuse(machine.id, `token was issued while the machine was ${bt.machineState}, it is ${machine.state} now`)
      if (clientIp !== bt.clientIp && !(await identity.addressBelongs(machine, clientIp))) {
        return refuse(machine.id, `token was issued to ${bt.clientIp ?? 'another address'}, and ${clientIp} is not one of this machine's addresses`)
      }
      const taken = await inventory.bootTokens.consume(token, 'agent', clientIp, 1, now)
      if (!taken.ok) return refuse(machine.id, taken.reason === 'used-up' || taken.reason === 'other-address' ? 'this boot has already reported' : `${taken.reason} agent token`)
      await inventory.bootTokens.revoke(machine.id, 'agent', now)
      const knownDisks = (machine.hardware?.disks ?? []).map((d) => d.name)
      const facts: HardwareFacts = {
        ...(report.cpu ? { cpu: report.cpu } : {}),
        ...(report.memory ? { memory: report.memory } : {}),
        // A report without disks (a wipe run that only lists what it erased) keeps the disks known before.
        disks: report.disks ?? machine.hardware?.disks ?? [],
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
        // Every disk the machine had before and every disk it reports now must be in the wiped list.
        const wiped = new Set(report.wiped)
        const missed = [...new Set([...knownDisks, ...disks.map((d) => d.name)])].filter((d) => !wiped.has(d))
        if (report.wipeFailed?.length) {
          // A disk that kept its data must not go back to the pool: the machine stays released, and says why.
          lifecycle.record(machine.id, 'boot.agent', `wipe failed on ${report.wipeFailed.join(', ')}: machine stays released`, { wipeFailed: report.wipeFailed })
        } else if (missed.length > 0) {
          lifecycle.record(machine.id, 'boot.agent', `wipe incomplete: ${missed.join(', ')} not reported wiped: machine stays released`, { notWiped: missed })
        } else {
          await lifecycle.transition(machine.id, 'ready', `disks wiped (${report.wiped.join(', ') || 'none'})`, { from: 'released' })
        }
      }
      return (await inventory.machines.get(machine.id))!
    },
  }
}
