import { RackbootError } from '../errors.js'
import type { Inventory, Machine } from '../inventory/index.js'
import type { Logger } from '../log.js'
import { chooseInstallDisk, renderMachineConfig, type ConfigLinter } from '../talos/index.js'
import type { Clock, Lifecycle } from './service.js'
import type { PeerDirectory } from './peers.js'
import { resolveProfile } from './profiles.js'
import { baseConfigFor } from './allocation.js'

export interface ConfigServiceDeps {
  inventory: Inventory
  lifecycle: Lifecycle
  linter: ConfigLinter
  log: Logger
  clock: Clock
  peers?: PeerDirectory
}

export interface ServedConfig {
  machine: Machine
  yaml: string
}

export interface ConfigService {
  /**
   * The rendered, linted Talos config for the machine a config token belongs to, asked from `clientIp`.
   * Throws RB_ERR_FORBIDDEN for a wrong token or address, and a 5xx-class error when the config cannot be served.
   */
  configFor(token: string, clientIp: string): Promise<ServedConfig>
}

export function createConfigService(deps: ConfigServiceDeps): ConfigService {
  const { inventory, lifecycle, clock } = deps

  async function addressBelongs(machine: Machine, tokenIp: string | null, clientIp: string): Promise<boolean> {
    if (tokenIp === clientIp) return true
    // Talos may get another lease than iPXE had: accept an address leased to one of the machine's NICs.
    const lease = await inventory.leases.byIp(clientIp)
    return !!lease && machine.nics.some((n) => n.mac === lease.mac) && lease.expiresAt > clock.now()
  }

  return {
    async configFor(token, clientIp) {
      const bt = await inventory.bootTokens.verify(token, 'config', clock.now())
      if (!bt) {
        // No token to name the machine: the address may (a boot script or a lease), so the refusal shows on the
        // timeline of the machine that was refused, where a tech looks for why its install stopped.
        const suspect = (await deps.peers?.resolve(clientIp).catch(() => null)) ?? null
        lifecycle.record(suspect, 'boot.config', `config refused: unknown or expired token from ${clientIp}`, { clientIp, status: 403 })
        throw new RackbootError('RB_ERR_FORBIDDEN', 'invalid or expired config token')
      }
      const machine = await inventory.machines.get(bt.machineId)
      if (!machine) throw new RackbootError('RB_ERR_FORBIDDEN', 'invalid config token')
      if (!(await addressBelongs(machine, bt.clientIp, clientIp))) {
        lifecycle.record(machine.id, 'boot.config', `config refused: token used from ${clientIp}, issued to ${bt.clientIp ?? 'unknown'}`, { clientIp, status: 403 })
        throw new RackbootError('RB_ERR_FORBIDDEN', 'this config token was issued to another address')
      }
      const fail = (message: string, details?: unknown): never => {
        lifecycle.record(machine.id, 'boot.config', `config not served: ${message}`, { clientIp, status: 503, details: details ?? null })
        throw new RackbootError('RB_ERR_INTERNAL', message, { statusCode: 503, details })
      }
      // Only a machine that is meant to install gets a config: a released machine's old token is worth nothing.
      if (machine.state !== 'provisioning' && machine.state !== 'installed') {
        lifecycle.record(machine.id, 'boot.config', `config refused: machine is ${machine.state}`, { clientIp, status: 403 })
        throw new RackbootError('RB_ERR_FORBIDDEN', `machine is ${machine.state}: no config to serve`)
      }
      const resolved = await resolveProfile(inventory, machine)
      const profile = resolved.profile
      if (!profile) return fail(`no profile applies to this machine (${resolved.reason})`)
      if (!profile.talosVersion) return fail(`profile ${profile.name} names no Talos version`)
      // Allocated through the API: the class the machine was chosen by and the allocation's own patches apply too,
      // and a cluster made through the API supplies the base config when the profile has none.
      const allocation = await inventory.allocations.current(machine.id)
      const cls = allocation?.class ? await inventory.classes.get(allocation.class) : resolved.machineClass
      let base: string | Awaited<ReturnType<typeof baseConfigFor>> = profile.baseConfig
      if (!base) {
        try {
          base = await baseConfigFor(inventory, machine, profile)
        } catch (err) {
          return fail(`cannot generate the cluster's base config: ${(err as Error).message}`)
        }
      }
      if (!base) return fail(`profile ${profile.name} has no base config (give it one, or allocate the machine to a cluster)`)
      // The profile's selector picks among the disks the machine reported; with none reported, the base config's
      // install disk stands.
      const selector = profile.installDisk ?? {}
      const disk = machine.hardware?.disks?.length ? chooseInstallDisk(machine.hardware.disks, selector) : null
      if (disk && !disk.ok) {
        const which = profile.installDisk ? ` of profile ${profile.name} (installDisk ${JSON.stringify(profile.installDisk)})` : ''
        const rejected = disk.rejected.map((r) => `${r.name}: ${r.reason}`).join('; ')
        return fail(`no install disk: ${disk.reason}${which}${rejected ? `; rejected ${rejected}` : ''}`, { selector: profile.installDisk, rejected: disk.rejected })
      }
      const network = machine.network
      let yaml: string
      try {
        const rendered = renderMachineConfig({
          base: typeof base === 'string' ? base : base.config,
          talosVersion: profile.talosVersion,
          ...(cls?.patches.length ? { classPatches: cls.patches as never } : {}),
          profilePatches: profile.patches as never,
          ...(allocation?.patches.length ? { machinePatches: allocation.patches as never } : {}),
          values: {
            ...(machine.name ? { hostname: machine.name } : {}),
            ...(disk?.ok ? { installDisk: disk.path } : {}),
            ...(network?.addresses.length ? { addresses: network.addresses } : {}),
            ...(network?.nameservers?.length ? { nameservers: network.nameservers } : {}),
          },
        })
        yaml = rendered.yaml
      } catch (err) {
        return fail(`rendering failed: ${(err as Error).message}`)
      }
      const lint = deps.linter.lint(yaml, { talosVersion: profile.talosVersion })
      if (!lint.ok) {
        return fail(`config fails the Talos ${lint.schemaVersion} schema: ${lint.errors.slice(0, 3).map((e) => `${e.kind || 'document'} ${e.path}: ${e.message}`).join('; ')}`, lint.errors)
      }
      deps.peers?.remember(clientIp, machine.id)
      lifecycle.record(machine.id, 'boot.config', `config served (${yaml.length} bytes, Talos ${profile.talosVersion}, profile ${profile.name})`, { clientIp, bytes: yaml.length, status: 200 })
      return { machine, yaml }
    },
  }
}
