// `rackboot machines bmc show|set|adopt|remove` through the API (GET/PUT/PATCH/DELETE /api/v1/machines/{ref}/bmc,
// POST .../bmc/adopt), or a data directory's database with --data-dir (./local/bmc.ts). The server checks the
// settings with the inventory files' rules (bmc-settings.ts): a value is refused with the same words either way.
import { RackbootError } from '../errors.js'
import { adoptedBmcAddress, bmcHost, reportedBmcAddressProblem } from '../inventory/files/bmc-settings.js'
import { apiBody, bmcChangesOf, type BmcFlags } from './bmc-flags.js'
import { connect, isApiError, machinePath, type ApiClient } from './client.js'
import { palette, printJson, UsageError, type GlobalOptions } from './common.js'
import { printable, renderTable } from './table.js'

type Options = GlobalOptions & BmcFlags & { all?: boolean; dryRun?: boolean; yes?: boolean }

const local = () => import('./local/bmc.js')

/** A BMC without its secrets, as `show` prints it. */
export interface BmcView {
  machine: string
  machineId: string
  bmc: {
    type: string; address: string; port: number | null; username: string | null; hasPassword: boolean; hasKg: boolean; insecure: boolean
    fingerprint: string | null; systemId: string | null; ca: string | null; auth: string; cipherSuites: number[] | null; privilege: string | null
    bootVerify: string | null; bootMethod: string
  } | null
  power: { state: string | null; checkedAt: string; error: string | null } | null
  reported: string | null
}

/** `machines bmc show` as text (the server's answer and the local record alike). */
export function printBmcView(view: BmcView): void {
  const b = view.bmc
  const rows: [string, string | number | null | undefined][] = b
    ? [
        ['machine', view.machine], ['type', b.type], ['address', `${b.address}${b.port ? ` port ${b.port}` : ''}`],
        ['username', b.username], ['password', b.hasPassword ? 'stored' : 'none'],
        ...(b.type === 'redfish'
          ? ([
              ['system', b.systemId ?? 'the only one'], ['auth', b.auth],
              ['tls', b.insecure ? 'NOT verified (insecure)' : b.fingerprint ? `pinned sha256 ${b.fingerprint}` : b.ca ? 'system CAs + this BMC\'s CA' : 'system CAs'],
            ] as [string, string][])
          : ([
              ['cipher suites', b.cipherSuites?.join(', ') ?? 'default'], ['privilege', b.privilege ?? 'administrator'],
              ['K_G', b.hasKg ? 'stored' : 'none'], ['boot verify', b.bootVerify ?? 'default'],
            ] as [string, string][])),
        ['boot method', b.bootMethod],
        ['power', view.power ? `${view.power.state ?? `unknown: ${view.power.error}`} (read ${view.power.checkedAt})` : 'not read yet'],
        ['reported', view.reported ? `${view.reported}${bmcHost(b.address) === view.reported.toLowerCase() ? '' : ' (differs: rackboot machines bmc adopt)'}` : 'none'],
      ]
    : [['machine', view.machine], ['bmc', 'none'], ['reported', view.reported ?? 'none']]
  const width = Math.max(...rows.map(([k]) => k.length))
  // The reported address came from the machine, unauthenticated: shown escaped like every table cell.
  for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${printable(String(v ?? '-'))}`)
}

export interface Adoption {
  machine: string
  previous: string | null
  reported: string | null
  address: string | null
  result: string
  changed: boolean
}

/** The adoption table (or JSON); exit 1 when a machine named on the command line could not be adopted. */
export function printAdoptions(outcomes: Adoption[], o: { json?: boolean; all?: boolean; dryRun?: boolean }): number {
  if (o.json) printJson(outcomes)
  else if (outcomes.length === 0) console.log(o.all ? 'nothing to adopt: every reported BMC address is the stored one' : 'nothing adopted')
  else {
    console.log(renderTable(outcomes, [
      { header: 'machine', value: (a) => a.machine },
      { header: 'previous', value: (a) => a.previous },
      { header: 'reported', value: (a) => a.reported },
      { header: 'address', value: (a) => a.address },
      { header: 'result', value: (a) => a.result, colour: (c, a, p) => (a.result.startsWith('skipped') ? p.yellow(c) : a.changed ? p.green(c) : c) },
    ], { palette: palette() }))
    const n = outcomes.filter((a) => a.changed).length
    console.log(`\n${n} BMC${n === 1 ? '' : 's'} ${o.dryRun ? 'would be ' : ''}adopted`)
  }
  // A machine named on the command line that could not be adopted is a failure; under --all it is listed.
  return !o.all && outcomes.some((a) => a.result.startsWith('skipped')) ? 1 : 0
}

interface Detail {
  id: string
  name: string | null
  bmc: BmcView['bmc']
  power: BmcView['power']
  facts: { bmc?: { address?: string } } | null
}

async function viewOf(api: ApiClient, ref: string): Promise<BmcView> {
  const m = await api.get<Detail>(machinePath(ref), { query: { timeline: 0 } })
  return { machine: m.name ?? m.id, machineId: m.id, bmc: m.bmc, power: m.bmc ? m.power : null, reported: m.facts?.bmc?.address ?? null }
}

export async function show(ref: string, o: Options): Promise<number> {
  if (o.dataDir) return (await local()).show(ref, o)
  const view = await viewOf(await connect(o), ref)
  if (o.json) printJson(view)
  else printBmcView(view)
  return 0
}

interface BmcState {
  type: string
  address: string
}

/** The fields a change touched, as the local command names them (secrets: when sent, never compared). */
function changedFields(before: Record<string, unknown> | null, after: Record<string, unknown>, sent: Record<string, unknown>): string[] {
  if (!before) return []
  const skip = new Set(['machineId', 'power', 'hasPassword', 'hasKg'])
  const fields = Object.keys(after).filter((k) => !skip.has(k) && JSON.stringify(before[k]) !== JSON.stringify(after[k]))
  for (const secret of ['password', 'kg']) if (secret in sent) fields.push(secret)
  return fields
}

export async function set(ref: string, o: Options): Promise<number> {
  // Secrets and files are read before anything is sent: a bad reference changes nothing.
  const changes = bmcChangesOf(o)
  if (Object.keys(changes).length === 0) throw new UsageError('machines bmc set needs at least one setting (rackboot machines bmc set --help)')
  if (o.dataDir) return (await local()).set(ref, o)
  const api = await connect(o)
  const body = apiBody(changes)
  const before = await api.get<Record<string, unknown> & BmcState>(machinePath(ref, '/bmc')).catch((err: unknown) => {
    if (isApiError(err, 404) && /has no BMC/.test(err.message)) return null
    throw err
  })
  let after: Record<string, unknown> & BmcState
  if (before) after = await api.json('PATCH', machinePath(ref, '/bmc'), { body, scope: 'admin' })
  else {
    if (!changes.type || !changes.address) throw new UsageError(`${ref} has no BMC yet: give --type and --address`)
    const fresh = Object.fromEntries(Object.entries(body).filter(([, v]) => v !== null))
    after = await api.json('PUT', machinePath(ref, '/bmc'), { body: fresh, scope: 'admin' })
  }
  const changed = changedFields(before, after, body)
  console.log(printable(`${ref}: BMC ${before ? (changed.length ? `changed (${changed.join(', ')})` : 'unchanged') : 'added'}: ${after.type} ${after.address}`))
  return 0
}

interface AdoptAnswer {
  changed: boolean
  previous: string | null
  reported: string
  bmc: BmcState
}

/** Adopts the reported address for one machine through the API (or says why not, as a row). */
async function adoptOne(api: ApiClient, ref: string, name: string, body: Record<string, unknown>, dryRun: boolean, view?: BmcView): Promise<Adoption> {
  const v = view ?? await viewOf(api, ref)
  const row = { machine: name, previous: v.bmc?.address ?? null, reported: v.reported, address: null }
  const why = reportedBmcAddressProblem(v.reported)
  if (why) return { ...row, changed: false, result: `skipped: ${why}` }
  const type = (body.type as string | undefined) ?? v.bmc?.type
  if (!type) return { ...row, changed: false, result: 'skipped: no BMC record; give --type (and --username, --password-from)' }
  const address = adoptedBmcAddress(type === v.bmc?.type ? v.bmc.address : null, v.reported!)
  if (v.bmc && type === v.bmc.type && bmcHost(v.bmc.address) === bmcHost(address) && Object.keys(body).length === 0) {
    return { ...row, address: v.bmc.address, changed: false, result: 'unchanged' }
  }
  if (dryRun) return { ...row, address, changed: true, result: v.bmc ? 'would adopt' : 'would create' }
  try {
    const r = await api.post<AdoptAnswer>(machinePath(ref, '/bmc/adopt'), body, { scope: 'admin' })
    return { ...row, address: r.bmc.address, changed: r.changed, result: r.changed ? (v.bmc ? 'adopted' : 'created') : 'unchanged' }
  } catch (err) {
    if (isApiError(err) && err.status < 500 && err.status !== 401 && err.status !== 403) return { ...row, changed: false, result: `skipped: ${err.message}` }
    throw err
  }
}

export async function adopt(refs: string[], o: Options): Promise<number> {
  if (!o.all && refs.length === 0) throw new UsageError('machines bmc adopt needs a MACHINE, or --all')
  if (o.all && refs.length > 0) throw new UsageError('machines bmc adopt: give MACHINEs or --all, not both')
  const changes = bmcChangesOf(o)
  if (o.dataDir) return (await local()).adopt(refs, o)
  const api = await connect(o)
  const body = apiBody(changes)
  const dryRun = o.dryRun === true
  const outcomes: Adoption[] = []
  if (!o.all) {
    for (const ref of refs) outcomes.push(await adoptOne(api, ref, ref, body, dryRun))
    return printAdoptions(outcomes, o)
  }
  // Every machine, a page at a time; each one's detail says what its agent reported.
  let cursor: string | undefined
  do {
    const page = await api.get<{ items: { id: string; name: string | null }[]; next: string | null }>('/machines', { query: { limit: 1000, cursor } })
    for (const m of page.items) {
      const view = await viewOf(api, m.id)
      if (!view.reported) continue
      // Under --all the type and credentials are for machines without a record: the others change address only.
      const a = await adoptOne(api, m.id, m.name ?? m.id, view.bmc ? {} : body, dryRun, view)
      if (a.result === 'unchanged' || a.result.startsWith('skipped: no BMC record')) continue
      outcomes.push(a)
    }
    cursor = page.next ?? undefined
  } while (cursor)
  return printAdoptions(outcomes, o)
}

export async function remove(refs: string[], o: Options): Promise<number> {
  if (!o.yes) throw new UsageError('machines bmc remove deletes the BMC and its stored password and K_G: add --yes to confirm')
  if (o.dataDir) return (await local()).remove(refs, o)
  const api = await connect(o)
  for (const ref of refs) {
    try {
      await api.json('DELETE', machinePath(ref, '/bmc'), { scope: 'admin' })
    } catch (err) {
      if (isApiError(err, 404)) throw new RackbootError('RB_ERR_NOT_FOUND', err.message)
      throw err
    }
    console.log(printable(`${ref}: BMC removed`))
  }
  return 0
}
