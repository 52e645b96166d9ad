// Numbers and times as a tech reads them.

const BINARY = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']

/**
 * Sizes in binary units (KiB, MiB, GiB, TiB), as the CLI prints them: one unit system for memory and disks alike,
 * wherever the UI shows a size (a 960 GB drive reads 894 GiB, as `rackboot machines show` says).
 */
export function bytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '—'
  let i = 0
  while (n >= 1024 && i < BINARY.length - 1) {
    n /= 1024
    i++
  }
  return `${n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1).replace(/\.0$/, '')} ${BINARY[i]}`
}
export const memory = bytes
export const diskSize = bytes

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

const pad = (n, w = 2) => String(n).padStart(w, '0')

/** The browser's UTC offset at that time as ISO 8601 writes it: +01:00, -05:00, +00:00 (daylight saving included). */
export function zoneOffset(d) {
  const off = -d.getTimezoneOffset()
  const a = Math.abs(off)
  return `${off < 0 ? '-' : '+'}${pad(Math.floor(a / 60))}:${pad(a % 60)}`
}

/**
 * THE date format of the UI, for every time it shows (inventory, machine page, timeline, failures, power, kernel
 * log): local time, ISO-like, with the zone's offset: `2026-12-07 08:47:35 +01:00`. The same on every browser and
 * locale (toLocaleString gave 5/3/2026 on one and 03.05.2026 on the next), sortable, and comparable with the CLI's
 * UTC times because the offset is written. Relative times ("3 min ago") are not used: they go stale on an open
 * page and cannot be matched against a log. '' for a missing or unreadable time.
 */
export function dateTime(iso) {
  if (iso === null || iso === undefined || iso === '') return ''
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return ''
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${zoneOffset(d)}`
}

/** The tooltip of a time: the same format with milliseconds, and the zone's name. */
export function timeTitle(iso) {
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return ''
  let zone = ''
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone ?? ''
  } catch {
    // no Intl time zone: the offset says it
  }
  const text = dateTime(iso)
  return `${text.slice(0, 19)}.${pad(d.getMilliseconds(), 3)}${text.slice(19)}${zone ? ` (${zone})` : ''}`
}

/**
 * What a tech calls a machine: its name; without one its serial (on the sticker and in the BMC), else its first
 * MAC (on the switch port and in the DHCP log), else a short id ("unnamed m-3f9a2b"): never a bare m-<hex> that
 * nobody at the rack can match. `named` says whether it is the machine's own name.
 */
export function machineLabel(m) {
  if (!m) return { text: '', named: false, by: 'none' }
  if (m.name) return { text: m.name, named: true, by: 'name' }
  if (m.serial) return { text: m.serial, named: false, by: 'serial' }
  const mac = (m.nics ?? []).find((n) => n?.mac)?.mac
  if (mac) return { text: mac, named: false, by: 'MAC' }
  return { text: `unnamed ${String(m.id ?? '').slice(0, 8)}`, named: false, by: 'id' }
}

/** machineLabel's text. */
export const machineName = (m) => machineLabel(m).text

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
