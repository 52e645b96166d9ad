// Plain-text tables for the CLI: column widths from the content, fitted to a terminal, no colours when not a TTY.
import type { Palette } from './common.js'

/**
 * C0 and C1 control characters, DEL, and the Unicode line separators and bidirectional overrides that reorder what
 * a terminal shows ("Trojan Source"). Machines report SMBIOS strings, disk models and kernel log lines without
 * authentication: printed raw, ESC and BEL would drive the operator's terminal (set its title, clear the screen,
 * rewrite earlier lines). One character class: linear time.
 */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g

/** The text with every control character shown as an escape (ESC → `\x1b`, U+202E → `\u202e`), never raw. */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => {
    const code = c.charCodeAt(0)
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`
  })
}

export interface Column<T> {
  header: string
  value: (row: T) => string | number | null | undefined
  align?: 'left' | 'right'
  /** Colours a cell (already escaped and padded) on a terminal; the palette is the identity elsewhere. */
  colour?: (cell: string, row: T, p: Palette) => string
  /** Never narrowed to fit the terminal (ids, names a person copies). */
  keep?: boolean
}

export interface TableOptions {
  /** Fit the lines to this many columns (a terminal's width) by shortening the widest cells with '…'; null: whole. */
  maxWidth?: number | null
  palette?: Palette
}

const IDENTITY: Palette = { bold: (s) => s, dim: (s) => s, red: (s) => s, green: (s) => s, yellow: (s) => s, cyan: (s) => s }
const GAP = 2
const MIN_WIDTH = 6

/** Column widths that fit `maxWidth`: the widest columns give up space first, none below its header or MIN_WIDTH. */
export function fitWidths(widths: readonly number[], floors: readonly number[], maxWidth: number): number[] {
  const out = [...widths]
  const total = () => out.reduce((a, b) => a + b, 0) + GAP * Math.max(0, out.length - 1)
  while (total() > maxWidth) {
    let widest = -1
    for (let i = 0; i < out.length; i++) if (out[i]! > floors[i]! && (widest < 0 || out[i]! > out[widest]!)) widest = i
    if (widest < 0) break
    out[widest]!--
  }
  return out
}

function clip(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, Math.max(0, width - 1))}…`
}

export function renderTable<T>(rows: readonly T[], columns: readonly Column<T>[], options: TableOptions = {}): string {
  const p = options.palette ?? IDENTITY
  const cells = rows.map((r) => columns.map((c) => {
    const v = c.value(r)
    return v === null || v === undefined || v === '' ? '-' : printable(String(v))
  }))
  const natural = columns.map((c, i) => Math.max(c.header.length, ...cells.map((row) => row[i]!.length)))
  const widths = options.maxWidth
    ? fitWidths(natural, columns.map((c, i) => (c.keep ? natural[i]! : Math.min(natural[i]!, Math.max(MIN_WIDTH, c.header.length)))), options.maxWidth)
    : natural
  const line = (values: string[], row: T | null) =>
    values
      .map((v, i) => {
        const c = columns[i]!
        const text = clip(v, widths[i]!)
        const padded = c.align === 'right' ? text.padStart(widths[i]!) : i === values.length - 1 ? text : text.padEnd(widths[i]!)
        return row === null ? p.bold(padded) : c.colour && v !== '-' ? c.colour(padded, row, p) : padded
      })
      .join(' '.repeat(GAP))
      .trimEnd()
  return [line(columns.map((c) => c.header.toUpperCase()), null), ...cells.map((row, i) => line(row, rows[i]!))].join('\n')
}

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return '-'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let v = bytes
  let u = 0
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024
    u++
  }
  return `${v >= 100 || u === 0 ? Math.round(v) : v.toFixed(1)} ${units[u]}`
}

export function formatAge(ms: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - ms) / 1000))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m`
  if (s < 86400) return `${Math.floor(s / 3600)}h`
  return `${Math.floor(s / 86400)}d`
}
