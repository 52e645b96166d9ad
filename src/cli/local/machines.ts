import { MACHINE_STATES, type Machine, type MachineState } from '../../inventory/index.js'
import { createAllocator, resolveProfile } from '../../lifecycle/index.js'
import { silentLogger } from '../../log.js'
import { formatInstallDisk, installDiskFor } from '../install-disk.js'
import { formatAge, formatBytes, printable, renderTable } from '../table.js'
import { withContext } from '../context.js'
import { keyValues, labelChanges, palette, positiveInt, printJson, stateColour, terminalWidth, UsageError, type GlobalOptions } from '../common.js'
import { resolveMachine } from '../resolve.js'
import { printMachineTable } from '../machine-list.js'

// `rackboot machines ... --data-dir DIR`: the same commands on a data directory's database, without a server (it is
// stopped, or the box is being prepared). A read never creates a database.

type Options = GlobalOptions & Record<string, unknown>

function summary(m: Machine): string {
  const hw = m.hardware
  const parts: string[] = []
  if (hw?.cpu?.cores) parts.push(`${hw.cpu.cores}c`)
  if (hw?.memory?.totalBytes) parts.push(formatBytes(hw.memory.totalBytes))
  if (hw?.disks?.length) parts.push(`${hw.disks.length} disk${hw.disks.length > 1 ? 's' : ''}`)
  return parts.join(' ')
}

const SORTS: Record<string, (m: Machine) => string | number> = {
  name: (m) => m.name ?? m.id, state: (m) => m.state, rack: (m) => `${m.rack ?? '\uffff'}/${String(m.rackUnit ?? 0).padStart(5, '0')}`,
  serial: (m) => m.serial ?? '\uffff', createdAt: (m) => m.createdAt, updatedAt: (m) => m.updatedAt,
}

export async function list(o: Options): Promise<number> {
  const states = ((o.state as string[] | undefined) ?? []).flatMap((s) => s.split(','))
  for (const s of states) {
    if (!MACHINE_STATES.includes(s as MachineState)) throw new UsageError(`unknown state '${s}'; one of: ${MACHINE_STATES.join(', ')}`)
  }
  const labels = keyValues('--label', o.label as string[] | undefined)
  if (o.class || o.selector) throw new UsageError('--class and --selector are evaluated by the server: leave out --data-dir')
  const all = o.all === true
  const limit = all ? Number.MAX_SAFE_INTEGER : positiveInt('--limit', o.limit as string | undefined, 200)
  const sort = o.sort as string | undefined
  const key = sort ? SORTS[sort.replace(/^-/, '')] : undefined
  if (sort && !key) throw new UsageError(`--sort takes one of ${Object.keys(SORTS).join(', ')} (a leading - sorts descending), got '${sort}'`)
  const filter = {
    ...(states.length ? { state: states as MachineState[] } : {}), labels,
    ...(o.search ? { text: o.search as string } : {}), ...(o.rack ? { rack: o.rack as string } : {}),
  }
  return withContext(o, async ({ inventory }) => {
    // Sorted lists read every match (a local database, a bounded inventory); unsorted ones one page.
    const items: Machine[] = []
    let after = o.cursor as string | undefined
    let next: string | null = null
    do {
      const page = await inventory.machines.list({ ...filter, limit: key ? 1000 : Math.min(1000, limit - items.length), ...(after ? { after } : {}) })
      items.push(...page.items)
      next = page.next
      after = page.next ?? undefined
    } while (next && (key || items.length < limit))
    if (key) {
      const dir = sort!.startsWith('-') ? -1 : 1
      items.sort((a, b) => {
        const x = key(a)
        const y = key(b)
        return (x < y ? -1 : x > y ? 1 : 0) * dir
      })
      next = items.length > limit ? 'more' : null
      items.splice(limit)
    }
    if (o.json) {
      printJson({ items, next: key ? null : next })
      return 0
    }
    const total = await inventory.machines.count(filter)
    printMachineTable(items.map((m) => ({ ...m, hardware: summary(m) })), total, next !== null)
    return 0
  }, { create: false })
}

export async function show(ref: string, o: Options): Promise<number> {
  const limit = positiveInt('--timeline', o.timeline as string | undefined, 20)
  return withContext(o, async ({ inventory }) => {
    const m = await resolveMachine(inventory, ref)
    const bmc = await inventory.bmcs.get(m.id)
    const events = await inventory.events.list({ machineId: m.id, limit: 10000 })
    const recent = events.slice(-limit)
    const resolved = await resolveProfile(inventory, m)
    const installDisk = resolved.profile ? installDiskFor(m, resolved.profile) : null
    if (o.json) {
      printJson({ ...m, bmc, resolvedProfile: resolved.profile?.name ?? null, installDisk, timeline: recent })
      return 0
    }
    const rows: [string, string | null | undefined][] = [
      ['id', m.id], ['name', m.name], ['state', m.state], ['serial', m.serial], ['uuid', m.uuid],
      ['manufacturer', m.manufacturer], ['product', m.product], ['arch', m.arch], ['firmware', m.firmware],
      ['rack', m.rack ? `${m.rack}${m.rackUnit ? ` u${m.rackUnit}` : ''}` : null],
      ['profile', resolved.profile ? `${resolved.profile.name}${m.profile ? '' : ` (${resolved.reason})`}` : m.profile],
      ['install disk', installDisk ? formatInstallDisk(installDisk) : null],
      ['network', m.network ? `static: ${m.network.addresses.flatMap((a) => a.addresses).join(', ') || 'no addresses'}` : 'DHCP'],
      ['labels', Object.entries(m.labels).map(([k, v]) => `${k}=${v}`).join(', ')],
      ['always pxe', m.alwaysPxe ? 'yes' : 'no'],
      ['bmc', bmc ? `${bmc.type} ${bmc.address}${bmc.port ? `:${bmc.port}` : ''} user ${bmc.username ?? '-'}${bmc.hasPassword ? '' : ' (no password)'}` : null],
      ['hardware', m.hardware ? summary(m) : 'not reported yet'],
      ['created', new Date(m.createdAt).toISOString()],
    ]
    const width = Math.max(...rows.map(([k]) => k.length))
    // SMBIOS strings are what an unauthenticated report said: escaped like table cells (renderTable).
    for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${printable(v || '-')}`)
    if (m.nics.length) {
      console.log('\nNICs')
      console.log(renderTable(m.nics, [
        { header: 'mac', value: (n) => n.mac },
        { header: 'name', value: (n) => n.name },
        { header: 'boot', value: (n) => (n.boot ? 'yes' : '') },
      ]))
    }
    if (m.network?.addresses.length) {
      console.log('\nNetwork (static, in the Talos config)')
      console.log(renderTable(m.network.addresses, [
        { header: 'link', value: (a) => a.link ?? `mac ${a.mac}` },
        { header: 'addresses', value: (a) => a.addresses.join(', ') },
        { header: 'gateway', value: (a) => a.gateway },
        { header: 'mtu', value: (a) => a.mtu, align: 'right' },
      ]))
    }
    if (m.network?.nameservers?.length) console.log(`${m.network.addresses.length ? '' : '\n'}nameservers: ${printable(m.network.nameservers.join(', '))}`)
    if (m.hardware?.disks?.length) {
      console.log('\nDisks')
      console.log(renderTable(m.hardware.disks, [
        { header: 'name', value: (d) => d.name },
        { header: 'type', value: (d) => d.type },
        { header: 'size', value: (d) => formatBytes(d.sizeBytes), align: 'right' },
        { header: 'model', value: (d) => d.model },
        { header: 'serial', value: (d) => d.serial },
      ]))
    }
    console.log(`\nTimeline (last ${recent.length} of ${events.length})`)
    if (recent.length === 0) console.log('  (nothing yet)')
    else console.log(renderTable(recent, [
      { header: 'time', value: (e) => new Date(e.at).toISOString().replace('T', ' ').replace('Z', '') },
      { header: 'event', value: (e) => e.type },
      { header: 'what', value: (e) => e.message },
    ]))
    return 0
  }, { create: false })
}

export async function accept(refs: string[], o: Options): Promise<number> {
  return withContext(o, async ({ inventory, lifecycle }) => {
    for (const ref of refs) {
      const m = await resolveMachine(inventory, ref)
      const after = await lifecycle.accept(m.id, 'accepted by a tech (CLI)')
      console.log(printable(`${after.name ?? after.id}: ${after.state}`))
    }
    return 0
  }, { create: false })
}

export async function label(ref: string, changes: string[], o: Options): Promise<number> {
  const patch = labelChanges(changes)
  return withContext(o, async ({ inventory, lifecycle }) => {
    const m = await resolveMachine(inventory, ref)
    const labels = { ...m.labels }
    for (const [k, v] of Object.entries(patch)) {
      if (v === null) delete labels[k]
      else labels[k] = v
    }
    const after = await lifecycle.update(m.id, { labels }, 'labels changed (CLI)')
    console.log(printable(`${after.name ?? after.id}: ${Object.entries(after.labels).map(([k, v]) => `${k}=${v}`).join(', ') || '(no labels)'}`))
    return 0
  }, { create: false })
}

export async function retry(refs: string[], o: Options): Promise<number> {
  return withContext(o, async ({ inventory, lifecycle }) => {
    for (const ref of refs) {
      const m = await resolveMachine(inventory, ref)
      if (m.state !== 'failed') throw new UsageError(`${m.name ?? m.id} is ${m.state}: only a failed machine is retried`)
      if (!(await inventory.allocations.current(m.id))) throw new UsageError(`${m.name ?? m.id} left its cluster (it was replaced): nothing to retry; send it to maintenance to look at it`)
      const after = await lifecycle.transition(m.id, 'provisioning', `retry by a tech (CLI)${o.reason ? `: ${o.reason}` : ''}`, { from: 'failed' })
      console.log(printable(`${after.name ?? after.id}: ${after.state}${o.pxe === false ? '' : ' (no server: PXE-boot it with rackboot power pxe)'}`))
    }
    return 0
  }, { create: false })
}

export async function replace(ref: string, o: Options): Promise<number> {
  return withContext(o, async ({ inventory, lifecycle }) => {
    const m = await resolveMachine(inventory, ref)
    const allocator = createAllocator({ inventory, lifecycle, log: silentLogger() })
    const r = await allocator.replace(m.id, { idempotencyKey: (o.key as string | undefined) ?? null, cause: 'replacement by a tech (CLI)' })
    if (o.json) printJson(r)
    else {
      const fresh = r.allocation.machines[0]
      console.log(printable(`${m.name ?? m.id} ${r.replaced?.action === 'quarantined' ? 'stays quarantined' : 'released'}; ${fresh?.name ?? fresh?.id ?? '?'} takes its place (${r.allocation.id}${r.allocation.cluster ? `, cluster ${r.allocation.cluster} as ${r.allocation.role}` : ''})${r.replayed ? ' [replayed]' : ''}`))
    }
    return 0
  }, { create: false })
}

export async function remove(refs: string[], o: Options): Promise<number> {
  if (!o.yes) throw new UsageError('machines delete removes the machine, its NICs, hardware and BMC: add --yes to confirm')
  return withContext(o, async ({ inventory, lifecycle }) => {
    for (const ref of refs) {
      const m = await resolveMachine(inventory, ref)
      if ((m.state === 'provisioning' || m.state === 'installed') && !o.force) throw new UsageError(`${m.name ?? m.id} is ${m.state}: release it first, or add --force`)
      await lifecycle.remove(m.id, 'deleted by a tech (CLI)')
      console.log(printable(`deleted ${m.name ?? m.id}`))
    }
    return 0
  }, { create: false })
}
