import fastifyStatic from '@fastify/static'
import type { FastifyPluginAsync } from 'fastify'
import type { Lifecycle } from '../../lifecycle/index.js'
import type { DownloadGate } from '../download-gate.js'

export interface AssetRoutesDeps {
  assetsDir: string
  lifecycle: Lifecycle
  gate: DownloadGate
}

// Files whose completed download ends a machine's large-download slot (the initrd comes after the kernel).
const LAST_FILES = new Set(['agent.img', 'initramfs.xz'])

/**
 * `GET|HEAD /assets/...`: iPXE binaries, kernels and initramfs images with Range, ETag and HEAD (@fastify/static,
 * which refuses paths out of the root). A download that names its machine (`?m=ID`, as boot scripts do) lands on
 * that machine's timeline with its size and time.
 */
export const assetRoutes: FastifyPluginAsync<AssetRoutesDeps> = async (app, deps) => {
  await app.register(fastifyStatic, {
    root: deps.assetsDir,
    prefix: '/assets/',
    index: false,
    list: false,
    dotfiles: 'deny',
    decorateReply: false,
    cacheControl: false,
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
    deps.lifecycle.record(
      machineId,
      'boot.asset',
      ok ? `downloaded ${path}: ${(bytes / 1048576).toFixed(1)} MiB in ${seconds.toFixed(2)} s` : `download of ${path} failed: HTTP ${reply.statusCode}`,
      { path, bytes, seconds, status: reply.statusCode, complete, range: request.headers.range ?? null },
    )
    if (LAST_FILES.has(file) && complete) deps.gate.release(machineId)
  })
}
