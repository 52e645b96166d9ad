import type { FastifyPluginAsync } from 'fastify'
import { Histogram, type Registry } from 'prom-client'

/**
 * `GET /metrics` in Prometheus text format, and a histogram of every HTTP exchange by route. Not encapsulated
 * (skip-override): the timing hook must see every route of the app, not only this plugin's.
 */
export const metricsRoutes: FastifyPluginAsync<{ registry: Registry }> = async (app, { registry }) => {
  const duration = new Histogram({
    name: 'rackboot_http_request_duration_seconds',
    help: 'HTTP requests by route and status',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2, 10, 60],
    registers: [registry],
  })
  app.addHook('onResponse', async (request, reply) => {
    duration.observe(
      { method: request.method, route: request.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    )
  })
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', registry.contentType)
    return registry.metrics()
  })
}

Object.assign(metricsRoutes, { [Symbol.for('skip-override')]: true })
