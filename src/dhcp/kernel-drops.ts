// What the kernel drops before rackboot reads it. A UDP server that stalls (a GC pause, a slow disk write, a burst
// bigger than the socket buffer) loses datagrams in the kernel, and nothing in the process sees them: the per-socket
// `drops` column of /proc/net/udp (sk_drops: receive buffer full, or memory) is the only honest count. Read per
// socket, found by inode (/proc/self/fd/N -> socket:[inode]), and turned into counter increments by differences.
// /proc/net/snmp's Udp RcvbufErrors says the same for the whole network namespace (every UDP socket, other programs
// included), so it is its own metric rather than part of any one server's drops.
//
// Also here: SO_RCVBUF. dgram's recvBufferSize asks for a buffer; Linux grants at most net.core.rmem_max (root
// could force more with SO_RCVBUFFORCE, which Node cannot set) and reports twice what it granted (room for its
// bookkeeping, socket(7)). The granted size is read back so a capped buffer is said once, with the sysctl to fix it.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import type { Socket } from 'node:dgram'
import { endianness } from 'node:os'
import { Counter, type Registry } from 'prom-client'
import type { Logger } from '../log.js'

/** The receive buffer asked for when the settings say nothing: a few seconds of a boot storm's DHCP traffic. */
export const DEFAULT_RECEIVE_BUFFER_BYTES = 8 * 1024 * 1024

export interface ProcUdpSocket {
  inode: string
  localAddress: string
  localPort: number
  /** Bytes waiting in the receive queue. */
  rxQueueBytes: number
  /** Datagrams the kernel dropped for this socket since it was created. */
  drops: number
}

// /proc prints an address as the in-memory words of the network-order value, in host order: reverse the bytes of
// each 32-bit word on a little-endian host.
function procAddress(hex: string, littleEndian: boolean): string | null {
  if (!/^[0-9A-Fa-f]+$/.test(hex) || (hex.length !== 8 && hex.length !== 32)) return null
  const bytes: number[] = []
  for (let w = 0; w < hex.length; w += 8) {
    const word = [0, 2, 4, 6].map((i) => parseInt(hex.slice(w + i, w + i + 2), 16))
    bytes.push(...(littleEndian ? word.reverse() : word))
  }
  if (bytes.length === 4) return bytes.join('.')
  const groups: string[] = []
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16))
  return groups.join(':')
}

/**
 * The sockets of /proc/net/udp or /proc/net/udp6 (same layout):
 * `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ref pointer drops`.
 * Lines that do not parse are skipped.
 */
export function parseProcNetUdp(text: string, littleEndian = endianness() === 'LE'): ProcUdpSocket[] {
  const out: ProcUdpSocket[] = []
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/)
    if (f.length < 13 || !/^\d+:$/.test(f[0]!)) continue
    const [addrHex, portHex] = f[1]!.split(':')
    const queues = f[4]!.split(':')
    const localAddress = addrHex ? procAddress(addrHex, littleEndian) : null
    const localPort = portHex && /^[0-9A-Fa-f]{4}$/.test(portHex) ? parseInt(portHex, 16) : NaN
    const rxQueueBytes = queues.length === 2 && /^[0-9A-Fa-f]+$/.test(queues[1]!) ? parseInt(queues[1]!, 16) : NaN
    const inode = f[9]!
    const drops = /^\d+$/.test(f[12]!) ? Number(f[12]) : NaN
    if (localAddress === null || !Number.isFinite(localPort) || !Number.isFinite(rxQueueBytes) || !/^\d+$/.test(inode) || !Number.isFinite(drops)) continue
    out.push({ inode, localAddress, localPort, rxQueueBytes, drops })
  }
  return out
}

/** The `Udp:` counters of /proc/net/snmp (a header line of names, then a line of values), or null without them. */
export function parseUdpSnmp(text: string): Record<string, number> | null {
  const lines = text.split('\n').filter((l) => l.startsWith('Udp:'))
  if (lines.length < 2) return null
  const names = lines[0]!.split(/\s+/).slice(1)
  const values = lines[1]!.split(/\s+/).slice(1)
  if (names.length === 0 || names.length !== values.length) return null
  const out: Record<string, number> = {}
  names.forEach((n, i) => {
    const v = Number(values[i])
    if (Number.isFinite(v)) out[n] = v
  })
  return out
}

/** Where /proc is read from (tests give captured text). Every method answers null or [] when it cannot. */
export interface ProcSource {
  read(path: string): string | null
  /** readlink of /proc/self/fd/<fd>. */
  fdLink(fd: number): string | null
  /** The fd numbers of this process. */
  fds(): number[]
}

export const systemProc: ProcSource = {
  read(path) {
    try {
      return readFileSync(path, 'utf8')
    } catch {
      return null
    }
  },
  fdLink(fd) {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`)
    } catch {
      return null
    }
  },
  fds() {
    try {
      return readdirSync('/proc/self/fd').map(Number).filter(Number.isInteger)
    } catch {
      return []
    }
  },
}

/** The file descriptor under a bound dgram socket (Node keeps it on the internal handle; null if that changes). */
export function socketFd(socket: Socket): number | null {
  const sym = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'state symbol')
  const state = sym ? (socket as unknown as Record<symbol, { handle?: { fd?: unknown } } | undefined>)[sym] : undefined
  const fd = state?.handle?.fd
  return typeof fd === 'number' && fd >= 0 ? fd : null
}

const SOCKET_LINK = /^socket:\[(\d+)\]$/

/**
 * The inode of a bound dgram socket: through its fd, or else the one socket of this process in /proc/net/udp(6)
 * bound to the same address and port.
 */
export function socketInode(socket: Socket, proc: ProcSource = systemProc): string | null {
  const fd = socketFd(socket)
  if (fd !== null) {
    const m = SOCKET_LINK.exec(proc.fdLink(fd) ?? '')
    if (m) return m[1]!
  }
  let local: { address: string; port: number }
  try {
    local = socket.address()
  } catch {
    return null
  }
  const mine = new Set<string>()
  for (const n of proc.fds()) {
    const m = SOCKET_LINK.exec(proc.fdLink(n) ?? '')
    if (m) mine.add(m[1]!)
  }
  const rows = [...parseProcNetUdp(proc.read('/proc/net/udp') ?? ''), ...parseProcNetUdp(proc.read('/proc/net/udp6') ?? '')]
  const hits = rows.filter((r) => mine.has(r.inode) && r.localPort === local.port && r.localAddress === local.address)
  return hits.length === 1 ? hits[0]!.inode : null
}

export interface KernelDropTracker {
  /** Starts counting this bound socket's kernel drops (from now). False when its inode cannot be found. */
  track(socket: Socket, label: string): boolean
  /** Counts what the socket dropped so far, then forgets it (before it is closed). */
  untrack(socket: Socket): void
  /** Reads /proc and reports new drops; at most once per minIntervalMs unless forced. */
  sample(force?: boolean): void
  readonly size: number
}

export interface KernelDropTrackerDeps {
  /** New kernel drops of one tracked socket since the last sample. */
  onDrops(count: number, label: string): void
  /** Reads closer together than this are skipped (default 1000 ms): a scrape storm cannot make /proc reads a cost. */
  minIntervalMs?: number
  now?: () => number
  proc?: ProcSource
  log?: Logger
}

export function createKernelDropTracker(deps: KernelDropTrackerDeps): KernelDropTracker {
  const proc = deps.proc ?? systemProc
  const now = deps.now ?? Date.now
  const minInterval = deps.minIntervalMs ?? 1000
  const tracked = new Map<Socket, { inode: string; label: string; last: number }>()
  let lastRead = Number.NEGATIVE_INFINITY

  const rows = (): Map<string, ProcUdpSocket> => {
    const byInode = new Map<string, ProcUdpSocket>()
    for (const r of parseProcNetUdp(proc.read('/proc/net/udp') ?? '')) byInode.set(r.inode, r)
    // udp6 only when a tracked socket is not in udp (rackboot's sockets are udp4).
    if ([...tracked.values()].some((t) => !byInode.has(t.inode))) {
      for (const r of parseProcNetUdp(proc.read('/proc/net/udp6') ?? '')) byInode.set(r.inode, r)
    }
    return byInode
  }

  const collect = (only?: Socket): void => {
    const byInode = rows()
    for (const [socket, t] of tracked) {
      if (only && socket !== only) continue
      const row = byInode.get(t.inode)
      if (!row) continue
      const delta = row.drops - t.last
      t.last = row.drops
      if (delta > 0) deps.onDrops(delta, t.label)
    }
  }

  return {
    track(socket, label) {
      const inode = socketInode(socket, proc)
      if (inode === null) {
        deps.log?.debug({ socket: label }, 'kernel drops: socket not found in /proc; its drops are not counted')
        return false
      }
      const row = parseProcNetUdp(proc.read('/proc/net/udp') ?? '').find((r) => r.inode === inode)
        ?? parseProcNetUdp(proc.read('/proc/net/udp6') ?? '').find((r) => r.inode === inode)
      tracked.set(socket, { inode, label, last: row?.drops ?? 0 })
      return true
    },
    untrack(socket) {
      if (!tracked.has(socket)) return
      try {
        collect(socket)
      } finally {
        tracked.delete(socket)
      }
    },
    sample(force = false) {
      if (tracked.size === 0) return
      const t = now()
      if (!force && t - lastRead < minInterval) return
      lastRead = t
      collect()
    },
    get size() {
      return tracked.size
    },
  }
}

export interface ReceiveBuffer {
  requested: number
  /** What the kernel granted (half of what getsockopt reports on Linux). */
  granted: number
  /** Granted less than requested: net.core.rmem_max is lower. */
  capped: boolean
}

/** The receive buffer a bound socket got, against what was asked (0 asked: the kernel default, never capped). */
export function receiveBufferOf(socket: Socket, requested: number): ReceiveBuffer {
  let reported: number
  try {
    reported = socket.getRecvBufferSize()
  } catch {
    return { requested, granted: 0, capped: false }
  }
  // Linux reports twice what it granted to a setsockopt, and the default (net.core.rmem_default) as it is.
  const granted = process.platform === 'linux' && requested > 0 ? Math.floor(reported / 2) : reported
  return { requested, granted, capped: requested > 0 && granted < requested }
}

/** The warning for a capped buffer, with the fix. */
export function cappedBufferMessage(what: string, b: ReceiveBuffer): string {
  return `${what} socket receive buffer is ${b.granted} bytes, ${b.requested} were asked for: the kernel caps it at `
    + `net.core.rmem_max. Datagrams that arrive while the server is busy are dropped once it is full (counted in the `
    + `reason="kernel" drops). Fix: sysctl -w net.core.rmem_max=${b.requested} (persist it in /etc/sysctl.d/)`
}

const UDP_RCVBUF_ERRORS = 'rackboot_udp_receive_buffer_errors_total'

/**
 * rackboot_udp_receive_buffer_errors_total: Udp RcvbufErrors of /proc/net/snmp since this process registered it,
 * read at each scrape. Network-namespace wide (with host networking: the host's, every program's UDP sockets).
 */
export function registerUdpReceiveErrors(registry: Registry, proc: ProcSource = systemProc): void {
  if (registry.getSingleMetric(UDP_RCVBUF_ERRORS)) return
  const read = (): number | null => parseUdpSnmp(proc.read('/proc/net/snmp') ?? '')?.RcvbufErrors ?? null
  let last = read()
  new Counter({
    name: UDP_RCVBUF_ERRORS,
    help: 'UDP datagrams the kernel dropped because a receive buffer was full (Udp RcvbufErrors in /proc/net/snmp), for every UDP socket of the network namespace, since rackboot started; per-socket counts are rackboot_dhcp_dropped_total{reason="kernel"} and rackboot_tftp_dropped_datagrams_total{reason="kernel"}',
    registers: [registry],
    collect() {
      const v = read()
      if (v === null) return
      if (last !== null && v > last) this.inc(v - last)
      last = v
    },
  })
}
