import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Registry } from 'prom-client'
import type { Inventory } from '../inventory/index.js'
import type { Lifecycle } from '../lifecycle/index.js'
import type { Logger } from '../log.js'
import { registerCanonicalHeaders } from './canonical-headers.js'
import { errorHandler } from './error-handler.js'
import { healthRoutes } from './plugins/health.js'
import { metricsRoutes } from './plugins/metrics.js'
import { bootRoutes, type BootRoutesDeps } from './plugins/boot.js'
import { grubRoutes } from './plugins/grub.js'
import { assetRoutes } from './plugins/assets.js'
import { virtualMediaRoutes, type VirtualMediaRoutesDeps } from './plugins/virtual-media.js'
import { agentRoutes } from './plugins/agent.js'
import type { BootService, ConfigService } from '../lifecycle/index.js'
import { talosConfigRoutes } from './plugins/talos-config.js'
import type { DownloadGate } from './download-gate.js'
import { apiRoutes, type ApiDeps } from './plugins/api/index.js'
import { docsRoutes } from './plugins/docs.js'
import { uiRoutes } from './ui/index.js'
import { resetOnPeerEof } from './peer-eof.js'
import { REDACTED, redactBootTokens } from './redact.js'
import { DEFAULT_CONNECTION_LIMITS, limitConnections, serverTimeouts, type ConnectionLimits } from './connection-limits.js'
import { lazySchemaController, trackPendingSchemas } from './lazy-schemas.js'

/** What one client may cost the server (settings.http); each absent field takes the setting's default. */
export interface HttpLimits extends Partial<ConnectionLimits> {
  /** Event streams one API token may hold open (settings.http.maxEventStreamsPerToken, default 8). */
  maxEventStreamsPerToken?: number
}

export interface AppDeps {
  inventory: Inventory
  lifecycle: Lifecycle
  registry: Registry
  log: Logger
  version: string
  startedAt?: number
  checks?: Record<string, () => boolean>
  /** Missing boot files and the like: /healthz says degraded and lists them. */
  warnings?: () => Promise<string[]>
  /** The boot flow (scripts, assets, agent reports); absent in tests of other routes. */
  boot?: {
    service: BootService
    gate: DownloadGate
    assetsDir: string
    publicUrl: string
    /** http.assetBaseUrl: boot scripts send kernel and initramfs downloads there instead of to /assets. */
    assetBaseUrl?: string
    hold: BootRoutesDeps['hold']
    agent: BootRoutesDeps['agent']
    configs?: ConfigService
    talosChannels?: BootRoutesDeps['talosChannels']
    /** Whether an asset request's address is the machine's it names (`?m=`); see plugins/assets.ts. */
    assetBelongs?: (machineId: string, ip: string) => Promise<boolean>
  }
  /** The virtual media ISO for BMCs (GET /media/rackboot.iso); absent: no such route. */
  virtualMedia?: Omit<VirtualMediaRoutesDeps, 'registry'>
  /** The cluster API under /api/v1 (machines, allocations, events, classes, profiles, clusters); absent in tests of other routes. */
  api?: Omit<ApiDeps, 'inventory' | 'lifecycle' | 'registry' | 'version' | 'maxEventStreamsPerToken'>
  limits?: HttpLimits
}

/** A URL as the access log writes it: boot tokens and the values of token-, secret- or password-named parameters redacted. */
export function accessLogUrl(url: string): string {
  return redactBootTokens(url).replace(/([?&](?:[^=&#]*(?:token|secret|password|key)[^=&#]*)=)[^&#]*/gi, `$1${REDACTED}`)
}

/** The HTTP application: a route table only. It never listens; `serve` does (tests use inject). */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const limits: ConnectionLimits = {
    maxConnectionsPerAddress: deps.limits?.maxConnectionsPerAddress ?? DEFAULT_CONNECTION_LIMITS.maxConnectionsPerAddress,
    maxConnections: deps.limits?.maxConnections ?? DEFAULT_CONNECTION_LIMITS.maxConnections,
    headersTimeoutMs: deps.limits?.headersTimeoutMs ?? DEFAULT_CONNECTION_LIMITS.headersTimeoutMs,
    ...(deps.limits?.requestTimeoutMs !== undefined ? { requestTimeoutMs: deps.limits.requestTimeoutMs } : {}),
  }
  const timeouts = serverTimeouts(limits)
  // Validators and serializers are compiled at each route's first use, not all at start-up (see lazy-schemas.ts).
  const lazy = lazySchemaController()
  const app: FastifyInstance = Fastify({
    schemaController: lazy.schemaController,
    loggerInstance: deps.log.child({ svc: 'http' }) as FastifyBaseLogger,
    // Per-request log lines would drown a boot storm; the metrics histogram and the timeline cover requests.
    logController: new LogController({ disableRequestLogging: true }),
    // Short keep-alive: PXE clients reconnect per file, and lingering sockets cost more than they save.
    keepAliveTimeout: 5_000,
    bodyLimit: 4 * 1024 * 1024,
    // A client trickling its request is cut off (fastify would otherwise set requestTimeout to 0, no limit).
    requestTimeout: timeouts.requestTimeout,
    http: timeouts,
  })
  trackPendingSchemas(app, lazy)
  // A second after listening (the start is done), the rest compile in the background, one per turn of the loop, so a
  // CLI's or a UI's first request to a route does not pay for it.
  let warming: { stop(): void } | null = null
  let soon: NodeJS.Timeout | null = null
  app.addHook('onListen', async () => {
    soon = setTimeout(() => (warming = lazy.pending.compileInBackground()), 1_000).unref()
  })
  app.addHook('onClose', async () => {
    if (soon) clearTimeout(soon)
    warming?.stop()
  })
  limitConnections(app.server, { limits, registry: deps.registry, log: app.log as unknown as Logger })
  resetOnPeerEof(app.server)
  registerCanonicalHeaders(app)
  app.setErrorHandler(errorHandler)
  // The access log: one line per request at debug, so info stays quiet in a boot storm. Hooked only when debug is
  // on (no cost otherwise); the query's boot tokens (?t=, rackboot.token=) and token-named values are redacted.
  if (deps.log.isLevelEnabled('debug')) {
    app.addHook('onResponse', async (request, reply) => {
      const ms = Math.round(reply.elapsedTime * 10) / 10
      request.log.debug({ method: request.method, url: accessLogUrl(request.url), status: reply.statusCode, ms, remote: request.ip },
        `${request.method} ${request.url.split('?')[0]} ${reply.statusCode} ${ms} ms`)
    })
  }
  app.setNotFoundHandler((request, reply) => {
    reply.status(404).send({ error: 'RB_ERR_NOT_FOUND', message: `no route ${request.method} ${request.url}`, details: null })
  })
  await app.register(metricsRoutes, { registry: deps.registry })
  await app.register(uiRoutes)
  await app.register(healthRoutes, {
    inventory: deps.inventory,
    version: deps.version,
    startedAt: deps.startedAt ?? Date.now(),
    ...(deps.checks ? { checks: deps.checks } : {}),
    ...(deps.warnings ? { warnings: deps.warnings } : {}),
  })
  if (deps.boot) {
    const b = deps.boot
    const mirror = b.assetBaseUrl ? { assetBaseUrl: b.assetBaseUrl } : {}
    await app.register(bootRoutes, { boot: b.service, lifecycle: deps.lifecycle, gate: b.gate, publicUrl: b.publicUrl, ...mirror, hold: b.hold, agent: b.agent, ...(b.talosChannels ? { talosChannels: b.talosChannels } : {}) })
    await app.register(grubRoutes, { boot: b.service, lifecycle: deps.lifecycle, gate: b.gate, publicUrl: b.publicUrl, ...mirror, hold: b.hold, agent: b.agent, ...(b.talosChannels ? { talosChannels: b.talosChannels } : {}) })
    await app.register(assetRoutes, { assetsDir: b.assetsDir, lifecycle: deps.lifecycle, gate: b.gate, registry: deps.registry, ...(b.assetBelongs ? { belongs: b.assetBelongs } : {}) })
    await app.register(agentRoutes, { boot: b.service })
    if (b.configs) await app.register(talosConfigRoutes, { configs: b.configs })
  }
  if (deps.virtualMedia) await app.register(virtualMediaRoutes, { ...deps.virtualMedia, registry: deps.registry })
  if (deps.api) {
    await app.register(apiRoutes, {
      ...deps.api, inventory: deps.inventory, lifecycle: deps.lifecycle, registry: deps.registry, version: deps.version, prefix: '/api/v1',
      ...(deps.limits?.maxEventStreamsPerToken !== undefined ? { maxEventStreamsPerToken: deps.limits.maxEventStreamsPerToken } : {}),
    })
  }
  if (deps.api) await app.register(docsRoutes, { version: deps.version })
  return app
}
