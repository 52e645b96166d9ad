import pg from 'pg'
import { RackbootError } from '../../errors.js'
import { isUnavailable } from '../unavailable.js'
import { redactUrl } from './url.js'

export { isUnavailable, redactUrl }


/**
 * Waits until PostgreSQL accepts a connection, saying so (once at first, then every 30 s) while it waits; fails
 * after `timeoutMs` (0: never) or at once for errors waiting cannot fix (bad password, no such database).
 */
export async function waitForPostgres(url: string, options: { timeoutMs: number; warn: (m: string) => void; intervalMs?: number }): Promise<void> {
  const started = Date.now()
  let lastSaid = 0
  for (let attempt = 0; ; attempt++) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
    try {
      await client.connect()
      await client.end()
      if (attempt > 0) options.warn(`PostgreSQL ${redactUrl(url)} is up after ${Math.round((Date.now() - started) / 1000)} s`)
      return
    } catch (err) {
      await client.end().catch(() => {})
      const message = (err as Error).message
      if (!isUnavailable(err)) {
        throw new RackbootError('RB_ERR_STORAGE', `cannot use PostgreSQL ${redactUrl(url)}: ${message}`, { cause: err })
      }
      const waited = Date.now() - started
      if (options.timeoutMs > 0 && waited >= options.timeoutMs) {
        throw new RackbootError('RB_ERR_STORAGE', `PostgreSQL ${redactUrl(url)} did not accept connections within ${Math.round(waited / 1000)} s: ${message}`, { cause: err, statusCode: 503 })
      }
      if (attempt === 0 || Date.now() - lastSaid >= 30_000) {
        lastSaid = Date.now()
        options.warn(`waiting for PostgreSQL ${redactUrl(url)}: ${message}${options.timeoutMs > 0 ? ` (giving up after ${Math.round(options.timeoutMs / 1000)} s)` : ''}`)
      }
      await new Promise((r) => setTimeout(r, Math.min(options.intervalMs ?? 1_000, 250 * 2 ** attempt)))
    }
  }
}
