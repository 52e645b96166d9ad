import { realpath } from 'node:fs/promises'
import { join, relative, resolve, sep } from 'node:path'
import fastifyStatic from '@fastify/static'
import type { FastifyPluginAsync } from 'fastify'
import { Counter, type Registry } from 'prom-client'
import type { Lifecycle } from '../../lifecycle/index.js'
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
 * `GET|HEAD /assets/...`: iPXE binaries, kernels and initramfs images with Range, ETag and HEAD (@fastify/static's
 * send). Symlinks are followed only while they stay inside the assets directory, as TFTP does: the path is resolved
 * (cached briefly, this is the boot storm's hot path) and the resolved file is what is sent, so a link re-pointed
 * out of the root after the check is not followed. A download that names its machine (`?m=ID`, as boot scripts
 * do) lands on that machine's timeline with its size and time.
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
  const warned = new Set<string>()

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

  // serve: false — the route below decides what may be sent; the plugin lends it send (Range, ETag, HEAD).
  await app.register(fastifyStatic, {
    root: rootAbs,
    serve: false,
    index: false,
    list: false,
    // Dot files are refused by name in assetRelativePath; a file a link inside the root leads to is the operator's.
    dotfiles: 'allow',
    decorateReply: true,
    cacheControl: false,
  })

  app.route({
    method: ['GET', 'HEAD'],
    url: '/assets/*',
    schema: { hide: true },
    // A client gone mid-download is not an error to answer (as @fastify/static's own route does).
    errorHandler(error, request, reply) {
      if ((error as NodeJS.ErrnoException | undefined)?.code === 'ERR_STREAM_PREMATURE_CLOSE') {
        request.raw.destroy()
        return
      }
      return app.errorHandler(error, request, reply)
    },
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
      return reply.sendFile(where.rel, where.root)
    },
  })

  app.addHook('onResponse', async (request, reply) => {
    const machineId = (request.query as { m?: string } | undefined)?.m
    if (!machineId || !/^m-[0-9a-f]{12}$/.test(machineId) || request.method !== 'GET') return
    const path = request.url.split('?')[0]!.replace(/^\/assets\//, '')
    const file = path.split('/').pop() ?? path
    const bytes = Number(reply.getHeader('content-length') ?? 0)
    const seconds = reply.elapsedTime / 1000
    const ok = reply.statusCode < 300
    const complete = ok && !reply.raw.writableAborted
    if (deps.belongs && !(await deps.belongs(machineId, request.ip).catch(() => false))) return
    deps.lifecycle.record(
      machineId,
      'boot.asset',
      ok ? `downloaded ${path}: ${(bytes / 1048576).toFixed(1)} MiB in ${seconds.toFixed(2)} s`
        : reply.statusCode === 404 ? `download of ${path} failed: HTTP 404, the file is not on this server: ${fixFor(path)}` : `download of ${path} failed: HTTP ${reply.statusCode}`,
      { path, bytes, seconds, status: reply.statusCode, complete, range: request.headers.range ?? null, clientIp: request.ip },
    )
    if (LAST_FILES.has(file) && complete) deps.gate.release(machineId)
  })
}
