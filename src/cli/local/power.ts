import type { Machine } from '../../inventory/index.js'
import { rebootHistory } from '../../lifecycle/index.js'
import {
  confirmedFields, createPowerManager, powerResultLine, type BootReadback, type PowerAction, type PowerOutcome, type PxeBootResult,
} from '../../power/index.js'
import { publicBaseUrl } from '../../settings/public-url.js'
import { VIRTUAL_MEDIA_PATH } from '../../http/plugins/virtual-media.js'
import { withContext } from '../context.js'
import { eachConcurrently, powerProgress, printOutcomes, type Outcome, type PowerCommand, type PowerOptions } from '../power.js'
import { resolveMachine } from '../resolve.js'
import { printable } from '../table.js'

// `rackboot power ... --data-dir DIR`: the BMCs driven from this process, with the credentials in a data
// directory's database (the server stopped, or not reachable from here). Each attempt is on the machine's timeline
// as the server records it; a failed one is also a line on stderr.

type Options = Omit<PowerOptions, 'concurrency'> & { concurrency: number; timeoutS: number }

export async function power(command: PowerCommand, refs: string[], o: Options): Promise<number> {
  const timeoutS = o.timeoutS
  return withContext(o, async ({ inventory, lifecycle, settings, log }) => {
    const baseUrl = publicBaseUrl(settings)
    const machines: Machine[] = []
    for (const ref of refs) machines.push(await resolveMachine(inventory, ref))
    const names = new Map(machines.map((m) => [m.id, printable(m.name ?? m.id)]))
    const progress = powerProgress(command, machines.length)
    const power = createPowerManager({
      bmcs: inventory.bmcs, log, settings: settings.power, lastRebootAt: rebootHistory(inventory), leases: inventory.bmcLeases,
      driverOptions: { ipmi: { bootVerify: settings.power.ipmiBootVerify } },
      // The running server serves (and builds) the ISO at this URL.
      mediaUrl: () => settings.virtualMedia.imageUrl || `${baseUrl}${VIRTUAL_MEDIA_PATH}`,
      observer: {
        result: (r) => {
          const line = powerResultLine(r, 'CLI')
          lifecycle.record(r.machineId, 'power', line, { ...r, via: 'cli' })
          // A failed attempt that is tried again (or read back): the final outcome is in the table.
          if (!r.ok && (!r.final || r.ambiguous)) progress.line(`${names.get(r.machineId) ?? r.machineId}: ${line}`)
        },
      },
    })
    const outcomes: Outcome[] = []
    const mode = (m: Machine): 'uefi' | 'bios' => o.bios ? 'bios' : o.uefi ? 'uefi' : m.firmware === 'bios' ? 'bios' : 'uefi'
    const persistent = o.persistent ?? false
    await eachConcurrently(machines, o.concurrency, async (m) => {
      const started = Date.now()
      const name = m.name ?? m.id
      progress.start(name)
      // A bounded time per machine: a dead BMC cannot hold a bulk run; what was sent is not recalled.
      const signal = AbortSignal.timeout(timeoutS * 1000)
      try {
        const work = (async (): Promise<string> => {
          switch (command) {
            case 'status': return power.status(m.id)
            case 'pxe': return bootLine(await power.pxeBootNow(m.id, { mode: mode(m), persistent, signal }))
            case 'netboot': return bootLine(await power.netbootNow(m.id, { mode: mode(m), persistent, signal }))
            case 'media-boot': return bootLine(await power.netbootNow(m.id, { method: 'virtual-media', mode: mode(m), signal }))
            case 'disk': return `next boot ${readbackLine(await power.setBootDevice(m.id, { device: 'disk', mode: mode(m), persistent }))}`
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
      progress.finish(name, outcomes[outcomes.length - 1]!.ok)
    })
    progress.end()
    await power.stop()
    return printOutcomes(outcomes, o.json)
  }, { create: false })
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
