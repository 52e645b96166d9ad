import pg from 'pg'
import { RackbootError } from '../../errors.js'

/** The URL with its password replaced, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = '***'
    return u.toString()
  } catch {
    return 'postgres://(unparsable URL)'
  }
}

/**
 * Errors that mean the database is not there (refused, reset, shutting down, too many connections, a starting
 * server), as opposed to a query it refused: the caller may wait and try again.
 */
export function isUnavailable(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null
  const code = typeof e?.code === 'string' ? e.code : ''
  if (['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOENT', 'EPIPE'].includes(code)) return true
  // 08: connection exceptions; 57P01-57P03: admin shutdown, crash shutdown, cannot connect now; 53300: too many connections.
  if (code.startsWith('08') || ['57P01', '57P02', '57P03', '53300'].includes(code)) return true
  return /Connection terminated|connection timeout|Client has encountered a connection error/i.test(String(e?.message ?? ''))
}

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
