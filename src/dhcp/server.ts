// Sockets only: bind, decode, dispatch to the mode's handler, encode, send where RFC 2131 §4.1 says. It knows no
// machines and no leases. A datagram that fails anywhere is counted and logged; the socket handler never throws.
//
// Node's dgram has no IP_PKTINFO or SO_BINDTODEVICE, so a broadcast's incoming interface is unknown. We bind the
// wildcard address (which alone receives 255.255.255.255 broadcasts) and, beside it, the server's own address on the
// same port: replies go out from that socket, so their source is the server id and a limited broadcast leaves
// through the interface that owns the address (from the wildcard socket Linux has no route for it without a
// default route: ENETUNREACH). Unicast to the server address (relays, renewals) also arrives on that socket.
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import type { Logger } from '../log.js'
import { encode, tryDecode, type DhcpPacket } from './codec.js'
import type { RequestMeta } from './facts.js'
import type { DhcpHandler, DhcpReply } from './handler.js'
import type { DhcpMetrics } from './metrics.js'
import { MessageType, getMessageType, messageName } from './options.js'

const ZERO = '0.0.0.0'
const BROADCAST = '255.255.255.255'

export interface Destination {
  address: string
  port: number
  broadcast: boolean
}

export interface DestinationOptions {
  /** Port relays listen on (the server port, 67). */
  relayPort: number
  /** Port clients listen on (68). */
  clientPort: number
  /** The request arrived on the PXE boot-server port: answer the sender where it is. */
  bootServerRequest: boolean
}

/** Where a reply goes (RFC 2131 §4.1, and the PXE boot-server rule for 4011). */
export function replyDestination(req: DhcpPacket, reply: DhcpPacket, meta: RequestMeta, o: DestinationOptions): Destination {
  if (o.bootServerRequest) return { address: meta.source.address, port: meta.source.port, broadcast: false }
  if (req.giaddr !== ZERO) return { address: req.giaddr, port: o.relayPort, broadcast: false }
  const isNak = getMessageType(reply.options) === MessageType.Nak
  if (!isNak && req.ciaddr !== ZERO) return { address: req.ciaddr, port: o.clientPort, broadcast: false }
  // No address to unicast to: without ARP injection (not possible from Node) a client with no address is reached
  // by broadcast, whether or not it set the broadcast bit.
  return { address: BROADCAST, port: o.clientPort, broadcast: true }
}

export interface DhcpSocketsDeps {
  handler: DhcpHandler
  /** Address to bind for broadcasts (0.0.0.0). */
  listen: string
  /** DHCP server port (67; 0 picks a free port, for tests). */
  port: number
  /** Client port replies go to (68; default: 68 when port is 67, else port + 1). */
  clientPort?: number
  /** The server's own address: bound beside the wildcard socket, and the source of every reply. */
  serverAddress: string | null
  /** Also listen on the PXE boot-server port (ProxyDHCP). */
  bootServerPort?: number | null
  metrics: DhcpMetrics
  log: Logger
  now?: () => number
}

export interface DhcpSockets {
  start(): Promise<{ port: number; bootServerPort: number | null }>
  /** Closes the sockets and waits for requests in flight (at most a few seconds). */
  stop(): Promise<void>
}

function bindSocket(address: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createSocket({ type: 'udp4', reuseAddr: true })
    const onError = (err: Error) => {
      s.close()
      reject(err)
    }
    s.once('error', onError)
    s.bind({ address, port, exclusive: true }, () => {
      s.off('error', onError)
      try {
        s.setBroadcast(true)
      } catch {
        // not fatal: unicast replies still work
      }
      resolve(s)
    })
  })
}

function closeSocket(s: Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      s.close(() => resolve())
    } catch {
      resolve()
    }
  })
}

export function createDhcpSockets(deps: DhcpSocketsDeps): DhcpSockets {
  const { handler, metrics, log } = deps
  const now = deps.now ?? Date.now
  let main: Socket | null = null
  let own: Socket | null = null
  let boot: Socket | null = null
  let port = deps.port
  let bootPort: number | null = null
  const inFlight = new Set<Promise<void>>()

  const send = (sock: Socket, buf: Buffer, dest: Destination, type: string): void => {
    sock.send(buf, dest.port, dest.address, (err) => {
      if (err) {
        metrics.dropped('send-error')
        log.warn({ err, to: `${dest.address}:${dest.port}`, type }, 'dhcp send failed')
      } else metrics.replied(type)
    })
  }

  const handleDatagram = async (buf: Buffer, rinfo: RemoteInfo, localPort: number, started: bigint): Promise<void> => {
    const decoded = tryDecode(buf)
    if (!decoded.ok) {
      metrics.dropped(`malformed:${decoded.reason}`)
      if (log.isLevelEnabled('debug')) log.debug({ from: rinfo.address, bytes: buf.length, reason: decoded.reason }, 'dhcp malformed datagram dropped')
      return
    }
    const req = decoded.packet
    const type = messageName(getMessageType(req.options))
    metrics.received(type)
    const bootServerRequest = bootPort !== null && localPort === bootPort
    const meta: RequestMeta = { source: { address: rinfo.address, port: rinfo.port }, localPort, receivedAt: now(), bootServer: bootServerRequest }
    let result
    try {
      result = await handler.handle(req, meta)
    } catch (err) {
      metrics.dropped('handler-error')
      log.error({ err, xid: req.xid, type }, 'dhcp handler failed')
      return
    } finally {
      metrics.handled(type, Number(process.hrtime.bigint() - started) / 1e9)
    }
    if (result.kind === 'ignore') {
      metrics.dropped(result.reason)
      if (log.isLevelEnabled('debug')) log.debug({ xid: req.xid, type, reason: result.reason, detail: result.detail }, 'dhcp request not answered')
      return
    }
    if (result.kind === 'silent') return
    const reply: DhcpReply = result
    const dest = replyDestination(req, reply.packet, meta, {
      relayPort: port,
      clientPort: deps.clientPort ?? (port === 67 ? 68 : port + 1),
      bootServerRequest,
    })
    let bytes: Buffer
    try {
      bytes = encode(reply.packet, reply.maxSize !== undefined ? { maxSize: reply.maxSize } : {})
    } catch (err) {
      metrics.dropped('encode-error')
      log.error({ err, xid: req.xid, type: reply.type }, 'dhcp reply could not be encoded')
      return
    }
    const sock = bootServerRequest ? boot : (own ?? main)
    if (!sock) return // stopped meanwhile
    send(sock, bytes, dest, reply.type)
    if (log.isLevelEnabled('debug')) {
      log.debug({ xid: req.xid, type: reply.type, to: `${dest.address}:${dest.port}`, yiaddr: reply.packet.yiaddr, file: reply.packet.file }, 'dhcp reply sent')
    }
  }

  const onMessage = (localPort: () => number) => (buf: Buffer, rinfo: RemoteInfo) => {
    const started = process.hrtime.bigint()
    try {
      const p = handleDatagram(buf, rinfo, localPort(), started).catch((err: unknown) => {
        metrics.dropped('handler-error')
        log.error({ err }, 'dhcp datagram failed')
      })
      inFlight.add(p)
      void p.finally(() => inFlight.delete(p))
    } catch (err) {
      metrics.dropped('handler-error')
      log.error({ err }, 'dhcp datagram failed')
    }
  }

  const onSocketError = (name: string) => (err: Error) => {
    // Keep serving: a socket error (e.g. ICMP-driven) is logged, not fatal.
    log.warn({ err, socket: name }, 'dhcp socket error')
  }

  return {
    async start() {
      main = await bindSocket(deps.listen, deps.port)
      port = main.address().port
      main.on('message', onMessage(() => port))
      main.on('error', onSocketError('main'))
      if (deps.serverAddress && deps.listen === ZERO && deps.serverAddress !== ZERO) {
        try {
          own = await bindSocket(deps.serverAddress, port)
          own.on('message', onMessage(() => port))
          own.on('error', onSocketError('server-address'))
        } catch (err) {
          log.warn({ err, address: deps.serverAddress }, 'dhcp cannot bind the server address; replies leave from the wildcard socket')
          own = null
        }
      }
      if (deps.bootServerPort !== undefined && deps.bootServerPort !== null) {
        boot = await bindSocket(deps.listen, deps.bootServerPort)
        bootPort = boot.address().port
        boot.on('message', onMessage(() => bootPort ?? -1))
        boot.on('error', onSocketError('boot-server'))
      }
      log.info({ listen: deps.listen, port, serverAddress: deps.serverAddress, bootServerPort: bootPort, mode: handler.mode }, 'dhcp listening')
      return { port, bootServerPort: bootPort }
    },
    async stop() {
      const socks = [main, own, boot].filter((s): s is Socket => s !== null)
      main = own = boot = null
      await Promise.all(socks.map(closeSocket))
      const pending = [...inFlight]
      if (pending.length > 0) {
        await Promise.race([Promise.allSettled(pending), new Promise((r) => setTimeout(r, 5_000).unref())])
      }
    },
  }
}
