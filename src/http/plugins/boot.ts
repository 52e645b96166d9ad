import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import Type from 'typebox'
import { RackbootError } from '../../errors.js'
import type { BootPlan, BootService } from '../../lifecycle/index.js'
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
  agent: { after: 'reboot' | 'poweroff' | 'wait'; kernelArgs: string[] }
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

export function baseUrlOf(request: FastifyRequest, publicUrl: string): string {
  if (publicUrl) return publicUrl.replace(/\/+$/, '')
  const host = request.headers.host
  if (!host || /[\s${}/]/.test(host)) throw new RackbootError('RB_ERR_VALIDATION', 'cannot tell the server address: set http.publicUrl')
  return `http://${host}`
}

function retryUrl(base: string, attempt: number): string {
  return `${base}/boot.ipxe?${IPXE_IDENTITY_QUERY}&attempt=${attempt}`
}

export function talosAssetBase(base: string, profile: { talosVersion: string | null; arch: string | null; schematic: string | null }, arch: string): string {
  const parts = ['talos', ...(profile.schematic ? [profile.schematic] : []), profile.talosVersion!, arch]
  return `${base}/assets/${parts.join('/')}`
}

/** `GET /boot.ipxe`: the script the lifecycle decides for the machine asking; `GET /ipxe/bootstrap.ipxe`: stage one. */
export const bootRoutes: FastifyPluginAsync<BootRoutesDeps> = async (app, deps) => {
  const now = deps.now ?? Date.now
  const random = deps.random ?? Math.random

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
    if ('refused' in plan) {
      // Said on the machine's console, and it keeps asking: a lease that arrives later, or a tech's fix, lets it on.
      return holdScript({ message: plan.reason, sleepSeconds: backoff(attempt), retryUrl: retryUrl(base, attempt + 1) })
    }
    return render(plan, base, attempt)
  })

  function backoff(attempt: number): number {
    const s = Math.min(deps.hold.seconds * 2 ** Math.min(attempt, 10), deps.hold.maxSeconds)
    return s * (0.8 + 0.4 * random())
  }

  function render(plan: BootPlan, base: string, attempt: number): string {
    const { machine, decision } = plan
    const who = machine.name ?? machine.id
    switch (decision.kind) {
      case 'ignore':
      case 'local-disk':
        return localBootScript(`${who}: ${decision.reason}`)
      case 'hold':
        // Waiting in line for an install slot: ask again soon, at the same attempt (the line moves, nothing failed).
        if (plan.queued) return holdScript({ message: `${who}: ${decision.reason}`, sleepSeconds: 15 + 15 * random(), retryUrl: retryUrl(base, attempt) })
        if (decision.mode === 'exit') return localBootScript(`${who}: ${decision.reason}`)
        return holdScript({ message: `${who}: ${decision.reason}`, sleepSeconds: backoff(attempt), retryUrl: retryUrl(base, attempt + 1) })
      case 'blocked':
        deps.lifecycle.record(machine.id, 'boot.script', `cannot boot: ${decision.reason}`, { blocked: true })
        return holdScript({ message: `${who}: cannot boot: ${decision.reason}`, sleepSeconds: backoff(attempt), retryUrl: retryUrl(base, attempt + 1) })
      case 'discovery':
      case 'install': {
        if (!deps.gate.admit(machine.id, now())) {
          const sleep = 5 + 10 * random()
          deps.lifecycle.record(machine.id, 'boot.script', `download limit reached (${deps.gate.limit} machines): waiting ${Math.round(sleep)} s`, { waiting: true })
          return holdScript({ message: `${who}: ${deps.gate.limit} machines are downloading, waiting for a slot`, sleepSeconds: sleep, retryUrl: retryUrl(base, attempt) })
        }
        const q = `?m=${machine.id}`
        if (decision.kind === 'discovery') {
          const args = [
            ...deps.agent.kernelArgs,
            `rackboot.report=${base}/api/v1/agent/report`,
            `rackboot.token=${plan.agentToken}`,
            `rackboot.machine=${machine.id}`,
            `rackboot.after=${deps.agent.after}`,
            ...(decision.wipe ? ['rackboot.wipe=1'] : []),
          ]
          return kernelScript({
            banner: `rackboot: ${who}: ${decision.reason}`,
            kernelUrl: `${base}/assets/agent/vmlinuz${q}`,
            initrdUrl: `${base}/assets/agent/agent.img${q}`,
            initrdName: 'agent.img',
            args,
            // The agent takes its lease on the NIC it booted from.
            templateArgs: ['BOOTIF=01-${net0/mac:hexhyp}'],
            retryUrl: retryUrl(base, attempt + 1),
          })
        }
        const profile = decision.profile
        const arch = profile.arch ?? machine.arch ?? 'amd64'
        const assets = talosAssetBase(base, profile, arch)
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
        return kernelScript({
          banner: `rackboot: ${who}: ${decision.reason}`,
          kernelUrl: `${assets}/vmlinuz${q}`,
          initrdUrl: `${assets}/initramfs.xz${q}`,
          initrdName: 'initramfs.xz',
          args,
          retryUrl: retryUrl(base, attempt + 1),
        })
      }
    }
  }
}
