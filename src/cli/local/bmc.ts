import { RackbootError } from '../../errors.js'
import {
  adoptedBmcAddress, applyBmcChanges, BMC_DRAFT_DEFAULTS, bmcChangedFields, allMachines, bmcDraftOf, bmcHost, bmcInputOf,
  refuseBmcProblems, reportedBmcAddressProblem, type Bmc, type BmcChanges, type BmcDraft, type BmcType, type Inventory, type Machine,
} from '../../inventory/index.js'
import type { Lifecycle } from '../../lifecycle/index.js'
import { withContext } from '../context.js'
import { printJson, UsageError, type GlobalOptions } from '../common.js'
import { bmcChangesOf, type BmcFlags } from '../bmc-flags.js'
import { resolveMachine } from '../resolve.js'
import { printable } from '../table.js'
import { printAdoptions, printBmcView, type Adoption } from '../bmc.js'

// `rackboot machines bmc ... --data-dir DIR`: a machine's BMC on a data directory's database, with the API's checks
// (bmc-settings.ts). Secrets come from env:VAR or file:PATH, never from the command line.

type Options = GlobalOptions & BmcFlags & { all?: boolean; dryRun?: boolean; yes?: boolean }

/** Stores the draft and records one timeline line (field names only, never a secret). */
async function save(inventory: Inventory, lifecycle: Lifecycle, m: Machine, before: Bmc | null, d: BmcDraft, how: string): Promise<{ bmc: Bmc; changed: string[] }> {
  const after = await inventory.bmcs.put(m.id, bmcInputOf(d))
  const changed = bmcChangedFields(before, after, d)
  if (!before || changed.length > 0) {
    lifecycle.record(m.id, 'machine.updated', `BMC ${before ? how : 'added'} by a tech (CLI): ${after.type} ${after.address}${before ? ` (${changed.join(', ')})` : ''}`, {
      bmc: { type: after.type, address: after.address }, fields: changed, via: 'cli',
    })
  }
  return { bmc: after, changed }
}

/** What `show --json` prints: the stored record without its reference column, with the reported address. */
export function showView(m: Machine, b: Bmc | null) {
  return {
    machine: m.name ?? m.id,
    machineId: m.id,
    bmc: b && {
      type: b.type, address: b.address, port: b.port, username: b.username, hasPassword: b.hasPassword, hasKg: b.hasKg,
      insecure: b.insecure, fingerprint: b.fingerprint, systemId: b.systemId, ca: b.caPem, auth: b.auth, cipherSuites: b.cipherSuites,
      privilege: b.privilege, bootVerify: b.bootVerify, bootMethod: b.bootMethod,
    },
    power: b?.power ? { state: b.power.state, checkedAt: new Date(b.power.checkedAt).toISOString(), error: b.power.error } : null,
    reported: m.hardware?.bmc?.address ?? null,
  }
}

/** Adopts the reported address for one machine (or says why not); writes nothing on a dry run. */
async function adoptOne(inventory: Inventory, lifecycle: Lifecycle, m: Machine, given: BmcChanges, dryRun: boolean): Promise<Adoption> {
  const name = m.name ?? m.id
  const reported = m.hardware?.bmc?.address ?? null
  const before = await inventory.bmcs.get(m.id)
  const row = { machine: name, previous: before?.address ?? null, reported, address: null, changed: false }
  const why = reportedBmcAddressProblem(reported)
  if (why) return { ...row, result: `skipped: ${why}` }
  const type: BmcType | undefined = given.type ?? before?.type
  if (!type) return { ...row, result: 'skipped: no BMC record; give --type (and --username, --password-from)' }
  const address = adoptedBmcAddress(type === before?.type ? before.address : null, reported!)
  if (before && type === before.type && bmcHost(before.address) === bmcHost(address) && Object.keys(given).length === 0) {
    return { ...row, address: before.address, result: 'unchanged' }
  }
  const base: BmcDraft = before ? bmcDraftOf(before) : { type, address, ...BMC_DRAFT_DEFAULTS }
  const { draft, problems } = applyBmcChanges(base, { ...given, type, address }, before)
  if (problems.length > 0) return { ...row, result: `skipped: ${problems.map((p) => `${p.field}: ${p.message}`).join('; ')}` }
  if (dryRun) return { ...row, address: draft.address, changed: true, result: before ? 'would adopt' : 'would create' }
  await save(inventory, lifecycle, m, before, draft, `address adopted from the agent's report${before ? ` (was ${before.address})` : ''}`)
  return { ...row, address: draft.address, changed: true, result: before ? 'adopted' : 'created' }
}

export async function show(ref: string, o: Options): Promise<number> {
  return withContext(o, async ({ inventory }) => {
    const m = await resolveMachine(inventory, ref)
    const view = showView(m, await inventory.bmcs.get(m.id))
    if (o.json) printJson(view)
    else printBmcView(view)
    return 0
  }, { create: false })
}

export async function set(ref: string, o: Options): Promise<number> {
  // Secrets and files are read before the database is opened: a bad reference changes nothing.
  const changes = bmcChangesOf(o)
  if (Object.keys(changes).length === 0) throw new UsageError('machines bmc set needs at least one setting (rackboot machines bmc set --help)')
  return withContext(o, async ({ inventory, lifecycle }) => {
    const m = await resolveMachine(inventory, ref)
    const before = await inventory.bmcs.get(m.id)
    if (!before && (!changes.type || !changes.address)) throw new UsageError(`${m.name ?? m.id} has no BMC yet: give --type and --address`)
    const base: BmcDraft = before ? bmcDraftOf(before) : { type: changes.type!, address: changes.address!, ...BMC_DRAFT_DEFAULTS }
    const { draft, problems } = applyBmcChanges(base, changes, before)
    refuseBmcProblems(problems)
    const { bmc, changed } = await save(inventory, lifecycle, m, before, draft, 'changed')
    console.log(printable(`${m.name ?? m.id}: BMC ${before ? (changed.length ? `changed (${changed.join(', ')})` : 'unchanged') : 'added'}: ${bmc.type} ${bmc.address}`))
    return 0
  }, { create: false })
}

export async function adopt(refs: string[], o: Options): Promise<number> {
  if (!o.all && refs.length === 0) throw new UsageError('machines bmc adopt needs a MACHINE, or --all')
  if (o.all && refs.length > 0) throw new UsageError('machines bmc adopt: give MACHINEs or --all, not both')
  const changes = bmcChangesOf(o)
  return withContext(o, async ({ inventory, lifecycle }) => {
    const machines = o.all ? await allMachines(inventory) : await Promise.all(refs.map((ref) => resolveMachine(inventory, ref)))
    const outcomes: Adoption[] = []
    for (const m of machines) {
      // With --all, only machines with something to adopt: a reported address, and a record or a --type.
      if (o.all && !m.hardware?.bmc?.address) continue
      // Under --all the type and credentials are for machines without a record: the others change address only.
      const given = o.all && (await inventory.bmcs.get(m.id)) ? {} : changes
      const a = await adoptOne(inventory, lifecycle, m, given, o.dryRun ?? false)
      if (o.all && (a.result === 'unchanged' || a.result.startsWith('skipped: no BMC record'))) continue
      outcomes.push(a)
    }
    return printAdoptions(outcomes, o)
  }, { create: false })
}

export async function remove(refs: string[], o: Options): Promise<number> {
  if (!o.yes) throw new UsageError('machines bmc remove deletes the BMC and its stored password and K_G: add --yes to confirm')
  return withContext(o, async ({ inventory, lifecycle }) => {
    for (const ref of refs) {
      const m = await resolveMachine(inventory, ref)
      const before = await inventory.bmcs.get(m.id)
      if (!before) throw new RackbootError('RB_ERR_NOT_FOUND', `${m.name ?? m.id} has no BMC`)
      await inventory.bmcs.remove(m.id)
      lifecycle.record(m.id, 'machine.updated', `BMC removed by a tech (CLI): ${before.type} ${before.address}`, { bmc: null, via: 'cli' })
      console.log(printable(`${m.name ?? m.id}: BMC removed`))
    }
    return 0
  }, { create: false })
}
