// `rackboot power <action> MACHINE...` through the server's API: each machine's request at once (up to
// --concurrency), one line of progress with the elapsed time on a terminal, each failed BMC attempt (the server
// retries) as a line as it happens, then a table. With --data-dir, the BMCs are driven from here (./local/power.ts).
import { connect, machinePath, type ApiClient } from './client.js'
import { palette, positiveInt, printJson, seconds, statusLine, type GlobalOptions } from './common.js'
import { printable, renderTable } from './table.js'

export type PowerCommand = 'status' | 'on' | 'off' | 'soft-off' | 'cycle' | 'reset' | 'pxe' | 'netboot' | 'media-boot' | 'disk' | 'clear-override' | 'boot-device'

export type PowerOptions = GlobalOptions & { concurrency?: string; timeout?: string; uefi?: boolean; bios?: boolean; persistent?: boolean }

export interface Outcome {
  machine: string
  ok: boolean
  result: string
  ms: number
}

/** The progress of a bulk run on stderr: a rewriting line with the elapsed time (terminal), or a line per tenth. */
export function powerProgress(command: string, total: number, stream: NodeJS.WriteStream = process.stderr) {
  const status = statusLine(stream)
  const started = Date.now()
  const pending = new Set<string>()
  let done = 0
  let failed = 0
  const text = () => {
    const waiting = [...pending]
    const names = waiting.length ? `; waiting on ${waiting.slice(0, 4).join(', ')}${waiting.length > 4 ? ` +${waiting.length - 4}` : ''}` : ''
    return `power ${command}: ${done}/${total} done${failed ? `, ${failed} failed` : ''}${names} (${Math.round((Date.now() - started) / 1000)} s)`
  }
  const tty = stream.isTTY === true
  const timer = tty ? setInterval(() => status.draw(text()), 1000) : null
  timer?.unref()
  return {
    start(name: string) {
      pending.add(name)
      status.draw(text())
    },
    /** A line that stays (a retry, a warning), above the progress line. */
    line(line: string) {
      status.line(line)
    },
    finish(name: string, ok: boolean) {
      pending.delete(name)
      done++
      if (!ok) failed++
      if (tty) status.draw(text())
      else if (done === total || done % Math.max(1, Math.ceil(total / 10)) === 0) stream.write(`${text().replace(/ \(\d+ s\)$/, '')}\n`)
    },
    end() {
      if (timer) clearInterval(timer)
      status.end()
    },
  }
}

/** Runs `work` for each item, at most `concurrency` at once. */
export async function eachConcurrently<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items]
  await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) await work(item)
  }))
}

export function printOutcomes(outcomes: Outcome[], json: boolean | undefined): number {
  outcomes.sort((a, b) => a.machine.localeCompare(b.machine))
  if (json) printJson(outcomes)
  else console.log(renderTable(outcomes, [
    { header: 'machine', value: (o) => o.machine },
    { header: 'ok', value: (o) => (o.ok ? 'yes' : 'FAILED'), colour: (c, o, p) => (o.ok ? p.green(c) : p.red(c)) },
    { header: 'result', value: (o) => o.result },
    { header: 'ms', value: (o) => o.ms, align: 'right' },
  ], { palette: palette() }))
  return outcomes.every((o) => o.ok) ? 0 : 1
}

export interface OverrideView {
  device: string
  mode: string | null
  persistent: boolean | null
  enabled: boolean
  raw: string
}

/** The next-boot override as the BMC reads it back (a plain read: nothing was set, so nothing is "verified"). */
export function overrideLine(r: OverrideView): string {
  if (r.device === 'none' || !r.enabled) return `cleared (reads back ${r.raw})`
  const persistence = r.persistent === null ? 'persistence not reported' : r.persistent ? 'every boot' : 'next boot only'
  return [r.device, r.mode ?? 'mode not reported', persistence].join(' ')
}

interface PowerState {
  machineId: string
  state: 'on' | 'off' | null
  error: string | null
  bootOverride?: OverrideView | null
}

interface ActionResult {
  machineId: string
  result: string
  note: string | null
}

async function one(api: ApiClient, command: PowerCommand, ref: string, o: PowerOptions, signal: AbortSignal): Promise<string> {
  const options = { signal, timeoutMs: 24 * 3600_000 }
  if (command === 'status' || command === 'boot-device') {
    const s = await api.get<PowerState>(machinePath(ref, '/power'), options)
    if (command === 'boot-device') return s.bootOverride ? overrideLine(s.bootOverride) : 'the BMC did not report its boot override'
    return s.state ?? `unknown${s.error ? `: ${s.error}` : ''}`
  }
  const boot = command === 'pxe' || command === 'netboot' || command === 'media-boot' || command === 'disk'
  const body = {
    action: command,
    ...(boot && (o.uefi || o.bios) ? { mode: o.bios ? 'bios' : 'uefi' } : {}),
    ...(boot && o.persistent ? { persistent: true } : {}),
  }
  const r = await api.post<ActionResult>(machinePath(ref, '/power'), body, options)
  return `${r.result}${r.note && !r.result.includes(r.note) ? `; ${r.note}` : ''}`
}

export async function power(command: string, refs: string[], o: PowerOptions): Promise<number> {
  const concurrency = positiveInt('--concurrency', o.concurrency, 16)
  const timeoutS = seconds('--timeout', o.timeout, 300)
  if (o.dataDir) return (await import('./local/power.js')).power(command as PowerCommand, refs, { ...o, concurrency, timeoutS })
  const api = await connect(o)
  const progress = powerProgress(command, refs.length)
  // Each failed BMC attempt as the server records it (it retries with backoff): a line as it happens. Optional: a
  // token that cannot open the stream just sees the results.
  const names = new Map<string, string>()
  const stop = new AbortController()
  let opened: () => void = () => {}
  const open = new Promise<void>((resolve) => (opened = resolve))
  const stream = api.events({ types: 'power' }, (e) => {
    const name = e.machineId ? names.get(e.machineId) : undefined
    // A failed attempt the server tries again (or resolves by reading the BMC back): the final one is in the table.
    if (name && e.data?.ok === false && (e.data.final !== true || e.data.ambiguous === true)) progress.line(`${name}: ${printable(e.message)}`)
  }, stop.signal, () => opened()).then((ok) => {
    if (!ok) opened()
  })
  await Promise.race([open, new Promise((r) => setTimeout(r, 2000))])

  const outcomes: Outcome[] = []
  await eachConcurrently(refs, concurrency, async (ref) => {
    const started = Date.now()
    progress.start(ref)
    const timeout = AbortSignal.timeout(timeoutS * 1000)
    try {
      // Who it is (id for the event stream, name for the table), then the action.
      const m = await api.get<{ id: string; name: string | null }>(machinePath(ref), { query: { timeline: 0 }, signal: timeout })
      names.set(m.id, printable(m.name ?? m.id))
      const result = await one(api, command as PowerCommand, ref, o, timeout)
      outcomes.push({ machine: m.name ?? m.id, ok: true, result, ms: Date.now() - started })
    } catch (err) {
      const message = timeout.aborted ? `gave up after ${timeoutS} s (--timeout); anything already sent to the BMC was not recalled` : (err as Error).message
      outcomes.push({ machine: ref, ok: false, result: message.replace(/\s+/g, ' '), ms: Date.now() - started })
    }
    progress.finish(ref, outcomes[outcomes.length - 1]!.ok)
  })
  progress.end()
  // An attempt's event can trail its answer by a moment (the server writes the timeline, then streams it).
  if (outcomes.some((x) => !x.ok)) await new Promise((r) => setTimeout(r, 300))
  stop.abort()
  await stream
  return printOutcomes(outcomes, o.json)
}
