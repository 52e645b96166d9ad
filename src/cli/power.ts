import type { Machine } from '../inventory/index.js'
import { rebootHistory } from '../lifecycle/index.js'
import { createPowerManager, type PowerAction } from '../power/index.js'
import { renderTable } from './table.js'
import { parse, printJson, UsageError, withContext } from './context.js'
import { resolveMachine } from './resolve.js'

export const POWER_USAGE = `rackboot power <command> MACHINE... [--concurrency N] [--json]

  status                 power state from each machine's BMC
  on | off | soft-off    power on, hard off, ACPI shutdown
  cycle | reset          power cycle (off then on), warm reset
  pxe [--uefi|--bios] [--persistent]
                         next boot from the network (read back and verified), then cycle or power on

MACHINE: id, name, MAC, SMBIOS uuid or serial. Many machines run at once (--concurrency, default 16), one
operation at a time per BMC; failures are listed, and the exit code is 1 when any failed.`

const ACTIONS = ['status', 'on', 'off', 'soft-off', 'cycle', 'reset', 'pxe'] as const
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
    uefi: { type: 'boolean' },
    bios: { type: 'boolean' },
    persistent: { type: 'boolean' },
  })
  if (!sub || values.help) {
    console.log(POWER_USAGE)
    return sub ? 0 : 2
  }
  if (!(ACTIONS as readonly string[]).includes(sub)) throw new UsageError(`unknown power command '${sub}'\n\n${POWER_USAGE}`)
  if (positionals.length === 0) throw new UsageError(`power ${sub} needs at least one MACHINE`)
  if (values.uefi && values.bios) throw new UsageError('give --uefi or --bios, not both')
  const concurrency = values.concurrency ? Number(values.concurrency) : 16
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new UsageError('--concurrency expects a positive whole number')
  const command = sub as Command

  return withContext(values, async ({ inventory, lifecycle, settings, log }) => {
    const machines: Machine[] = []
    for (const ref of positionals) machines.push(await resolveMachine(inventory, ref))
    const power = createPowerManager({
      bmcs: inventory.bmcs, log, settings: settings.power, lastRebootAt: rebootHistory(inventory),
      driverOptions: { ipmi: { bootVerify: settings.power.ipmiBootVerify } },
      observer: {
        result: (r) => {
          if (r.final) lifecycle.record(r.machineId, 'power', r.ok ? `power ${r.action} (CLI): done in ${r.ms} ms` : `power ${r.action} (CLI) failed: ${r.error}`, { ...r, via: 'cli' })
        },
      },
    })
    const outcomes: Outcome[] = []
    let done = 0
    const tty = process.stderr.isTTY === true
    const progress = () => {
      const failed = outcomes.filter((o) => !o.ok).length
      const line = `power ${command}: ${done}/${machines.length} done${failed ? `, ${failed} failed` : ''}`
      if (tty) process.stderr.write(`\r${line}\x1b[K`)
      else if (done === machines.length || done % Math.max(1, Math.ceil(machines.length / 10)) === 0) process.stderr.write(`${line}\n`)
    }
    const run = async (m: Machine): Promise<void> => {
      const started = Date.now()
      const name = m.name ?? m.id
      try {
        let result: string
        if (command === 'status') result = await power.status(m.id)
        else if (command === 'pxe') {
          const mode = values.bios ? 'bios' : values.uefi ? 'uefi' : m.firmware === 'bios' ? 'bios' : 'uefi'
          const r = await power.pxeBootNow(m.id, { mode, persistent: values.persistent ?? false })
          result = `next boot ${r.readback.device}${r.readback.mode ? ` ${r.readback.mode}` : ''}${values.persistent ? ' (persistent)' : ''} verified; was ${r.previous}, ${r.action === 'cycle' ? 'power cycled' : 'powered on'}`
        } else {
          await power.power(m.id, command as PowerAction)
          result = `${command}: done`
        }
        outcomes.push({ machine: name, ok: true, result, ms: Date.now() - started })
      } catch (err) {
        outcomes.push({ machine: name, ok: false, result: (err as Error).message, ms: Date.now() - started })
      }
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
