// Bounded busy polling for lock-step transfers, in the spirit of Linux's SO_BUSY_POLL. A lock-step client sends one
// ACK per block and waits; the round trip, not bandwidth, sets the speed. When Node has nothing to do it sleeps in
// epoll, and waking it costs as much as handling the ACK (on virtual machines more: an idle vCPU halts). So for a
// short while after each DATA sent the event loop keeps turning (setImmediate makes libuv poll without sleeping),
// and the ACK is read the moment it lands. The spin stops `budgetMicros` after the last send, so a slow or far
// client costs at most that much CPU per block, and an idle server never spins.
//
// Spinning only pays while a core is otherwise idle: on a saturated machine it takes CPU from the very client (or
// the other work) it is waiting for. So it runs only while the CPU time used by everything except this process
// leaves at least one core free, sampled from /proc/stat (Linux; elsewhere it stays off).
import { readFileSync } from 'node:fs'
import { availableParallelism, loadavg } from 'node:os'

export interface BusyPoller {
  /** A datagram went out and an answer is expected soon: keep polling for up to the budget from now. */
  expectReply(): void
  stop(): void
  /** True while the loop is being kept busy. */
  readonly spinning: boolean
}

export interface BusyPollerOptions {
  /** Spin budget after each send, in microseconds; 0 turns busy polling off. */
  budgetMicros: number
  /** Whether a core is free for spinning right now (default: cpuHeadroom()). */
  headroom?: () => boolean
}

export function createBusyPoller(o: BusyPollerOptions): BusyPoller {
  const budgetMs = o.budgetMicros / 1000
  const headroom = o.headroom ?? cpuHeadroom()
  let hotUntil = 0
  let spinning = false
  let stopped = false
  const spin = (): void => {
    if (!stopped && performance.now() < hotUntil) setImmediate(spin)
    else spinning = false
  }
  return {
    expectReply() {
      if (budgetMs <= 0 || stopped) return
      hotUntil = performance.now() + budgetMs
      if (!spinning && headroom()) {
        spinning = true
        setImmediate(spin)
      }
    },
    stop() {
      stopped = true
    },
    get spinning() {
      return spinning
    },
  }
}

interface CpuSample {
  at: number
  /** Busy CPU seconds of the whole machine. */
  busy: number
  /** CPU seconds of this process. */
  own: number
}

/** Linux USER_HZ: /proc/stat counts in hundredths of a second. */
const TICKS_PER_SECOND = 100

function sample(): CpuSample | null {
  try {
    const line = readFileSync('/proc/stat', 'latin1').slice(0, 256).split('\n', 1)[0]!
    const f = line.trim().split(/\s+/).slice(1).map(Number)
    // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
    const busy = (f[0]! + f[1]! + f[2]! + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0)) / TICKS_PER_SECOND
    const u = process.cpuUsage()
    return { at: performance.now(), busy, own: (u.user + u.system) / 1e6 }
  } catch {
    return null
  }
}

/**
 * A check, cheap enough to call per datagram, of whether the rest of the machine leaves a core idle: re-sampled at
 * most every `intervalMs`, from the busy time of all CPUs minus this process's own. Until the first interval has
 * passed the load average answers: a server started just before a transfer (a restart, a fresh process per
 * transfer) would otherwise never spin for its first quarter second, which is all of an iPXE download.
 */
export function cpuHeadroom(intervalMs = 250, cores = availableParallelism(), load = loadavg()[0]!): () => boolean {
  let last = sample()
  if (last === null) return () => false
  let free = cores - load >= 1.25
  return () => {
    const now = performance.now()
    if (now - last!.at < intervalMs) return free
    const s = sample()
    if (s === null) return (free = false)
    const seconds = (s.at - last!.at) / 1000
    const others = Math.max(0, s.busy - last!.busy - (s.own - last!.own)) / seconds
    last = s
    free = cores - others >= 1.25
    return free
  }
}
