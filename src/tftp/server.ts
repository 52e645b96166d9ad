// TFTP sockets: the server port (RRQs), one ephemeral socket per transfer (RFC 1350 transfer IDs), the limits on
// concurrent transfers, counters. Handlers never throw: each datagram is handled, counted or dropped, and the loop
// carries on.
//
// An RRQ costs its sender one datagram and the server a slot, two sockets and retransmissions, so the slots are
// guarded (issue 13: 500 RRQs that never ACK made every firmware get "server busy" for half a minute): one address
// holds at most maxTransfersPerClient of them; a transfer whose client never ACKs gives up after unackedRetries;
// and when all slots are taken, a new request takes the slot of the oldest transfer that has heard nothing from its
// client for a while, so a flood from many (possibly spoofed) addresses cannot starve a firmware that answers.
import { createSocket, type Socket, type RemoteInfo } from 'node:dgram'
import { isIPv6 } from 'node:net'
import { networkInterfaces } from 'node:os'
import type { Logger } from '../log.js'
import type { Registry } from '../metrics.js'
import { RackbootError } from '../errors.js'
import { Opcode, ErrorCode, ackBlock, decode, encodeError, encodeOack, type DropReason, type RequestPacket } from './packet.js'
import { negotiate, type NegotiationLimits } from './options.js'
import { isDenied, readPackets, type TftpClient, type TftpContent, type TftpSource } from './source.js'
import { Transfer, netasciiContent, systemClock, type TransferClock, type TransferResult } from './transfer.js'
import { createTftpMetrics, type TftpMetrics } from './metrics.js'
import { createBusyPoller, type BusyPoller } from './busy-poll.js'
import { cappedBufferMessage, createKernelDropTracker, DEFAULT_RECEIVE_BUFFER_BYTES, receiveBufferOf } from '../dhcp/kernel-drops.js'
import { createPacketCache } from './packet-cache.js'

/** The slice of settings.tftp the server reads. */
export interface TftpServerSettings extends NegotiationLimits {
  listen: string
  port: number
  maxTransfers: number
  /** Transfers one client address may have open at once (default 4). */
  maxTransfersPerClient?: number
  /** Retransmissions before a transfer's first ACK; then it is dropped (default 1). See transfer.ts. */
  unackedRetries?: number
  maxRetries: number
  /** Busy-poll budget after each DATA sent, in microseconds (0: off; default 1000). See busy-poll.ts. */
  busyPollMicros?: number
  /** Memory for boot files kept as ready packets, in MiB (0: off; default 128). See packet-cache.ts. */
  cacheMiB?: number
  /** SO_RCVBUF of the server-port sockets (default 8 MiB; 0: the kernel default). See dhcp/kernel-drops.ts. */
  receiveBufferBytes?: number
}

export interface TftpTransferInfo {
  client: TftpClient
  file: string
  /** Payload bytes the client acknowledged. */
  bytes: number
  ms: number
  ok: boolean
  error?: string
  /** 0 when the request was refused before any transfer started. */
  blksize: number
  windowsize: number
  /** The client ended it (an ERROR from the client); a normal event, e.g. OVMF's tsize probe. */
  aborted?: boolean
}

/** The boot-timeline port: the lead wires it to the lifecycle (client address → lease → machine). */
export interface TftpObserver {
  transferFinished(info: TftpTransferInfo): void
}

export interface TftpServerDeps {
  settings: TftpServerSettings
  source: TftpSource
  log: Logger
  metrics: Registry
  observer?: TftpObserver
  clock?: TransferClock
}

export interface TftpStats {
  activeTransfers: number
  started: number
  completed: number
  aborted: number
  failed: number
  rejected: number
  bytesSent: number
  retransmissions: number
  dropped: Record<string, number>
}

export interface TftpServer {
  start(): Promise<{ address: string; port: number }>
  stop(): Promise<void>
  stats(): TftpStats
}

type ServerDropReason = DropReason | 'unexpected_opcode' | 'unknown_tid' | 'duplicate_request' | 'bad_port' | 'internal'

interface ActiveTransfer {
  key: string
  client: TftpClient
  file: string
  /** Set once the transfer runs; while null the request is still being opened. */
  transfer: Transfer | null
  /** When the transfer sent its first packet (clock.now()); 0 while opening. */
  startedAt: number
  sockets: { data: Socket; guard: Socket } | null
}

// dgram resolves every destination through dns.lookup (a tick per datagram); transfer peers are always IP
// literals, so answer at once.
function literalLookup(address: string, _family: unknown, callback: (err: Error | null, address: string, family: number) => void): void {
  callback(null, address, isIPv6(address) ? 6 : 4)
}

/** How often the server-port sockets' kernel drops are read from /proc. */
const KERNEL_DROPS_INTERVAL_MS = 5_000

function bindSocket(address: string, port: number, reuseAddr: boolean, recvBufferSize = 0): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // IPv6 sockets are IPv6 only: IPv4 clients have sockets of their own (a dual-stack socket would name them
    // ::ffff:a.b.c.d, another key for the per-client limit and the lease lookup).
    const v6 = isIPv6(address)
    const socket = createSocket({ type: v6 ? 'udp6' : 'udp4', ...(v6 ? { ipv6Only: true } : {}), reuseAddr, lookup: literalLookup as never, ...(recvBufferSize > 0 ? { recvBufferSize } : {}) })
    const onError = (err: Error) => {
      socket.close()
      reject(err)
    }
    socket.once('error', onError)
    socket.bind({ address, port, exclusive: true }, () => {
      socket.off('error', onError)
      resolve(socket)
    })
  })
}

function connectSocket(socket: Socket, client: TftpClient): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject)
    socket.connect(client.port, client.address, () => {
      socket.off('error', reject)
      resolve()
    })
  })
}

/**
 * The two sockets of one transfer, sharing one local port (the server's TID). `data` is connected to the client,
 * so the kernel hands it only the client's datagrams and sends without a route lookup per block; `guard` gets
 * every datagram from anyone else (the kernel prefers the connected socket for the client's own), and answers
 * them with ERROR 5 as RFC 1350 asks.
 */
async function openTransferSockets(localAddress: string, client: TftpClient): Promise<{ data: Socket; guard: Socket }> {
  const guard = await bindSocket(localAddress, 0, true)
  let data: Socket | null = null
  try {
    data = await bindSocket(localAddress, guard.address().port, true)
    await connectSocket(data, client)
    return { data, guard }
  } catch (err) {
    await Promise.all([closeSocket(guard), data ? closeSocket(data) : Promise.resolve()])
    throw err
  }
}

function closeSocket(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve())
    } catch {
      resolve() // already closed
    }
  })
}

/**
 * A transfer that has heard nothing from its client this long may give its slot to a new request when all are
 * taken. A client on the provisioning LAN acknowledges the first packet within milliseconds, so by then the
 * transfer is most likely a flood's; the grace keeps a boot storm from evicting transfers whose first ACK is on
 * its way.
 */
export const EVICT_GRACE_MS = 200

/**
 * Floor of a windowed transfer's round-trip timeout (transfer.ts, "Windows that fit the client"): a window's lost
 * tail costs this long instead of retransmitMs. A LAN round trip is well under a millisecond; the floor leaves room
 * for a slow firmware, and a spurious retransmission costs only one window.
 */
export const WINDOW_MIN_TIMEOUT_MS = 50

/**
 * The local addresses of one family a per-address socket is bound to. IPv6 link-local addresses are left to the
 * wildcard: binding one needs its interface's scope, and boot-file URLs name a global address (dhcp6.serverAddress).
 */
function localAddresses(family: 'IPv4' | 'IPv6'): string[] {
  const out: string[] = []
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === family && !/^fe[89ab]/i.test(a.address)) out.push(a.address)
  }
  return out
}

/** What `tftp.listen` binds: '0.0.0.0' every IPv4 address, '::' every address of both families, else one address. */
function listenPlan(listen: string): { wildcard: string; family: 'IPv4' | 'IPv6' }[] | null {
  if (listen === '0.0.0.0') return [{ wildcard: '0.0.0.0', family: 'IPv4' }]
  if (listen === '::') return [{ wildcard: '0.0.0.0', family: 'IPv4' }, { wildcard: '::', family: 'IPv6' }]
  return null
}

export function createTftpServer(deps: TftpServerDeps): TftpServer {
  const { settings, source } = deps
  const log = deps.log.child({ svc: 'tftp' })
  const m: TftpMetrics = createTftpMetrics(deps.metrics)
  const clock = deps.clock ?? systemClock
  /** By client ip:port, in order of arrival (Map order), which eviction relies on. */
  const transfers = new Map<string, ActiveTransfer>()
  /** Entries (opening or running) per client address, for maxTransfersPerClient. */
  const perClient = new Map<string, number>()
  const perClientLimit = settings.maxTransfersPerClient ?? 4
  const evictGraceMs = Math.min(EVICT_GRACE_MS, settings.retransmitMs)
  const mainSockets: Socket[] = []
  let running = false
  let poller: BusyPoller | null = null
  const cache = createPacketCache({ maxBytes: (settings.cacheMiB ?? 128) * 1024 * 1024, onLookup: (result) => m.cacheLookups.inc({ result }) })

  /**
   * Ready packets for cacheable file content (octet mode only: netascii content is converted per transfer). The
   * request that misses streams from disk while the cache entry is built from the same open file, so `content`
   * comes back with a close() that waits for that read.
   */
  async function cachedPackets(content: TftpContent, blksize: number, tlog: Logger): Promise<{ packets: readonly Buffer[] | null; content: TftpContent }> {
    const { identity, size } = content
    if (identity === undefined || size === null) return { packets: null, content }
    const warn = (err: unknown) => tlog.warn({ err }, 'tftp cannot cache the file; sending it from disk')
    const { packets, built } = cache.lookup(identity, size, blksize, () => readPackets(content, 0, size, blksize))
    if (built !== null) {
      void built.then((err) => err !== null && warn(err))
      return { packets: null, content: { ...content, close: () => built.then(() => content.close()) } }
    }
    try {
      return { packets: packets ? await packets : null, content }
    } catch (err) {
      warn(err)
      return { packets: null, content }
    }
  }
  let bound: { address: string; port: number } | null = null
  const counts = { started: 0, completed: 0, aborted: 0, failed: 0, rejected: 0, bytesSent: 0, retransmissions: 0 }
  const dropped: Record<string, number> = {}

  function drop(reason: ServerDropReason): void {
    dropped[reason] = (dropped[reason] ?? 0) + 1
    m.dropped.inc({ reason })
  }

  // RRQs the kernel dropped on the server-port sockets (receive buffer full), read from /proc every few seconds
  // and when the server stops: reason "kernel".
  const recvBuffer = settings.receiveBufferBytes ?? DEFAULT_RECEIVE_BUFFER_BYTES
  const kernelDrops = createKernelDropTracker({
    onDrops(count) {
      dropped.kernel = (dropped.kernel ?? 0) + count
      m.dropped.inc({ reason: 'kernel' }, count)
    },
    log,
  })
  let kernelTimer: NodeJS.Timeout | null = null
  let warnedCapped = false
  async function bindMain(address: string, port: number, reuseAddr: boolean): Promise<Socket> {
    const socket = await bindSocket(address, port, reuseAddr, recvBuffer)
    const buffer = receiveBufferOf(socket, recvBuffer)
    if (buffer.capped && !warnedCapped) {
      warnedCapped = true
      log.warn({ address, requested: buffer.requested, granted: buffer.granted }, cappedBufferMessage('tftp', buffer))
    }
    kernelDrops.track(socket, address)
    return socket
  }

  function claim(entry: ActiveTransfer): void {
    transfers.set(entry.key, entry)
    perClient.set(entry.client.address, (perClient.get(entry.client.address) ?? 0) + 1)
  }

  /** Frees the entry's slots; every entry is released exactly once, when its transfer ends or never starts. */
  function release(entry: ActiveTransfer): void {
    if (transfers.get(entry.key) === entry) transfers.delete(entry.key)
    const n = (perClient.get(entry.client.address) ?? 1) - 1
    if (n > 0) perClient.set(entry.client.address, n)
    else perClient.delete(entry.client.address)
  }

  /**
   * Ends the oldest (Map order is arrival order) transfer that has heard nothing from its client for the grace
   * period; false if there is none. A scan of at most maxTransfers entries, only when all slots are taken.
   */
  function evictStale(): boolean {
    const now = clock.now()
    for (const entry of transfers.values()) {
      const t = entry.transfer
      if (t === null || !t.awaitingFirstAck) continue
      if (now - entry.startedAt < evictGraceMs) continue
      // Quietly, as for no-ack: the client never showed it is listening. finished() releases the slot now.
      t.cancel('evicted: no acknowledgement while the server was full', false, 'evicted')
      return true
    }
    return false
  }

  // Refusals come in floods; one warning per reason and interval says so without a line per datagram.
  const lastWarned = new Map<string, { at: number; suppressed: number }>()
  function warnRefusal(reason: string, fields: Record<string, unknown>, message: string): void {
    const now = clock.now()
    const w = lastWarned.get(reason)
    if (w && now - w.at < 10_000) {
      w.suppressed++
      return
    }
    log.warn({ ...fields, suppressed: w?.suppressed ?? 0 }, message)
    lastWarned.set(reason, { at: now, suppressed: 0 })
  }

  function notify(info: TftpTransferInfo): void {
    if (!deps.observer) return
    try {
      deps.observer.transferFinished(info)
    } catch (err) {
      log.error({ err }, 'tftp observer failed')
    }
  }

  function reject(socket: Socket, client: TftpClient, file: string, code: number, message: string, result: string, started: number): void {
    counts.rejected++
    m.requests.inc({ result })
    try {
      socket.send(encodeError(code, message), client.port, client.address)
    } catch (err) {
      log.debug({ err }, 'tftp cannot send an error reply')
    }
    notify({ client, file, bytes: 0, ms: clock.now() - started, ok: false, error: message, blksize: 0, windowsize: 0 })
  }

  function onMainMessage(socket: Socket, localAddress: string, msg: Buffer, rinfo: RemoteInfo): void {
    try {
      if (msg.length < 4) return drop('short')
      if (rinfo.port === 0) return drop('bad_port') // nothing can be sent back to port 0
      const decoded = decode(msg)
      if (!decoded.ok) return drop(decoded.reason)
      const p = decoded.packet
      const client = { address: rinfo.address, port: rinfo.port }
      if (p.op === Opcode.RRQ) {
        handleRequest(socket, localAddress, p, client).catch((err: unknown) => {
          log.error({ err, peer: `${client.address}:${client.port}` }, 'tftp request failed')
        })
      } else if (p.op === Opcode.WRQ) {
        reject(socket, client, p.filename, ErrorCode.ACCESS_VIOLATION, 'write requests are not accepted', 'write_refused', clock.now())
      } else {
        drop('unexpected_opcode')
      }
    } catch (err) {
      drop('internal')
      log.error({ err }, 'tftp datagram handling failed')
    }
  }

  async function handleRequest(mainSocket: Socket, localAddress: string, req: RequestPacket, client: TftpClient): Promise<void> {
    const started = clock.now()
    const key = `${client.address}:${client.port}`
    const file = req.filename
    const existing = transfers.get(key)
    if (existing) {
      // A retransmitted RRQ while its transfer still waits for the first ACK: that transfer retransmits on its
      // own, and a second one from another port would race it.
      if (existing.file === file && (existing.transfer === null || existing.transfer.awaitingFirstAck)) {
        m.requests.inc({ result: 'duplicate' })
        return drop('duplicate_request')
      }
      // The client has moved on from its earlier transfer; end it quietly (an ERROR from that port could reach
      // the client before the new transfer's first packet and look like an answer to the new request).
      existing.transfer?.cancel('superseded by a new request from the same port', false)
    }
    if (req.mode !== 'octet' && req.mode !== 'netascii') {
      return reject(mainSocket, client, file, ErrorCode.ILLEGAL_OPERATION, `unsupported transfer mode '${req.mode}'`, 'bad_mode', started)
    }
    // Both limits are checked before anything is opened, so a refusal costs one ERROR datagram.
    if ((perClient.get(client.address) ?? 0) >= perClientLimit) {
      warnRefusal('per_client', { peer: key, file, limit: perClientLimit }, 'tftp per-client transfer limit reached')
      return reject(mainSocket, client, file, ErrorCode.NOT_DEFINED, `too many transfers from your address (${perClientLimit}), retry later`, 'per_client', started)
    }
    if (transfers.size >= settings.maxTransfers && !evictStale()) {
      warnRefusal('busy', { peer: key, file, limit: settings.maxTransfers }, 'tftp transfer limit reached')
      return reject(mainSocket, client, file, ErrorCode.NOT_DEFINED, `server busy: ${settings.maxTransfers} transfers in progress, retry later`, 'busy', started)
    }
    const entry: ActiveTransfer = { key, client, file, transfer: null, startedAt: 0, sockets: null }
    claim(entry)
    const tlog = log.child({ peer: key, file })
    let content: TftpContent | null = null
    try {
      const opened = await source.open(file, client)
      if (opened === null) {
        tlog.debug('tftp file not found')
        return reject(mainSocket, client, file, ErrorCode.FILE_NOT_FOUND, 'File not found', 'not_found', started)
      }
      if (isDenied(opened)) {
        tlog.info({ reason: opened.denied }, 'tftp request denied')
        return reject(mainSocket, client, file, ErrorCode.ACCESS_VIOLATION, opened.denied, 'denied', started)
      }
      content = opened
      if (req.mode === 'netascii') {
        const converted = await netasciiContent(content)
        if ('tooLarge' in converted) {
          return reject(mainSocket, client, file, ErrorCode.NOT_DEFINED, 'file too large for netascii mode', 'error', started)
        }
        content = converted
      }
      if (!running || transfers.get(key) !== entry) return // stopped, or superseded while opening
      const neg = negotiate(req.options, settings, content.size)
      const cached = await cachedPackets(content, neg.blksize, tlog)
      content = cached.content
      const packets = cached.packets
      if (!running || transfers.get(key) !== entry) return
      const sockets = await openTransferSockets(localAddress, client)
      entry.sockets = sockets
      if (!running || transfers.get(key) !== entry) return // the finally block closes the sockets
      const { data, guard } = sockets
      const own = content
      const lockStep = neg.windowsize === 1
      const transfer = new Transfer({
        content: own,
        blksize: neg.blksize,
        windowsize: neg.windowsize,
        timeoutMs: neg.timeoutMs,
        backoff: !neg.clientTimeout,
        maxRetries: settings.maxRetries,
        unackedRetries: settings.unackedRetries ?? 1,
        unackedTimeoutMs: settings.retransmitMs,
        oack: neg.oack.size > 0 ? encodeOack(neg.oack) : null,
        clock,
        ...(packets ? { packets } : {}),
        adaptive: { minTimeoutMs: Math.min(WINDOW_MIN_TIMEOUT_MS, settings.retransmitMs) },
        // No callback: a failed send is a lost datagram, which the retransmission timer already covers. The
        // try keeps a send on a socket closed under us (stop) from throwing out of a timer.
        send: (packet) => {
          try {
            data.send(packet)
            // Only lock-step waits a round trip per block; a window's sender has the next window to prepare.
            if (lockStep) poller?.expectReply()
          } catch {
            // closed
          }
        },
        onFinish: (result) => finished(entry, own, result, neg.blksize, neg.windowsize, started, tlog),
      })
      entry.transfer = transfer
      content = null // owned by the transfer now
      data.on('message', (msg) => onTransferMessage(transfer, msg))
      data.on('error', (err: NodeJS.ErrnoException) => {
        // On a connected socket an ICMP port unreachable surfaces here: the client has gone away.
        if (err.code === 'ECONNREFUSED') transfer.cancel('client port unreachable', false)
        else tlog.debug({ err }, 'tftp transfer socket error')
      })
      guard.on('message', (msg, rinfo) => onForeignDatagram(guard, rinfo))
      guard.on('error', (err) => tlog.debug({ err }, 'tftp transfer socket error'))
      counts.started++
      m.started.inc()
      m.requests.inc({ result: 'accepted' })
      m.active.set(countActive())
      tlog.debug({ blksize: neg.blksize, windowsize: neg.windowsize, timeoutMs: neg.timeoutMs, size: own.size }, 'tftp transfer started')
      entry.startedAt = clock.now()
      transfer.start()
    } catch (err) {
      tlog.error({ err }, 'tftp request failed')
      if (running) reject(mainSocket, client, file, ErrorCode.NOT_DEFINED, 'internal server error', 'error', started)
    } finally {
      if (entry.transfer === null) {
        release(entry)
        if (entry.sockets) await Promise.all([closeSocket(entry.sockets.data), closeSocket(entry.sockets.guard)])
      }
      if (content !== null) await content.close().catch((err: unknown) => tlog.warn({ err }, 'tftp content close failed'))
    }
  }

  function countActive(): number {
    let n = 0
    for (const t of transfers.values()) if (t.transfer !== null && !t.transfer.finished) n++
    return n
  }

  function onForeignDatagram(guard: Socket, rinfo: RemoteInfo): void {
    // RFC 1350: a datagram from another TID gets an ERROR and leaves the transfer alone.
    drop('unknown_tid')
    try {
      guard.send(encodeError(ErrorCode.UNKNOWN_TID, 'Unknown transfer ID'), rinfo.port, rinfo.address)
    } catch (err) {
      log.debug({ err }, 'tftp cannot answer a foreign TID')
    }
  }

  function onTransferMessage(transfer: Transfer, msg: Buffer): void {
    try {
      const block = ackBlock(msg)
      if (block >= 0) return transfer.handleAck(block)
      if (msg.length < 4) return drop('short')
      const decoded = decode(msg)
      if (!decoded.ok) return drop(decoded.reason)
      if (decoded.packet.op === Opcode.ERROR) return transfer.handleError(decoded.packet.code, decoded.packet.message)
      drop('unexpected_opcode')
    } catch (err) {
      drop('internal')
      log.error({ err }, 'tftp transfer datagram handling failed')
    }
  }

  function finished(entry: ActiveTransfer, content: TftpContent, r: TransferResult, blksize: number, windowsize: number, started: number, tlog: Logger): void {
    release(entry)
    if (entry.sockets) {
      void closeSocket(entry.sockets.data)
      void closeSocket(entry.sockets.guard)
    }
    content.close().catch((err: unknown) => tlog.warn({ err }, 'tftp content close failed'))
    const ms = clock.now() - started
    const result = r.ok ? 'ok' : r.aborted ? 'aborted' : r.outcome.replace('-', '_')
    if (r.ok) counts.completed++
    else if (r.aborted) counts.aborted++
    else counts.failed++
    counts.bytesSent += r.bytesSent
    counts.retransmissions += r.retransmissions
    m.finished.inc({ result })
    m.bytesSent.inc(r.bytesSent)
    if (r.retransmissions > 0) m.retransmissions.inc(r.retransmissions)
    m.duration.observe({ result }, ms / 1000)
    m.active.set(countActive())
    const fields = { bytes: r.bytes, ms: Math.round(ms), blksize, windowsize, retransmissions: r.retransmissions, readWaits: r.readWaits, error: r.error }
    if (r.ok) tlog.info(fields, 'tftp transfer complete')
    else if (r.aborted) tlog.info(fields, 'tftp transfer aborted by client')
    else if (r.outcome === 'cancelled') tlog.info(fields, 'tftp transfer cancelled')
    // Silent senders come in floods: counted, and logged only at debug.
    else if (r.outcome === 'no-ack') tlog.debug(fields, 'tftp transfer dropped: no acknowledgement')
    else if (r.outcome === 'evicted') tlog.debug(fields, 'tftp transfer evicted: no acknowledgement while full')
    else tlog.warn(fields, 'tftp transfer failed')
    const info: TftpTransferInfo = { client: entry.client, file: entry.file, bytes: r.bytes, ms, ok: r.ok, blksize, windowsize }
    if (r.error !== undefined) info.error = r.error
    if (r.aborted) info.aborted = true
    notify(info)
  }

  async function start(): Promise<{ address: string; port: number }> {
    if (running) throw new RackbootError('RB_ERR_INTERNAL', 'TFTP server already started')
    const listen = settings.listen
    const serveOn = (s: Socket, address: string) => {
      mainSockets.push(s)
      s.on('message', (msg, rinfo) => onMainMessage(s, address, msg, rinfo))
    }
    try {
      const plan = listenPlan(listen)
      if (plan) {
        // Node cannot tell which address a datagram on a wildcard socket was sent to, yet the transfer socket
        // should answer from that address (PXE ROMs check it). So each local address gets a socket of its own
        // on the same port (the kernel delivers to the most specific one) and each family's wildcard catches the
        // rest.
        let port = settings.port
        for (const { wildcard, family } of plan) {
          const w = await bindMain(wildcard, port, true)
          port = w.address().port
          serveOn(w, wildcard)
          for (const address of localAddresses(family)) {
            try {
              serveOn(await bindMain(address, port, true), address)
            } catch (err) {
              log.debug({ err, address }, 'tftp cannot bind a per-address socket; the wildcard socket serves it')
            }
          }
        }
        bound = { address: listen, port }
      } else {
        const s = await bindMain(listen, settings.port, false)
        serveOn(s, listen)
        bound = { address: listen, port: s.address().port }
      }
    } catch (err) {
      for (const s of mainSockets) kernelDrops.untrack(s)
      await Promise.all(mainSockets.splice(0).map(closeSocket))
      throw new RackbootError('RB_ERR_INTERNAL', `cannot listen for TFTP on ${listen}:${settings.port}`, { cause: err })
    }
    for (const s of mainSockets) s.on('error', (err) => log.error({ err }, 'tftp server socket error'))
    running = true
    poller = createBusyPoller({ budgetMicros: settings.busyPollMicros ?? 1000 })
    if (kernelDrops.size > 0) {
      kernelTimer = setInterval(() => kernelDrops.sample(), KERNEL_DROPS_INTERVAL_MS)
      kernelTimer.unref()
    }
    log.info({ ...bound, sockets: mainSockets.length, receiveBufferBytes: recvBuffer }, 'tftp server listening')
    return bound
  }

  async function stop(): Promise<void> {
    if (!running) return
    running = false
    poller?.stop()
    poller = null
    if (kernelTimer) clearInterval(kernelTimer)
    kernelTimer = null
    for (const s of mainSockets) kernelDrops.untrack(s)
    await Promise.all(mainSockets.splice(0).map(closeSocket))
    const closing: Promise<void>[] = []
    for (const entry of [...transfers.values()]) {
      if (entry.transfer) entry.transfer.cancel('server shutting down')
      if (entry.sockets) closing.push(closeSocket(entry.sockets.data), closeSocket(entry.sockets.guard))
    }
    await Promise.all(closing)
    log.info('tftp server stopped')
  }

  function stats(): TftpStats {
    return { activeTransfers: countActive(), ...counts, dropped: { ...dropped } }
  }

  return { start, stop, stats }
}
