import type { LeaderLeaseStore } from '../inventory/sql/leader-leases.js'
import type { Logger } from '../log.js'
import { systemClock, type Clock } from './service.js'

// One holder of a role among several instances on one database (issue 16): a lease row (leader_leases, migration
// 0014) taken and renewed every renewMs for ttlMs. An instance that stops renewing (killed, stalled, cut off from the
// database) is taken over by another once its row has expired. Expiry is the database's business alone (its clock
// writes and judges every row: sql/leader-leases.ts), so hosts' clocks need not agree. The holder counts itself leader
// only until ttlMs - marginMs after it sent the renewal, on its own clock: the row's TTL starts later than that (when
// the statement runs), so by the time another instance may take the row this one has stopped acting; the margin covers
// clocks that run at different rates and the moments between an isLeader() and the act it allows.

export interface LeadershipDeps {
  store: Pick<LeaderLeaseStore, 'acquire' | 'release'>
  /** The role, the row's key. */
  name: string
  /** This instance's name (the power manager's instanceId, so a BMC lease can be told apart as its own). */
  holder: string
  log: Logger
  clock?: Clock
  ttlMs?: number
  renewMs?: number
  /** How long before its row's expiry the holder stops counting itself leader. */
  marginMs?: number
  /** Called (not awaited) whenever isLeader() changes as seen by a renewal. */
  onChange?: (leader: boolean) => void
  setTimer?: (fn: () => void, ms: number) => { cancel(): void }
}

export interface Leadership {
  readonly holder: string
  /** Whether this instance holds the role now: checked before every act, so a lapsed lease stops work at once. */
  isLeader(): boolean
  /** Takes or renews the lease now (the timer does this every renewMs); resolves to isLeader(). */
  tick(): Promise<boolean>
  start(): Promise<void>
  /** Stops renewing; `release` (default) hands the role over at once instead of letting it expire. */
  stop(options?: { release?: boolean }): Promise<void>
}

export const LEADER_TTL_MS = 15_000
export const LEADER_RENEW_MS = 5_000

export function createLeadership(deps: LeadershipDeps): Leadership {
  const clock = deps.clock ?? systemClock
  const ttlMs = deps.ttlMs ?? LEADER_TTL_MS
  const renewMs = deps.renewMs ?? LEADER_RENEW_MS
  const marginMs = deps.marginMs ?? Math.round(ttlMs / 5)
  const setTimer = deps.setTimer ?? ((fn, ms) => {
    const t = setTimeout(fn, ms)
    t.unref?.()
    return { cancel: () => clearTimeout(t) }
  })
  let validUntil = 0
  let reported = false
  let ticking: Promise<boolean> | null = null
  let timer: { cancel(): void } | null = null
  let stopped = false

  const isLeader = () => !stopped && clock.now() < validUntil

  async function renew(): Promise<boolean> {
    const sentAt = clock.now()
    try {
      const r = await deps.store.acquire(deps.name, deps.holder, ttlMs, sentAt)
      if (r.held) {
        if (!reported) deps.log.info({ role: deps.name, holder: deps.holder }, 'took the leader lease')
        // Never the row's expires_at: a local duration from before the statement, so no clock but this one counts.
        validUntil = sentAt + ttlMs - marginMs
      } else {
        if (reported) deps.log.warn({ role: deps.name, holder: deps.holder, now: r.lease?.holder }, 'leader lease taken over by another instance')
        validUntil = 0
      }
    } catch (err) {
      // Unknown: still leader until what the last renewal bought runs out.
      deps.log.warn({ err, role: deps.name }, 'cannot renew the leader lease')
    }
    const now = isLeader()
    if (now !== reported) {
      reported = now
      deps.onChange?.(now)
    }
    return now
  }

  function tick(): Promise<boolean> {
    ticking ??= renew().finally(() => {
      ticking = null
    })
    return ticking
  }

  function schedule(): void {
    if (stopped) return
    timer = setTimer(() => {
      timer = null
      void tick().finally(schedule)
    }, renewMs)
  }

  return {
    holder: deps.holder,
    isLeader,
    tick,
    async start() {
      stopped = false
      await tick()
      schedule()
    },
    async stop(options = {}) {
      stopped = true
      timer?.cancel()
      timer = null
      await ticking
      const was = validUntil > 0
      validUntil = 0
      if (reported) {
        reported = false
        deps.onChange?.(false)
      }
      if (was && (options.release ?? true)) {
        await deps.store.release(deps.name, deps.holder).catch((err) => deps.log.warn({ err, role: deps.name }, 'cannot release the leader lease; it expires by itself'))
      }
    },
  }
}
