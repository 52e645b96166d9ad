// Sockets only: bind, decode, dispatch to the mode's handler, encode, send where RFC 2131 §4.1 says. It knows no
// machines and no leases. A datagram that fails anywhere is counted and logged; the socket handler never throws.
//
// Node's dgram has no IP_PKTINFO or SO_BINDTODEVICE, so a broadcast's incoming interface is unknown. We bind the
// wildcard address (which alone receives 255.255.255.255 broadcasts) and, beside it, the server's own address on the
// same port: replies go out from that socket, so their source is the server id and a limited broadcast leaves
// through the interface that owns the address (from the wildcard socket Linux has no route for it without a
// default route: ENETUNREACH). Unicast to the server address (relays, renewals) also arrives on that socket.
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import { lookup as dnsLookup } from 'node:dns'
import { isIPv4 } from 'node:net'
import type { Logger } from '../log.js'
import { encode, tryDecode, type DhcpPacket } from './codec.js'
import type { RequestMeta } from './facts.js'
import type { DhcpHandler, DhcpReply } from './handler.js'
import { cappedBufferMessage, createKernelDropTracker, DEFAULT_RECEIVE_BUFFER_BYTES, receiveBufferOf, type ProcSource } from './kernel-drops.js'
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
  /** DISCOVERs waiting to be handled before the oldest is shed under overload (default 1024). */
  maxQueuedDiscovers?: number
  /** Requests begun per turn of the event loop before the sockets are read again (default: all that are queued). */
  perTurn?: number
  /**
   * SO_RCVBUF asked for each socket (default 8 MiB; 0: the kernel default, ~208 KiB). What a stall of the event loop
   * can absorb: a boot storm's DISCOVERs arriving meanwhile wait in it instead of being dropped.
   */
  receiveBufferBytes?: number
  /** Where kernel drops are read from (tests). */
  proc?: ProcSource
}

export interface DhcpSockets {
  start(): Promise<{ port: number; bootServerPort: number | null }>
  /** Closes the sockets and waits for requests in flight (at most a few seconds). */
  stop(): Promise<void>
}

// Replies always go to address literals: answer dgram's per-send lookup at once instead of through dns.lookup's
// deferred callback (one tick and a bound function per reply, measurable in a boot storm).
const literalLookup = ((host: string, family: unknown, cb: (err: Error | null, address: string, family: number) => void) => {
  if (isIPv4(host)) cb(null, host, 4)
  else dnsLookup(host, 4, cb)
}) as unknown as NonNullable<Parameters<typeof createSocket>[0] & object>['lookup']

function bindSocket(address: string, port: number, recvBufferSize: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createSocket({ type: 'udp4', reuseAddr: true, lookup: literalLookup, ...(recvBufferSize > 0 ? { recvBufferSize } : {}) })
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

interface Queued {
  packet: DhcpPacket
  type: string
  rinfo: RemoteInfo
  localPort: number
  /** performance.now() when read (no BigInt per datagram, as process.hrtime.bigint() would allocate). */
  started: number
}

/** A queue with O(1) shift: a head index into an array that is compacted once half of it is consumed. */
class Fifo<T> {
  private items: T[] = []
  private head = 0
  get length(): number {
    return this.items.length - this.head
  }
  push(item: T): void {
    this.items.push(item)
  }
  clear(): void {
    this.items = []
    this.head = 0
  }
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined
    const item = this.items[this.head]
    this.items[this.head++] = undefined as T
    if (this.head > 64 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return item
  }
}

export function createDhcpSockets(deps: DhcpSocketsDeps): DhcpSockets {
  const { handler, metrics, log } = deps
  const now = deps.now ?? Date.now
  let main: Socket | null = null
  let own: Socket | null = null
  let boot: Socket | null = null
  let port = deps.port
  let bootPort: number | null = null
  // Requests begun and not yet finished, for stop() to wait on: a count and a waiter, not a Set of promises with a
  // finally() each (two promises and two Set operations per datagram).
  let inFlight = 0
  let idle: (() => void) | null = null
  const finished = (): void => {
    if (--inFlight === 0 && idle) idle()
  }
  const recvBuffer = deps.receiveBufferBytes ?? DEFAULT_RECEIVE_BUFFER_BYTES
  // Datagrams the kernel dropped (receive buffer full) are counted from /proc at each scrape: rackboot never sees them.
  const kernelDrops = createKernelDropTracker({
    onDrops: (count) => metrics.dropped('kernel', count),
    log,
    ...(deps.proc ? { proc: deps.proc } : {}),
  })
  let stopSampling: (() => void) | null = null
  let warnedCapped = false
  const bind = async (address: string, bindPort: number, name: string): Promise<Socket> => {
    const sock = await bindSocket(address, bindPort, recvBuffer)
    const buffer = receiveBufferOf(sock, recvBuffer)
    metrics.receiveBuffer?.(name, buffer.granted)
    if (buffer.capped && !warnedCapped) {
      warnedCapped = true
      log.warn({ socket: name, requested: buffer.requested, granted: buffer.granted }, cappedBufferMessage('dhcp', buffer))
    }
    kernelDrops.track(sock, name)
    return sock
  }

  const send = (sock: Socket, buf: Buffer, dest: Destination, type: string): void => {
    sock.send(buf, dest.port, dest.address, (err) => {
      if (err) {
        metrics.dropped('send-error')
        log.warn({ err, to: `${dest.address}:${dest.port}`, type }, 'dhcp send failed')
      } else metrics.replied(type)
    })
  }

  const handleDatagram = async (q: Queued): Promise<void> => {
    const { packet: req, type, rinfo, localPort, started } = q
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
      metrics.handled(type, (performance.now() - started) / 1e3)
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

  // Boot storms: what one poll of the sockets has read is handled in the next turn of the event loop, REQUESTs
  // (exchanges already begun) before DISCOVERs (new ones). Past that, the overload is left to the kernel: a full
  // socket buffer drops datagrams for free, while reading more than can be handled and shedding it here costs the
  // reads (measured: handing out only 8 or 16 per turn lost 20-30% of the DORA rate to reads of DISCOVERs shed
  // later). `perTurn` can still bound a turn, and the queues are bounded all the same: the oldest waiting DISCOVER
  // is shed first (its client retransmits).
  const maxDiscovers = deps.maxQueuedDiscovers ?? 1024
  const maxUrgent = 4 * maxDiscovers
  // A turn's work is counted in requests, not timed: a handler's synchronous part ends at its first await, and the
  // rest runs as microtasks right after the turn, before the sockets are polled again.
  const perTurn = deps.perTurn ?? Number.POSITIVE_INFINITY
  const urgent = new Fifo<Queued>()
  const discovers = new Fifo<Queued>()
  let scheduled = false

  const dispatch = (q: Queued): void => {
    inFlight++
    handleDatagram(q).then(finished, (err: unknown) => {
      finished()
      metrics.dropped('handler-error')
      log.error({ err }, 'dhcp datagram failed')
    })
  }

  const turn = (): void => {
    scheduled = false
    for (let n = 0; n < perTurn; n++) {
      const q = urgent.shift() ?? discovers.shift()
      if (!q) return
      try {
        dispatch(q)
      } catch (err) {
        metrics.dropped('handler-error')
        log.error({ err }, 'dhcp datagram failed')
      }
    }
    if (urgent.length > 0 || discovers.length > 0) schedule()
  }
  const schedule = (): void => {
    if (scheduled) return
    scheduled = true
    setImmediate(turn)
  }

  const onMessage = (localPort: () => number) => (buf: Buffer, rinfo: RemoteInfo) => {
    const started = performance.now()
    try {
      // dgram gives every datagram a buffer of its own: decode may keep views into it.
      const decoded = tryDecode(buf, true)
      if (!decoded.ok) {
        metrics.dropped(`malformed:${decoded.reason}`)
        if (log.isLevelEnabled('debug')) log.debug({ from: rinfo.address, bytes: buf.length, reason: decoded.reason }, 'dhcp malformed datagram dropped')
        return
      }
      const code = getMessageType(decoded.packet.options)
      const type = messageName(code)
      metrics.received(type)
      const q: Queued = { packet: decoded.packet, type, rinfo, localPort: localPort(), started }
      if (code === MessageType.Discover && q.localPort === port) {
        if (discovers.length >= maxDiscovers) {
          discovers.shift()
          metrics.dropped('overload')
        }
        discovers.push(q)
      } else if (urgent.length >= maxUrgent) {
        metrics.dropped('overload') // a flood of non-DISCOVERs: no queue grows without bound
        return
      } else urgent.push(q)
      schedule()
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
      main = await bind(deps.listen, deps.port, 'main')
      port = main.address().port
      main.on('message', onMessage(() => port))
      main.on('error', onSocketError('main'))
      if (deps.serverAddress && deps.listen === ZERO && deps.serverAddress !== ZERO) {
        try {
          own = await bind(deps.serverAddress, port, 'server-address')
          own.on('message', onMessage(() => port))
          own.on('error', onSocketError('server-address'))
        } catch (err) {
          log.warn({ err, address: deps.serverAddress }, 'dhcp cannot bind the server address; replies leave from the wildcard socket')
          own = null
        }
      }
      if (deps.bootServerPort !== undefined && deps.bootServerPort !== null) {
        boot = await bind(deps.listen, deps.bootServerPort, 'boot-server')
        bootPort = boot.address().port
        boot.on('message', onMessage(() => bootPort ?? -1))
        boot.on('error', onSocketError('boot-server'))
      }
      stopSampling = metrics.onScrape?.(() => kernelDrops.sample()) ?? null
      log.info({ listen: deps.listen, port, serverAddress: deps.serverAddress, bootServerPort: bootPort, mode: handler.mode, receiveBufferBytes: recvBuffer }, 'dhcp listening')
      return { port, bootServerPort: bootPort }
    },
    async stop() {
      const socks = [main, own, boot].filter((s): s is Socket => s !== null)
      main = own = boot = null
      // What the kernel dropped up to now still counts.
      for (const s of socks) kernelDrops.untrack(s)
      stopSampling?.()
      stopSampling = null
      // Not yet begun: dropped with the sockets, as if they had arrived a moment later.
      urgent.clear()
      discovers.clear()
      await Promise.all(socks.map(closeSocket))
      if (inFlight > 0) {
        await Promise.race([new Promise<void>((r) => (idle = r)), new Promise((r) => setTimeout(r, 5_000).unref())])
        idle = null
      }
    },
  }
}
