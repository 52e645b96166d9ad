// What every CLI command shares, and nothing heavy: remote commands load this, the API client and the table
// renderer only (no fastify, kysely, SQLite, settings schema or inventory).
import { RackbootError } from '../errors.js'

/** The flags every command takes (commander's camelCase names), and the ones a command may add. */
export interface GlobalOptions {
  config?: string
  set?: string[]
  server?: string
  token?: string
  context?: string
  /** Local mode: open this data directory's database directly instead of asking the server. */
  dataDir?: string
  json?: boolean
}

/** A mistake in how the command was called: exit 2, like a bad settings file. */
export class UsageError extends RackbootError {
  constructor(message: string) {
    super('RB_ERR_VALIDATION', message)
  }
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n')
}

interface Stream {
  isTTY?: boolean
  columns?: number
}

/** Colour on a terminal only, and never when NO_COLOR is set to anything (https://no-color.org). */
export function colourEnabled(stream: Stream = process.stdout, env: NodeJS.ProcessEnv = process.env): boolean {
  return stream.isTTY === true && !env.NO_COLOR && env.TERM !== 'dumb'
}

export interface Palette {
  bold(s: string): string
  dim(s: string): string
  red(s: string): string
  green(s: string): string
  yellow(s: string): string
  cyan(s: string): string
}

const sgr = (open: number, close: number) => (s: string) => `\x1b[${open}m${s}\x1b[${close}m`
const PLAIN: Palette = { bold: (s) => s, dim: (s) => s, red: (s) => s, green: (s) => s, yellow: (s) => s, cyan: (s) => s }
const ANSI: Palette = { bold: sgr(1, 22), dim: sgr(2, 22), red: sgr(31, 39), green: sgr(32, 39), yellow: sgr(33, 39), cyan: sgr(36, 39) }

/** The palette for a stream: ANSI colours on a terminal, identity functions anywhere else. */
export function palette(stream: Stream = process.stdout, env: NodeJS.ProcessEnv = process.env): Palette {
  return colourEnabled(stream, env) ? ANSI : PLAIN
}

/** A machine state, coloured by what it asks of a person: green fine, yellow waiting, red needs someone. */
export function stateColour(p: Palette, state: string): string {
  switch (state) {
    case 'ready': case 'installed': return p.green(state)
    case 'failed': return p.red(state)
    case 'discovered': case 'maintenance': case 'released': case 'provisioning': return p.yellow(state)
    default: return state
  }
}

/** The terminal's width when stdout is one (tables are fitted to it), else null (pipes get whole lines). */
export function terminalWidth(stream: Stream = process.stdout): number | null {
  return stream.isTTY === true && stream.columns ? stream.columns : null
}

/** A positive whole number from a flag, or a usage error naming the flag. */
export function positiveInt(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${flag} expects a positive whole number, got '${value}'`)
  return n
}

/** Seconds from a flag (fractions allowed), or a usage error. */
export function seconds(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${flag} expects a number of seconds, got '${value}'`)
  return n
}

/** `key=value` items into an object; a usage error naming the flag for anything else. */
export function keyValues(flag: string, items: readonly string[] | undefined): Record<string, string> {
  return Object.fromEntries((items ?? []).map((l) => {
    const eq = l.indexOf('=')
    if (eq <= 0) throw new UsageError(`${flag} expects key=value, got '${l}'`)
    return [l.slice(0, eq), l.slice(eq + 1)]
  }))
}

/** key=value sets, key- removes: label changes as the API's merge patch takes them (null removes). */
export function labelChanges(changes: readonly string[]): Record<string, string | null> {
  const out: Record<string, string | null> = {}
  for (const c of changes) {
    if (c.endsWith('-') && !c.includes('=')) out[c.slice(0, -1)] = null
    else {
      const eq = c.indexOf('=')
      if (eq <= 0) throw new UsageError(`label change must be key=value or key-, got '${c}'`)
      out[c.slice(0, eq)] = c.slice(eq + 1)
    }
  }
  return out
}

/**
 * One status line on stderr that rewrites itself on a terminal (progress, elapsed time); elsewhere nothing is drawn
 * and only `line()` output (retries, results) appears, one per line.
 */
export function statusLine(stream: NodeJS.WriteStream = process.stderr): { draw(text: string): void; line(text: string): void; end(): void } {
  const tty = stream.isTTY === true
  let shown = false
  const clear = () => {
    if (shown) stream.write('\r\x1b[K')
    shown = false
  }
  let last = ''
  return {
    draw(text) {
      if (!tty) return
      last = text
      stream.write(`\r${text.slice(0, Math.max(10, (stream.columns ?? 100) - 1))}\x1b[K`)
      shown = true
    },
    line(text) {
      clear()
      stream.write(`${text}\n`)
      if (tty && last) this.draw(last)
    },
    end() {
      clear()
      last = ''
    },
  }
}
