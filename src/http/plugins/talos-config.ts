import type { FastifyPluginAsync } from 'fastify'
import Type from 'typebox'
import type { ConfigService } from '../../lifecycle/index.js'

const Query = Type.Object({ t: Type.String({ minLength: 1, maxLength: 128 }) })

/**
 * `GET /talos/config?t=TOKEN`: the machine config for the machine the per-boot token was issued to, asked from its
 * address. Never 204 or an empty 200: Talos treats both as an error and retries (talos.md §2.3-2.4).
 */
export const talosConfigRoutes: FastifyPluginAsync<{ configs: ConfigService }> = async (app, { configs }) => {
  app.get<{ Querystring: Type.Static<typeof Query> }>('/talos/config', { schema: { querystring: Query } }, async (request, reply) => {
    const served = await configs.configFor(request.query.t, request.ip)
    reply.type('application/yaml').header('cache-control', 'no-store')
    return served.yaml
  })
}
