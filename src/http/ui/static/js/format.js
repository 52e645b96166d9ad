// Numbers and times as a tech reads them.

const BINARY = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
const DECIMAL = ['B', 'kB', 'MB', 'GB', 'TB', 'PB']

function scaled(n, base, units) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '—'
  let i = 0
  while (n >= base && i < units.length - 1) {
    n /= base
    i++
  }
  return `${n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1).replace(/\.0$/, '')} ${units[i]}`
}

/** Sizes in binary units (KiB, MiB, GiB, TiB), as the CLI prints them: one unit system wherever both show a size. */
export const bytes = (n) => scaled(n, 1024, BINARY)
/** Memory: binary units, as the kernel counts it (64 GiB). */
export const memory = bytes
/** Disks: decimal units, as the label on the drive says (960 GB). */
export const diskSize = (bytes) => scaled(bytes, 1000, DECIMAL)

/** A duration in ms: 850 ms, 2.4 s, 3 min 05 s, 2 h 10 min. */
export function duration(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) return ''
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`
  const s = Math.round(ms / 1000)
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`
  const m = Math.round(s / 60)
  if (m < 48 * 60) return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`
  return `${Math.round(m / 1440)} d`
}

/** "3 min ago" from an RFC 3339 time. */
export function ago(iso, now = Date.now()) {
  const t = Date.parse(iso)
  if (!Number.isFinite(t)) return ''
  const d = Math.max(0, now - t)
  if (d < 5_000) return 'just now'
  if (d < 60_000) return `${Math.round(d / 1000)} s ago`
  if (d < 3_600_000) return `${Math.round(d / 60_000)} min ago`
  if (d < 86_400_000) return `${Math.round(d / 3_600_000)} h ago`
  return `${Math.round(d / 86_400_000)} d ago`
}

/** Local wall-clock time with milliseconds; the date too when it is not today. */
export function clock(iso, now = new Date()) {
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return ''
  const pad = (n, w = 2) => String(n).padStart(w, '0')
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`
  const today = d.toDateString() === now.toDateString()
  return today ? time : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`
}

/**
 * The one date format: local 2026-05-03 14:07:09, the same on every locale (toLocaleString gave 5/3/2026 on one
 * browser and 03.05.2026 on the next, beside the ISO dates of the timeline).
 */
export function dateTime(iso) {
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return ''
  const pad = (n) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
}

/** Full local date and time, for tooltips: the one date format. */
export const fullTime = dateTime

// Control characters from machine reports (SMBIOS strings, disk models, kernel log lines come unauthenticated) are
// shown, never passed on: C0 as their Control Pictures (ESC → ␛, BEL → ␇, LF → ␊), DEL as ␡, C1 and the
// bidirectional overrides and line separators that reorder or split text as \x85, \u202e. One character class:
// linear time.
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g

/** The text with every control character made visible. */
export function visible(text) {
  return String(text).replace(UNPRINTABLE, (c) => {
    const code = c.charCodeAt(0)
    if (code < 0x20) return String.fromCharCode(0x2400 + code)
    if (code === 0x7f) return '\u2421'
    return code <= 0xff ? `\\x${code.toString(16)}` : `\\u${code.toString(16)}`
  })
}
