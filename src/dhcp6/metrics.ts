// rackboot_dhcp6_* metrics on the registry the server is given.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

export interface Dhcp6Metrics {
  received(type: string): void
  replied(type: string): void
  /** Datagrams not answered, by reason (malformed, not for this server, pool exhausted, errors). */
  dropped(reason: string): void
  handled(type: string, seconds: number): void
}

export function createDhcp6Metrics(registry: Registry, usage: () => { used: number; total: number; clients: number }): Dhcp6Metrics {
  const received = new Counter({
    name: 'rackboot_dhcp6_packets_received_total',
    help: 'DHCPv6 messages received, by message type (the client message inside any relay envelopes)',
    labelNames: ['type'] as const,
    registers: [registry],
  })
  const replies = new Counter({
    name: 'rackboot_dhcp6_replies_sent_total',
    help: 'DHCPv6 replies sent, by message type (advertise, reply)',
    labelNames: ['type'] as const,
    registers: [registry],
  })
  const dropped = new Counter({
    name: 'rackboot_dhcp6_dropped_total',
    help: 'DHCPv6 datagrams not answered, by reason (malformed, relay nesting, not for this server, pool exhausted, errors)',
    labelNames: ['reason'] as const,
    registers: [registry],
  })
  const duration = new Histogram({
    name: 'rackboot_dhcp6_handle_seconds',
    help: 'Time from receiving a DHCPv6 message to sending the reply (or deciding not to), by message type',
    labelNames: ['type'] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
    registers: [registry],
  })
  new Gauge({
    name: 'rackboot_dhcp6_addresses',
    help: 'DHCPv6 addresses held (offered, bound or declined) and the most that can be (range size or dhcp6.maxLeases)',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      const u = usage()
      this.set({ state: 'used' }, u.used)
      this.set({ state: 'total' }, u.total)
    },
  })
  new Gauge({
    name: 'rackboot_dhcp6_clients',
    help: 'DHCPv6 clients (DUIDs) holding at least one address',
    registers: [registry],
    collect() {
      this.set(usage().clients)
    },
  })
  return {
    received: (type) => received.inc({ type }),
    replied: (type) => replies.inc({ type }),
    dropped: (reason) => dropped.inc({ reason }),
    handled: (type, seconds) => duration.observe({ type }, seconds),
  }
}
