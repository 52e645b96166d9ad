import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Registry } from 'prom-client'
import type { Inventory } from '../inventory/index.js'
import type { Lifecycle } from '../lifecycle/index.js'
import type { Logger } from '../log.js'
import { errorHandler } from './error-handler.js'
import { healthRoutes } from './plugins/health.js'
import { metricsRoutes } from './plugins/metrics.js'

export interface AppDeps {
  inventory: Inventory
  lifecycle: Lifecycle
  registry: Registry
  log: Logger
  version: string
  startedAt?: number
  checks?: Record<string, () => boolean>
}

/** The HTTP application: a route table only. It never listens; `serve` does (tests use inject). */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app: FastifyInstance = Fastify({
    loggerInstance: deps.log.child({ svc: 'http' }) as FastifyBaseLogger,
    // Per-request log lines would drown a boot storm; the metrics histogram and the timeline cover requests.
    logController: new LogController({ disableRequestLogging: true }),
    // Short keep-alive: PXE clients reconnect per file, and lingering sockets cost more than they save.
    keepAliveTimeout: 5_000,
    bodyLimit: 4 * 1024 * 1024,
  })
  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler((request, reply) => {
    reply.status(404).send({ error: 'RB_ERR_NOT_FOUND', message: `no route ${request.method} ${request.url}`, details: null })
  })
  await app.register(metricsRoutes, { registry: deps.registry })
  await app.register(healthRoutes, {
    inventory: deps.inventory,
    version: deps.version,
    startedAt: deps.startedAt ?? Date.now(),
    ...(deps.checks ? { checks: deps.checks } : {}),
  })
  return app
}
