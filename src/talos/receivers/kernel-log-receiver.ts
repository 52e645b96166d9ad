// The `talos.logging.kernel` receiver: Talos sends its kernel log as JSON lines, one object per line over TCP
// (tcp://host:port/, one long-lived connection per machine) or one object per datagram over UDP (udp://...).
// Every line goes to the store under the sender's IP; what cannot be used is dropped and counted. Nothing here
// throws out of a socket handler.
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram'
import { createServer, isIPv6, type Server, type Socket } from 'node:net'
import { RackbootError } from '../../errors.js'
import type { Logger } from '../../log.js'
import type { Registry } from '../../metrics.js'
import { parseKernelLogLine, type KernelLogDropReason } from './kernel-log-line.js'
import type { KernelLogStore } from './kernel-log-store.js'
import { LineSplitter } from './line-splitter.js'
import { createKernelLogMetrics } from './metrics.js'
import { normalizeIp } from './peer.js'

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
  /** A TCP connection silent this long is closed (default 1 h; Talos reconnects when it next has a line). */
  idleTimeoutMs?: number
  now?: () => number
}

export interface KernelLogReceiverStats {
  lines: { tcp: number; udp: number }
  dropped: Record<string, number>
  connections: number
  refusedConnections: number
  /** Bytes held for unfinished lines over all connections (at most maxLineBytes each). */
  bufferedBytes: number
}

export interface KernelLogReceiver {
  start(): Promise<{ address: string; tcpPort: number | null; udpPort: number | null }>
  stop(): Promise<void>
  stats(): KernelLogReceiverStats
}

type Transport = 'tcp' | 'udp'
type DropReason = KernelLogDropReason | 'unterminated' | 'store_error'

export function createKernelLogReceiver(deps: KernelLogReceiverDeps): KernelLogReceiver {
  const log = deps.log.child({ svc: 'talos-kmsg' })
  const metrics = createKernelLogMetrics(deps.metrics)
  const maxLineBytes = deps.maxLineBytes ?? 16 * 1024
  const maxConnections = deps.maxConnections ?? 16_384
  const idleTimeoutMs = deps.idleTimeoutMs ?? 60 * 60_000
  const now = deps.now ?? Date.now
  const stats = { lines: { tcp: 0, udp: 0 }, dropped: {} as Record<string, number>, refusedConnections: 0 }
  const sockets = new Map<Socket, LineSplitter>()
  let tcp: Server | null = null
  let udp: UdpSocket | null = null

  function drop(transport: Transport, reason: DropReason, peer: string): void {
    const key = `${transport}_${reason}`
    stats.dropped[key] = (stats.dropped[key] ?? 0) + 1
    metrics.dropped.inc({ transport, reason })
    // Debug only: one misbehaving sender must not flood the log; the counter shows it.
    log.debug({ peer, transport, reason }, 'kernel log line dropped')
  }

  function accept(transport: Transport, peer: string, text: string): void {
    if (text.trim() === '') return
    const parsed = parseKernelLogLine(text, now())
    if (!parsed.ok) {
      drop(transport, parsed.reason, peer)
      return
    }
    try {
      deps.store.append(peer, parsed.record)
    } catch (err) {
      drop(transport, 'store_error', peer)
      log.warn({ err, peer }, 'kernel log store failed')
      return
    }
    stats.lines[transport]++
    metrics.lines.inc({ transport })
  }

  function onConnection(socket: Socket): void {
    const peer = normalizeIp(socket.remoteAddress ?? 'unknown')
    if (sockets.size >= maxConnections) {
      stats.refusedConnections++
      metrics.refused.inc()
      socket.on('error', () => {})
      socket.destroy()
      return
    }
    const splitter = new LineSplitter(maxLineBytes, {
      line: (text) => accept('tcp', peer, text),
      tooLong: () => drop('tcp', 'too_long', peer),
    })
    sockets.set(socket, splitter)
    metrics.connections.inc()
    // Keepalive finds machines that were powered off without closing their connection.
    socket.setKeepAlive(true, 60_000)
    socket.setTimeout(idleTimeoutMs, () => socket.destroy())
    socket.on('data', (chunk: Buffer) => {
      try {
        splitter.push(chunk)
      } catch (err) {
        log.error({ err, peer }, 'kernel log connection handler failed')
      }
    })
    socket.on('error', (err) => log.debug({ err, peer }, 'kernel log connection error'))
    socket.on('close', () => {
      if (splitter.end()) drop('tcp', 'unterminated', peer)
      sockets.delete(socket)
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
      accept('udp', peer, message.toString('utf8'))
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
    for (const s of sockets.keys()) s.destroy()
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
      for (const splitter of sockets.values()) bufferedBytes += splitter.buffered
      return {
        lines: { ...stats.lines },
        dropped: { ...stats.dropped },
        connections: sockets.size,
        refusedConnections: stats.refusedConnections,
        bufferedBytes,
      }
    },
  }
}
