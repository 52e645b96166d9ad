// Whether an error from the pg client means PostgreSQL cannot be reached (as opposed to a query it refused).

/**
 * Errors that mean the database is not there (refused, reset, shutting down, too many connections, a starting
 * server), as opposed to a query it refused: the caller may wait and try again.
 */
export function isUnavailable(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown; syscall?: unknown } | null
  const code = typeof e?.code === 'string' ? e.code : ''
  if (['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'EPIPE'].includes(code)) return true
  // A Unix socket whose server is stopped: pg_ctl removed the socket file.
  if (code === 'ENOENT' && e?.syscall === 'connect') return true
  // 08: connection exceptions; 57P01-57P03: admin shutdown, crash shutdown, cannot connect now; 53300: too many connections.
  if (code.startsWith('08') || ['57P01', '57P02', '57P03', '53300'].includes(code)) return true
  return /Connection terminated|connection timeout|Client has encountered a connection error/i.test(String(e?.message ?? ''))
}

