// Group commit for lease writes. A reply that depends on a lease waits until its lease is stored (durability before
// ACK), but writes arriving together share one commit: everything queued while the previous batch was being written
// goes out as the next batch, in one transaction when the store offers one. Under load a commit costs once per batch
// instead of once per ACK; at low load a batch is a single lease and adds no delay. Commits are also spaced at least
// `minCommitIntervalMs` apart: a commit costs far more than a row (the WAL write of every touched page, and the
// checkpointer's copy of it later), so waiting a few milliseconds for the batch to fill is what keeps the commit
// rate, not the packet rate, bounded. Measured on SQLite (WAL, synchronous normal, 2-CPU VM): ~100 us of CPU per
// lease committed alone, ~17 us per lease in batches of 10, ~13 in batches of 20. 10 ms makes a batch of ~10 at
// 1000 ACKs/s; 2 ms (batches of ~2) left the lease write the largest CPU cost per DORA. An idle writer commits at
// once; clients wait seconds for an ACK (perfdhcp's drop time is 1 s), so the pause is invisible to them.
import type { LeaseRepository } from '../inventory/repositories.js'
import type { Lease } from '../inventory/types.js'

/** Runs `fn` atomically against the lease store (e.g. `(fn) => inventory.transaction((inv) => fn(inv.leases))`). */
export type LeaseTransaction = <T>(fn: (leases: LeaseRepository) => Promise<T>) => Promise<T>

/**
 * A lease store that may also write many leases in one call (one statement or one prepared loop in one
 * transaction). Used when present: per-statement overhead, not the commit, dominates a batch otherwise.
 */
export type BatchLeaseRepository = LeaseRepository & { putMany?(leases: Lease[]): Promise<void> }

/** A store that several servers share: every write is a claim the database may refuse (LeaseRepository.claimMany). */
export type ClaimingLeaseRepository = LeaseRepository & { claimMany(leases: Lease[]): Promise<Set<string>> }

export interface LeaseWriterDeps {
  leases: BatchLeaseRepository
  transaction?: LeaseTransaction
  /** Largest batch per commit. */
  maxBatch?: number
  /** Least time between the starts of two commits (default 10 ms; 0 commits as soon as the event loop turns). */
  minCommitIntervalMs?: number
  /** Write through `leases.claimMany`: a lease another server holds is refused, and write() says so. */
  claim?: boolean
  /** Milliseconds, monotonic (default performance.now): when commits start, for the spacing. */
  clock?: { now(): number }
  /** Schedules the spacing wait (default setTimeout): tests drive both with a fake clock. */
  setTimer?: (fn: () => void, ms: number) => { cancel(): void }
}

export interface LeaseWriter {
  /**
   * Resolves once the lease is stored (true), or refused because another client holds the address in the shared
   * database (false, claim mode only); rejects when its batch failed.
   */
  write(lease: Lease): Promise<boolean>
  /** Resolves when everything queued so far is stored (or failed). */
  flush(): Promise<void>
}

interface Pending {
  lease: Lease
  /** Each waiter with the client it wrote for: a later write of the address by another client supersedes its claim. */
  waiters: { resolve: (stored: boolean) => void; reject: (err: unknown) => void; mac: string }[]
}

/** See the top of this file: the commit spacing that keeps a boot storm's lease writes in batches. */
export const DEFAULT_COMMIT_INTERVAL_MS = 10

export function createLeaseWriter(deps: LeaseWriterDeps): LeaseWriter {
  const maxBatch = deps.maxBatch ?? 1000
  const minInterval = deps.minCommitIntervalMs ?? DEFAULT_COMMIT_INTERVAL_MS
  const clock = deps.clock ?? performance
  // Not unref'd: a write waiting for its commit keeps the process alive until it is stored.
  const setTimer = deps.setTimer ?? ((fn, ms) => {
    const t = setTimeout(fn, ms)
    return { cancel: () => clearTimeout(t) }
  })
  let lastCommitAt = Number.NEGATIVE_INFINITY
  // Latest state per address: a later write of the same address replaces an earlier one not yet committed.
  let queue = new Map<string, Pending>()
  let running: Promise<void> | null = null

  const claiming = deps.leases as Partial<ClaimingLeaseRepository>
  if (deps.claim && !claiming.claimMany) throw new Error('lease writer: claim mode needs a store with claimMany')

  /** The addresses stored (all of them, unless claiming). */
  const commit = async (batch: Pending[]): Promise<Set<string> | null> => {
    if (deps.claim) return claiming.claimMany!(batch.map((p) => p.lease))
    await store(batch)
    return null
  }
  const store = async (batch: Pending[]): Promise<void> => {
    if (deps.leases.putMany && batch.length > 1) return deps.leases.putMany(batch.map((p) => p.lease))
    const putAll = async (repo: LeaseRepository) => {
      for (const p of batch) await repo.put(p.lease)
    }
    if (deps.transaction && batch.length > 1) await deps.transaction(putAll)
    else await putAll(deps.leases)
  }

  const drain = async (): Promise<void> => {
    // Let every datagram already read in this turn of the event loop join the first batch.
    await new Promise<void>((r) => setImmediate(r))
    while (queue.size > 0) {
      const wait = lastCommitAt + minInterval - clock.now()
      if (wait > 0 && queue.size < maxBatch) await new Promise<void>((r) => setTimer(r, wait))
      lastCommitAt = clock.now()
      const all = [...queue.values()]
      const batch = all.slice(0, maxBatch)
      if (all.length > maxBatch) {
        queue = new Map(all.slice(maxBatch).map((p) => [p.lease.ip, p]))
      } else queue = new Map()
      try {
        const stored = await commit(batch)
        for (const p of batch) for (const w of p.waiters) w.resolve(stored === null || (stored.has(p.lease.ip) && w.mac === p.lease.mac))
      } catch (err) {
        for (const p of batch) for (const w of p.waiters) w.reject(err)
      }
    }
  }

  const kick = (): void => {
    if (running) return
    running = drain().finally(() => {
      running = null
      if (queue.size > 0) kick()
    })
  }

  return {
    write(lease) {
      return new Promise<boolean>((resolve, reject) => {
        const prev = queue.get(lease.ip)
        if (prev) {
          prev.lease = lease
          prev.waiters.push({ resolve, reject, mac: lease.mac })
        } else queue.set(lease.ip, { lease, waiters: [{ resolve, reject, mac: lease.mac }] })
        kick()
      })
    },
    async flush() {
      while (running || queue.size > 0) {
        kick()
        await running
      }
    },
  }
}
