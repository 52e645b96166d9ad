import { Counter, Gauge, type Registry } from 'prom-client'
import type { OpenedInventory } from './open.js'
import type { CheckpointStats } from './sqlite/checkpointer.js'
import type { BusyStats } from './sqlite/driver.js'

// What the database backend is doing, read from its own counters at scrape time: SQLite's WAL checkpoints and waits
// for another process's lock; PostgreSQL's transactions retried after colliding with another instance's, and its pool.

type Stats = Partial<{
  checkpointStats(): CheckpointStats | null
  busyStats(): BusyStats
  retryStats(): { retries: number; failures: number }
  pool: { totalCount: number; idleCount: number; waitingCount: number }
}>

/** Sets a counter to a running total kept elsewhere (prom-client counters only go up: add the difference). */
function follow(counter: Counter<string>, labels: Record<string, string>, total: number, seen: Map<string, number>): void {
  const key = JSON.stringify(labels)
  const delta = total - (seen.get(key) ?? 0)
  if (delta > 0) counter.inc(labels, delta)
  seen.set(key, Math.max(total, seen.get(key) ?? 0))
}

export function registerDatabaseMetrics(registry: Registry, inventory: OpenedInventory): void {
  const stats = inventory as unknown as Stats
  const seen = new Map<string, number>()
  if (inventory.backend === 'sqlite') {
    const checkpoints = new Counter({
      name: 'rackboot_sqlite_checkpoints_total',
      help: 'WAL checkpoints run by the background checkpointer, by mode (passive; truncate: the log restarted; truncate_busy: a truncate another process blocked)',
      labelNames: ['mode'] as const,
      registers: [registry],
      collect() {
        const s = stats.checkpointStats?.()
        if (!s) return
        follow(checkpoints, { mode: 'passive' }, s.passive, seen)
        follow(checkpoints, { mode: 'truncate' }, s.truncate, seen)
        follow(checkpoints, { mode: 'truncate_busy' }, s.truncateBusy, seen)
      },
    })
    new Gauge({
      name: 'rackboot_sqlite_wal_max_bytes',
      help: 'Largest write-ahead log seen before a checkpoint (bounded by database.walLimitMiB when the checkpointer can restart it)',
      registers: [registry],
      collect() {
        const s = stats.checkpointStats?.()
        if (s) this.set(s.maxWalBytes)
      },
    })
    const busy = new Counter({
      name: 'rackboot_sqlite_busy_total',
      help: "Another process's write lock met by this one: retries (attempts tried again later) and failures (queries that gave up after database.busyTimeoutMs)",
      labelNames: ['outcome'] as const,
      registers: [registry],
      collect() {
        const s = stats.busyStats?.()
        if (!s) return
        follow(busy, { outcome: 'retry' }, s.retries, seen)
        follow(busy, { outcome: 'failure' }, s.failures, seen)
      },
    })
    new Counter({
      name: 'rackboot_sqlite_busy_wait_seconds_total',
      help: "Time queries spent waiting, asynchronously, for another process's write lock",
      registers: [registry],
      collect() {
        const s = stats.busyStats?.()
        if (s) follow(this as Counter<string>, {}, s.waitedMs / 1000, seen)
      },
    })
    return
  }
  const retries = new Counter({
    name: 'rackboot_postgres_transaction_conflicts_total',
    help: "Transactions PostgreSQL aborted for colliding with another's (SERIALIZABLE), or allocations that found too few machines because others held some: retried alone, or failed after every attempt",
    labelNames: ['outcome'] as const,
    registers: [registry],
    collect() {
      const s = stats.retryStats?.()
      if (!s) return
      follow(retries, { outcome: 'retried' }, s.retries, seen)
      follow(retries, { outcome: 'failed' }, s.failures, seen)
    },
  })
  new Gauge({
    name: 'rackboot_postgres_pool_connections',
    help: 'PostgreSQL connections of this instance, by state (idle, busy, waiting: callers queued for one)',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      const p = stats.pool
      if (!p) return
      this.set({ state: 'idle' }, p.idleCount)
      this.set({ state: 'busy' }, p.totalCount - p.idleCount)
      this.set({ state: 'waiting' }, p.waitingCount)
    },
  })
}
