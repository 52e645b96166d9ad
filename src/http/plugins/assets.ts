import { realpath } from 'node:fs/promises'
import { join, relative, resolve, sep } from 'node:path'
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import { Counter, type Registry } from 'prom-client'
import type { Lifecycle } from '../../lifecycle/index.js'
import { DEFAULT_STALL_MS, openAsset, sendAsset, type TransferResult } from '../asset-sender.js'
import type { DownloadGate } from '../download-gate.js'

export interface AssetRoutesDeps {
  assetsDir: string
  lifecycle: Lifecycle
  gate: DownloadGate
  registry?: Registry
  /** How long a path's checked resolution is reused (a re-pointed symlink is seen after at most this). */
  resolveCacheMs?: number
  /**
   * Whether the asking address is the machine's (the network vouches for one of its MACs there): `?m=` is only a
   * claim, and a download failure moves the repair ladder. Absent: every claim is recorded (tests).
   */
  belongs?: (machineId: string, ip: string) => Promise<boolean>
  /** A download whose client takes nothing for this long is cut (default 60 s). */
  stallMs?: number
}

/** The command that puts a missing boot file in place, by where it lives under the assets directory. */
function fixFor(path: string): string {
  if (path.startsWith('agent/')) return 'run rackboot assets build agent'
  if (path.startsWith('ipxe/')) return 'run rackboot assets fetch ipxe'
  const talos = /^talos\/(?:([0-9a-f]{64})\/)?(v[^/]+)\/([^/]+)\//.exec(path)
  if (talos) return `run rackboot assets fetch talos ${talos[2]}${talos[3] !== 'amd64' ? ` --arch ${talos[3]}` : ''}${talos[1] ? ` --schematic ${talos[1]}` : ''}`
  return 'put the file under the assets directory'
}

// Files whose completed download ends a machine's large-download slot (the initrd comes after the kernel).
const LAST_FILES = new Set(['agent.img', 'initramfs.xz'])

// Resolutions kept; past it the oldest goes. Only paths that exist are kept, so random names cannot fill it.
const CACHE_ENTRIES = 4096
// Paths warned about; past it refusals are only counted.
const WARNED_ENTRIES = 1024

/**
 * A request path (after /assets/, still URL-encoded) as a relative path, or null. Segments are decoded one by one,
 * so an encoded slash cannot join two of them; `..`, dot files, backslashes and control characters are refused
 * outright rather than resolved (as TFTP does).
 */
export function assetRelativePath(encoded: string): string | null {
  const kept: string[] = []
  for (const raw of encoded.split('/')) {
    let s: string
    try {
      s = decodeURIComponent(raw)
    } catch {
      return null
    }
    if (s === '' || s === '.') continue
    // eslint-disable-next-line no-control-regex
    if (s.startsWith('.') || /[/\\\x00-\x1f\x7f]/.test(s)) return null
    kept.push(s)
  }
  return kept.length > 0 ? kept.join('/') : null
}

function within(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep)
}

/** Where a request path leads: a file (relative to the real root it was checked against), out of the root, or nowhere. */
type Resolution = { root: string; rel: string } | { outside: true } | null

/**
 * `GET|HEAD /assets/...`: iPXE binaries, kernels and initramfs images with Range, conditional requests and HEAD
 * (../asset-sender.ts: large reads into reused buffers, written straight to the socket). Symlinks are followed only
 * while they stay inside the assets directory, as TFTP does: the path is resolved (cached briefly, this is the boot
 * storm's hot path) and the resolved file is what is sent, so a link re-pointed out of the root after the check is
 * not followed. A download that names its machine (`?m=ID`, as boot scripts do) lands on that machine's timeline
 * with its size and time, or how far it got when the client went away.
 */
export const assetRoutes: FastifyPluginAsync<AssetRoutesDeps> = async (app, deps) => {
  const ttl = deps.resolveCacheMs ?? 1_000
  const rootAbs = resolve(deps.assetsDir)
  const refused = deps.registry
    ? new Counter({
      name: 'rackboot_http_assets_refused_total',
      help: 'Asset requests answered 404 because the path leads out of the assets directory or is malformed',
      labelNames: ['reason'] as const,
      registers: [deps.registry],
    })
    : null
  const transfers = deps.registry
    ? new Counter({
      name: 'rackboot_http_assets_transfers_total',
      help: 'Asset answers with a body, by how they ended: complete, aborted (the client went away), stalled (cut after taking nothing), failed (read error)',
      labelNames: ['result'] as const,
      registers: [deps.registry],
    })
    : null
  const sentBytes = deps.registry
    ? new Counter({ name: 'rackboot_http_assets_sent_bytes_total', help: 'Asset body bytes handed to the kernel', registers: [deps.registry] })
    : null
  const warned = new Set<string>()
  const stallMs = deps.stallMs ?? DEFAULT_STALL_MS

  let root: { at: number; real: Promise<string> } | null = null
  const realRoot = (now: number): Promise<string> => {
    if (!root || now - root.at >= ttl) {
      const real = realpath(rootAbs)
      root = { at: now, real }
      real.catch(() => (root = null))
    }
    return root.real
  }

  // Concurrent requests for one path share a resolution (a boot storm asks for the same few files).
  const cache = new Map<string, { at: number; result: Promise<Resolution> }>()
  const resolveAsset = (rel: string): Promise<Resolution> => {
    const now = Date.now()
    const hit = cache.get(rel)
    if (hit && now - hit.at < ttl) return hit.result
    cache.delete(rel)
    const result = (async (): Promise<Resolution> => {
      const rootReal = await realRoot(now)
      let real: string
      try {
        real = await realpath(join(rootReal, rel))
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP' || code === 'EACCES' || code === 'ENAMETOOLONG') return null
        throw err
      }
      return within(rootReal, real) ? { root: rootReal, rel: relative(rootReal, real) } : { outside: true }
    })()
    if (cache.size >= CACHE_ENTRIES) cache.delete(cache.keys().next().value!)
    const entry = { at: now, result }
    cache.set(rel, entry)
    const forget = () => {
      if (cache.get(rel) === entry) cache.delete(rel)
    }
    result.then((r) => r === null && forget(), forget)
    return result
  }

  interface Outcome {
    status: number
    /** Content-Length of the answer. */
    bytes: number
    sent: number
    complete: boolean
    toEnd: boolean
    failure: TransferResult['failure']
  }

  /** A download that names its machine lands on its timeline; the last large file done frees its download slot. */
  const land = async (request: FastifyRequest, seconds: number, o: Outcome): Promise<void> => {
    const machineId = (request.query as { m?: string } | undefined)?.m
    if (!machineId || !/^m-[0-9a-f]{12}$/.test(machineId) || request.method !== 'GET') return
    const path = request.url.split('?')[0]!.replace(/^\/assets\//, '')
    const file = path.split('/').pop() ?? path
    const ok = o.status < 300
    const complete = ok && o.complete
    if (deps.belongs && !(await deps.belongs(machineId, request.ip).catch(() => false))) return
    const mib = (n: number) => (n / 1048576).toFixed(1)
    const why = o.failure === 'aborted' ? 'the client went away'
      : o.failure === 'stalled' ? `the client took nothing for ${Number((stallMs / 1000).toFixed(1))} s`
        : o.failure ? `read error: ${o.failure.message}` : ''
    const message = complete ? `downloaded ${path}: ${mib(o.bytes)} MiB in ${seconds.toFixed(2)} s`
      : ok ? `download of ${path} cut short after ${mib(o.sent)} of ${mib(o.bytes)} MiB in ${seconds.toFixed(2)} s: ${why}`
        : o.status === 304 ? `${path} not modified (HTTP 304): the client has this version`
          : o.status === 404 ? `download of ${path} failed: HTTP 404, the file is not on this server: ${fixFor(path)}`
            : `download of ${path} failed: HTTP ${o.status}${o.status === 416 ? ' (the range asked for is past the end of the file)' : ''}`
    deps.lifecycle.record(machineId, 'boot.asset', message, {
      path, bytes: o.bytes, seconds, status: o.status, complete, range: request.headers.range ?? null, clientIp: request.ip,
      ...(ok && !o.complete ? { sent: o.sent } : {}),
    })
    // A range that stops short of the end is not the file done.
    if (LAST_FILES.has(file) && complete && o.toEnd) deps.gate.release(machineId)
  }

  // Requests answered by sendAsset (they record when the transfer ends, aborted ones included); the rest, 404s, on
  // fastify's onResponse.
  const sending = new WeakSet<FastifyRequest>()

  app.route({
    method: ['GET', 'HEAD'],
    url: '/assets/*',
    schema: { hide: true },
    async handler(request, reply) {
      // Answered here rather than with reply.callNotFound(): fastify then runs only the not-found handler's hooks,
      // so the onResponse hook below would never record the failed download on the machine's timeline.
      const notFound = () => reply.code(404).send({ error: 'RB_ERR_NOT_FOUND', message: `no route ${request.method} ${request.url}`, details: null })
      const url = request.url
      const q = url.indexOf('?')
      const rel = assetRelativePath(url.slice('/assets/'.length, q < 0 ? url.length : q))
      if (rel === null) {
        refused?.inc({ reason: 'bad-path' })
        return notFound()
      }
      const where = await resolveAsset(rel)
      if (where === null) return notFound()
      if ('outside' in where) {
        refused?.inc({ reason: 'outside-root' })
        if (!warned.has(rel) && warned.size < WARNED_ENTRIES) {
          warned.add(rel)
          request.log.warn({ path: rel, assetsDir: rootAbs }, 'asset path leads out of the assets directory (a symlink?): not served')
        }
        return notFound()
      }
      // A directory, or a file gone (or swapped for a link) since it was resolved.
      const file = await openAsset(join(where.root, where.rel))
      if (file === null) return notFound()
      // From here the bytes go straight to the socket; fastify's own onResponse hooks (metrics) still run on finish.
      reply.hijack()
      sending.add(request)
      sendAsset(request.raw, reply.raw, file, (r) => {
        if (r.length > 0 && request.method === 'GET' && r.status < 300) {
          transfers?.inc({ result: r.complete ? 'complete' : r.failure instanceof Error ? 'failed' : r.failure ?? 'aborted' })
          sentBytes?.inc(r.sent)
        }
        if (r.failure instanceof Error) request.log.warn({ path: where.rel, err: r.failure, sent: r.sent, bytes: r.length }, 'asset download cut short: the file could not be read')
        land(request, reply.elapsedTime / 1000, { status: r.status, bytes: r.length, sent: r.sent, complete: r.complete, toEnd: r.toEnd, failure: r.failure })
          .catch((err: unknown) => request.log.warn({ err }, 'recording an asset download failed'))
      }, { stallMs })
    },
  })

  app.addHook('onResponse', async (request, reply) => {
    if (sending.has(request)) return
    await land(request, reply.elapsedTime / 1000, {
      status: reply.statusCode, bytes: Number(reply.getHeader('content-length') ?? 0), sent: 0, complete: !reply.raw.writableAborted, toEnd: true, failure: null,
    })
  })
}
