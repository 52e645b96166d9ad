import { readFileSync } from 'node:fs'
import { RackbootError } from '../errors.js'
import {
  adoptedBmcAddress, applyBmcChanges, BMC_AUTHS, BMC_BOOT_VERIFY, BMC_DRAFT_DEFAULTS, BMC_PRIVILEGES, BOOT_METHODS, bmcChangedFields,
  allMachines, bmcDraftOf, bmcHost, bmcInputOf, refuseBmcProblems, reportedBmcAddressProblem, resolveSecretRef, SECRET_REF_PATTERN,
  type Bmc, type BmcChanges, type BmcDraft, type BmcType, type Inventory, type IpmiCipherSuite, type Machine,
} from '../inventory/index.js'
import type { Lifecycle } from '../lifecycle/index.js'
import { parse, printJson, UsageError, withContext } from './context.js'
import { resolveMachine } from './resolve.js'
import { printable, renderTable } from './table.js'

// `rackboot machines bmc ...`: a machine's BMC on the local database, with the API's checks (bmc-settings.ts).
// Secrets come from env:VAR or file:PATH, never from the command line (where ps and shell history would see them).

const SETTINGS = `  --type ipmi|redfish          --address HOST|URL          --port N
  --username NAME              --password-from env:VAR|file:PATH
  --insecure                   --fingerprint SHA256        (Redfish TLS)
  --system-id ID|PATH          --ca-file PEM               --auth auto|session|basic      (Redfish)
  --cipher-suites 17,3         --privilege user|operator|administrator
  --kg-from env:VAR|file:PATH  --boot-verify strict|device                                (IPMI)
  --boot-method pxe|uefi-http|virtual-media
  --unset NAME                 clear a setting (repeat): port, username, password, fingerprint, insecure,
                               system-id, ca, auth, cipher-suites, privilege, kg, boot-verify, boot-method`

const USAGES: Record<string, string> = {
  show: `rackboot machines bmc show MACHINE [--json]

  The BMC's address and settings (never its password or K_G), the last power state read, and the BMC address the
  discovery agent reported.`,
  set: `rackboot machines bmc set MACHINE [settings]

  Creates the BMC (--type and --address needed) or changes the settings given; the others stay.

${SETTINGS}

  A Redfish address may name the system: https://10.0.0.5/redfish/v1/Systems/1 (address and --system-id).`,
  adopt: `rackboot machines bmc adopt MACHINE... | --all [--type T --username U --password-from REF --port N] [--dry-run] [--json]

  Sets the BMC address to the one the discovery agent reported (ipmitool lan print on the machine). A machine with
  no BMC record needs --type (and credentials). With --all, every machine whose reported address differs from the
  stored one (or that has none, when --type is given) is adopted, and a table shows what changed; there, --type and
  the credentials are for machines without a BMC record (the others change address only).
  The adopted address is sent the BMC's credentials from then on: review it (--dry-run) on networks you do not trust.`,
  remove: `rackboot machines bmc remove MACHINE... --yes

  Removes the BMC record and its stored password and K_G.`,
}

export const BMC_USAGE = `rackboot machines bmc <command>

  show MACHINE [--json]                  address, settings (no secrets), last power state, reported address
  set MACHINE [settings]                 create or change; see rackboot machines bmc set --help
  adopt MACHINE... | --all [--dry-run]   take the BMC address the discovery agent reported
  remove MACHINE... --yes                remove the BMC and its secrets

MACHINE: id, name, MAC, SMBIOS uuid or serial.`

const OPTIONS = {
  type: { type: 'string' },
  address: { type: 'string' },
  port: { type: 'string' },
  username: { type: 'string' },
  'password-from': { type: 'string' },
  'system-id': { type: 'string' },
  'ca-file': { type: 'string' },
  auth: { type: 'string' },
  'cipher-suites': { type: 'string' },
  privilege: { type: 'string' },
  'kg-from': { type: 'string' },
  'boot-verify': { type: 'string' },
  'boot-method': { type: 'string' },
  insecure: { type: 'boolean' },
  fingerprint: { type: 'string' },
  unset: { type: 'string', multiple: true },
  all: { type: 'boolean' },
  'dry-run': { type: 'boolean' },
  yes: { type: 'boolean' },
} as const

type Values = ReturnType<typeof parse<typeof OPTIONS>>['values']

/** Which setting each --unset name clears (the API's field). */
const UNSET: Record<string, keyof BmcChanges> = {
  port: 'port', username: 'username', password: 'password', fingerprint: 'fingerprint', insecure: 'insecure', 'system-id': 'systemId',
  ca: 'ca', auth: 'auth', 'cipher-suites': 'cipherSuites', privilege: 'privilege', kg: 'kg', 'boot-verify': 'bootVerify', 'boot-method': 'bootMethod',
}

function oneOf<T extends string>(flag: string, value: string | undefined, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`--${flag} must be one of ${allowed.join(', ')}, got '${value}'`)
  return value as T
}

/** A secret named by env:VAR or file:PATH, read now; a usage error (naming the reference, not the value) otherwise. */
function secretFrom(flag: string, ref: string): string {
  if (!new RegExp(SECRET_REF_PATTERN).test(ref)) throw new UsageError(`--${flag} takes env:VARIABLE or file:PATH (never the secret itself)`)
  const { value, warning } = resolveSecretRef(ref, process.env)
  if (warning !== undefined || value === undefined) throw new UsageError(`--${flag} ${ref}: ${warning}`)
  return value
}

/** The changes the flags ask for, in the API's terms (the checks of the values are applyBmcChanges'). */
function changesOf(values: Values): BmcChanges {
  const c: BmcChanges = {}
  const type = oneOf('type', values.type, ['ipmi', 'redfish'] as const)
  if (type) c.type = type
  if (values.address !== undefined) c.address = values.address
  if (values.port !== undefined) {
    const port = Number(values.port)
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`--port expects 1 to 65535, got '${values.port}'`)
    c.port = port
  }
  if (values.username !== undefined) c.username = values.username
  if (values['password-from'] !== undefined) {
    c.password = secretFrom('password-from', values['password-from'])
    c.passwordFrom = values['password-from']
  }
  if (values['kg-from'] !== undefined) {
    c.kg = secretFrom('kg-from', values['kg-from'])
    c.kgFrom = values['kg-from']
  }
  if (values['system-id'] !== undefined) c.systemId = values['system-id']
  if (values['ca-file'] !== undefined) {
    try {
      c.ca = readFileSync(values['ca-file'], 'utf8')
    } catch (err) {
      throw new UsageError(`--ca-file ${values['ca-file']}: cannot read it: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
  }
  const auth = oneOf('auth', values.auth, BMC_AUTHS)
  if (auth) c.auth = auth
  if (values['cipher-suites'] !== undefined) {
    const suites = values['cipher-suites'].split(',').map((s) => s.trim())
    if (suites.some((s) => s !== '3' && s !== '17')) throw new UsageError(`--cipher-suites takes 17 and/or 3, comma-separated, got '${values['cipher-suites']}'`)
    c.cipherSuites = suites.map(Number) as IpmiCipherSuite[]
  }
  const privilege = oneOf('privilege', values.privilege, BMC_PRIVILEGES)
  if (privilege) c.privilege = privilege
  const verify = oneOf('boot-verify', values['boot-verify'], BMC_BOOT_VERIFY)
  if (verify) c.bootVerify = verify
  const method = oneOf('boot-method', values['boot-method'], BOOT_METHODS)
  if (method) c.bootMethod = method
  if (values.insecure) c.insecure = true
  if (values.fingerprint !== undefined) c.fingerprint = values.fingerprint
  for (const name of values.unset ?? []) {
    const field = UNSET[name]
    if (!field) throw new UsageError(`--unset takes one of ${Object.keys(UNSET).join(', ')}, got '${name}'`)
    if (field in c) throw new UsageError(`--unset ${name} and a value for it: give one`)
    ;(c as Record<string, unknown>)[field] = null
  }
  return c
}

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
function showView(m: Machine, b: Bmc | null) {
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

interface Adoption {
  machine: string
  previous: string | null
  reported: string | null
  address: string | null
  result: string
  changed: boolean
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

export async function bmcCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args
  // Said before parsing, whose message would do no harm but no good either; the value is never repeated.
  const plain = rest.find((a) => /^--(password|kg)(=|$)/.test(a))
  if (plain) throw new UsageError(`${plain.replace(/=.*/, '')} is not taken: secrets never go on the command line (ps, shell history); use ${plain.startsWith('--kg') ? '--kg-from' : '--password-from'} env:VAR or file:PATH`)
  const { values, positionals } = parse(rest, OPTIONS)
  if (!sub || sub === '--help' || sub === '-h') {
    console.log(BMC_USAGE)
    return sub ? 0 : 2
  }
  const usage = USAGES[sub]
  if (!usage) throw new UsageError(`unknown machines bmc command '${sub}'\n\n${BMC_USAGE}`)
  if (values.help) {
    console.log(usage)
    return 0
  }
  // Flags that mean nothing to the command are mistakes (a setting given to show would be silently ignored).
  const allowed: Record<string, string[]> = {
    show: ['json'],
    set: Object.keys(OPTIONS).filter((k) => !['all', 'dry-run', 'yes'].includes(k)),
    adopt: ['type', 'port', 'username', 'password-from', 'all', 'dry-run', 'json'],
    remove: ['yes'],
  }
  const common = ['config', 'set', 'help']
  for (const [flag, value] of Object.entries(values)) {
    if (value !== undefined && !common.includes(flag) && !allowed[sub]!.includes(flag)) throw new UsageError(`machines bmc ${sub} does not take --${flag}\n\n${usage}`)
  }
  if (sub === 'adopt' ? !values.all && positionals.length === 0 : positionals.length === 0) throw new UsageError(`machines bmc ${sub} needs a MACHINE\n\n${usage}`)
  if ((sub === 'show' || sub === 'set') && positionals.length > 1) throw new UsageError(`machines bmc ${sub} takes one MACHINE\n\n${usage}`)
  if (sub === 'adopt' && values.all && positionals.length > 0) throw new UsageError('machines bmc adopt: give MACHINEs or --all, not both')
  if (sub === 'remove' && !values.yes) throw new UsageError('machines bmc remove deletes the BMC and its stored password and K_G: add --yes to confirm')
  // Secrets and files are read before the database is opened: a bad reference changes nothing.
  const changes = sub === 'set' || sub === 'adopt' ? changesOf(values) : {}
  if (sub === 'set' && Object.keys(changes).length === 0) throw new UsageError(`machines bmc set needs at least one setting\n\n${usage}`)

  return withContext(values, async ({ inventory, lifecycle }) => {
    switch (sub) {
      case 'show': {
        const m = await resolveMachine(inventory, positionals[0]!)
        const view = showView(m, await inventory.bmcs.get(m.id))
        if (values.json) {
          printJson(view)
          return 0
        }
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
        return 0
      }
      case 'set': {
        const m = await resolveMachine(inventory, positionals[0]!)
        const before = await inventory.bmcs.get(m.id)
        if (!before && (!changes.type || !changes.address)) throw new UsageError(`${m.name ?? m.id} has no BMC yet: give --type and --address`)
        const base: BmcDraft = before ? bmcDraftOf(before) : { type: changes.type!, address: changes.address!, ...BMC_DRAFT_DEFAULTS }
        const { draft, problems } = applyBmcChanges(base, changes, before)
        refuseBmcProblems(problems)
        const { bmc, changed } = await save(inventory, lifecycle, m, before, draft, 'changed')
        console.log(printable(`${m.name ?? m.id}: BMC ${before ? (changed.length ? `changed (${changed.join(', ')})` : 'unchanged') : 'added'}: ${bmc.type} ${bmc.address}`))
        return 0
      }
      case 'adopt': {
        const machines = values.all ? await allMachines(inventory) : await Promise.all(positionals.map((ref) => resolveMachine(inventory, ref)))
        const outcomes: Adoption[] = []
        for (const m of machines) {
          // With --all, only machines with something to adopt: a reported address, and a record or a --type.
          if (values.all && !m.hardware?.bmc?.address) continue
          // Under --all the type and credentials are for machines without a record: the others change address only.
          const given = values.all && (await inventory.bmcs.get(m.id)) ? {} : changes
          const o = await adoptOne(inventory, lifecycle, m, given, values['dry-run'] ?? false)
          if (values.all && (o.result === 'unchanged' || o.result.startsWith('skipped: no BMC record'))) continue
          outcomes.push(o)
        }
        if (values.json) printJson(outcomes)
        else if (outcomes.length === 0) console.log(values.all ? 'nothing to adopt: every reported BMC address is the stored one' : 'nothing adopted')
        else {
          console.log(renderTable(outcomes, [
            { header: 'machine', value: (o) => o.machine },
            { header: 'previous', value: (o) => o.previous },
            { header: 'reported', value: (o) => o.reported },
            { header: 'address', value: (o) => o.address },
            { header: 'result', value: (o) => o.result },
          ]))
          const n = outcomes.filter((o) => o.changed).length
          console.log(`\n${n} BMC${n === 1 ? '' : 's'} ${values['dry-run'] ? 'would be ' : ''}adopted`)
        }
        // A machine named on the command line that could not be adopted is a failure; under --all it is listed.
        return !values.all && outcomes.some((o) => o.result.startsWith('skipped')) ? 1 : 0
      }
      case 'remove': {
        for (const ref of positionals) {
          const m = await resolveMachine(inventory, ref)
          const before = await inventory.bmcs.get(m.id)
          if (!before) throw new RackbootError('RB_ERR_NOT_FOUND', `${m.name ?? m.id} has no BMC`)
          await inventory.bmcs.remove(m.id)
          lifecycle.record(m.id, 'machine.updated', `BMC removed by a tech (CLI): ${before.type} ${before.address}`, { bmc: null, via: 'cli' })
          console.log(printable(`${m.name ?? m.id}: BMC removed`))
        }
        return 0
      }
    }
    return 2
  })
}
