import { RackbootError } from '../errors.js'
import type { Inventory, Machine } from '../inventory/index.js'
import type { Logger } from '../log.js'
import { installDiskOf, renderMachineConfig, type ConfigLinter } from '../talos/index.js'
import type { Clock, Lifecycle } from './service.js'
import type { PeerDirectory } from './peers.js'
import { resolveProfile } from './profiles.js'
import { baseConfigFor } from './allocation.js'
import { createIdentityVerifier, type IdentityVerifier } from './identity.js'
import { createSecurityEvents, type SecurityEvents } from './security-events.js'
import { normalizeIp } from '../talos/receivers/peer.js'

export interface ConfigServiceDeps {
  inventory: Inventory
  lifecycle: Lifecycle
  linter: ConfigLinter
  log: Logger
  clock: Clock
  peers?: PeerDirectory
  /** What the network says about an address; default: rackboot's own leases only. */
  identity?: IdentityVerifier
  security?: SecurityEvents
  /** Configs one token serves (security.configTokenMaxFetches). */
  maxFetches?: number
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

  const identity = deps.identity ?? createIdentityVerifier({ inventory, clock, trustClaims: false })
  const security = deps.security ?? createSecurityEvents({ lifecycle, log: deps.log })
  const maxFetches = deps.maxFetches ?? 5

  return {
    async configFor(token, rawIp) {
      const clientIp = normalizeIp(rawIp)
      const refuse = (kind: 'config-token-refused' | 'config-second-address', machineId: string | null, why: string): never => {
        security.record(kind, machineId, 'boot.config', `config refused: ${why}`, { clientIp, status: 403 })
        throw new RackbootError('RB_ERR_FORBIDDEN', `config refused: ${why}`)
      }
      const c = await inventory.bootTokens.check(token, 'config', clock.now())
      if (!c.ok) {
        // No live token to name the machine: the address may (a boot script or a lease), so the refusal shows on the
        // timeline of the machine that was refused, where a tech looks for why its install stopped.
        const suspect = c.token?.machineId ?? (await deps.peers?.resolve(clientIp).catch(() => null)) ?? null
        const why = c.reason === 'void' ? 'the token is void (the machine installed, or booted again since)' : `${c.reason === 'wrong-purpose' ? 'unknown' : c.reason} token`
        return refuse('config-token-refused', suspect, `${why}, from ${clientIp}`)
      }
      const bt = c.token
      const machine = await inventory.machines.get(bt.machineId)
      if (!machine) return refuse('config-token-refused', null, 'the token names no machine')
      if (bt.fetchIp && bt.fetchIp !== clientIp) {
        return refuse('config-second-address', machine.id, `${clientIp} asked for the config already served to ${bt.fetchIp} in this boot`)
      }
      // Talos may get another lease than iPXE had: an address the network vouches is one of the machine's NICs is its own.
      if (!bt.fetchIp && bt.clientIp !== clientIp && !(await identity.addressBelongs(machine, clientIp))) {
        return refuse('config-token-refused', machine.id, `token used from ${clientIp}, issued to ${bt.clientIp ?? 'an unknown address'}`)
      }
      // Only a machine that is meant to install gets a config: a released machine's old token is worth nothing.
      if (machine.state !== 'provisioning' && !(machine.state === 'installed' && machine.alwaysPxe)) {
        return refuse('config-token-refused', machine.id, `machine is ${machine.state}: no config to serve`)
      }
      const fail = (message: string, details?: unknown): never => {
        lifecycle.record(machine.id, 'boot.config', `config not served: ${message}`, { clientIp, status: 503, details: details ?? null })
        throw new RackbootError('RB_ERR_NOT_SERVABLE', message, { details })
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
          base = await baseConfigFor(inventory, machine, profile, allocation)
        } catch (err) {
          return fail(`cannot generate the cluster's base config: ${(err as Error).message}`)
        }
      }
      if (!base) return fail(`profile ${profile.name} has no base config (give it one, or allocate the machine to a cluster)`)
      // The profile's selector picks among the disks the machine reported; with none reported, the base config's
      // install disk stands.
      const disk = installDiskOf(machine, profile)
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
      // One conditional update decides who gets it: a second address racing this one loses here.
      const taken = await inventory.bootTokens.consume(token, 'config', clientIp, maxFetches, clock.now())
      if (!taken.ok) {
        if (taken.reason === 'other-address') return refuse('config-second-address', machine.id, `${clientIp} asked for the config already served to ${taken.token?.fetchIp} in this boot`)
        return refuse('config-token-refused', machine.id, taken.reason === 'used-up' ? `served ${maxFetches} times in this boot already` : `${taken.reason} token`)
      }
      deps.peers?.remember(clientIp, machine.id)
      lifecycle.record(machine.id, 'boot.config', `config served (${yaml.length} bytes, Talos ${profile.talosVersion}, profile ${profile.name})`, { clientIp, bytes: yaml.length, status: 200, fetch: taken.token.uses })
      return { machine, yaml }
    },
  }
}
