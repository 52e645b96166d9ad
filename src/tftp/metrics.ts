// The TFTP server's Prometheus metrics, registered on the registry it is given (reused if already there, so two
// servers in one test process can share a registry).
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

export interface TftpMetrics {
  requests: Counter<'result'>
  started: Counter<string>
  finished: Counter<'result'>
  bytesSent: Counter<string>
  retransmissions: Counter<string>
  dropped: Counter<'reason'>
  active: Gauge<string>
  duration: Histogram<'result'>
  cacheLookups: Counter<'result'>
}

function getOrCreate<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make()
}

export function createTftpMetrics(registry: Registry): TftpMetrics {
  const registers = [registry]
  return {
    requests: getOrCreate(registry, 'rackboot_tftp_requests_total', () => new Counter({
      name: 'rackboot_tftp_requests_total',
      help: 'TFTP requests received on the server port, by outcome (accepted, not_found, denied, busy, per_client, write_refused, bad_mode, duplicate, error); busy and per_client are the two concurrency limits',
      labelNames: ['result'] as const,
      registers,
    })),
    started: getOrCreate(registry, 'rackboot_tftp_transfers_started_total', () => new Counter({
      name: 'rackboot_tftp_transfers_started_total',
      help: 'TFTP transfers started',
      registers,
    })),
    finished: getOrCreate(registry, 'rackboot_tftp_transfers_finished_total', () => new Counter({
      name: 'rackboot_tftp_transfers_finished_total',
      help: 'TFTP transfers finished, by result (ok, aborted, timeout, no_ack, evicted, read_error, cancelled); no_ack: the client never acknowledged anything, evicted: such a transfer gave its slot to a new request while all were taken',
      labelNames: ['result'] as const,
      registers,
    })),
    bytesSent: getOrCreate(registry, 'rackboot_tftp_bytes_sent_total', () => new Counter({
      name: 'rackboot_tftp_bytes_sent_total',
      help: 'TFTP payload bytes sent, retransmissions included',
      registers,
    })),
    retransmissions: getOrCreate(registry, 'rackboot_tftp_retransmissions_total', () => new Counter({
      name: 'rackboot_tftp_retransmissions_total',
      help: 'TFTP DATA and OACK packets sent again after a timeout or a partial window acknowledgement',
      registers,
    })),
    dropped: getOrCreate(registry, 'rackboot_tftp_dropped_datagrams_total', () => new Counter({
      name: 'rackboot_tftp_dropped_datagrams_total',
      help: 'Datagrams the TFTP server dropped, by reason',
      labelNames: ['reason'] as const,
      registers,
    })),
    active: getOrCreate(registry, 'rackboot_tftp_active_transfers', () => new Gauge({
      name: 'rackboot_tftp_active_transfers',
      help: 'TFTP transfers in progress',
      registers,
    })),
    cacheLookups: getOrCreate(registry, 'rackboot_tftp_cache_lookups_total', () => new Counter({
      name: 'rackboot_tftp_cache_lookups_total',
      help: 'Transfers served from the packet cache (hit), cut into packets for it (miss), or streamed from disk (skip)',
      labelNames: ['result'] as const,
      registers,
    })),
    duration: getOrCreate(registry, 'rackboot_tftp_transfer_duration_seconds', () => new Histogram({
      name: 'rackboot_tftp_transfer_duration_seconds',
      help: 'Duration of TFTP transfers, by result',
      labelNames: ['result'] as const,
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    })),
  }
}
