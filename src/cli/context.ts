import { chmodSync, existsSync, mkdirSync, statSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { RackbootError } from '../errors.js'
import { createEventBus, type EventBus } from '../events/bus.js'
import { openInventory, type Inventory } from '../inventory/index.js'
// The lifecycle's service module, not its index: the index brings the boot, config and repair services (Ajv, the
// Talos schemas, protobufjs), which no one-shot command here uses (~0.2 CPU-seconds a start, measured).
import { attachTimeline, createLifecycle, type Lifecycle } from '../lifecycle/service.js'
import { createLogger, silentLogger, type Logger } from '../log.js'
import { loadSettings, type Settings } from '../settings/index.js'
import { printJson, UsageError } from './common.js'

export { printJson, UsageError }

export interface CommandContext {
  settings: Settings
  inventory: Inventory
  lifecycle: Lifecycle
  bus: EventBus
  log: Logger
  close(): Promise<void>
}

export function databaseFile(settings: Settings): string {
  return join(settings.dataDir, 'rackboot.db')
}

export function secretKeyFile(settings: Settings): string {
  return join(settings.dataDir, 'secret.key')
}

/** A warning for the operator on stderr, one line (commands other than serve have no log to write it to). */
export function warnOnStderr(message: string): void {
  process.stderr.write(`rackboot: warning: ${message}\n`)
}

/**
 * The data directory (database, secrets key, caches) for its owner only: made 0700, or tightened to 0700 with a
 * warning when it was readable or writable by others. Its parents are made as usual (0755 under umask 022).
 * Returns the mode it had before, null when it was made now.
 */
export function prepareDataDir(dir: string, warn: (message: string) => void = warnOnStderr): number | null {
  try {
    mkdirSync(dirname(dir), { recursive: true })
    mkdirSync(dir, { mode: 0o700 })
    chmodSync(dir, 0o700) // exact, whatever the umask
    return null
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new RackbootError('RB_ERR_STORAGE', `cannot create the data directory ${dir}: ${(err as Error).message}`, { cause: err })
  }
  const mode = statSync(dir).mode & 0o7777
  if ((mode & 0o077) !== 0) {
    try {
      chmodSync(dir, 0o700)
      warn(`data directory ${dir} was mode ${mode.toString(8).padStart(4, '0')} (others could read the database and secrets key); now 0700`)
    } catch (err) {
      warn(`data directory ${dir} is mode ${mode.toString(8).padStart(4, '0')} and cannot be made 0700: ${(err as Error).message}`)
    }
  }
  return mode
}

export interface ContextValues {
  config?: string | undefined
  set?: string[] | undefined
  /** The data directory to open (--data-dir), instead of the settings' dataDir. */
  dataDir?: string | undefined
}

export interface OpenOptions {
  log?: Logger
  /**
   * Whether a missing database may be made (a bootstrap token, a first import). A read never makes one: it fails,
   * naming the file it looked for.
   */
  create?: boolean
}

/** Settings, inventory and lifecycle for a one-shot command; events still reach the timeline. */
export async function openContext(values: ContextValues, options: OpenOptions = {}): Promise<CommandContext> {
  const loaded = loadSettings({ ...(values.config ? { file: values.config } : {}), overrides: values.set ?? [] })
  const settings: Settings = values.dataDir ? { ...loaded, dataDir: resolve(values.dataDir) } : loaded
  const log = options.log ?? (process.env.RACKBOOT_CLI_LOG ? createLogger({ level: settings.log.level }) : silentLogger())
  if (options.create === false && !settings.database.url && !existsSync(databaseFile(settings))) {
    throw new RackbootError('RB_ERR_NOT_FOUND', `no rackboot database at ${databaseFile(settings)}: --data-dir names the server's data directory (nothing was created there)`)
  }
  prepareDataDir(settings.dataDir)
  const inventory = await openInventory({ file: databaseFile(settings), secretKeyFile: secretKeyFile(settings), database: settings.database, warn: warnOnStderr })
  const bus = createEventBus((err) => log.error({ err }, 'event listener failed'))
  const timeline = attachTimeline({ inventory, bus, log })
  const lifecycle = createLifecycle({ inventory, bus, log })
  return {
    settings, inventory, lifecycle, bus, log,
    async close() {
      await timeline.flush()
      timeline.detach()
      await inventory.close()
    },
  }
}

export async function withContext<T>(values: ContextValues, fn: (ctx: CommandContext) => Promise<T>, options: OpenOptions = {}): Promise<T> {
  const ctx = await openContext(values, options)
  try {
    return await fn(ctx)
  } finally {
    await ctx.close()
  }
}

