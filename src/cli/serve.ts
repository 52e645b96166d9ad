import { mkdirSync } from 'node:fs'
import { createEventBus } from '../events/bus.js'
import { buildApp } from '../http/index.js'
import { importInventory, loadInventoryFiles, openSqliteInventory } from '../inventory/index.js'
import { attachTimeline, createBootService, createConfigService, createLifecycle, systemClock } from '../lifecycle/index.js'
import { createConfigLinter } from '../talos/index.js'
import { createDownloadGate } from '../http/download-gate.js'
import { createLogger } from '../log.js'
import { createMetricsRegistry } from '../metrics.js'
import { loadSettings } from '../settings/index.js'
import { VERSION } from '../version.js'
import { databaseFile, parse, secretKeyFile } from './context.js'

export const SERVE_USAGE = `rackboot serve [--config FILE] [--set key=value]...

Starts the HTTP server (boot scripts, assets, API, /healthz, /metrics), TFTP and, when configured, DHCP.
Settings: rackboot.yaml (or --config / RACKBOOT_CONFIG), RACKBOOT_* environment variables, --set flags.`

/** Builds every concrete piece (the only place that does) and runs until SIGINT/SIGTERM. */
export async function serveCommand(args: string[]): Promise<number> {
  const { values } = parse(args, {})
  if (values.help) {
    console.log(SERVE_USAGE)
    return 0
  }
  const settings = loadSettings({ ...(values.config ? { file: values.config } : {}), overrides: values.set ?? [] })
  const log = createLogger({ level: settings.log.level })
  mkdirSync(settings.dataDir, { recursive: true })
  mkdirSync(settings.assetsDir, { recursive: true })
  const registry = createMetricsRegistry({ defaults: true })
  const inventory = await openSqliteInventory({ file: databaseFile(settings), secretKeyFile: secretKeyFile(settings) })
  const bus = createEventBus((err, event) => log.error({ err, type: event.type }, 'event listener failed'))
  const timeline = attachTimeline({ inventory, bus, log: log.child({ svc: 'timeline' }) })
  const lifecycle = createLifecycle({ inventory, bus, log: log.child({ svc: 'lifecycle' }) })

  if (settings.inventory.importOnStart) {
    const report = await importInventory(inventory, loadInventoryFiles(settings.inventory.importOnStart), { now: Date.now() })
    for (const w of report.warnings) log.warn({ warning: w }, 'inventory import warning')
    log.info({ dir: settings.inventory.importOnStart, changes: report.changes.length, unchanged: report.unchanged }, 'inventory imported')
  }

  const bootService = createBootService({
    inventory, lifecycle, log: log.child({ svc: 'boot' }), clock: systemClock,
    policy: { holdMode: settings.boot.holdMode, autoAccept: settings.boot.autoAccept },
  })
  const configs = createConfigService({
    inventory, lifecycle, log: log.child({ svc: 'talos-config' }), clock: systemClock,
    linter: createConfigLinter({ registry, ...(settings.talos.schemasDir ? { schemasDir: settings.talos.schemasDir } : {}) }),
  })
  const gate = createDownloadGate({ limit: settings.http.maxConcurrentDownloads, holdMs: 10 * 60_000 })
  const app = await buildApp({
    inventory, lifecycle, registry, log, version: VERSION,
    boot: {
      service: bootService, gate, assetsDir: settings.assetsDir, publicUrl: settings.http.publicUrl,
      hold: { seconds: settings.boot.holdSeconds, maxSeconds: settings.boot.holdMaxSeconds },
      agent: { after: settings.boot.agentAfter, kernelArgs: settings.boot.agentKernelArgs },
      configs,
    },
  })
  const address = await app.listen({ host: settings.http.listen, port: settings.http.port })
  log.info({ address, dataDir: settings.dataDir, settings: settings.source ?? '(defaults)', version: VERSION }, 'rackboot is serving')

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'shutting down')
      resolve()
    }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })
  await app.close()
  await timeline.flush()
  timeline.detach()
  await inventory.close()
  return 0
}
