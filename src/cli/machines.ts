import { MACHINE_STATES, type Machine, type MachineState } from '../inventory/index.js'
import { createAllocator, resolveProfile } from '../lifecycle/index.js'
import { silentLogger } from '../log.js'
import { formatInstallDisk, installDiskFor } from './install-disk.js'
import { formatAge, formatBytes, printable, renderTable } from './table.js'
import { parse, printJson, UsageError, withContext } from './context.js'
import { resolveMachine } from './resolve.js'
import { bmcCommand } from './bmc.js'

export const MACHINES_USAGE = `rackboot machines <command>

  list [--state S] [--label k=v]... [--search TEXT] [--limit N] [--json]
  show MACHINE [--json]                 MACHINE: id, name, MAC, SMBIOS uuid or serial
  accept MACHINE...                     discovered -> ready
  label MACHINE k=v... [k-]...          set (k=v) or remove (k-) labels
  retry MACHINE... [--reason TEXT]      failed -> provisioning, failure counts reset (the server's ladder PXE-boots it)
  replace MACHINE [--key KEY] [--json]  a ready machine of the same class and role takes its place in the cluster;
                                        it is released (wiped), or stays quarantined if it failed
  delete MACHINE... --yes
  logs MACHINE [--follow] [--limit N]  Talos's kernel log, from the running server (RACKBOOT_TOKEN, read scope)
  bmc show|set|adopt|remove MACHINE    the BMC: address, credentials (env:/file: only), per-BMC settings, and
                                        adopting the address the discovery agent reported (rackboot machines bmc --help)`

function summary(m: Machine): string {
  const hw = m.hardware
  const parts: string[] = []
  if (hw?.cpu?.cores) parts.push(`${hw.cpu.cores}c`)
  if (hw?.memory?.totalBytes) parts.push(formatBytes(hw.memory.totalBytes))
  if (hw?.disks?.length) parts.push(`${hw.disks.length} disk${hw.disks.length > 1 ? 's' : ''}`)
  return parts.join(' ')
}

export async function machinesCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args
  // Its own flags (and --help per command): parsed there.
  if (sub === 'bmc') return bmcCommand(rest)
  const { values, positionals } = parse(rest, {
    state: { type: 'string', multiple: true },
    label: { type: 'string', multiple: true },
    search: { type: 'string' },
    limit: { type: 'string' },
    yes: { type: 'boolean' },
    follow: { type: 'boolean', short: 'f' },
    reason: { type: 'string' },
    key: { type: 'string' },
  })
  if (!sub || values.help || sub === '--help' || sub === '-h') {
    console.log(MACHINES_USAGE)
    return sub ? 0 : 2
  }
  return withContext(values, async ({ inventory, lifecycle, settings }) => {
    switch (sub) {
      case 'logs': {
        const [ref] = positionals
        if (!ref) throw new UsageError('machines logs needs a MACHINE')
        const m = await resolveMachine(inventory, ref)
        const host = settings.http.listen === '0.0.0.0' || settings.http.listen === '::' ? '127.0.0.1' : settings.http.listen
        const server = (settings.cli.server || `http://${host}:${settings.http.port}`).replace(/\/+$/, '')
        if (!settings.cli.token) throw new UsageError('machines logs asks the running server: set RACKBOOT_TOKEN to an API token with the read scope')
        const limit = values.limit ? Number(values.limit) : 200
        let since: number | null = null
        for (;;) {
          const q = new URLSearchParams({ limit: String(limit), ...(since !== null ? { since: String(since) } : {}) })
          const res = await fetch(`${server}/api/v1/machines/${encodeURIComponent(m.id)}/logs?${q}`, { headers: { authorization: `Bearer ${settings.cli.token}` } })
            .catch((err: Error) => { throw new UsageError(`cannot reach the server at ${server}: ${err.message}`) })
          if (!res.ok) throw new UsageError(`server answered ${res.status}: ${(await res.text()).slice(0, 200)}`)
          const body = (await res.json()) as { lines: { cursor: number; receivedAt: string; msg: string; priority: string | null }[]; next: number | null }
          if (values.json) printJson(body)
          // Kernel log lines come from the network unauthenticated: control characters are shown, not obeyed.
          else for (const l of body.lines) console.log(`${l.receivedAt.replace('T', ' ').replace('Z', '')}  ${printable(l.msg)}`)
          if (!values.follow) return 0
          if (body.next !== null) since = body.next
          await new Promise((r) => setTimeout(r, 1000))
        }
      }
      case 'list': {
        const states = (values.state ?? []).flatMap((s) => s.split(','))
        for (const s of states) {
          if (!MACHINE_STATES.includes(s as MachineState)) throw new UsageError(`unknown state '${s}'; one of: ${MACHINE_STATES.join(', ')}`)
        }
        const labels = Object.fromEntries((values.label ?? []).map((l) => {
          const eq = l.indexOf('=')
          if (eq <= 0) throw new UsageError(`--label expects key=value, got '${l}'`)
          return [l.slice(0, eq), l.slice(eq + 1)]
        }))
        const limit = values.limit ? Number(values.limit) : 200
        if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit expects a positive whole number')
        const filter = { ...(states.length ? { state: states as MachineState[] } : {}), labels, ...(values.search ? { text: values.search } : {}) }
        const page = await inventory.machines.list({ ...filter, limit })
        if (values.json) {
          printJson(page)
          return 0
        }
        const total = await inventory.machines.count(filter)
        const now = Date.now()
        console.log(renderTable(page.items, [
          { header: 'id', value: (m) => m.id },
          { header: 'name', value: (m) => m.name },
          { header: 'state', value: (m) => m.state },
          { header: 'serial', value: (m) => m.serial },
          { header: 'boot mac', value: (m) => (m.nics.find((n) => n.boot) ?? m.nics[0])?.mac },
          { header: 'rack', value: (m) => (m.rack ? `${m.rack}${m.rackUnit ? `/u${m.rackUnit}` : ''}` : null) },
          { header: 'hardware', value: summary },
          { header: 'labels', value: (m) => Object.entries(m.labels).map(([k, v]) => `${k}=${v}`).join(',') },
          { header: 'changed', value: (m) => formatAge(m.stateChangedAt, now), align: 'right' },
        ]))
        console.log(`\n${page.items.length} of ${total} machine${total === 1 ? '' : 's'}${page.next ? ' (use --limit or filters to see more)' : ''}`)
        return 0
      }
      case 'show': {
        const [ref] = positionals
        if (!ref) throw new UsageError('machines show needs a MACHINE')
        const m = await resolveMachine(inventory, ref)
        const bmc = await inventory.bmcs.get(m.id)
        const events = await inventory.events.list({ machineId: m.id, limit: 10000 })
        const recent = events.slice(-20)
        const resolved = await resolveProfile(inventory, m)
        const installDisk = resolved.profile ? installDiskFor(m, resolved.profile) : null
        if (values.json) {
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
      }
      case 'accept': {
        if (positionals.length === 0) throw new UsageError('machines accept needs at least one MACHINE')
        for (const ref of positionals) {
          const m = await resolveMachine(inventory, ref)
          const after = await lifecycle.accept(m.id, 'accepted by a tech (CLI)')
          console.log(printable(`${after.name ?? after.id}: ${after.state}`))
        }
        return 0
      }
      case 'label': {
        const [ref, ...changes] = positionals
        if (!ref || changes.length === 0) throw new UsageError('machines label needs a MACHINE and k=v or k- items')
        const m = await resolveMachine(inventory, ref)
        const labels = { ...m.labels }
        for (const c of changes) {
          if (c.endsWith('-') && !c.includes('=')) delete labels[c.slice(0, -1)]
          else {
            const eq = c.indexOf('=')
            if (eq <= 0) throw new UsageError(`label change must be key=value or key-, got '${c}'`)
            labels[c.slice(0, eq)] = c.slice(eq + 1)
          }
        }
        const after = await lifecycle.update(m.id, { labels }, 'labels changed (CLI)')
        console.log(printable(`${after.name ?? after.id}: ${Object.entries(after.labels).map(([k, v]) => `${k}=${v}`).join(', ') || '(no labels)'}`))
        return 0
      }
      case 'retry': {
        if (positionals.length === 0) throw new UsageError('machines retry needs at least one MACHINE')
        for (const ref of positionals) {
          const m = await resolveMachine(inventory, ref)
          if (m.state !== 'failed') throw new UsageError(`${m.name ?? m.id} is ${m.state}: only a failed machine is retried`)
          if (!(await inventory.allocations.current(m.id))) throw new UsageError(`${m.name ?? m.id} left its cluster (it was replaced): nothing to retry; send it to maintenance to look at it`)
          const after = await lifecycle.transition(m.id, 'provisioning', `retry by a tech (CLI)${values.reason ? `: ${values.reason}` : ''}`, { from: 'failed' })
          console.log(printable(`${after.name ?? after.id}: ${after.state}`))
        }
        return 0
      }
      case 'replace': {
        const [ref] = positionals
        if (!ref || positionals.length > 1) throw new UsageError('machines replace needs one MACHINE')
        const m = await resolveMachine(inventory, ref)
        const allocator = createAllocator({ inventory, lifecycle, log: silentLogger() })
        const r = await allocator.replace(m.id, { idempotencyKey: values.key ?? null, cause: 'replacement by a tech (CLI)' })
        if (values.json) printJson(r)
        else {
          const fresh = r.allocation.machines[0]
          console.log(printable(`${m.name ?? m.id} ${r.replaced?.action === 'quarantined' ? 'stays quarantined' : 'released'}; ${fresh?.name ?? fresh?.id ?? '?'} takes its place (${r.allocation.id}${r.allocation.cluster ? `, cluster ${r.allocation.cluster} as ${r.allocation.role}` : ''})${r.replayed ? ' [replayed]' : ''}`))
        }
        return 0
      }
      case 'delete': {
        if (positionals.length === 0) throw new UsageError('machines delete needs at least one MACHINE')
        if (!values.yes) throw new UsageError('machines delete removes the machine, its NICs, hardware and BMC: add --yes to confirm')
        for (const ref of positionals) {
          const m = await resolveMachine(inventory, ref)
          await lifecycle.remove(m.id, 'deleted by a tech (CLI)')
          console.log(printable(`deleted ${m.name ?? m.id}`))
        }
        return 0
      }
      default:
        throw new UsageError(`unknown machines command '${sub}'\n\n${MACHINES_USAGE}`)
    }
  })
}
