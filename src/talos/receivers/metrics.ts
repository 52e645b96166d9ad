// Prometheus metrics of the Talos back channel, registered on the registry given (reused when already there, so
// two receivers in one test process can share a registry).
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

export interface EventSinkMetrics {
  events: Counter<'type'>
  dropped: Counter<'reason'>
  duration: Histogram<string>
}

export interface KernelLogMetrics {
  lines: Counter<'transport'>
  dropped: Counter<'transport' | 'reason'>
  connections: Gauge<string>
  refused: Counter<string>
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
      help: 'Talos events not handed on, by reason (bad_request, no_payload, bad_payload, observer_error)',
      labelNames: ['reason'] as const,
      registers,
    })),
    duration: getOrCreate(registry, 'rackboot_talos_event_publish_seconds', () => new Histogram({
      name: 'rackboot_talos_event_publish_seconds',
      help: 'Time to handle one EventSinkService/Publish call',
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5],
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
      help: 'Talos kernel log lines dropped, by transport and reason (malformed, not_object, no_msg, too_long, store_error)',
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
      help: 'TCP connections to the kernel log receiver closed at once because maxConnections were open',
      registers,
    })),
  }
}
