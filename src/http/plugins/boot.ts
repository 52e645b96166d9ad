import { isIPv4, isIPv6 } from 'node:net'
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import { statSync } from 'node:fs'
import { join } from 'node:path'
import Type from 'typebox'
import { RackbootError } from '../../errors.js'
import type { Arch } from '../../inventory/index.js'
import type { BootPlan, BootRefusal, BootService } from '../../lifecycle/index.js'
import type { Lifecycle } from '../../lifecycle/index.js'
import { kernelArgs } from '../../talos/index.js'
import type { DownloadGate } from '../download-gate.js'
import { bootstrapScript, holdScript, IPXE_IDENTITY_QUERY, kernelScript, localBootScript } from '../ipxe/scripts.js'

export interface BootRoutesDeps {
  boot: BootService
  lifecycle: Lifecycle
  gate: DownloadGate
  /** Fixed public base URL, or '' to use the Host the machine asked. */
  publicUrl: string
  hold: { seconds: number; maxSeconds: number }
  agent: {
    after: 'reboot' | 'poweroff' | 'wait'
    /** Extra kernel args per arch (boot.agentKernelArgs, boot.agentKernelArgsArm64): each has its own serial console. */
    kernelArgs: Record<Arch, string[]>
    /** Where the agent files are checked before a machine is sent to boot them; absent: assumed there. */
    assetsDir?: string
  }
  /**
   * http.assetBaseUrl: where kernels and initramfs images are downloaded from instead of `<base>/assets` (a mirror,
   * an nginx in front). Absent or '': rackboot serves them.
   */
  assetBaseUrl?: string
  /** Where Talos sends its events and kernel log (ports, bound at start-up); the host is the one machines reach us at. */
  talosChannels?: () => { eventsSinkPort: number | null; kernelLogPort: number | null }
  now?: () => number
  random?: () => number
}

const BootQuery = Type.Object({
  mac: Type.Optional(Type.String({ maxLength: 64 })),
  uuid: Type.Optional(Type.String({ maxLength: 64 })),
  serial: Type.Optional(Type.String({ maxLength: 128 })),
  manufacturer: Type.Optional(Type.String({ maxLength: 128 })),
  product: Type.Optional(Type.String({ maxLength: 128 })),
  arch: Type.Optional(Type.String({ maxLength: 32 })),
  platform: Type.Optional(Type.String({ maxLength: 32 })),
  attempt: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
})
type BootQueryT = Type.Static<typeof BootQuery>

/**
 * The base of the URLs a boot script or config gives its machine: http.publicUrl, except that a client that reached
 * rackboot over IPv6 while publicUrl names an IPv4 address gets the IPv6 address and port it reached (an IPv6-only
 * machine cannot follow an IPv4 URL; a DNS name in publicUrl is kept, it may resolve to both). Without publicUrl,
 * the Host the client sent.
 */
export function baseUrlOf(request: FastifyRequest, publicUrl: string): string {
  if (publicUrl) {
    const local = request.socket?.localAddress
    if (local && isIPv6(local) && !local.startsWith('::ffff:')) {
      const pub = new URL(publicUrl)
      if (isIPv4(pub.hostname)) return `${pub.protocol}//[${local.split('%')[0]}]:${request.socket.localPort}`
    }
    return publicUrl.replace(/\/+$/, '')
  }
  const host = request.headers.host
  if (!host || /[\s${}/]/.test(host)) throw new RackbootError('RB_ERR_VALIDATION', 'cannot tell the server address: set http.publicUrl')
  return `http://${host}`
}

function retryUrl(base: string, attempt: number): string {
  return `${base}/boot.ipxe?${IPXE_IDENTITY_QUERY}&attempt=${attempt}`
}

/** Where a profile's Talos kernel and initramfs are, under `assets` (rackboot's `<base>/assets`, or a mirror's base). */
export function talosAssetBase(assets: string, profile: { talosVersion: string | null; arch: string | null; schematic: string | null }, arch: string): string {
  const parts = ['talos', ...(profile.schematic ? [profile.schematic] : []), profile.talosVersion!, arch]
  return `${assets}/${parts.join('/')}`
}

/** Where each arch's discovery agent lives under the assets directory: amd64 in agent/ (as always), others in agent/<arch>/. */
export function agentDir(arch: Arch): string {
  return arch === 'amd64' ? 'agent' : `agent/${arch}`
}

/** The command that builds an arch's discovery agent. */
export function agentBuildCommand(arch: Arch): string {
  return `rackboot assets build agent${arch === 'amd64' ? '' : ` --arch ${arch}`}`
}

// A missing agent is found by a stat, remembered this long: a boot storm costs two stats per arch per interval,
// and an agent built meanwhile is seen within seconds.
const AGENT_CHECK_MS = 5_000

/** Which of an arch's agent files (kernel, initramfs) are missing under `assetsDir`, as paths under it. */
export function createAgentFileCheck(assetsDir: string, now: () => number): (arch: Arch) => string[] {
  // Keyed by the normalised arch only (two values), so requests cannot grow it.
  const cache = new Map<Arch, { at: number; missing: string[] }>()
  const present = (file: string) => {
    try {
      return statSync(join(assetsDir, file)).isFile()
    } catch {
      return false
    }
  }
  return (arch) => {
    const t = now()
    const hit = cache.get(arch)
    if (hit && t - hit.at < AGENT_CHECK_MS) return hit.missing
    const missing = ['vmlinuz', 'agent.img'].map((f) => `${agentDir(arch)}/${f}`).filter((f) => !present(f))
    cache.set(arch, { at: t, missing })
    return missing
  }
}

/**
 * What a boot loader is told to do, whichever loader it is: the one "what to boot" step shared by iPXE
 * (`/boot.ipxe`) and GRUB (`grub.cfg-01-<mac>` over TFTP and HTTP). Each loader renders it in its own language and
 * forms its own retry location from `retryAttempt`.
 */
export type BootTarget =
  /** Download a kernel and an initramfs and boot them; on a failed download, wait and ask again at `retryAttempt`. */
  | {
      kind: 'kernel'
      banner: string
      kernelUrl: string
      initrdUrl: string
      /** The initramfs's file name (iPXE names it, and passes `initrd=<name>` for the EFI stub). */
      initrdName: string
      args: string[]
      /** Add BOOTIF=01-<mac of the NIC the loader booted from> (the discovery agent takes its lease there). */
      bootIf: boolean
      retryAttempt: number
    }
  /** Say why, wait, ask again at `retryAttempt`. */
  | { kind: 'hold'; message: string; sleepSeconds: number; retryAttempt: number }
  /** Leave the loader so the firmware boots the next device (the local disk). */
  | { kind: 'local-disk'; message: string }

/** What the asking loader can fetch from: GRUB 2.06 speaks plain http:// only. */
export interface LoaderAbilities {
  httpOnly?: boolean
}

export interface BootTargets {
  /**
   * The target for a planned (or refused) boot, asked at `attempt`; a kernel target takes a download slot when
   * rackboot serves the files (with http.assetBaseUrl the mirror does, and its own limits apply).
   */
  target(plan: BootPlan | BootRefusal, base: string, attempt: number, loader?: LoaderAbilities): BootTarget
}

/** The shared step: plan → target. Side effects as the boot script always had: a download slot, timeline lines. */
export function createBootTargets(deps: BootRoutesDeps): BootTargets {
  const now = deps.now ?? Date.now
  const random = deps.random ?? Math.random
  const mirror = deps.assetBaseUrl ? deps.assetBaseUrl.replace(/\/+$/, '') : null
  const agentMissing = deps.agent.assetsDir ? createAgentFileCheck(deps.agent.assetsDir, now) : () => []
  /** Where this loader downloads kernels from: the mirror if it can reach it, else rackboot's own /assets. */
  const assetsFor = (base: string, loader: LoaderAbilities): { url: string; mirrored: boolean } =>
    mirror && !(loader.httpOnly && !mirror.startsWith('http://')) ? { url: mirror, mirrored: true } : { url: `${base}/assets`, mirrored: false }

  function backoff(attempt: number): number {
    const s = Math.min(deps.hold.seconds * 2 ** Math.min(attempt, 10), deps.hold.maxSeconds)
    return s * (0.8 + 0.4 * random())
  }

  function planned(plan: BootPlan, base: string, attempt: number, loader: LoaderAbilities): BootTarget {
    const { machine, decision } = plan
    const who = machine.name ?? machine.id
    switch (decision.kind) {
      case 'ignore':
      case 'local-disk':
        return { kind: 'local-disk', message: `${who}: ${decision.reason}` }
      case 'hold':
        // Waiting in line for an install slot: ask again soon, at the same attempt (the line moves, nothing failed).
        if (plan.queued) return { kind: 'hold', message: `${who}: ${decision.reason}`, sleepSeconds: 15 + 15 * random(), retryAttempt: attempt }
        if (decision.mode === 'exit') return { kind: 'local-disk', message: `${who}: ${decision.reason}` }
        return { kind: 'hold', message: `${who}: ${decision.reason}`, sleepSeconds: backoff(attempt), retryAttempt: attempt + 1 }
      case 'blocked':
        deps.lifecycle.record(machine.id, 'boot.script', `cannot boot: ${decision.reason}`, { blocked: true })
        return { kind: 'hold', message: `${who}: cannot boot: ${decision.reason}`, sleepSeconds: backoff(attempt), retryAttempt: attempt + 1 }
      case 'discovery':
      case 'install': {
        const assets = assetsFor(base, loader)
        // An agent not on this server would stop the boot at a 404 after the loader left us: hold and name the fix.
        // (A mirror's files are not ours to see.)
        const missing = decision.kind === 'discovery' && !assets.mirrored ? agentMissing(decision.arch) : []
        if (decision.kind === 'discovery' && missing.length > 0) {
          const fix = agentBuildCommand(decision.arch)
          const why = `the ${decision.arch} discovery agent is missing on this server (${missing.join(', ')}): run ${fix}`
          deps.lifecycle.record(machine.id, 'boot.script', `cannot boot: ${why}`, { blocked: true, arch: decision.arch, missing, fix })
          return { kind: 'hold', message: `${who}: cannot boot: ${why}`, sleepSeconds: backoff(attempt), retryAttempt: attempt + 1 }
        }
        // A mirror's downloads never end here, so a slot taken for one would be held until it expires.
        if (!assets.mirrored && !deps.gate.admit(machine.id, now())) {
          const sleep = 5 + 10 * random()
          deps.lifecycle.record(machine.id, 'boot.script', `download limit reached (${deps.gate.limit} machines): waiting ${Math.round(sleep)} s`, { waiting: true })
          return { kind: 'hold', message: `${who}: ${deps.gate.limit} machines are downloading, waiting for a slot`, sleepSeconds: sleep, retryAttempt: attempt }
        }
        const q = `?m=${machine.id}`
        if (decision.kind === 'discovery') {
          const dir = `${assets.url}/${agentDir(decision.arch)}`
          const args = [
            ...deps.agent.kernelArgs[decision.arch],
            `rackboot.report=${base}/api/v1/agent/report`,
            `rackboot.token=${plan.agentToken}`,
            `rackboot.machine=${machine.id}`,
            `rackboot.after=${deps.agent.after}`,
            ...(decision.wipe ? ['rackboot.wipe=1'] : []),
          ]
          return {
            kind: 'kernel',
            banner: `rackboot: ${who}: ${decision.reason}`,
            kernelUrl: `${dir}/vmlinuz${q}`,
            initrdUrl: `${dir}/agent.img${q}`,
            initrdName: 'agent.img',
            args,
            // The agent takes its lease on the NIC it booted from.
            bootIf: true,
            retryAttempt: attempt + 1,
          }
        }
        const profile = decision.profile
        // The profile's arch, else the one the loader runs (decideBoot): kernel, initramfs and console args all follow it.
        const arch = decision.arch
        const talos = talosAssetBase(assets.url, profile, arch)
        const host = new URL(base).hostname
        const channels = deps.talosChannels?.() ?? { eventsSinkPort: null, kernelLogPort: null }
        const hostPort = (port: number) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`)
        const args = kernelArgs({
          talosVersion: profile.talosVersion!,
          arch,
          configUrl: `${base}/talos/config?t=${plan.configToken}`,
          ...(channels.eventsSinkPort ? { eventsSink: hostPort(channels.eventsSinkPort) } : {}),
          ...(channels.kernelLogPort ? { loggingKernel: `tcp://${hostPort(channels.kernelLogPort)}/` } : {}),
          extra: profile.kernelArgs,
        })
        return {
          kind: 'kernel',
          banner: `rackboot: ${who}: ${decision.reason}`,
          kernelUrl: `${talos}/vmlinuz${q}`,
          initrdUrl: `${talos}/initramfs.xz${q}`,
          initrdName: 'initramfs.xz',
          args,
          bootIf: false,
          retryAttempt: attempt + 1,
        }
      }
    }
  }

  return {
    target(plan, base, attempt, loader = {}) {
      // Said on the machine's console, and it keeps asking: a lease that arrives later, or a tech's fix, lets it on.
      if ('refused' in plan) return { kind: 'hold', message: plan.reason, sleepSeconds: backoff(attempt), retryAttempt: attempt + 1 }
      return planned(plan, base, attempt, loader)
    },
  }
}

/** A target as an iPXE script; `retryUrl(attempt)` is where iPXE asks again. */
export function ipxeScript(target: BootTarget, retryUrl: (attempt: number) => string): string {
  switch (target.kind) {
    case 'local-disk':
      return localBootScript(target.message)
    case 'hold':
      return holdScript({ message: target.message, sleepSeconds: target.sleepSeconds, retryUrl: retryUrl(target.retryAttempt) })
    case 'kernel':
      return kernelScript({
        banner: target.banner,
        kernelUrl: target.kernelUrl,
        initrdUrl: target.initrdUrl,
        initrdName: target.initrdName,
        args: target.args,
        ...(target.bootIf ? { templateArgs: ['BOOTIF=01-${net0/mac:hexhyp}'] } : {}),
        retryUrl: retryUrl(target.retryAttempt),
      })
  }
}

/** `GET /boot.ipxe`: the script the lifecycle decides for the machine asking; `GET /ipxe/bootstrap.ipxe`: stage one. */
export const bootRoutes: FastifyPluginAsync<BootRoutesDeps> = async (app, deps) => {
  const targets = createBootTargets(deps)

  app.get('/ipxe/bootstrap.ipxe', async (request, reply) => {
    reply.type('text/plain; charset=utf-8')
    return bootstrapScript(baseUrlOf(request, deps.publicUrl))
  })

  app.get<{ Querystring: BootQueryT }>('/boot.ipxe', { schema: { querystring: BootQuery } }, async (request, reply) => {
    const q = request.query
    const base = baseUrlOf(request, deps.publicUrl)
    const attempt = q.attempt ?? 0
    const plan = await deps.boot.plan(
      { mac: q.mac ?? null, uuid: q.uuid ?? null, serial: q.serial ?? null, manufacturer: q.manufacturer ?? null, product: q.product ?? null, buildArch: q.arch ?? null, platform: q.platform ?? null },
      request.ip,
    )
    reply.type('text/plain; charset=utf-8')
    return ipxeScript(targets.target(plan, base, attempt), (next) => retryUrl(base, next))
  })
}
