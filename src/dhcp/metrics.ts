// rackboot_dhcp_* metrics on the registry the server is given.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { registerUdpReceiveErrors } from './kernel-drops.js'

export interface DhcpMetrics {
  received(type: string): void
  replied(type: string): void
  /** Datagrams not answered; reason "kernel": dropped by the kernel before the server read them (kernel-drops.ts). */
  dropped(reason: string, count?: number): void
  /** Seconds from datagram to reply sent (or decision not to reply). */
  handled(type: string, seconds: number): void
  portFailure(reason: 'error' | 'timeout'): void
  storageFailure(): void
  /** The receive buffer the kernel granted a socket (bytes). */
  receiveBuffer?(socket: string, bytes: number): void
  /** Runs `sample` before each scrape of the drop counter (kernel drops are read then); returns its removal. */
  onScrape?(sample: () => void): () => void
}

export type PoolUsageSource = () => { subnet: string; used: number; total: number }[]

export function createDhcpMetrics(registry: Registry, poolUsage: PoolUsageSource): DhcpMetrics {
  const received = new Counter({
    name: 'rackboot_dhcp_packets_received_total',
    help: 'DHCP requests received, by message type',
    labelNames: ['type'] as const,
    registers: [registry],
  })
  const replies = new Counter({
    name: 'rackboot_dhcp_replies_sent_total',
    help: 'DHCP replies sent, by message type',
    labelNames: ['type'] as const,
    registers: [registry],
  })
  const samplers = new Set<() => void>()
  const dropped = new Counter({
    name: 'rackboot_dhcp_dropped_total',
    help: 'DHCP datagrams not answered, by reason (malformed, not for us, no subnet, pool exhausted, errors; kernel: dropped by the kernel, socket receive buffer full, before rackboot read them)',
    labelNames: ['reason'] as const,
    registers: [registry],
    collect() {
      for (const sample of samplers) {
        try {
          sample()
        } catch {
          // a /proc read that fails leaves the count where it was
        }
      }
    },
  })
  const receiveBuffers = new Gauge({
    name: 'rackboot_dhcp_socket_receive_buffer_bytes',
    help: 'Receive buffer the kernel granted each DHCP socket (dhcp.receiveBufferBytes, capped by net.core.rmem_max)',
    labelNames: ['socket'] as const,
    registers: [registry],
  })
  registerUdpReceiveErrors(registry)
  const duration = new Histogram({
    name: 'rackboot_dhcp_handle_seconds',
    help: 'Time from receiving a DHCP request to sending the reply (or deciding not to), by request type',
    labelNames: ['type'] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [registry],
  })
  const portFailures = new Counter({
    name: 'rackboot_dhcp_boot_port_failures_total',
    help: 'Lifecycle (boot policy/timeline) calls that failed or timed out; the reply went out without advice',
    labelNames: ['reason'] as const,
    registers: [registry],
  })
  const storageFailures = new Counter({
    name: 'rackboot_dhcp_lease_store_failures_total',
    help: 'Lease writes that failed (the request was not acknowledged)',
    registers: [registry],
  })
  new Gauge({
    name: 'rackboot_dhcp_pool_utilisation_ratio',
    help: 'Share of each pool range in use (offered, bound or declined), 0 to 1',
    labelNames: ['subnet'] as const,
    registers: [registry],
    collect() {
      this.reset()
      for (const p of poolUsage()) this.set({ subnet: p.subnet }, p.total > 0 ? p.used / p.total : 0)
    },
  })
  new Gauge({
    name: 'rackboot_dhcp_pool_addresses',
    help: 'Addresses in each pool range, by state (used or total)',
    labelNames: ['subnet', 'state'] as const,
    registers: [registry],
    collect() {
      this.reset()
      for (const p of poolUsage()) {
        this.set({ subnet: p.subnet, state: 'used' }, p.used)
        this.set({ subnet: p.subnet, state: 'total' }, p.total)
      }
    },
  })
  // Label children looked up once per value: the hot path then skips prom-client's label hashing.
  const child = <T>(make: (v: string) => T) => {
    const cache = new Map<string, T>()
    return (v: string): T => {
      let c = cache.get(v)
      if (!c) cache.set(v, (c = make(v)))
      return c
    }
  }
  const receivedBy = child((type) => received.labels({ type }))
  const repliedBy = child((type) => replies.labels({ type }))
  const droppedBy = child((reason) => dropped.labels({ reason }))
  const durationBy = child((type) => duration.labels({ type }))
  return {
    received: (type) => receivedBy(type).inc(),
    replied: (type) => repliedBy(type).inc(),
    dropped: (reason, count = 1) => droppedBy(reason).inc(count),
    handled: (type, seconds) => durationBy(type).observe(seconds),
    portFailure: (reason) => portFailures.inc({ reason }),
    storageFailure: () => storageFailures.inc(),
    receiveBuffer: (socket, bytes) => receiveBuffers.set({ socket }, bytes),
    onScrape(sample) {
      samplers.add(sample)
      return () => samplers.delete(sample)
    },
  }
}
