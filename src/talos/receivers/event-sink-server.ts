// The `talos.events.sink` receiver: a plaintext gRPC server implementing Talos's events.EventSinkService.
// Talos calls Publish once per event, in order, and on any error closes the connection and resends from the last
// event it saw acknowledged (internal/app/machined/pkg/controllers/runtime/events_sink.go). So every call is
// acknowledged, even one we cannot decode: an error would make Talos resend the same event forever and hold back
// everything after it. What we cannot use is counted and logged instead.
import * as grpc from '@grpc/grpc-js'
import { isIPv6 } from 'node:net'
import { RackbootError } from '../../errors.js'
import type { Logger } from '../../log.js'
import type { Registry } from '../../metrics.js'
import { createEventSinkMetrics } from './metrics.js'
import { ipFromGrpcPeer } from './peer.js'
import { sinkTypes } from './proto.js'
import { decodeEventPayload, strictView, type AddressEventData, type TalosEvent } from './talos-events.js'
import { xidTime } from './xid.js'

/**
 * The lifecycle's port: the lead maps `peer` to a machine (lease, config token address) and records the event.
 * If it returns a promise, the call is acknowledged only once it settles (or after observerTimeoutMs): Talos sends
 * its next event only after that, so one machine's events are handled strictly in order, with no queue here.
 */
export interface TalosEventObserver {
  event(e: TalosEvent): void | Promise<void>
}

export interface EventSinkServerDeps {
  /** Address to bind: '0.0.0.0', '::' or one IP. */
  listen: string
  /** TCP port; 0 picks a free one (start() returns it). */
  port: number
  log: Logger
  metrics: Registry
  observer?: TalosEventObserver
  /** Largest request accepted (default 1 MiB; Talos's events are a few hundred bytes). */
  maxMessageBytes?: number
  /** A connection idle this long is closed (Talos reconnects on its next event). Default 10 min. */
  idleTimeoutMs?: number
  /** How many peers' hostnames (from AddressEvent) are remembered to fill `node`. Default 10,000. */
  maxPeers?: number
  /** Longest wait for an observer's promise before acknowledging anyway (default 10 s). */
  observerTimeoutMs?: number
}

export interface EventSinkStats {
  received: number
  byType: Record<string, number>
  dropped: Record<string, number>
}

export interface EventSinkServer {
  start(): Promise<{ address: string; port: number }>
  stop(): Promise<void>
  stats(): EventSinkStats
}

export const PUBLISH_PATH = '/events.EventSinkService/Publish'

type DropReason = 'bad_request' | 'no_payload' | 'bad_payload' | 'observer_error' | 'observer_timeout'

const EMPTY_RESPONSE = Buffer.alloc(0)

// The request stays raw bytes until the handler, so a request that does not decode is counted there rather than
// rejected inside grpc-js.
const SERVICE: grpc.ServiceDefinition = {
  Publish: {
    path: PUBLISH_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: (value: Buffer) => value,
    requestDeserialize: (bytes: Buffer) => bytes,
    responseSerialize: () => EMPTY_RESPONSE,
    responseDeserialize: () => ({}),
    originalName: 'publish',
  },
}

/** Resolves true when `promise` settles in time (rejecting if it rejects), false after `ms`. */
function settleWithin(promise: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms)
  })
  return Promise.race([promise.then(() => true), timeout]).finally(() => clearTimeout(timer))
}

export function createEventSinkServer(deps: EventSinkServerDeps): EventSinkServer {
  const log = deps.log.child({ svc: 'talos-events' })
  const metrics = createEventSinkMetrics(deps.metrics)
  const maxPeers = deps.maxPeers ?? 10_000
  const observerTimeoutMs = deps.observerTimeoutMs ?? 10_000
  const { eventRequest } = sinkTypes()
  // peer IP → hostname, least recently reported first (Map keeps insertion order).
  const hostnames = new Map<string, string>()
  const stats: EventSinkStats = { received: 0, byType: {}, dropped: {} }
  let server: grpc.Server | null = null

  function drop(reason: DropReason, fields: Record<string, unknown>): void {
    stats.dropped[reason] = (stats.dropped[reason] ?? 0) + 1
    metrics.dropped.inc({ reason })
    log.warn({ ...fields, reason }, 'Talos event dropped')
  }

  function remember(peer: string, hostname: string): void {
    hostnames.delete(peer)
    hostnames.set(peer, hostname)
    if (hostnames.size > maxPeers) {
      const oldest = hostnames.keys().next()
      if (!oldest.done) hostnames.delete(oldest.value)
    }
  }

  /** Decodes and hands on one request; returns the observer's promise, if it gave one. */
  function handle(peer: string, bytes: Buffer): Promise<void> | undefined {
    let request: { data?: { type_url?: string; value?: Uint8Array } | null; id?: string; actorId?: string }
    try {
      request = eventRequest.decode(strictView(bytes)) as typeof request
    } catch (err) {
      drop('bad_request', { peer, bytes: bytes.length, err })
      return undefined
    }
    const id = request.id ?? ''
    if (!request.data || !request.data.type_url) {
      drop('no_payload', { peer, id })
      return undefined
    }
    const typeUrl = request.data.type_url
    const decoded = decodeEventPayload(typeUrl, request.data.value ?? new Uint8Array())
    if (!decoded.ok) {
      drop('bad_payload', { peer, id, typeUrl, error: decoded.error })
      return undefined
    }
    stats.received++
    stats.byType[decoded.type] = (stats.byType[decoded.type] ?? 0) + 1
    metrics.events.inc({ type: decoded.type })
    if (!decoded.known) log.debug({ peer, id, typeUrl }, 'Talos event of an unknown type')

    if (decoded.type === 'machine.AddressEvent') {
      const hostname = (decoded.data as unknown as AddressEventData).hostname
      if (hostname) remember(peer, hostname)
    }
    const event: TalosEvent = { peer, id, type: decoded.type, data: decoded.data }
    const node = hostnames.get(peer)
    if (node !== undefined) event.node = node
    const at = xidTime(id)
    if (at !== undefined) event.at = at
    if (request.actorId) event.actorId = request.actorId
    if (!deps.observer) return undefined
    const fields = { peer, id, type: decoded.type }
    try {
      const result = deps.observer.event(event)
      if (!result || typeof result.then !== 'function') return undefined
      return settleWithin(result, observerTimeoutMs).then(
        (settled) => {
          if (!settled) drop('observer_timeout', fields)
        },
        (err: unknown) => drop('observer_error', { ...fields, err }),
      )
    } catch (err) {
      drop('observer_error', { ...fields, err })
      return undefined
    }
  }

  const publish: grpc.handleUnaryCall<Buffer, object> = (call, callback) => {
    const end = metrics.duration.startTimer()
    const done = () => {
      end()
      callback(null, {})
    }
    let pending: Promise<void> | undefined
    try {
      pending = handle(ipFromGrpcPeer(call.getPeer()), call.request)
    } catch (err) {
      // handle() catches what it expects; this is the socket-handler-never-throws backstop.
      log.error({ err }, 'Talos event handler failed')
    }
    if (pending) void pending.finally(done)
    else done()
  }

  return {
    async start() {
      if (server) throw new RackbootError('RB_ERR_INTERNAL', 'event sink already started')
      const s = new grpc.Server({
        'grpc.max_receive_message_length': deps.maxMessageBytes ?? 1024 * 1024,
        'grpc.max_connection_idle_ms': deps.idleTimeoutMs ?? 10 * 60_000,
      })
      s.addService(SERVICE, { Publish: publish })
      const host = isIPv6(deps.listen) ? `[${deps.listen}]` : deps.listen
      const port = await new Promise<number>((resolve, reject) => {
        s.bindAsync(`${host}:${deps.port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
          if (err) {
            s.forceShutdown()
            reject(new RackbootError('RB_ERR_INTERNAL', `cannot listen for Talos events on ${host}:${deps.port}`, { cause: err }))
          } else {
            resolve(bound)
          }
        })
      })
      server = s
      log.info({ address: deps.listen, port }, 'Talos event sink listening')
      return { address: deps.listen, port }
    },

    async stop() {
      const s = server
      if (!s) return
      server = null
      await new Promise<void>((resolve) => {
        // Give calls in flight a moment; Talos resends anything not acknowledged, so forcing is safe.
        const timer = setTimeout(() => {
          s.forceShutdown()
          resolve()
        }, 2000)
        s.tryShutdown(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    },

    stats() {
      return { received: stats.received, byType: { ...stats.byType }, dropped: { ...stats.dropped } }
    },
  }
}
