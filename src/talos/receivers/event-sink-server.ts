// The `talos.events.sink` receiver: a plaintext gRPC server implementing Talos's events.EventSinkService.
// Talos calls Publish once per event, in order, and on any error closes the connection and resends from the last
// event it saw acknowledged (internal/app/machined/pkg/controllers/runtime/events_sink.go). So every call is
// acknowledged, even one we cannot decode: an error would make Talos resend the same event forever and hold back
// everything after it. What we cannot use is counted and logged instead.
//
// The peer is not authenticated, so what it can cost is bounded: connections per address and in all (rackboot
// accepts the TCP connections itself and hands them to grpc-js), calls in flight per connection, message size, the
// length of the fields kept, and events per second per address. Over its rate a call's acknowledgement is held back
// (Talos sends its next event only after it, so it just goes slower); only a peer with many calls in flight, which
// Talos never has, waits past maxRateWaitMs and gets RESOURCE_EXHAUSTED, after which Talos would resend.
import type * as grpc from '@grpc/grpc-js'
import { createServer, type Server as NetServer, type Socket } from 'node:net'
import { RackbootError } from '../../errors.js'
import type { Logger } from '../../log.js'
import type { Registry } from '../../metrics.js'
import { createEventSinkMetrics } from './metrics.js'
import { ipFromGrpcPeer, normalizeIp } from './peer.js'
import { sinkTypes } from './proto.js'
import { createPeerRateLimiter } from './rate-limiter.js'
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
  /** Open connections in all; more are closed at once (default 16,384). */
  maxConnections?: number
  /** Open connections one peer address may hold (default 8; Talos keeps one). */
  maxConnectionsPerPeer?: number
  /** Publish calls in flight on one connection (HTTP/2 concurrent streams; default 4; Talos has one). */
  maxStreamsPerConnection?: number
  /** Events one peer address may send per second (default 50); past its burst, acknowledgements slow down. */
  eventsPerSecond?: number
  /** Events a peer may send at once (default 1000: Talos replays its whole boot when it connects). */
  eventBurst?: number
  /** Longest an acknowledgement is held for the rate; a call that would wait longer is refused (default 2 s). */
  maxRateWaitMs?: number
  /** Peer addresses whose rate is remembered (default 16,384). */
  maxRatePeers?: number
  /** Clock of the rate limit (ms); injected by tests. */
  now?: () => number
}

export const EVENT_SINK_DEFAULTS = {
  maxConnections: 16_384,
  maxConnectionsPerPeer: 8,
  maxStreamsPerConnection: 4,
  eventsPerSecond: 50,
  eventBurst: 1000,
  maxRateWaitMs: 2000,
  maxRatePeers: 16_384,
} as const

/** Longer than anything Talos sends: an xid id is 20 characters, a DNS name at most 253. */
const MAX_ID_CHARS = 64
const MAX_ACTOR_CHARS = 256
const MAX_TYPE_URL_CHARS = 256
const MAX_HOSTNAME_CHARS = 253

export interface EventSinkStats {
  received: number
  byType: Record<string, number>
  dropped: Record<string, number>
  /** Calls whose acknowledgement was held back for the peer's event rate. */
  delayed: number
  connections: number
  refusedConnections: { peer: number; total: number }
}

export interface EventSinkServer {
  start(): Promise<{ address: string; port: number }>
  stop(): Promise<void>
  stats(): EventSinkStats
}

export const PUBLISH_PATH = '/events.EventSinkService/Publish'

type DropReason = 'bad_request' | 'no_payload' | 'bad_payload' | 'too_long' | 'rate' | 'observer_error' | 'observer_timeout'

const EMPTY_RESPONSE = Buffer.alloc(0)
// gRPC status codes (grpc-js's status enum), named here so grpc-js itself loads only when a sink starts: a server
// with the sink off never loads it.
const GRPC_RESOURCE_EXHAUSTED = 8 satisfies grpc.status.RESOURCE_EXHAUSTED
const GRPC_UNAVAILABLE = 14 satisfies grpc.status.UNAVAILABLE

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
  const maxConnections = deps.maxConnections ?? EVENT_SINK_DEFAULTS.maxConnections
  const maxConnectionsPerPeer = deps.maxConnectionsPerPeer ?? EVENT_SINK_DEFAULTS.maxConnectionsPerPeer
  const maxRateWaitMs = deps.maxRateWaitMs ?? EVENT_SINK_DEFAULTS.maxRateWaitMs
  const eventsPerSecond = deps.eventsPerSecond ?? EVENT_SINK_DEFAULTS.eventsPerSecond
  const limiter = createPeerRateLimiter({
    ratePerSecond: eventsPerSecond,
    burst: deps.eventBurst ?? EVENT_SINK_DEFAULTS.eventBurst,
    maxKeys: deps.maxRatePeers ?? EVENT_SINK_DEFAULTS.maxRatePeers,
    now: deps.now ?? Date.now,
  })
  const { eventRequest } = sinkTypes()
  // peer IP → hostname, least recently reported first (Map keeps insertion order).
  const hostnames = new Map<string, string>()
  const stats = { received: 0, byType: {} as Record<string, number>, dropped: {} as Record<string, number>, delayed: 0, refusedPeer: 0, refusedTotal: 0 }
  // Open sockets and how many each peer address holds.
  const sockets = new Set<Socket>()
  const perPeer = new Map<string, number>()
  // Calls whose acknowledgement waits for the rate: on stop they are answered UNAVAILABLE, so Talos resends them.
  const waiting = new Map<NodeJS.Timeout, () => void>()
  let server: grpc.Server | null = null
  let listener: NetServer | null = null

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
    // Kept by the observer (its replay de-duplication remembers ids), so bounded here.
    if (id.length > MAX_ID_CHARS || (request.actorId?.length ?? 0) > MAX_ACTOR_CHARS || (request.data?.type_url?.length ?? 0) > MAX_TYPE_URL_CHARS) {
      drop('too_long', { peer, idChars: id.length })
      return undefined
    }
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
    // The hostname is remembered per peer (up to maxPeers of them), so one longer than DNS allows is refused.
    if (decoded.type === 'machine.AddressEvent' && (decoded.data as unknown as AddressEventData).hostname.length > MAX_HOSTNAME_CHARS) {
      drop('too_long', { peer, id, typeUrl })
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
    const run = () => {
      let pending: Promise<void> | undefined
      try {
        pending = handle(peer, call.request)
      } catch (err) {
        // handle() catches what it expects; this is the socket-handler-never-throws backstop.
        log.error({ err }, 'Talos event handler failed')
      }
      if (pending) void pending.finally(done)
      else done()
    }
    const peer = ipFromGrpcPeer(call.getPeer())
    const waitMs = limiter.reserve(peer, maxRateWaitMs)
    if (waitMs === null) {
      // Only many calls in flight at once get here; an error (not an acknowledgement) makes a real Talos resend.
      drop('rate', { peer })
      end()
      callback({ code: GRPC_RESOURCE_EXHAUSTED, details: 'event rate exceeded; retry later' })
      return
    }
    if (waitMs === 0) {
      run()
      return
    }
    stats.delayed++
    metrics.delayed.inc()
    const timer = setTimeout(() => {
      waiting.delete(timer)
      // A caller that went away gets nothing handed on: unacknowledged, Talos resends it.
      if (call.cancelled) end()
      else run()
    }, waitMs)
    waiting.set(timer, () => {
      end()
      callback({ code: GRPC_UNAVAILABLE, details: 'event sink stopping' })
    })
  }

  function refuse(socket: Socket, reason: 'peer' | 'total', peer: string): void {
    if (reason === 'peer') stats.refusedPeer++
    else stats.refusedTotal++
    metrics.refused.inc({ reason })
    log.debug({ peer, reason }, 'event sink connection refused')
    socket.on('error', () => {})
    socket.destroy()
  }

  function onConnection(socket: Socket, injector: grpc.ConnectionInjector): void {
    const peer = normalizeIp(socket.remoteAddress ?? 'unknown')
    if (sockets.size >= maxConnections) return refuse(socket, 'total', peer)
    const held = perPeer.get(peer) ?? 0
    if (held >= maxConnectionsPerPeer) return refuse(socket, 'peer', peer)
    perPeer.set(peer, held + 1)
    sockets.add(socket)
    metrics.connections.inc()
    socket.once('close', () => {
      sockets.delete(socket)
      const left = (perPeer.get(peer) ?? 1) - 1
      if (left > 0) perPeer.set(peer, left)
      else perPeer.delete(peer)
      metrics.connections.dec()
    })
    try {
      injector.injectConnection(socket)
    } catch (err) {
      log.error({ err, peer }, 'event sink cannot take a connection')
      socket.destroy()
    }
  }

  return {
    async start() {
      if (server) throw new RackbootError('RB_ERR_INTERNAL', 'event sink already started')
      const grpc = await import('@grpc/grpc-js')
      const s = new grpc.Server({
        'grpc.max_receive_message_length': deps.maxMessageBytes ?? 1024 * 1024,
        // Also closes a connection that never starts HTTP/2: grpc-js times each session from its start.
        'grpc.max_connection_idle_ms': deps.idleTimeoutMs ?? 10 * 60_000,
        'grpc.max_concurrent_streams': deps.maxStreamsPerConnection ?? EVENT_SINK_DEFAULTS.maxStreamsPerConnection,
      })
      s.addService(SERVICE, { Publish: publish })
      // rackboot accepts the connections itself, to count them per peer, and hands them to grpc-js.
      const injector = s.createConnectionInjector(grpc.ServerCredentials.createInsecure())
      const tcp = createServer({ noDelay: true }, (socket) => onConnection(socket, injector))
      const port = await new Promise<number>((resolve, reject) => {
        tcp.once('error', reject)
        tcp.listen({ host: deps.listen, port: deps.port, exclusive: true }, () => {
          tcp.off('error', reject)
          const address = tcp.address()
          resolve(typeof address === 'object' && address ? address.port : deps.port)
        })
      }).catch((err: unknown) => {
        s.forceShutdown()
        throw new RackbootError('RB_ERR_INTERNAL', `cannot listen for Talos events on ${deps.listen}:${deps.port}`, { cause: err })
      })
      tcp.on('error', (err) => log.error({ err }, 'event sink listener error'))
      server = s
      listener = tcp
      log.info({ address: deps.listen, port }, 'Talos event sink listening')
      return { address: deps.listen, port }
    },

    async stop() {
      const s = server
      const tcp = listener
      if (!s || !tcp) return
      server = null
      listener = null
      for (const [timer, cancel] of waiting) {
        clearTimeout(timer)
        cancel()
      }
      waiting.clear()
      const closed = new Promise<void>((resolve) => tcp.close(() => resolve()))
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
      for (const socket of sockets) socket.destroy()
      await closed
    },

    stats() {
      return {
        received: stats.received,
        byType: { ...stats.byType },
        dropped: { ...stats.dropped },
        delayed: stats.delayed,
        connections: sockets.size,
        refusedConnections: { peer: stats.refusedPeer, total: stats.refusedTotal },
      }
    },
  }
}
