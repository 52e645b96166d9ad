import { pino, type Logger, type DestinationStream } from 'pino'

export type { Logger }

// Keys whose values never reach a log line, wherever they sit in the logged object.
export const REDACT_PATHS = [
  'password', '*.password', '*.*.password',
  'token', '*.token', '*.*.token',
  'secret', '*.secret', '*.*.secret',
  'key', '*.key',
  'authorization', '*.authorization', 'req.headers.authorization', 'req.headers.cookie',
]

export interface LogOptions {
  level?: string
  destination?: DestinationStream
}

/** The one root logger; subsystems take `log.child({ svc })`. */
export function createLogger(options: LogOptions = {}): Logger {
  const opts = { level: options.level ?? 'info', redact: { paths: REDACT_PATHS, censor: '[redacted]' } }
  return options.destination ? pino(opts, options.destination) : pino(opts)
}

/** A logger that writes nothing: for tests and for CLI commands that print tables instead. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
