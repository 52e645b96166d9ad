import { Registry, collectDefaultMetrics } from 'prom-client'

export type { Registry }

/** One registry per server instance (never prom-client's global), so tests can build many side by side. */
export function createMetricsRegistry(options: { defaults?: boolean } = {}): Registry {
  const registry = new Registry()
  // Node's process metrics under their standard names (process_cpu_seconds_total, nodejs_eventloop_lag_seconds,
  // ...), unprefixed: the stock Node.js dashboards and alerts query those names.
  if (options.defaults) collectDefaultMetrics({ register: registry })
  return registry
}
