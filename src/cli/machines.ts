// `rackboot machines ...` through the server's API. With --data-dir, the commands that have a local form open that
// data directory's database instead (./local/machines.ts).
import { MACHINE_STATES } from '../inventory/types.js'
import { connect, machinePath } from './client.js'
import { keyValues, labelChanges, palette, positiveInt, printJson, stateColour, statusLine, terminalWidth, UsageError, type GlobalOptions } from './common.js'
import { describeDiskSelector, type ClassTestView } from './classes.js'
import { formatAge, formatBytes, printable, renderTable } from './table.js'
import { printMachineTable } from './machine-list.js'

type Options = GlobalOptions & Record<string, unknown>

/** A machine as the API lists it (the fields the CLI shows). */
export interface ApiMachine {
  id: string
  name: string | null
  uuid: string | null
  serial: string | null
  manufacturer: string | null
  product: string | null
  arch: string | null
  firmware: string | null
  state: string
  labels: Record<string, string>
  rack: string | null
  rackUnit: number | null
  alwaysPxe: boolean
  profile: string | null
  network: { addresses: { link?: string | null; mac?: string | null; addresses: string[]; gateway?: string | null; mtu?: number | null }[]; nameservers?: string[] } | null
  nics: { mac: string; name: string | null; boot: boolean }[]
  hardware: { cpuCores: number | null; memoryBytes: number | null; diskCount: number; nvmeCount: number } | null
  createdAt: string
  updatedAt: string
  stateChangedAt: string
  bmc: { type: string; address: string; bootMethod: string } | null
  power: { state: string | null; checkedAt: string; error: string | null } | null
}

export interface MachinePage {
  items: ApiMachine[]
  next: string | null
  total?: number
}

const local = () => import('./local/machines.js')

export const SORT_FIELDS = ['name', 'state', 'rack', 'serial', 'createdAt', 'updatedAt'] as const

/** A machine's name for a line of output (escaped: names and serials can come from unauthenticated reports). */
export function machineName(m: { name: string | null; id: string }): string {
  return printable(m.name ?? m.id)
}

export function hardwareSummary(h: ApiMachine['hardware']): string {
  if (!h) return ''
  const parts: string[] = []
  if (h.cpuCores) parts.push(`${h.cpuCores}c`)
  if (h.memoryBytes) parts.push(formatBytes(h.memoryBytes))
  if (h.diskCount) parts.push(`${h.diskCount} disk${h.diskCount > 1 ? 's' : ''}`)
  return parts.join(' ')
}

export async function list(o: Options): Promise<number> {
  if (o.dataDir) return (await local()).list(o)
  const states = ((o.state as string[] | undefined) ?? []).flatMap((s) => s.split(',')).filter(Boolean)
  for (const s of states) {
    if (!(MACHINE_STATES as readonly string[]).includes(s)) throw new UsageError(`unknown state '${s}'; one of: ${MACHINE_STATES.join(', ')}`)
  }
  const labels = Object.entries(keyValues('--label', o.label as string[] | undefined)).map(([k, v]) => `${k}=${v}`)
  const sort = o.sort as string | undefined
  if (sort !== undefined && !(SORT_FIELDS as readonly string[]).includes(sort.replace(/^-/, ''))) {
    throw new UsageError(`--sort takes one of ${SORT_FIELDS.join(', ')} (a leading - sorts descending), got '${sort}'`)
  }
  const all = o.all === true
  if (all && o.limit !== undefined) throw new UsageError('give --all or --limit, not both')
  const limit = all ? Infinity : positiveInt('--limit', o.limit as string | undefined, 200)
  const api = await connect(o)
  const filter = {
    ...(states.length ? { state: states.join(',') } : {}), label: labels,
    rack: o.rack as string | undefined, q: o.search as string | undefined,
  }
  const query = { ...filter, class: o.class as string | undefined, selector: o.selector as string | undefined, sort }

  // Pages of at most 1000 (the API's bound), following `next` until the limit or the end.
  const items: ApiMachine[] = []
  let cursor = o.cursor as string | undefined
  let next: string | null = null
  let total: number | undefined
  const status = statusLine()
  do {
    const page: MachinePage = await api.get('/machines', { query: { ...query, limit: Math.min(1000, limit - items.length), cursor } })
    items.push(...page.items)
    total ??= typeof page.total === 'number' ? page.total : undefined
    next = page.next
    cursor = page.next ?? undefined
    if (next) status.draw(`machines: ${items.length}${total !== undefined ? ` of ${total}` : ''} fetched…`)
  } while (next && items.length < limit)
  status.end()

  if (o.json) {
    printJson({ items, next, ...(total !== undefined ? { total } : {}) })
    return 0
  }
  // The total, when the filters are ones the counts take (a class or selector is evaluated per machine).
  if (total === undefined && !o.class && !o.selector && !o.cursor) {
    if (!next) total = items.length
    else {
      const counts = await api.get<{ total: number; states: Record<string, number> }>('/overview/counts', { query: { label: labels, rack: filter.rack, q: filter.q } }).catch(() => null)
      if (counts) total = states.length ? states.reduce((n, s) => n + (counts.states[s] ?? 0), 0) : counts.total
    }
  }
  printMachineTable(items.map((m) => ({ ...m, hardware: hardwareSummary(m.hardware), stateChangedAt: Date.parse(m.stateChangedAt) })), total, next !== null)
  return 0
}

interface MachineDetail extends ApiMachine {
  facts: { bmc?: { address?: string }; disks?: { name: string; type?: string; sizeBytes?: number; model?: string; serial?: string }[] } & Record<string, unknown> | null
  bmc: (ApiMachine['bmc'] & { port: number | null; username: string | null; hasPassword: boolean }) | null
  leases: { ip: string; mac: string; state: string; expiresAt: string }[]
  allocation: { allocationId: string; class: string | null; cluster: string | null; role: string | null; profile: string | null } | null
  timeline: { seq: number; type: string; at: string; message: string }[]
  repair?: { phase: string; deadlineAt: string; failures: number } | null
}

export async function show(ref: string, o: Options): Promise<number> {
  if (o.dataDir) return (await local()).show(ref, o)
  const limit = positiveInt('--timeline', o.timeline as string | undefined, 20)
  const api = await connect(o)
  const m = await api.get<MachineDetail>(machinePath(ref), { query: { timeline: limit } })
  if (o.json) {
    printJson(m)
    return 0
  }
  // Which profile it gets and why, and the install disk: the class match (a server without it: left out).
  const match = await api.get<ClassTestView>(machinePath(m.id, '/class-match')).catch(() => null)
  const disk = match?.installDisk
  const p = palette()
  const bmc = m.bmc
  const rows: [string, string | null | undefined][] = [
    ['id', m.id], ['name', m.name], ['state', m.state], ['serial', m.serial], ['uuid', m.uuid],
    ['manufacturer', m.manufacturer], ['product', m.product], ['arch', m.arch], ['firmware', m.firmware],
    ['rack', m.rack ? `${m.rack}${m.rackUnit ? ` u${m.rackUnit}` : ''}` : null],
    ['profile', match ? (match.profile ? `${match.profile}${m.profile ? '' : ` (${match.reason})`}` : null) : m.profile ?? m.allocation?.profile],
    ['install disk', disk && match?.profile ? `${disk.disk ?? `none: ${disk.reason}`} (profile ${match.profile}: ${describeDiskSelector(disk.selector)})` : null],
    ['allocation', m.allocation ? `${m.allocation.allocationId}${m.allocation.cluster ? `, cluster ${m.allocation.cluster}` : ''}${m.allocation.role ? ` as ${m.allocation.role}` : ''}` : null],
    ['network', m.network ? `static: ${m.network.addresses.flatMap((a) => a.addresses).join(', ') || 'no addresses'}` : 'DHCP'],
    ['addresses', m.leases.map((l) => `${l.ip} (${l.state})`).join(', ')],
    ['labels', Object.entries(m.labels).map(([k, v]) => `${k}=${v}`).join(', ')],
    ['always pxe', m.alwaysPxe ? 'yes' : 'no'],
    ['bmc', bmc ? `${bmc.type} ${bmc.address}${bmc.port ? `:${bmc.port}` : ''} user ${bmc.username ?? '-'}${bmc.hasPassword ? '' : ' (no password)'}` : null],
    ['power', m.power ? `${m.power.state ?? `unknown: ${m.power.error}`} (read ${m.power.checkedAt})` : null],
    ['hardware', m.hardware ? hardwareSummary(m.hardware) : 'not reported yet'],
    ['repair', m.repair ? `${m.repair.phase} until ${m.repair.deadlineAt}, ${m.repair.failures} failure${m.repair.failures === 1 ? '' : 's'}` : null],
    ['created', m.createdAt],
  ]
  const width = Math.max(...rows.map(([k]) => k.length))
  // SMBIOS strings are what an unauthenticated report said: escaped like table cells (renderTable).
  for (const [k, v] of rows) {
    const text = printable(v || '-')
    console.log(`${k.padEnd(width)}  ${k === 'state' ? stateColour(p, text) : text}`)
  }
  if (m.nics.length) {
    console.log(`\n${p.bold('NICs')}`)
    console.log(renderTable(m.nics, [
      { header: 'mac', value: (n) => n.mac },
      { header: 'name', value: (n) => n.name },
      { header: 'boot', value: (n) => (n.boot ? 'yes' : '') },
    ], { palette: p }))
  }
  if (m.network?.addresses.length) {
    console.log(`\n${p.bold('Network (static, in the Talos config)')}`)
    console.log(renderTable(m.network.addresses, [
      { header: 'link', value: (a) => a.link ?? `mac ${a.mac}` },
      { header: 'addresses', value: (a) => a.addresses.join(', ') },
      { header: 'gateway', value: (a) => a.gateway },
      { header: 'mtu', value: (a) => a.mtu, align: 'right' },
    ], { palette: p }))
  }
  if (m.network?.nameservers?.length) console.log(`${m.network.addresses.length ? '' : '\n'}nameservers: ${printable(m.network.nameservers.join(', '))}`)
  const disks = Array.isArray(m.facts?.disks) ? m.facts.disks : []
  if (disks.length) {
    console.log(`\n${p.bold('Disks')}`)
    console.log(renderTable(disks, [
      { header: 'name', value: (d) => d.name },
      { header: 'type', value: (d) => d.type },
      { header: 'size', value: (d) => formatBytes(d.sizeBytes), align: 'right' },
      { header: 'model', value: (d) => d.model },
      { header: 'serial', value: (d) => d.serial },
    ], { maxWidth: terminalWidth(), palette: p }))
  }
  // The API gives the newest first: shown oldest first, as a timeline reads.
  const events = [...m.timeline].sort((a, b) => a.seq - b.seq)
  console.log(`\n${p.bold(`Timeline (last ${events.length})`)}`)
  if (events.length === 0) console.log('  (nothing yet)')
  else console.log(renderTable(events, [
    { header: 'time', value: (e) => e.at.replace('T', ' ').replace('Z', '') },
    { header: 'event', value: (e) => e.type },
    { header: 'what', value: (e) => e.message },
  ], { maxWidth: terminalWidth(), palette: p }))
  return 0
}

/** One line per machine, in order; the first failure ends the run (as the local commands do). */
async function each(refs: readonly string[], fn: (ref: string) => Promise<string>): Promise<number> {
  for (const ref of refs) console.log(await fn(ref))
  return 0
}

export async function accept(refs: string[], o: Options): Promise<number> {
  if (o.dataDir) return (await local()).accept(refs, o)
  const api = await connect(o)
  return each(refs, async (ref) => {
    const m = await api.post<ApiMachine>(machinePath(ref, '/accept'))
    return `${machineName(m)}: ${m.state}`
  })
}

export async function label(ref: string, changes: string[], o: Options): Promise<number> {
  const changed = labelChanges(changes)
  if (o.dataDir) return (await local()).label(ref, changes, o)
  const api = await connect(o)
  const m = await api.json<ApiMachine>('PATCH', machinePath(ref), { body: { labels: changed } })
  console.log(printable(`${m.name ?? m.id}: ${Object.entries(m.labels).map(([k, v]) => `${k}=${v}`).join(', ') || '(no labels)'}`))
  return 0
}

export async function retry(refs: string[], o: Options): Promise<number> {
  if (o.dataDir) return (await local()).retry(refs, o)
  const api = await connect(o)
  return each(refs, async (ref) => {
    const r = await api.post<{ machine: ApiMachine; power: { status: string; message: string } | null }>(machinePath(ref, '/retry'), {
      ...(o.reason ? { reason: o.reason } : {}), pxeBoot: o.pxe !== false,
    }, { timeoutMs: 120_000 })
    return `${machineName(r.machine)}: ${r.machine.state}${r.power ? `; ${printable(r.power.message)}` : ''}`
  })
}

export async function replace(ref: string, o: Options): Promise<number> {
  if (o.dataDir) return (await local()).replace(ref, o)
  const api = await connect(o)
  const r = await api.post<{ allocation: { id: string; cluster: string | null; role: string | null; machines: { id: string; name: string | null }[] }; replayed: boolean; replaced: { id: string; action: string } | null }>(
    machinePath(ref, '/replace'), { ...(o.key ? { idempotencyKey: o.key } : {}), powerOn: o.powerOn === true }, { timeoutMs: 120_000 })
  if (o.json) printJson(r)
  else {
    const fresh = r.allocation.machines[0]
    console.log(printable(`${ref} ${r.replaced?.action === 'quarantined' ? 'stays quarantined' : 'released'}; ${fresh?.name ?? fresh?.id ?? '?'} takes its place (${r.allocation.id}${r.allocation.cluster ? `, cluster ${r.allocation.cluster} as ${r.allocation.role}` : ''})${r.replayed ? ' [replayed]' : ''}`))
  }
  return 0
}

export async function remove(refs: string[], o: Options): Promise<number> {
  if (!o.yes) throw new UsageError('machines delete removes the machine, its NICs, hardware and BMC: add --yes to confirm')
  if (o.dataDir) return (await local()).remove(refs, o)
  const api = await connect(o)
  return each(refs, async (ref) => {
    await api.json('DELETE', machinePath(ref), { query: { force: o.force === true }, scope: 'admin' })
    return `deleted ${printable(ref)}`
  })
}

interface LogPage {
  lines: { cursor: number; receivedAt: string; msg: string; priority: string | null }[]
  next: number | null
}

export async function logs(ref: string, o: Options): Promise<number> {
  const limit = positiveInt('--limit', o.limit as string | undefined, 200)
  const api = await connect(o)
  let since: number | null = null
  for (;;) {
    const body: LogPage = await api.get(machinePath(ref, '/logs'), { query: { limit, ...(since !== null ? { since } : {}) } })
    if (o.json) printJson(body)
    // Kernel log lines come from the network unauthenticated: control characters are shown, not obeyed.
    else for (const l of body.lines) console.log(`${l.receivedAt.replace('T', ' ').replace('Z', '')}  ${printable(l.msg)}`)
    if (!o.follow) return 0
    if (body.next !== null) since = body.next
    await new Promise((r) => setTimeout(r, 1000))
  }
}

export async function release(refs: string[], o: Options): Promise<number> {
  const api = await connect(o)
  const results: unknown[] = []
  for (const ref of refs) {
    const r = await api.post<{ machine: ApiMachine; released: boolean; allocationId: string | null; power: { status: string; message: string } | null }>(
      machinePath(ref, '/release'), { pxeBoot: o.pxe !== false }, { timeoutMs: 120_000 })
    results.push(r)
    if (!o.json) {
      console.log(`${machineName(r.machine)}: ${r.released ? `released${r.allocationId ? ` from ${r.allocationId}` : ''}` : 'already released'}, ${r.machine.state}${r.power ? `; ${printable(r.power.message)}` : ''}`)
    }
  }
  if (o.json) printJson(results)
  return 0
}

export async function maintenance(on: boolean, refs: string[], o: Options): Promise<number> {
  const api = await connect(o)
  return each(refs, async (ref) => {
    const m = await api.post<ApiMachine>(machinePath(ref, '/maintenance'), { on, ...(o.reason ? { reason: o.reason } : {}) })
    return `${machineName(m)}: ${m.state}`
  })
}

export async function identify(refs: string[], o: Options): Promise<number> {
  const seconds = o.seconds === undefined ? undefined : positiveInt('--seconds', o.seconds as string, 0)
  if (o.off && seconds !== undefined) throw new UsageError('give --seconds or --off, not both')
  const api = await connect(o)
  return each(refs, async (ref) => {
    const r = await api.post<{ result: string; note: string | null }>(machinePath(ref, '/identify'), { on: o.off !== true, ...(seconds !== undefined ? { seconds } : {}) }, { timeoutMs: 120_000 })
    return printable(`${ref}: ${r.result}${r.note ? `; ${r.note}` : ''}`)
  })
}

