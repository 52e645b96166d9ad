import { open } from 'node:fs/promises'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { Counter, type Registry } from 'prom-client'
import type { BootIso, BootIsoProvider } from '../../assets/virtual-media.js'
import { parseByteRange } from '../asset-sender.js'

export interface VirtualMediaRoutesDeps {
  provider: BootIsoProvider
  /** rackboot's base URL as machines reach it (the one DHCP hands iPXE): the built ISO chains to its /boot.ipxe. */
  serverUrl: string
  registry?: Registry
}

/** Where BMCs fetch the ISO: `${publicUrl}${VIRTUAL_MEDIA_PATH}` (or settings virtualMedia.imageUrl). */
export const VIRTUAL_MEDIA_PATH = '/media/rackboot.iso'

/** Whether a conditional header names this exact version (If-Range: strong ETag or the exact Last-Modified date). */
function sameVersion(value: string, iso: BootIso, lastModified: string): boolean {
  const v = value.trim()
  if (v.startsWith('"')) return !iso.etag.startsWith('W/') && v === iso.etag
  return v === lastModified
}

function noneMatch(header: string, etag: string): boolean {
  const bare = (t: string) => t.trim().replace(/^W\//, '')
  return header.trim() === '*' || header.split(',').some((t) => bare(t) === bare(etag))
}

/**
 * `GET|HEAD /media/rackboot.iso`: the virtual media ISO for BMCs, unauthenticated (it holds only the server URL).
 * BMCs mount it over HTTP with range requests: single ranges get 206, unsatisfiable ones 416; bytes are streamed
 * from one open file descriptor, so a rebuild (rename) mid-request cannot mix two images. When no ISO can be had
 * the answer is 503 with the reason (what to install, or the setting to use).
 */
export const virtualMediaRoutes: FastifyPluginAsync<VirtualMediaRoutesDeps> = async (app, deps) => {
  const served = deps.registry
    ? new Counter({
      name: 'rackboot_http_virtual_media_requests_total',
      help: 'Requests for the virtual media ISO, by answer',
      labelNames: ['status'] as const,
      registers: [deps.registry],
    })
    : null

  // Built soon after start-up, so the first BMC to ask is not kept waiting; a failure is logged and answered as 503
  // later. A second after listening, not at ready: the build (hashing its inputs, xorriso) would otherwise compete
  // with the server's own start for the CPU, and nothing asks for the ISO in the first second.
  let soon: NodeJS.Timeout | null = null
  app.addHook('onListen', async () => {
    soon = setTimeout(() => void deps.provider.get(deps.serverUrl).catch(() => undefined), 1_000).unref()
  })
  app.addHook('onClose', async () => {
    if (soon) clearTimeout(soon)
  })

  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    let iso: BootIso
    try {
      iso = await deps.provider.get(deps.serverUrl)
    } catch (err) {
      served?.inc({ status: '503' })
      return reply.code(503).header('retry-after', '30').send({
        error: 'RB_ERR_NOT_SERVABLE', message: (err as Error).message, details: null,
      })
    }
    const file = await open(iso.path, 'r').catch(() => null)
    if (!file) {
      served?.inc({ status: '503' })
      return reply.code(503).header('retry-after', '5').send({ error: 'RB_ERR_NOT_SERVABLE', message: `virtual media ISO ${iso.path} cannot be opened`, details: null })
    }
    let handedOver = false
    try {
      // The size of what this descriptor reads, not of what the provider last saw.
      const size = (await file.stat()).size
      const lastModified = iso.mtime.toUTCString()
      reply
        .header('content-type', 'application/octet-stream')
        .header('content-disposition', 'attachment; filename="rackboot.iso"')
        .header('accept-ranges', 'bytes')
        .header('etag', iso.etag)
        .header('last-modified', lastModified)
        .header('cache-control', 'no-cache')
      const inm = request.headers['if-none-match']
      if (inm && noneMatch(inm, iso.etag)) {
        served?.inc({ status: '304' })
        return reply.code(304).send()
      }
      let range = parseByteRange(request.headers.range, size)
      const ifRangeHeader = request.headers['if-range']
      const ifRange = Array.isArray(ifRangeHeader) ? ifRangeHeader[0] : ifRangeHeader
      if (range && ifRange && !sameVersion(ifRange, iso, lastModified)) range = null // changed: the whole new file
      if (range === 'unsatisfiable') {
        served?.inc({ status: '416' })
        return reply.code(416).header('content-range', `bytes */${size}`).send()
      }
      const start = range?.start ?? 0
      const end = range?.end ?? size - 1
      if (range) reply.code(206).header('content-range', `bytes ${start}-${end}/${size}`)
      reply.header('content-length', String(size === 0 ? 0 : end - start + 1))
      served?.inc({ status: range ? '206' : '200' })
      if (request.method === 'HEAD' || size === 0) return reply.send()
      handedOver = true
      // autoClose: the stream closes the descriptor when done, aborted or failed.
      return reply.send(file.createReadStream({ start, end, autoClose: true }))
    } finally {
      if (!handedOver) await file.close().catch(() => undefined)
    }
  }

  app.route({
    method: ['GET', 'HEAD'],
    url: VIRTUAL_MEDIA_PATH,
    schema: { hide: true },
    // A BMC gone mid-download is not an error to answer.
    errorHandler(error, request, reply) {
      if ((error as NodeJS.ErrnoException | undefined)?.code === 'ERR_STREAM_PREMATURE_CLOSE') {
        request.raw.destroy()
        return
      }
      return app.errorHandler(error, request, reply)
    },
    handler,
  })
}
