// Talos's events as rackboot sees them: the Any-wrapped machine.*Event payload of one EventSinkService/Publish
// call, decoded into plain objects. Pure: bytes in, value out; nothing here throws on bad input.
import type protobuf from 'protobufjs'
import { sinkTypes, TYPE_URL_PREFIX } from './proto.js'

/** machine.MachineStatusEvent.MachineStage, as Talos names it (api/machine/machine.proto). */
export const MACHINE_STAGES = [
  'UNKNOWN', 'BOOTING', 'INSTALLING', 'MAINTENANCE', 'RUNNING', 'REBOOTING', 'SHUTTING_DOWN', 'RESETTING', 'UPGRADING',
] as const
export type MachineStage = (typeof MACHINE_STAGES)[number]

/** The payload types rackboot decodes, by full protobuf name (the type URL without its prefix). */
export const KNOWN_EVENT_TYPES = [
  'machine.MachineStatusEvent',
  'machine.SequenceEvent',
  'machine.PhaseEvent',
  'machine.TaskEvent',
  'machine.ServiceStateEvent',
  'machine.ConfigLoadErrorEvent',
  'machine.ConfigValidationErrorEvent',
  'machine.AddressEvent',
  'machine.RestartEvent',
] as const
export type KnownEventType = (typeof KNOWN_EVENT_TYPES)[number]

/** What the receiver reports for a type it cannot decode. */
export const UNKNOWN_EVENT_TYPE = 'unknown'

export interface MachineStatusEventData {
  /** A MACHINE_STAGES name, or the number as a string for a stage newer than this table. */
  stage: MachineStage | string
  status: {
    /** Meaningful in BOOTING and RUNNING only: in other stages Talos runs no checks and reports true. */
    ready: boolean
    unmetConditions: Array<{ name: string; reason: string }>
  }
}

export interface SequenceEventData {
  sequence: string
  action: 'NOOP' | 'START' | 'STOP' | string
  /** Set on NOOP when the sequence failed (FATAL), was cancelled (CANCELED) or could not take the lock (LOCKED). */
  error?: { code: 'FATAL' | 'LOCKED' | 'CANCELED' | string; message: string }
}

export interface PhaseEventData { phase: string; action: 'START' | 'STOP' | string }
export interface TaskEventData { task: string; action: 'START' | 'STOP' | string }

export interface ServiceStateEventData {
  service: string
  action: 'INITIALIZED' | 'PREPARING' | 'WAITING' | 'RUNNING' | 'STOPPING' | 'FINISHED' | 'FAILED' | 'SKIPPED' | 'STARTING' | string
  message: string
  health?: { unknown: boolean; healthy: boolean; lastMessage: string }
}

export interface ErrorEventData { error: string }
export interface AddressEventData { hostname: string; addresses: string[] }
export interface RestartEventData { cmd: number }
export interface UnknownEventData { typeUrl: string; bytes: number }

/** One event from one machine, as handed to the observer. */
export interface TalosEvent {
  /** The remote IP of the gRPC connection (IPv4-mapped IPv6 unwrapped). */
  peer: string
  /** The hostname this peer last reported in an AddressEvent, if any. */
  node?: string
  /** Talos's event id (an xid), unique per event; replays after a reconnect repeat it. */
  id: string
  /** The payload's protobuf name ('machine.MachineStatusEvent', ...) or 'unknown'. */
  type: KnownEventType | typeof UNKNOWN_EVENT_TYPE | string
  /** When Talos raised the event (ms since the epoch, from the xid; Talos's clock, may be off before NTP). */
  at?: number
  /** Talos's actor id: what caused the event (empty for most boot events). */
  actorId?: string
  data: Record<string, unknown>
}

export type DecodedPayload =
  | { ok: true; type: string; known: boolean; data: Record<string, unknown> }
  | { ok: false; type: string; error: string }

type Plain = Record<string, unknown>

const TO_OBJECT: protobuf.IConversionOptions = { enums: String, longs: Number, defaults: true, arrays: true }

const str = (v: unknown): string => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '')
const bool = (v: unknown): boolean => v === true
const obj = (v: unknown): Plain | undefined => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Plain) : undefined)
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : [])

// Each shape is built field by field so the observer sees the same keys whatever protobufjs does with defaults.
const SHAPES: Record<KnownEventType, (m: Plain) => Plain> = {
  'machine.MachineStatusEvent': (m) => {
    const status = obj(m.status)
    return {
      stage: str(m.stage),
      status: {
        ready: bool(status?.ready),
        unmetConditions: list(status?.unmetConditions).map((c) => ({ name: str(obj(c)?.name), reason: str(obj(c)?.reason) })),
      },
    } satisfies MachineStatusEventData
  },
  'machine.SequenceEvent': (m) => {
    const error = obj(m.error)
    const data: SequenceEventData = { sequence: str(m.sequence), action: str(m.action) }
    if (error) data.error = { code: str(error.code), message: str(error.message) }
    return { ...data }
  },
  'machine.PhaseEvent': (m) => ({ phase: str(m.phase), action: str(m.action) }) satisfies PhaseEventData,
  'machine.TaskEvent': (m) => ({ task: str(m.task), action: str(m.action) }) satisfies TaskEventData,
  'machine.ServiceStateEvent': (m) => {
    const health = obj(m.health)
    const data: ServiceStateEventData = { service: str(m.service), action: str(m.action), message: str(m.message) }
    if (health) data.health = { unknown: bool(health.unknown), healthy: bool(health.healthy), lastMessage: str(health.lastMessage) }
    return { ...data }
  },
  'machine.ConfigLoadErrorEvent': (m) => ({ error: str(m.error) }) satisfies ErrorEventData,
  'machine.ConfigValidationErrorEvent': (m) => ({ error: str(m.error) }) satisfies ErrorEventData,
  'machine.AddressEvent': (m) => ({ hostname: str(m.hostname), addresses: list(m.addresses).map(str) }) satisfies AddressEventData,
  'machine.RestartEvent': (m) => ({ cmd: typeof m.cmd === 'number' ? m.cmd : Number(m.cmd) || 0 }) satisfies RestartEventData,
}

/**
 * protobufjs reads a Node Buffer with a lenient reader that silently cuts a string running past the end; a plain
 * Uint8Array view over the same memory gets the checking reader, so truncated input is an error.
 */
export function strictView(bytes: Uint8Array): Uint8Array {
  return Buffer.isBuffer(bytes) ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : bytes
}

export function isKnownEventType(type: string): type is KnownEventType {
  return (KNOWN_EVENT_TYPES as readonly string[]).includes(type)
}

/** The protobuf name a type URL names ('type.googleapis.com/machine.X' → 'machine.X'); any host prefix is accepted. */
export function typeNameOf(typeUrl: string): string {
  const slash = typeUrl.lastIndexOf('/')
  return slash >= 0 ? typeUrl.slice(slash + 1) : typeUrl
}

/** The type URL Talos puts on a payload of this protobuf name. */
export function typeUrlOf(typeName: string): string {
  return TYPE_URL_PREFIX + typeName
}

/**
 * Decodes one Any payload. Unknown types are a value ({ known: false, data: { typeUrl, bytes } }); a known type
 * whose bytes do not decode is { ok: false } with the reason.
 */
export function decodeEventPayload(typeUrl: string, value: Uint8Array): DecodedPayload {
  const type = typeNameOf(typeUrl)
  if (!isKnownEventType(type)) {
    return { ok: true, type: UNKNOWN_EVENT_TYPE, known: false, data: { typeUrl, bytes: value.length } satisfies UnknownEventData }
  }
  try {
    const messageType = sinkTypes().root.lookupType(type)
    const message = messageType.decode(strictView(value))
    return { ok: true, type, known: true, data: SHAPES[type](messageType.toObject(message, TO_OBJECT)) }
  } catch (err) {
    return { ok: false, type, error: err instanceof Error ? err.message : String(err) }
  }
}
