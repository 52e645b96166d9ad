// When a boot reached each phase, in ms after its VM started, from what rackboot saw: timeline events and the
// request lines of its log (both on the server's clock, on the same machine as QEMU).
import type { Vm } from './vm.js'

export type TimelineEvent = { type: string; message: string; at: number; data: Record<string, unknown> }

/** ms after QEMU start of the first event matching each phase. */
export function phaseTimes(events: TimelineEvent[], vm: Vm, defs: Record<string, (e: TimelineEvent) => boolean>): Record<string, number | null> {
  return Object.fromEntries(
    Object.entries(defs).map(([name, pred]) => {
      const e = events.find((x) => x.at >= vm.startedAt && pred(x))
      return [name, e ? e.at - vm.startedAt : null]
    }),
  )
}

/** ms after QEMU start of rackboot's first request log line for `path` (pino JSON lines; rackboot at debug level). */
export function httpRequestAt(log: string, path: RegExp, vm: Vm): number | null {
  for (const line of log.split('\n')) {
    if (!line.startsWith('{')) continue
    try {
      const j = JSON.parse(line) as { time?: number; url?: string }
      if (j.url && path.test(j.url) && typeof j.time === 'number' && j.time >= vm.startedAt) return j.time - vm.startedAt
    } catch {
      // not JSON
    }
  }
  return null
}
