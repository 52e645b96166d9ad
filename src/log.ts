import { createRequire } from 'node:module'
import { pino, destination as pinoDestination, type Logger, type DestinationStream } from 'pino'
import type PinoPretty from 'pino-pretty'

export type { Logger }

// Keys whose values never reach a log line, wherever they sit in the logged object.
export const REDACT_PATHS = [
  'password', '*.password', '*.*.password',
  'token', '*.token', '*.*.token',
  'secret', '*.secret', '*.*.secret',
  'key', '*.key',
  'authorization', '*.authorization', 'req.headers.authorization', 'req.headers.cookie',
]

/** settings.log.format: `auto` is pretty on a terminal and JSON anywhere else (pipes, files, containers). */
export type LogFormat = 'auto' | 'json' | 'pretty'

export interface LogOptions {
  level?: string
  /** Default `auto`. */
  format?: LogFormat
  /** Where lines go (default stdout); `auto` looks at its isTTY. */
  destination?: DestinationStream
}

/** What `format` means for a destination that is (or is not) a terminal. */
export function chooseLogFormat(format: LogFormat | undefined, isTTY: boolean | undefined): 'json' | 'pretty' {
  if (format === 'json' || format === 'pretty') return format
  return isTTY === true ? 'pretty' : 'json'
}

/**
 * pino-pretty in this process, formatting each line as pino writes it (not a worker-thread transport, nor pino-pretty's
 * stream pipeline: no thread to start, and a line logged just before an exit is on the terminal). One line per entry:
 * time, level, `svc:` and the message, then the other fields as JSON on the same line; an error's stack follows it.
 */
export function prettyStream(destination: DestinationStream, options: { colorize?: boolean } = {}): DestinationStream {
  // Loaded only when wanted: a JSON server (pipes, containers) never reads pino-pretty's modules.
  const { prettyFactory } = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty
  const format = prettyFactory({
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,svc',
    messageFormat: '{if svc}{svc}: {end}{msg}',
    singleLine: true,
    ...(options.colorize !== undefined ? { colorize: options.colorize } : {}),
  })
  return { write: (line: string) => destination.write(format(line)) }
}

/** The one root logger; subsystems take `log.child({ svc })`. */
export function createLogger(options: LogOptions = {}): Logger {
  const opts = { level: options.level ?? 'info', redact: { paths: REDACT_PATHS, censor: '[redacted]' } }
  const target = options.destination ?? process.stdout
  if (chooseLogFormat(options.format, (target as { isTTY?: boolean }).isTTY) === 'pretty') {
    // Synchronous on stdout, as pino's own default: a terminal is read live.
    return pino(opts, prettyStream(options.destination ?? pinoDestination({ fd: 1, sync: true })))
  }
  return options.destination ? pino(opts, options.destination) : pino(opts)
}

/** A logger that writes nothing: for tests and for CLI commands that print tables instead. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
