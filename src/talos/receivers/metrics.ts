// Prometheus metrics of the Talos back channel, registered on the registry given (reused when already there, so
// two receivers in one test process can share a registry).
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

export interface EventSinkMetrics {
  events: Counter<'type'>
  dropped: Counter<'reason'>
  duration: Histogram<string>
  delayed: Counter<string>
  connections: Gauge<string>
  refused: Counter<'reason'>
}

export interface KernelLogMetrics {
  lines: Counter<'transport'>
  dropped: Counter<'transport' | 'reason'>
  connections: Gauge<string>
  refused: Counter<'reason'>
  throttled: Counter<string>
}

export interface KernelLogStoreMetrics {
  bytes: Gauge<string>
  lines: Gauge<string>
  peers: Gauge<string>
  evictedLines: Counter<string>
  evictedBytes: Counter<string>
  evictedPeers: Counter<string>
}

function getOrCreate<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make()
}

export function createEventSinkMetrics(registry: Registry): EventSinkMetrics {
  const registers = [registry]
  return {
    events: getOrCreate(registry, 'rackboot_talos_events_total', () => new Counter({
      name: 'rackboot_talos_events_total',
      help: 'Talos events received on the event sink, by payload type (unknown: a type rackboot does not decode)',
      labelNames: ['type'] as const,
      registers,
    })),
    dropped: getOrCreate(registry, 'rackboot_talos_events_dropped_total', () => new Counter({
      name: 'rackboot_talos_events_dropped_total',
      help: 'Talos events not handed on, by reason (bad_request, no_payload, bad_payload, too_long, rate, observer_error, observer_timeout)',
      labelNames: ['reason'] as const,
      registers,
    })),
    duration: getOrCreate(registry, 'rackboot_talos_event_publish_seconds', () => new Histogram({
      name: 'rackboot_talos_event_publish_seconds',
      help: 'Time to handle one EventSinkService/Publish call',
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5],
      registers,
    })),
    delayed: getOrCreate(registry, 'rackboot_talos_events_delayed_total', () => new Counter({
      name: 'rackboot_talos_events_delayed_total',
      help: 'Talos events whose acknowledgement was held back because their peer was over its event rate (Talos then sends slower)',
      registers,
    })),
    connections: getOrCreate(registry, 'rackboot_talos_event_sink_connections', () => new Gauge({
      name: 'rackboot_talos_event_sink_connections',
      help: 'Open TCP connections on the Talos event sink',
      registers,
    })),
    refused: getOrCreate(registry, 'rackboot_talos_event_sink_refused_connections_total', () => new Counter({
      name: 'rackboot_talos_event_sink_refused_connections_total',
      help: 'Connections to the event sink closed at once, by reason (peer: the address held maxConnectionsPerPeer; total: maxConnections were open)',
      labelNames: ['reason'] as const,
      registers,
    })),
  }
}

export function createKernelLogMetrics(registry: Registry): KernelLogMetrics {
  const registers = [registry]
  return {
    lines: getOrCreate(registry, 'rackboot_talos_kernel_log_lines_total', () => new Counter({
      name: 'rackboot_talos_kernel_log_lines_total',
      help: 'Talos kernel log lines stored, by transport (tcp, udp)',
      labelNames: ['transport'] as const,
      registers,
    })),
    dropped: getOrCreate(registry, 'rackboot_talos_kernel_log_dropped_total', () => new Counter({
      name: 'rackboot_talos_kernel_log_dropped_total',
      help: 'Talos kernel log lines dropped, by transport and reason (malformed, not_object, no_msg, too_long, unterminated, rate, store_error)',
      labelNames: ['transport', 'reason'] as const,
      registers,
    })),
    connections: getOrCreate(registry, 'rackboot_talos_kernel_log_connections', () => new Gauge({
      name: 'rackboot_talos_kernel_log_connections',
      help: 'Open TCP connections on the Talos kernel log receiver',
      registers,
    })),
    refused: getOrCreate(registry, 'rackboot_talos_kernel_log_refused_connections_total', () => new Counter({
      name: 'rackboot_talos_kernel_log_refused_connections_total',
      help: 'TCP connections to the kernel log receiver closed at once, by reason (peer: the address held maxConnectionsPerPeer; total: maxConnections were open)',
      labelNames: ['reason'] as const,
      registers,
    })),
    throttled: getOrCreate(registry, 'rackboot_talos_kernel_log_throttled_total', () => new Counter({
      name: 'rackboot_talos_kernel_log_throttled_total',
      help: 'Times a kernel log TCP connection stopped being read because its peer was over its line rate (lines wait, none lost)',
      registers,
    })),
  }
}

export function createKernelLogStoreMetrics(registry: Registry): KernelLogStoreMetrics {
  const registers = [registry]
  const gauge = (name: string, help: string) => getOrCreate(registry, name, () => new Gauge({ name, help, registers }))
  const counter = (name: string, help: string) => getOrCreate(registry, name, () => new Counter({ name, help, registers }))
  return {
    bytes: gauge('rackboot_talos_kernel_log_store_bytes', 'Approximate heap bytes of the kernel log store (bounded by talos.kernelLogMaxMiB)'),
    lines: gauge('rackboot_talos_kernel_log_store_lines', 'Kernel log lines held in memory'),
    peers: gauge('rackboot_talos_kernel_log_store_peers', 'Peer addresses with kernel log lines held in memory'),
    evictedLines: counter('rackboot_talos_kernel_log_evicted_lines_total', 'Kernel log lines dropped from memory to stay under the byte bound (least recently written peer, oldest line first)'),
    evictedBytes: counter('rackboot_talos_kernel_log_evicted_bytes_total', 'Approximate bytes of the kernel log lines counted in rackboot_talos_kernel_log_evicted_lines_total'),
    evictedPeers: counter('rackboot_talos_kernel_log_evicted_peers_total', 'Peers whose kernel log lines were all dropped (past maxPeers, or the byte bound took their last line)'),
  }
}
