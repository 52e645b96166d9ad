// The `talos.logging.kernel` receiver: Talos sends its kernel log as JSON lines, one object per line over TCP
// (tcp://host:port/, one long-lived connection per machine) or one object per datagram over UDP (udp://...).
// Every line goes to the store under the sender's IP; what cannot be used is dropped and counted. Nothing here
// throws out of a socket handler.
//
// Senders are not authenticated, so each peer address gets a line rate (a token bucket per transport: spoofed UDP
// from a machine's address cannot slow its TCP stream). Over the rate, UDP lines are dropped; a TCP connection is
// no longer read until tokens come back, so the kernel's socket buffers hold the rest and nothing is lost (Talos
// waits up to 5 s per line and then resends it).
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram'
import { createServer, isIPv6, type Server, type Socket } from 'node:net'
import { RackbootError } from '../../errors.js'
import type { Logger } from '../../log.js'
import type { Registry } from '../../metrics.js'
import { parseKernelLogLine, type KernelLogDropReason, type KernelLogTransport } from './kernel-log-line.js'
import type { KernelLogStore } from './kernel-log-store.js'
import { LineSplitter } from './line-splitter.js'
import { createKernelLogMetrics } from './metrics.js'
import { normalizeIp } from './peer.js'
import { createPeerRateLimiter } from './rate-limiter.js'

/** Lines per second per peer address and transport (settings talos.kernelLogLinesPerSecond). */
export const DEFAULT_KERNEL_LOG_LINES_PER_SECOND = 500
/** Open TCP connections per peer address: Talos holds one; the rest cover reconnects while an old one lingers. */
export const DEFAULT_KERNEL_LOG_CONNECTIONS_PER_PEER = 16
/** Peer addresses whose rate is tracked; past it the least recently seen is forgotten (it starts a full bucket). */
export const DEFAULT_KERNEL_LOG_RATE_PEERS = 16_384

export interface KernelLogReceiverDeps {
  /** Address to bind both sockets to: '0.0.0.0', '::' or one IP. */
  listen: string
  /** TCP port (0: any free port); null: no TCP listener. */
  tcpPort: number | null
  /** UDP port (0: any free port); null: no UDP listener. */
  udpPort: number | null
  log: Logger
  metrics: Registry
  store: Pick<KernelLogStore, 'append'>
  /** Longest line or datagram accepted (default 16 KiB; a kmsg record is at most about 1 KiB of text). */
  maxLineBytes?: number
  /** Open TCP connections allowed; more are closed at once (default 16,384: one per running machine). */
  maxConnections?: number
  /** Open TCP connections one peer address may hold; more are closed at once (default 16). */
  maxConnectionsPerPeer?: number
  /** Lines one peer address may send per second on each transport (default 500). */
  linesPerSecond?: number
  /** Lines a peer may send at once before the rate applies (default twice linesPerSecond). */
  lineBurst?: number
  /** Peer addresses whose rate is remembered (default 16,384). */
  maxRatePeers?: number
  /** A TCP connection silent this long is closed (default 1 h; Talos reconnects when it next has a line). */
  idleTimeoutMs?: number
  now?: () => number
}

export interface KernelLogReceiverStats {
  lines: { tcp: number; udp: number }
  /** By `<transport>_<reason>`. */
  dropped: Record<string, number>
  connections: number
  /** Connections closed at once, for either reason below. */
  refusedConnections: number
  refusedPerPeer: number
  /** Times a TCP connection was paused for its peer's line rate; `throttledConnections` are paused now. */
  throttled: number
  throttledConnections: number
  /** Bytes held for unfinished lines and lines waiting for their rate, over all connections. */
  bufferedBytes: number
}

export interface KernelLogReceiver {
  start(): Promise<{ address: string; tcpPort: number | null; udpPort: number | null }>
  stop(): Promise<void>
  stats(): KernelLogReceiverStats
}

type Transport = KernelLogTransport
type DropReason = KernelLogDropReason | 'unterminated' | 'rate' | 'store_error'

/** One TCP connection: its line splitter and the lines that wait for its peer's rate while it is paused. */
interface Connection {
  peer: string
  splitter: LineSplitter
  waiting: string[]
  /** Index of the first waiting line not yet taken. */
  next: number
  waitingChars: number
  timer: NodeJS.Timeout | null
}

export function createKernelLogReceiver(deps: KernelLogReceiverDeps): KernelLogReceiver {
  const log = deps.log.child({ svc: 'talos-kmsg' })
  const metrics = createKernelLogMetrics(deps.metrics)
  const maxLineBytes = deps.maxLineBytes ?? 16 * 1024
  const maxConnections = deps.maxConnections ?? 16_384
  const maxPerPeer = deps.maxConnectionsPerPeer ?? DEFAULT_KERNEL_LOG_CONNECTIONS_PER_PEER
  const idleTimeoutMs = deps.idleTimeoutMs ?? 60 * 60_000
  const now = deps.now ?? Date.now
  const linesPerSecond = deps.linesPerSecond ?? DEFAULT_KERNEL_LOG_LINES_PER_SECOND
  const burst = deps.lineBurst ?? 2 * linesPerSecond
  const limiter = createPeerRateLimiter({ ratePerSecond: linesPerSecond, burst, maxKeys: deps.maxRatePeers ?? DEFAULT_KERNEL_LOG_RATE_PEERS, now })
  // A paused connection is read again once about 100 ms of tokens are back, not at every single token.
  const resumeTokens = Math.max(1, Math.min(burst, Math.ceil(linesPerSecond / 10)))
  // What one paused connection may hold: the rest of the chunk being split when the tokens ran out (a socket read is
  // at most 64 KiB) and the line that chunk finished. More only comes from a sender ignoring the pause.
  const maxWaitingChars = 64 * 1024 + maxLineBytes
  const stats = { lines: { tcp: 0, udp: 0 }, dropped: {} as Record<string, number>, refusedConnections: 0, refusedPerPeer: 0, throttled: 0 }
  const sockets = new Map<Socket, Connection>()
  const perPeer = new Map<string, number>()
  let tcp: Server | null = null
  let udp: UdpSocket | null = null

  function drop(transport: Transport, reason: DropReason, peer: string): void {
    const key = `${transport}_${reason}`
    stats.dropped[key] = (stats.dropped[key] ?? 0) + 1
    metrics.dropped.inc({ transport, reason })
    // Debug only: one misbehaving sender must not flood the log; the counter shows it.
    log.debug({ peer, transport, reason }, 'kernel log line dropped')
  }

  /** Parses and stores one line that its peer's rate allowed. */
  function accept(transport: Transport, peer: string, text: string): void {
    const parsed = parseKernelLogLine(text, now())
    if (!parsed.ok) {
      drop(transport, parsed.reason, peer)
      return
    }
    try {
      deps.store.append(peer, parsed.record, transport)
    } catch (err) {
      drop(transport, 'store_error', peer)
      log.warn({ err, peer }, 'kernel log store failed')
      return
    }
    stats.lines[transport]++
    metrics.lines.inc({ transport })
  }

  function refuse(socket: Socket, reason: 'total' | 'peer'): void {
    stats.refusedConnections++
    if (reason === 'peer') stats.refusedPerPeer++
    metrics.refused.inc({ reason })
    socket.on('error', () => {})
    socket.destroy()
  }

  /** A complete TCP line: stored now if the peer's rate allows and nothing waits before it, else it waits. */
  function offer(socket: Socket, conn: Connection, text: string): void {
    if (text.trim() === '') return
    if (conn.next === conn.waiting.length && limiter.take(`tcp ${conn.peer}`)) {
      accept('tcp', conn.peer, text)
      return
    }
    if (conn.waitingChars + text.length > maxWaitingChars) {
      drop('tcp', 'rate', conn.peer)
      return
    }
    conn.waiting.push(text)
    conn.waitingChars += text.length
    if (!conn.timer) {
      socket.pause()
      stats.throttled++
      metrics.throttled.inc()
      log.debug({ peer: conn.peer }, 'kernel log connection throttled')
      schedule(socket, conn)
    }
  }

  function schedule(socket: Socket, conn: Connection): void {
    const wanted = Math.min(conn.waiting.length - conn.next, resumeTokens)
    // At least 1 ms; at most 1 s, so a clock that jumps (or a test's fake one) is looked at again soon.
    const delay = Math.min(1000, Math.max(1, limiter.msUntil(`tcp ${conn.peer}`, wanted)))
    conn.timer = setTimeout(() => drainWaiting(socket, conn), delay)
  }

  function drainWaiting(socket: Socket, conn: Connection): void {
    conn.timer = null
    try {
      while (conn.next < conn.waiting.length && limiter.take(`tcp ${conn.peer}`)) {
        const text = conn.waiting[conn.next] as string
        conn.waiting[conn.next++] = ''
        conn.waitingChars -= text.length
        accept('tcp', conn.peer, text)
      }
    } catch (err) {
      log.error({ err, peer: conn.peer }, 'kernel log connection handler failed')
    }
    if (conn.next < conn.waiting.length) {
      schedule(socket, conn)
      return
    }
    conn.waiting = []
    conn.next = 0
    conn.waitingChars = 0
    socket.resume()
  }

  function onConnection(socket: Socket): void {
    const peer = normalizeIp(socket.remoteAddress ?? 'unknown')
    if (sockets.size >= maxConnections) {
      refuse(socket, 'total')
      return
    }
    const held = perPeer.get(peer) ?? 0
    if (held >= maxPerPeer) {
      refuse(socket, 'peer')
      return
    }
    perPeer.set(peer, held + 1)
    const conn: Connection = {
      peer,
      splitter: new LineSplitter(maxLineBytes, {
        line: (text) => offer(socket, conn, text),
        tooLong: () => drop('tcp', 'too_long', peer),
      }),
      waiting: [],
      next: 0,
      waitingChars: 0,
      timer: null,
    }
    sockets.set(socket, conn)
    metrics.connections.inc()
    // Keepalive finds machines that were powered off without closing their connection.
    socket.setKeepAlive(true, 60_000)
    socket.setTimeout(idleTimeoutMs, () => socket.destroy())
    socket.on('data', (chunk: Buffer) => {
      try {
        conn.splitter.push(chunk)
      } catch (err) {
        log.error({ err, peer }, 'kernel log connection handler failed')
      }
    })
    socket.on('error', (err) => log.debug({ err, peer }, 'kernel log connection error'))
    socket.on('close', () => {
      if (conn.timer) clearTimeout(conn.timer)
      conn.timer = null
      // Lines still waiting for the rate are lost with the connection.
      for (let i = conn.next; i < conn.waiting.length; i++) drop('tcp', 'rate', peer)
      conn.waiting = []
      if (conn.splitter.end()) drop('tcp', 'unterminated', peer)
      sockets.delete(socket)
      const left = (perPeer.get(peer) ?? 1) - 1
      if (left > 0) perPeer.set(peer, left)
      else perPeer.delete(peer)
      metrics.connections.dec()
    })
  }

  function onDatagram(message: Buffer, rinfo: RemoteInfo): void {
    const peer = normalizeIp(rinfo.address)
    try {
      if (message.length > maxLineBytes) {
        drop('udp', 'too_long', peer)
        return
      }
      const text = message.toString('utf8')
      if (text.trim() === '') return
      if (!limiter.take(`udp ${peer}`)) {
        drop('udp', 'rate', peer)
        return
      }
      accept('udp', peer, text)
    } catch (err) {
      log.error({ err, peer }, 'kernel log datagram handler failed')
    }
  }

  async function listenTcp(port: number): Promise<number> {
    const server = createServer({ noDelay: true }, onConnection)
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ host: deps.listen, port, exclusive: true }, () => {
        server.off('error', reject)
        resolve()
      })
    })
    server.on('error', (err) => log.error({ err }, 'kernel log TCP listener error'))
    tcp = server
    const address = server.address()
    return typeof address === 'object' && address ? address.port : port
  }

  async function listenUdp(port: number): Promise<number> {
    const socket = createSocket({ type: isIPv6(deps.listen) ? 'udp6' : 'udp4' })
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject)
      socket.bind({ address: deps.listen, port, exclusive: true }, () => {
        socket.off('error', reject)
        resolve()
      })
    })
    socket.on('error', (err) => log.error({ err }, 'kernel log UDP socket error'))
    socket.on('message', onDatagram)
    udp = socket
    return socket.address().port
  }

  async function close(): Promise<void> {
    const server = tcp
    const socket = udp
    tcp = null
    udp = null
    for (const [s, conn] of sockets) {
      if (conn.timer) clearTimeout(conn.timer)
      conn.timer = null
      s.destroy()
    }
    await Promise.all([
      server ? new Promise<void>((resolve) => server.close(() => resolve())) : undefined,
      socket ? new Promise<void>((resolve) => socket.close(() => resolve())) : undefined,
    ])
  }

  return {
    async start() {
      if (tcp || udp) throw new RackbootError('RB_ERR_INTERNAL', 'kernel log receiver already started')
      try {
        const tcpPort = deps.tcpPort === null ? null : await listenTcp(deps.tcpPort)
        const udpPort = deps.udpPort === null ? null : await listenUdp(deps.udpPort)
        log.info({ address: deps.listen, tcpPort, udpPort }, 'Talos kernel log receiver listening')
        return { address: deps.listen, tcpPort, udpPort }
      } catch (err) {
        await close()
        throw new RackbootError('RB_ERR_INTERNAL', `cannot listen for Talos kernel logs on ${deps.listen}`, { cause: err })
      }
    },

    stop: close,

    stats(): KernelLogReceiverStats {
      let bufferedBytes = 0
      let throttledConnections = 0
      for (const conn of sockets.values()) {
        bufferedBytes += conn.splitter.buffered + conn.waitingChars
        if (conn.timer) throttledConnections++
      }
      return {
        lines: { ...stats.lines },
        dropped: { ...stats.dropped },
        connections: sockets.size,
        refusedConnections: stats.refusedConnections,
        refusedPerPeer: stats.refusedPerPeer,
        throttled: stats.throttled,
        throttledConnections,
        bufferedBytes,
      }
    },
  }
}
