// rackboot_dhcp_* metrics on the registry the server is given.
import { Counter, Gauge, type Metric, type Registry } from 'prom-client'
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
  const received: Counter<'type'> = new Counter({
    name: 'rackboot_dhcp_packets_received_total',
    help: 'DHCP requests received, by message type',
    labelNames: ['type'] as const,
    registers: [registry],
    collect: (): void => flush(receivedBy),
  })
  const replies: Counter<'type'> = new Counter({
    name: 'rackboot_dhcp_replies_sent_total',
    help: 'DHCP replies sent, by message type',
    labelNames: ['type'] as const,
    registers: [registry],
    collect: (): void => flush(repliedBy),
  })
  const samplers = new Set<() => void>()
  const dropped: Counter<'reason'> = new Counter({
    name: 'rackboot_dhcp_dropped_total',
    help: 'DHCP datagrams not answered, by reason (malformed, not for us, no subnet, pool exhausted, errors; kernel: dropped by the kernel, socket receive buffer full, before rackboot read them)',
    labelNames: ['reason'] as const,
    registers: [registry],
    collect(): void {
      for (const sample of samplers) {
        try {
          sample()
        } catch {
          // a /proc read that fails leaves the count where it was
        }
      }
      flush(droppedBy)
    },
  })
  const receiveBuffers = new Gauge({
    name: 'rackboot_dhcp_socket_receive_buffer_bytes',
    help: 'Receive buffer the kernel granted each DHCP socket (dhcp.receiveBufferBytes, capped by net.core.rmem_max)',
    labelNames: ['socket'] as const,
    registers: [registry],
  })
  registerUdpReceiveErrors(registry)
  const duration = new CountingHistogram(
    'rackboot_dhcp_handle_seconds',
    'Time from receiving a DHCP request to sending the reply (or deciding not to), by request type',
    'type',
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
  )
  // A metric object of our own (see CountingHistogram): registered as prom-client registers its own.
  registry.registerMetric(duration as unknown as Metric)
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
  // Per packet, a counter is a number in a slot found once per label value; prom-client's own inc (label
  // validation, a label hash built as a string, a lookup by it: several per DORA) runs once per label per scrape.
  const receivedBy = tally((type) => received.labels({ type }))
  const repliedBy = tally((type) => replies.labels({ type }))
  const droppedBy = tally((reason) => dropped.labels({ reason }))
  return {
    received: (type) => void receivedBy.slot(type).n++,
    replied: (type) => void repliedBy.slot(type).n++,
    dropped: (reason, count = 1) => void (droppedBy.slot(reason).n += count),
    handled: (type, seconds) => duration.observe(type, seconds),
    portFailure: (reason) => portFailures.inc({ reason }),
    storageFailure: () => storageFailures.inc(),
    receiveBuffer: (socket, bytes) => receiveBuffers.set({ socket }, bytes),
    onScrape(sample) {
      samplers.add(sample)
      return () => samplers.delete(sample)
    },
  }
}

interface Slot<C> {
  child: C
  /** Counted since the last scrape. */
  n: number
}

/** Counts per label value, kept in plain numbers between scrapes. */
function tally<C extends { inc(n: number): void }>(make: (v: string) => C): { slot(v: string): Slot<C>; slots: Map<string, Slot<C>> } {
  const slots = new Map<string, Slot<C>>()
  return {
    slots,
    slot(v) {
      let s = slots.get(v)
      if (!s) slots.set(v, (s = { child: make(v), n: 0 }))
      return s
    },
  }
}

/** Adds what was counted since the last scrape to the prom-client counter (its collect(), before it is read). */
function flush<C extends { inc(n: number): void }>(t: { slots: Map<string, Slot<C>> }): void {
  for (const s of t.slots.values()) {
    if (s.n === 0) continue
    s.child.inc(s.n)
    s.n = 0
  }
}

/**
 * A histogram with one label, observed with plain arithmetic: prom-client's Histogram validates and hashes its labels
 * on every observe (a string built and looked up per request). Read as prom-client's own (the same values from
 * get(): cumulative `_bucket` series with `le`, then `_sum` and `_count`), so /metrics shows no difference.
 */
export class CountingHistogram {
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  private readonly series = new Map<string, { counts: number[]; sum: number; count: number }>()
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly label: string,
    private readonly upperBounds: readonly number[],
  ) {}

  observe(value: string, seconds: number): void {
    if (!Number.isFinite(seconds)) return
    let s = this.series.get(value)
    if (!s) this.series.set(value, (s = { counts: new Array<number>(this.upperBounds.length).fill(0), sum: 0, count: 0 }))
    const bounds = this.upperBounds
    for (let i = 0; i < bounds.length; i++) {
      if (seconds <= bounds[i]!) {
        s.counts[i]!++
        break
      }
    }
    s.sum += seconds
    s.count++
  }

  async get(): Promise<{ name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: { value: number; labels: Record<string, string | number>; metricName: string }[] }> {
    const values: { value: number; labels: Record<string, string | number>; metricName: string }[] = []
    for (const [v, s] of this.series) {
      let acc = 0
      this.upperBounds.forEach((le, i) => {
        acc += s.counts[i]!
        values.push({ value: acc, labels: { le, [this.label]: v }, metricName: `${this.name}_bucket` })
      })
      values.push(
        { value: s.count, labels: { le: '+Inf', [this.label]: v }, metricName: `${this.name}_bucket` },
        { value: s.sum, labels: { [this.label]: v }, metricName: `${this.name}_sum` },
        { value: s.count, labels: { [this.label]: v }, metricName: `${this.name}_count` },
      )
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  reset(): void {
    this.series.clear()
  }
}
