import type { FastifyPluginAsync } from 'fastify'
import type { Inventory } from '../../inventory/index.js'

export interface HealthDeps {
  inventory: Inventory
  version: string
  startedAt: number
  /** Named checks of the protocol servers, e.g. { tftp: () => true }. */
  checks?: Record<string, () => boolean>
  /** What works but will fail boots (missing boot files), one line each with its fix: status degraded, still 200. */
  warnings?: () => Promise<string[]>
}

/** `GET /healthz`: 200 when the database answers and every server is up, else 503 with what is wrong. */
export const healthRoutes: FastifyPluginAsync<HealthDeps> = async (app, deps) => {
  app.get('/healthz', async (_request, reply) => {
    const checks: Record<string, 'ok' | string> = {}
    try {
      await deps.inventory.machines.count({ state: 'new' })
      checks.database = 'ok'
    } catch (err) {
      checks.database = `failing: ${(err as Error).message}`
    }
    for (const [name, check] of Object.entries(deps.checks ?? {})) {
      checks[name] = check() ? 'ok' : 'down'
    }
    const ok = Object.values(checks).every((v) => v === 'ok')
    // Missing boot files degrade the service but are no reason for an orchestrator to restart it: still 200.
    const warnings = deps.warnings ? await deps.warnings().catch((err: Error) => [`cannot check the boot files: ${err.message}`]) : []
    reply.status(ok ? 200 : 503)
    return {
      status: ok && warnings.length === 0 ? 'ok' : 'degraded', version: deps.version, uptimeSeconds: Math.round((Date.now() - deps.startedAt) / 1000), checks,
      ...(warnings.length ? { warnings } : {}),
    }
  })
}
