import { createEventBus } from '../../../src/events/bus.js'
import { createApiAuth } from '../../../src/http/auth.js'
import { buildApp } from '../../../src/http/index.js'
import type { EventStreamOptions } from '../../../src/http/plugins/api/index.js'
import { openSqliteInventory, type TokenScope } from '../../../src/inventory/index.js'
import { attachTimeline, createAllocator, createLifecycle, type PowerPort } from '../../../src/lifecycle/index.js'
import { silentLogger } from '../../../src/log.js'
import { createMetricsRegistry } from '../../../src/metrics.js'

export type Scope = TokenScope | 'none'

/** An app with the API on an in-memory inventory, and a token for each scope. */
export async function apiSetup(options: { power?: PowerPort | null; events?: EventStreamOptions; file?: string; tokenCacheMs?: number } = {}) {
  const inventory = await openSqliteInventory({ file: options.file ?? ':memory:' })
  const log = silentLogger()
  const bus = createEventBus()
  const timeline = attachTimeline({ inventory, bus, log })
  const lifecycle = createLifecycle({ inventory, bus, log })
  const registry = createMetricsRegistry()
  const allocator = createAllocator({ inventory, lifecycle, log, registry, power: options.power ?? null, powerWaitMs: 2_000 })
  const auth = createApiAuth({ tokens: inventory.tokens, cacheMs: options.tokenCacheMs ?? 0, registry })
  const app = await buildApp({
    inventory, lifecycle, registry, log, version: 'test',
    api: { allocator, auth, bus, flushTimeline: timeline.flush, ...(options.events ? { events: options.events } : {}) },
  })
  const now = Date.now()
  const secrets: Record<Scope, string> = {
    read: (await inventory.tokens.create({ name: 'reader', scopes: ['read'] }, now)).secret,
    provision: (await inventory.tokens.create({ name: 'capi', scopes: ['provision'] }, now)).secret,
    admin: (await inventory.tokens.create({ name: 'root', scopes: ['admin'] }, now)).secret,
    none: 'rbk_not-a-real-token-at-all-0000000000000000',
  }
  return {
    inventory, lifecycle, bus, timeline, app, allocator, registry, secrets,
    auth: (scope: Scope) => ({ authorization: `Bearer ${secrets[scope]}` }),
    async close() {
      await app.close()
      await timeline.flush()
      timeline.detach()
      await inventory.close()
    },
  }
}

export type ApiSetup = Awaited<ReturnType<typeof apiSetup>>
