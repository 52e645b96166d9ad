import { Registry, collectDefaultMetrics } from 'prom-client'

export type { Registry }

/** One registry per server instance (never prom-client's global), so tests can build many side by side. */
export function createMetricsRegistry(options: { defaults?: boolean } = {}): Registry {
  const registry = new Registry()
  if (options.defaults) collectDefaultMetrics({ register: registry, prefix: 'rackboot_' })
  return registry
}
