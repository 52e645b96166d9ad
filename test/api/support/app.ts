import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createEventBus } from '../../../src/events/bus.js'
import { createDownloadGate } from '../../../src/http/download-gate.js'
import { createConfigLinter } from '../../../src/talos/index.js'
import { createApiAuth } from '../../../src/http/auth.js'
import { buildApp } from '../../../src/http/index.js'
import type { EventStreamOptions } from '../../../src/http/plugins/api/index.js'
import { openSqliteInventory, type Inventory, type TokenScope } from '../../../src/inventory/index.js'
import type { Database } from '../../../src/inventory/sql/schema.js'
import type { Kysely } from 'kysely'
import { test, type TestContext } from 'node:test'
import { inventoryBackends, skipped, type Backend } from '../../support/backends.js'
import type { PowerManager } from '../../../src/power/index.js'
import { attachTimeline, createAllocator, createBootService, createConfigService, createLifecycle, type PowerPort } from '../../../src/lifecycle/index.js'
import { silentLogger } from '../../../src/log.js'
import { createMetricsRegistry } from '../../../src/metrics.js'

export type Scope = TokenScope | 'none'

/** The inventory under the API: either backend's, with its Kysely handle (tests that shape rows directly). */
export type ApiInventory = Inventory & { readonly db: Kysely<Database> }

/**
 * An app with the API on an in-memory inventory (or `backend`'s: a fresh PostgreSQL database), and a token for each
 * scope; `boot` adds the machines' routes.
 */
export async function apiSetup(options: {
  power?: PowerPort | null; events?: EventStreamOptions; file?: string; tokenCacheMs?: number; boot?: boolean
  /** A power manager on this inventory's BMCs: the power routes are served with it. */
  powerManager?: (inventory: Inventory) => PowerManager
  /** The inventory backend (test/support/backends.ts); SQLite in memory (or `file`) when absent. */
  backend?: Backend
} = {}) {
  const inventory: ApiInventory = options.backend && options.backend.name !== 'sqlite'
    ? await options.backend.open()
    : await openSqliteInventory({ file: options.file ?? ':memory:' })
  const log = silentLogger()
  const bus = createEventBus()
  const timeline = attachTimeline({ inventory, bus, log })
  const lifecycle = createLifecycle({ inventory, bus, log })
  const registry = createMetricsRegistry()
  const powerManager = options.powerManager?.(inventory) ?? null
  const allocator = createAllocator({ inventory, lifecycle, log, registry, power: options.power ?? null, powerWaitMs: 2_000 })
  const auth = createApiAuth({ tokens: inventory.tokens, cacheMs: options.tokenCacheMs ?? 0, registry })
  const clock = { now: () => Date.now() }
  // The assets directory: the boot routes serve from it, GET /api/v1/assets lists it.
  const assetsDir = mkdtempSync(join(tmpdir(), 'rb-api-assets-'))
  let boot: Parameters<typeof buildApp>[0]['boot']
  if (options.boot) {
    mkdirSync(join(assetsDir, 'agent'))
    writeFileSync(join(assetsDir, 'agent', 'vmlinuz'), 'agent kernel')
    writeFileSync(join(assetsDir, 'agent', 'agent.img'), 'agent initramfs')
    boot = {
      service: createBootService({ inventory, lifecycle, log, clock, policy: { holdMode: 'retry', autoAccept: false } }),
      gate: createDownloadGate({ limit: 10, holdMs: 60_000 }),
      assetsDir, publicUrl: '', hold: { seconds: 30, maxSeconds: 300 }, agent: { after: 'reboot', kernelArgs: { amd64: [], arm64: [] } },
      configs: createConfigService({ inventory, lifecycle, log, clock, linter: createConfigLinter() }),
    }
  }
  const app = await buildApp({
    inventory, lifecycle, registry, log, version: 'test',
    ...(boot ? { boot } : {}),
    api: { allocator, auth, bus, flushTimeline: timeline.flush, assetsDir, ...(options.events ? { events: options.events } : {}), ...(powerManager ? { power: powerManager } : {}) },
  })
  const now = Date.now()
  const secrets: Record<Scope, string> = {
    read: (await inventory.tokens.create({ name: 'reader', scopes: ['read'] }, now)).secret,
    provision: (await inventory.tokens.create({ name: 'capi', scopes: ['provision'] }, now)).secret,
    admin: (await inventory.tokens.create({ name: 'root', scopes: ['admin'] }, now)).secret,
    none: 'rbk_not-a-real-token-at-all-0000000000000000',
  }
  return {
    inventory, lifecycle, bus, timeline, app, allocator, registry, secrets, assetsDir, apiAuth: auth,
    auth: (scope: Scope) => ({ authorization: `Bearer ${secrets[scope]}` }),
    async close() {
      await app.close()
      await powerManager?.stop()
      await timeline.flush()
      timeline.detach()
      await inventory.close()
      rmSync(assetsDir, { recursive: true, force: true })
    },
  }
}

export type ApiSetup = Awaited<ReturnType<typeof apiSetup>>

export { eachBackend } from '../../support/backends.js'
