// One line of Talos's `talos.logging.kernel` stream. Talos reads /dev/kmsg and sends each record as one JSON object
// (internal/app/machined/pkg/controllers/runtime/kmsg_log.go, logging/sender_jsonlines.go):
//   {"clock":6252819,"facility":"user","msg":"[talos] ...","priority":"warning","seq":711,
//    "talos-level":"warn","talos-time":"2026-08-21T10:00:00.123456789Z"}
// clock is microseconds since boot, seq the kmsg sequence number (both restart at each boot), facility and
// priority are syslog names ("kern", "daemon"...; "emerg" ... "debug"), talos-level is zap's level derived from the
// priority, talos-time the record's wall-clock time. Parsing is defensive: anything else is a drop reason.

export interface KernelLogLine {
  /** Store cursor: increases by one for every line the store keeps, across all peers. Set by the store. */
  cursor: number
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

/** A parsed line before the store gives it a cursor. */
export type KernelLogRecord = Omit<KernelLogLine, 'cursor'>

export type KernelLogDropReason = 'malformed' | 'not_object' | 'no_msg' | 'too_long'

export type ParsedKernelLog = { ok: true; record: KernelLogRecord } | { ok: false; reason: KernelLogDropReason }

/** Longest msg kept; kmsg records are at most ~1 KiB, so this only bounds hostile input. */
export const MAX_MSG_CHARS = 4096
const MAX_FIELD_CHARS = 64

const shortString = (v: unknown): string | undefined =>
  typeof v === 'string' ? (v.length > MAX_FIELD_CHARS ? v.slice(0, MAX_FIELD_CHARS) : v) : undefined
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
    msg: fields.msg.length > MAX_MSG_CHARS ? fields.msg.slice(0, MAX_MSG_CHARS) : fields.msg,
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
