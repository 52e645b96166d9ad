import type { Server } from 'node:http'
import type { Socket } from 'node:net'
import { Counter, Gauge, type Registry } from 'prom-client'
import type { Logger } from '../log.js'

// The HTTP server's share of the process's file descriptors is bounded, so a flood of idle or trickling connections
// cannot starve TFTP and DHCP (issue 13): one client address may hold `maxConnectionsPerAddress` sockets, all
// clients together `maxConnections`, and a connection must deliver each request head within `headersTimeoutMs`.
// A connection past a cap is reset the moment it is accepted, before Node reads a byte from it.

export interface ConnectionLimits {
  /** Open connections one client address may hold (settings.http.maxConnectionsPerAddress). */
  maxConnectionsPerAddress: number
  /** Open connections in all (settings.http.maxConnections). */
  maxConnections: number
  /** Time a client has to send a complete request head, counted from the connection or the request's first byte. */
  headersTimeoutMs: number
  /** Time a client has to send a whole request, body included; default max(30 s, headersTimeoutMs). */
  requestTimeoutMs?: number
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  maxConnectionsPerAddress: 64,
  maxConnections: 8192,
  headersTimeoutMs: 10_000,
}

/** IPv4 clients of a dual-stack socket appear as ::ffff:a.b.c.d; they are the same client as a.b.c.d. */
export function clientAddress(remote: string | undefined): string | null {
  if (!remote) return null
  return remote.startsWith('::ffff:') && remote.includes('.') ? remote.slice(7) : remote
}

/**
 * The node:http timeouts, to pass to http.createServer (connectionsCheckingInterval can only be set there).
 * headersTimeout runs from the connection's start (a client that sends nothing is cut too) or a request's first
 * byte. requestTimeout bounds receiving the whole request, body included (agent reports, API bodies up to the
 * 4 MiB body limit); Node stops counting both once the request is received, so a long download or event stream is
 * never cut by them. The check runs at most a quarter of the timeout apart (Node's 30 s would let a trickler stay
 * 40 s).
 */
export function serverTimeouts(limits: Pick<ConnectionLimits, 'headersTimeoutMs' | 'requestTimeoutMs'>): {
  headersTimeout: number
  requestTimeout: number
  connectionsCheckingInterval: number
} {
  const headersTimeout = limits.headersTimeoutMs
  return {
    headersTimeout,
    // Node refuses headersTimeout > requestTimeout.
    requestTimeout: Math.max(limits.requestTimeoutMs ?? 30_000, headersTimeout),
    connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(headersTimeout / 4))),
  }
}

/** Applies the caps to `server` and counts what they refuse. Call before the server listens. */
export function limitConnections(server: Server, options: { limits: ConnectionLimits; registry: Registry; log: Logger }): void {
  const { maxConnectionsPerAddress, maxConnections } = options.limits
  const perAddress = new Map<string, number>()
  let open = 0
  const refused = new Counter({
    name: 'rackboot_http_connections_refused_total',
    help: 'HTTP connections reset on arrival because a cap was reached (per-address, total)',
    labelNames: ['reason'] as const,
    registers: [options.registry],
  })
  const timedOut = new Counter({
    name: 'rackboot_http_request_timeouts_total',
    help: 'HTTP connections closed because the client did not send its request in time (headers or body)',
    registers: [options.registry],
  })
  new Gauge({
    name: 'rackboot_http_connections_open',
    help: 'Open HTTP connections',
    registers: [options.registry],
    collect() {
      this.set(open)
    },
  })

  // One line a minute at most: a flood must not turn into a flood of log lines.
  let lastWarn = 0
  let unlogged = 0
  const warn = (reason: string, address: string | undefined) => {
    unlogged++
    const now = Date.now()
    if (now - lastWarn < 60_000) return
    lastWarn = now
    options.log.warn({ reason, address, refused: unlogged, maxConnectionsPerAddress, maxConnections }, 'HTTP connection refused: connection cap reached')
    unlogged = 0
  }

  // The total cap is net.Server's own: past it the accepted handle is closed before a Socket even exists.
  server.maxConnections = maxConnections
  server.on('drop', (data?: { remoteAddress?: string }) => {
    refused.inc({ reason: 'total' })
    warn('total', clientAddress(data?.remoteAddress) ?? undefined)
  })

  // Before node:http's own connection listener: a refused socket is destroyed before anything is read from it.
  server.prependListener('connection', (socket: Socket) => {
    // No address: a Unix socket, or a peer already gone (Node closes it shortly); they share one bucket.
    const address = clientAddress(socket.remoteAddress) ?? 'unknown'
    const n = perAddress.get(address) ?? 0
    if (n >= maxConnectionsPerAddress) {
      refused.inc({ reason: 'per-address' })
      warn('per-address', address)
      // A reset leaves nothing behind on our side (no FIN handshake, no TIME_WAIT).
      socket.resetAndDestroy()
      return
    }
    perAddress.set(address, n + 1)
    open++
    socket.once('close', () => {
      open--
      const left = (perAddress.get(address) ?? 1) - 1
      if (left <= 0) perAddress.delete(address)
      else perAddress.set(address, left)
    })
  })

  server.on('clientError', (err: NodeJS.ErrnoException) => {
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') timedOut.inc()
  })
}
