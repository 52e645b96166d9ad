import type { Inventory } from './repositories.js'
import { redactUrl } from './postgres/url.js'
import { openSqliteInventory, type DatabaseOptions } from './sqlite/open.js'

/** The `database` settings section (settings/schema.ts). */
export interface DatabaseSettings extends DatabaseOptions {
  url?: string | undefined
  poolSize?: number
  connectTimeoutMs?: number
}

export interface OpenInventoryOptions {
  /** The SQLite file, used when `database.url` is absent. */
  file: string
  secretKeyFile: string
  database: DatabaseSettings
  warn: (message: string) => void
  /** `serve`: SQLite checkpoints in a worker thread. */
  server?: boolean
}

export type OpenedInventory = Inventory & {
  backend: 'sqlite' | 'postgres'
  /** Where the data is, for logs (a URL without its password, or the file). */
  location: string
}

/** The inventory the settings name: PostgreSQL when `database.url` is set, else SQLite in the data directory. */
export async function openInventory(options: OpenInventoryOptions): Promise<OpenedInventory> {
  const { database } = options
  if (database.url) {
    // Loaded only when used: the pg client is not part of a SQLite start-up.
    const { openPostgresInventory } = await import('./postgres/open.js')
    const inventory = await openPostgresInventory({
      url: database.url, poolSize: database.poolSize, connectTimeoutMs: options.server ? database.connectTimeoutMs : (database.connectTimeoutMs || 10_000),
      secretKeyFile: options.secretKeyFile, warn: options.warn,
    })
    return Object.assign(inventory, { backend: 'postgres' as const, location: redactUrl(database.url) })
  }
  const inventory = await openSqliteInventory({
    file: options.file, secretKeyFile: options.secretKeyFile, backgroundCheckpoints: options.server ?? false, database, warn: options.warn,
  })
  return Object.assign(inventory, { backend: 'sqlite' as const, location: options.file })
}
