// One line of Talos's `talos.logging.kernel` stream. Talos reads /dev/kmsg and sends each record as one JSON object
// (internal/app/machined/pkg/controllers/runtime/kmsg_log.go, logging/sender_jsonlines.go):
//   {"clock":6252819,"facility":"user","msg":"[talos] ...","priority":"warning","seq":711,
//    "talos-level":"warn","talos-time":"2026-08-21T10:00:00.123456789Z"}
// clock is microseconds since boot, seq the kmsg sequence number (both restart at each boot), facility and
// priority are syslog names ("kern", "daemon"...; "emerg" ... "debug"), talos-level is zap's level derived from the
// priority, talos-time the record's wall-clock time. Parsing is defensive: anything else is a drop reason.

/** How a line arrived. UDP source addresses are trivially spoofed on a LAN; a TCP peer completed a handshake. */
export type KernelLogTransport = 'tcp' | 'udp'

export interface KernelLogLine {
  /** Store cursor: increases by one for every line the store keeps, across all peers. Set by the store. */
  cursor: number
  /** Set by the store from what the receiver reports: only TCP lines may move a machine's state. */
  transport: KernelLogTransport
  /** When rackboot received it (ms since the epoch). */
  receivedAt: number
  msg: string
  seq?: number
  /** Microseconds since the machine booted. */
  clock?: number
  facility?: string
  priority?: string
  talosLevel?: string
  /** Talos's RFC 3339 timestamp as sent. */
  talosTime?: string
}

/** A parsed line before the store gives it a cursor and its transport. */
export type KernelLogRecord = Omit<KernelLogLine, 'cursor' | 'transport'>

export type KernelLogDropReason = 'malformed' | 'not_object' | 'no_msg' | 'too_long'

export type ParsedKernelLog = { ok: true; record: KernelLogRecord } | { ok: false; reason: KernelLogDropReason }

/** Longest msg kept; kmsg records are at most ~1 KiB, so this only bounds hostile input. */
export const MAX_MSG_CHARS = 4096
const MAX_FIELD_CHARS = 64

/**
 * The first `max` characters as a string of their own. V8 makes a longer string's slice a view that keeps the whole
 * original alive, so a kept 64-character field could pin a 16 KiB line; the store's byte count would then be wrong.
 */
export function truncateOwned(s: string, max: number): string {
  return s.length > max ? Buffer.from(s.slice(0, max), 'utf8').toString('utf8') : s
}

const shortString = (v: unknown): string | undefined => (typeof v === 'string' ? truncateOwned(v, MAX_FIELD_CHARS) : undefined)
const integer = (v: unknown): number | undefined => (typeof v === 'number' && Number.isSafeInteger(v) ? v : undefined)

/** Parses one JSON line (without its newline). */
export function parseKernelLogLine(text: string, receivedAt: number): ParsedKernelLog {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return { ok: false, reason: 'malformed' }
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return { ok: false, reason: 'not_object' }
  const fields = value as Record<string, unknown>
  if (typeof fields.msg !== 'string') return { ok: false, reason: 'no_msg' }
  const record: KernelLogRecord = {
    receivedAt,
    msg: truncateOwned(fields.msg, MAX_MSG_CHARS),
  }
  const seq = integer(fields.seq)
  if (seq !== undefined) record.seq = seq
  const clock = integer(fields.clock)
  if (clock !== undefined) record.clock = clock
  const facility = shortString(fields.facility)
  if (facility !== undefined) record.facility = facility
  const priority = shortString(fields.priority)
  if (priority !== undefined) record.priority = priority
  const talosLevel = shortString(fields['talos-level'])
  if (talosLevel !== undefined) record.talosLevel = talosLevel
  const talosTime = shortString(fields['talos-time'])
  if (talosTime !== undefined) record.talosTime = talosTime
  return { ok: true, record }
}
