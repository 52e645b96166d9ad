import type { Machine } from '../inventory/index.js'
import { rebootHistory } from '../lifecycle/index.js'
import {
  confirmedFields, createPowerManager, powerResultLine, type BootReadback, type PowerAction, type PowerOutcome, type PxeBootResult,
} from '../power/index.js'
import { renderTable } from './table.js'
import { parse, printJson, UsageError, withContext } from './context.js'
import { resolveMachine } from './resolve.js'
import { publicBaseUrl } from '../settings/public-url.js'
import { VIRTUAL_MEDIA_PATH } from '../http/plugins/virtual-media.js'

export const POWER_USAGE = `rackboot power <command> MACHINE... [--concurrency N] [--timeout SECONDS] [--json]

  status                 power state from each machine's BMC
  on | off | soft-off    power on, hard off, ACPI shutdown (a hard off after power.softOffTimeoutMs)
  cycle | reset          power cycle (off then on), warm reset; an off machine is powered on
  pxe [--uefi|--bios] [--persistent]
                         next boot from the network (read back and verified), then cycle or power on
  netboot                like pxe, by the machine's boot method (pxe, uefi-http or virtual-media)
  media-boot             insert rackboot's boot ISO as virtual media (Redfish), boot from it; ejected after the boot
  disk [--uefi|--bios] [--persistent]
                         next boot from the disk (read back and verified)
  clear-override         remove any next-boot override (the firmware's own boot order)
  boot-device            the next-boot override as the BMC reads it back

Every action is sent once and then verified by reading the BMC back: a request the BMC did not answer is never
sent again, its outcome is established from the power state or reported unknown. MACHINE: id, name, MAC, SMBIOS
uuid or serial. Many machines run at once (--concurrency, default 16), one operation at a time per BMC; each
machine gets at most --timeout seconds (default 300). Failures are listed, and the exit code is 1 when any failed.`

const ACTIONS = ['status', 'on', 'off', 'soft-off', 'cycle', 'reset', 'pxe', 'netboot', 'media-boot', 'disk', 'clear-override', 'boot-device'] as const
type Command = (typeof ACTIONS)[number]

interface Outcome {
  machine: string
  ok: boolean
  result: string
  ms: number
}

export async function powerCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args
  const { values, positionals } = parse(rest, {
    concurrency: { type: 'string' },
    timeout: { type: 'string' },
    uefi: { type: 'boolean' },
    bios: { type: 'boolean' },
    persistent: { type: 'boolean' },
  })
  if (!sub || values.help || sub === 'help' || sub === '--help') {
    console.log(POWER_USAGE)
    return sub ? 0 : 2
  }
  if (!(ACTIONS as readonly string[]).includes(sub)) throw new UsageError(`unknown power command '${sub}'\n\n${POWER_USAGE}`)
  if (positionals.length === 0) throw new UsageError(`power ${sub} needs at least one MACHINE`)
  if (values.uefi && values.bios) throw new UsageError('give --uefi or --bios, not both')
  const concurrency = values.concurrency ? Number(values.concurrency) : 16
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new UsageError('--concurrency expects a positive whole number')
  const timeoutS = values.timeout ? Number(values.timeout) : 300
  if (!Number.isFinite(timeoutS) || timeoutS <= 0) throw new UsageError('--timeout expects a number of seconds')
  const command = sub as Command

  return withContext(values, async ({ inventory, lifecycle, settings, log }) => {
    const baseUrl = publicBaseUrl(settings)
    const machines: Machine[] = []
    for (const ref of positionals) machines.push(await resolveMachine(inventory, ref))
    const power = createPowerManager({
      bmcs: inventory.bmcs, log, settings: settings.power, lastRebootAt: rebootHistory(inventory),
      driverOptions: { ipmi: { bootVerify: settings.power.ipmiBootVerify } },
      // The running server serves (and builds) the ISO at this URL.
      mediaUrl: () => settings.virtualMedia.imageUrl || `${baseUrl}${VIRTUAL_MEDIA_PATH}`,
      observer: { result: (r) => lifecycle.record(r.machineId, 'power', powerResultLine(r, 'CLI'), { ...r, via: 'cli' }) },
    })
    const outcomes: Outcome[] = []
    const pending = new Set<string>()
    let done = 0
    const tty = process.stderr.isTTY === true
    const progress = (): void => {
      const failed = outcomes.filter((o) => !o.ok).length
      const waiting = [...pending]
      const names = waiting.length ? `; waiting on ${waiting.slice(0, 4).join(', ')}${waiting.length > 4 ? ` +${waiting.length - 4}` : ''}` : ''
      const line = `power ${command}: ${done}/${machines.length} done${failed ? `, ${failed} failed` : ''}${names}`
      if (tty) process.stderr.write(`\r${line.slice(0, (process.stderr.columns ?? 120) - 1)}\x1b[K`)
      else if (done === machines.length || done % Math.max(1, Math.ceil(machines.length / 10)) === 0) process.stderr.write(`${line}\n`)
    }
    const mode = (m: Machine): 'uefi' | 'bios' => values.bios ? 'bios' : values.uefi ? 'uefi' : m.firmware === 'bios' ? 'bios' : 'uefi'
    const run = async (m: Machine): Promise<void> => {
      const started = Date.now()
      const name = m.name ?? m.id
      pending.add(name)
      // A bounded time per machine: a dead BMC cannot hold a bulk run; what was sent is not recalled.
      const signal = AbortSignal.timeout(timeoutS * 1000)
      try {
        const work = (async (): Promise<string> => {
          switch (command) {
            case 'status': return power.status(m.id)
            case 'pxe': return bootLine(await power.pxeBootNow(m.id, { mode: mode(m), persistent: values.persistent ?? false, signal }))
            case 'netboot': return bootLine(await power.netbootNow(m.id, { mode: mode(m), persistent: values.persistent ?? false, signal }))
            case 'media-boot': return bootLine(await power.netbootNow(m.id, { method: 'virtual-media', mode: mode(m), signal }))
            case 'disk': return `next boot ${readbackLine(await power.setBootDevice(m.id, { device: 'disk', mode: mode(m), persistent: values.persistent ?? false }))}`
            case 'clear-override': return `override ${readbackLine(await power.setBootDevice(m.id, { device: 'none' }))}`
            case 'boot-device': return readbackLine(await power.getBootDevice(m.id), false)
            default: return outcomeLine(await power.power(m.id, command as PowerAction, { signal }))
          }
        })()
        const result = await Promise.race([work, new Promise<never>((_, reject) => signal.addEventListener('abort', () =>
          reject(new Error(`gave up after ${timeoutS} s (--timeout); anything already sent to the BMC was not recalled`)), { once: true }))])
        outcomes.push({ machine: name, ok: true, result, ms: Date.now() - started })
      } catch (err) {
        outcomes.push({ machine: name, ok: false, result: (err as Error).message.replace(/\s+/g, ' '), ms: Date.now() - started })
      }
      pending.delete(name)
      done++
      progress()
    }
    const queue = [...machines]
    await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, async () => {
      for (let m = queue.shift(); m; m = queue.shift()) await run(m)
    }))
    if (tty) process.stderr.write('\n')
    await power.stop()
    outcomes.sort((a, b) => a.machine.localeCompare(b.machine))
    if (values.json) printJson(outcomes)
    else console.log(renderTable(outcomes, [
      { header: 'machine', value: (o) => o.machine },
      { header: 'ok', value: (o) => (o.ok ? 'yes' : 'FAILED') },
      { header: 'result', value: (o) => o.result },
      { header: 'ms', value: (o) => o.ms, align: 'right' },
    ]))
    return outcomes.every((o) => o.ok) ? 0 : 1
  })
}

/**
 * "pxe uefi next boot only, verified". A field the read-back could not confirm (the BMC does not keep or report
 * it) is never printed as if it were: it is named as not verifiable, with what the BMC did read back.
 */
export function readbackLine(r: BootReadback, checked = true): string {
  // A BMC that keeps only the device (ipmi_sim reads every override back "not valid") still confirmed the device.
  if (r.device === 'none' || (!r.enabled && !(checked && r.verified?.device))) return `cleared (reads back ${r.raw})`
  const persistence = r.persistent === null ? null : r.persistent ? 'every boot' : 'next boot only'
  if (!checked) return [r.device, r.mode ?? 'mode not reported', persistence ?? 'persistence not reported'].join(' ')
  const v = confirmedFields(r)
  const parts = [r.device, v.mode ? r.mode : null, v.persistent ? persistence : null].filter(Boolean)
  const unverified = [!v.mode && `mode (reads ${r.mode ?? 'nothing'})`, !v.persistent && `persistence (reads ${persistence ?? 'nothing'})`].filter(Boolean)
  const fallback = r.fallback === 'continuous' ? ' (the BMC keeps it for every boot; rackboot clears it after this boot)' : ''
  return `${parts.join(' ')}, verified${unverified.length ? `; ${unverified.join(' and ')} not verifiable on this BMC` : ''}${fallback}`
}

function bootLine(r: PxeBootResult): string {
  const how = r.method === 'virtual-media' ? 'virtual media inserted, ' : ''
  return `${how}next boot ${readbackLine(r.readback)}; was ${r.previous}, ${r.action === 'cycle' ? 'power cycled' : 'powered on'}` +
    `${r.verified ? ', on (verified)' : ''}${r.note ? `; ${r.note}` : ''}`
}

function outcomeLine(o: PowerOutcome): string {
  return `${o.action}: done, ${o.state ?? '?'}${o.verified ? ' (verified)' : ''}${o.note ? `; ${o.note}` : ''}`
}
