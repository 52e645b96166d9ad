import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import Type from 'typebox'
import { createGrubConfigs, GRUB_HTTP_DIR } from '../grub/service.js'
import { baseUrlOf, type BootRoutesDeps } from './boot.js'

const GrubQuery = Type.Object({
  attempt: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
  cpu: Type.Optional(Type.String({ maxLength: 32 })),
  platform: Type.Optional(Type.String({ maxLength: 32 })),
})
type GrubQueryT = Type.Static<typeof GrubQuery>

/**
 * rackboot's URL as GRUB reached it. GRUB 2.06 writes the port into its Host header and then overwrites it with the
 * next header (grub-core/net/http.c), so a Host without a port means the port the request came in on.
 */
export function grubBaseUrl(request: FastifyRequest, publicUrl: string): string {
  const base = baseUrlOf(request, publicUrl)
  if (publicUrl) return base
  const u = new URL(base)
  const local = request.socket?.localPort
  if (!u.port && local && local !== 80) u.port = String(local)
  return u.origin
}

const PER_MACHINE = /^grub\.cfg-01-([0-9a-f]{2}(?:[-:][0-9a-f]{2}){5})$/i

/**
 * GRUB over HTTP: `GET /grub/grub.cfg` is the bootstrap (it asks for the per-machine config by ${net_default_mac});
 * `GET /grub/grub.cfg-01-<mac>` is what the lifecycle decides for that machine, the same config TFTP serves under
 * that name. GRUB's other config names (grub.cfg-<hex address>, grub.cfg-<uuid>) are a plain 404.
 */
export const grubRoutes: FastifyPluginAsync<BootRoutesDeps> = async (app, deps) => {
  const configs = createGrubConfigs(deps)

  app.get<{ Params: { file: string }; Querystring: GrubQueryT }>(`${GRUB_HTTP_DIR}/:file`, { schema: { querystring: GrubQuery } }, async (request, reply) => {
    const { file } = request.params
    const base = grubBaseUrl(request, deps.publicUrl)
    if (file === 'grub.cfg') {
      reply.type('text/plain; charset=utf-8')
      return configs.bootstrap(base)
    }
    const m = PER_MACHINE.exec(file)
    if (!m) {
      reply.status(404).type('text/plain; charset=utf-8')
      return 'not found\n'
    }
    const q = request.query
    const text = await configs.forMac({ mac: m[1]!, attempt: q.attempt ?? 0, cpu: q.cpu ?? null, platform: q.platform ?? null }, request.ip, base)
    // It may carry a boot token: no cache between GRUB and us may keep it.
    reply.type('text/plain; charset=utf-8').header('cache-control', 'no-store')
    return text
  })
}
