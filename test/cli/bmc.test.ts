import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { TEST_CA_PEM } from '../inventory/helpers.js'
import { rackboot, tempCwd, type CliResult } from '../support/cli.js'

// `rackboot machines bmc show|set|adopt|remove` through the real CLI entry: settings with the API's checks, secrets
// only from env:/file: and never printed, adopting the address the discovery agent reported.

const PASSWORD = 'calvin-Secret9-cli'
const KG = '00112233445566778899aabbccddeeff00112233'
const FP = '5e2f8a119c407d3ba2610fc47718e9523c6d90ab14f728c56e03d9814ab62e75'

async function withInventory<T>(cwd: string, fn: (inv: Awaited<ReturnType<typeof openSqliteInventory>>) => Promise<T>): Promise<T> {
  const inv = await openSqliteInventory({ file: join(cwd, 'data', 'rackboot.db'), secretKeyFile: join(cwd, 'data', 'secret.key') })
  try {
    return await fn(inv)
  } finally {
    await inv.close()
  }
}

function setup(machines: string[]): string {
  const cwd = tempCwd('rb-cli-bmc-')
  mkdirSync(join(cwd, 'inv'))
  writeFileSync(join(cwd, 'inv', 'm.yaml'), `machines:\n${machines.map((m, i) => `  - name: ${m}\n    serial: S${i}\n`).join('')}`)
  const imp = rackboot(['inventory', 'import', 'inv'], { cwd })
  assert.equal(imp.code, 0, imp.stderr)
  return cwd
}

function noSecrets(...results: CliResult[]): void {
  for (const r of results) {
    const text = r.stdout + r.stderr
    for (const secret of [PASSWORD, KG]) assert.ok(!text.includes(secret), `output quotes a secret: ${text}`)
  }
}

test('set and show: every setting, secrets from env:/file: only and never printed; a type change drops the other type\'s settings', async () => {
  const cwd = setup(['a1'])
  writeFileSync(join(cwd, 'ca.pem'), TEST_CA_PEM)
  writeFileSync(join(cwd, 'kg.txt'), `${KG}\n`)
  const env = { BMC_PW: PASSWORD }
  const set = rackboot(['machines', 'bmc', 'set', 'a1', '--type', 'redfish', '--address', 'https://10.0.0.7:8443/redfish/v1/Systems/2',
    '--username', 'root', '--password-from', 'env:BMC_PW', '--ca-file', 'ca.pem', '--auth', 'basic', '--boot-method', 'uefi-http',
    '--fingerprint', FP.toUpperCase(), '--insecure'], { cwd, env })
  assert.equal(set.code, 0, set.stderr)
  assert.equal(set.stdout, 'a1: BMC added: redfish https://10.0.0.7:8443\n')
  const show = rackboot(['machines', 'bmc', 'show', 'a1', '--json'], { cwd })
  assert.equal(show.code, 0, show.stderr)
  const view = JSON.parse(show.stdout)
  assert.deepEqual(view.bmc, {
    type: 'redfish', address: 'https://10.0.0.7:8443', port: null, username: 'root', hasPassword: true, hasKg: false, insecure: true,
    fingerprint: FP, systemId: '2', ca: TEST_CA_PEM, auth: 'basic', cipherSuites: null, privilege: null, bootVerify: null, bootMethod: 'uefi-http',
  })
  const text = rackboot(['machines', 'bmc', 'show', 'a1'], { cwd })
  assert.match(text.stdout, /^system\s+2$/m)
  assert.match(text.stdout, /^password\s+stored$/m)
  assert.match(text.stdout, /^tls\s+NOT verified \(insecure\)$/m)

  // Only what is given changes; a type change drops the Redfish settings; K_G from a file.
  const ipmi = rackboot(['machines', 'bmc', 'set', 'a1', '--type', 'ipmi', '--address', '10.0.0.8', '--kg-from', `file:${join(cwd, 'kg.txt')}`,
    '--cipher-suites', '3,17', '--privilege', 'user', '--boot-verify', 'strict', '--boot-method', 'pxe', '--unset', 'insecure', '--unset', 'fingerprint'], { cwd })
  assert.equal(ipmi.code, 0, ipmi.stderr)
  assert.equal(ipmi.stdout, 'a1: BMC changed (type, address, insecure, fingerprint, systemId, ca, auth, cipherSuites, privilege, bootVerify, bootMethod, kg): ipmi 10.0.0.8\n')
  const after = JSON.parse(rackboot(['machines', 'bmc', 'show', 'a1', '--json'], { cwd }).stdout).bmc
  assert.deepEqual([after.systemId, after.ca, after.auth, after.cipherSuites, after.privilege, after.bootVerify, after.hasKg, after.hasPassword, after.username],
    [null, null, 'auto', [3, 17], 'user', 'strict', true, true, 'root'])
  await withInventory(cwd, async (inv) => {
    const m = await inv.machines.byName('a1')
    const creds = await inv.bmcs.credentials(m!.id)
    assert.equal(creds?.password, PASSWORD)
    assert.equal(creds?.kg?.toString('hex'), KG)
    const events = await inv.events.list({ machineId: m!.id })
    assert.deepEqual(events.filter((e) => e.type === 'machine.updated').map((e) => e.message.replace(/ \([^)]*\)$/, '')), [
      'BMC added by a tech (CLI): redfish https://10.0.0.7:8443', 'BMC changed by a tech (CLI): ipmi 10.0.0.8',
    ])
    assert.ok(!JSON.stringify(events).includes(PASSWORD) && !JSON.stringify(events).includes(KG))
  })

  // The export names where the secrets come from, never the secrets.
  const exp = rackboot(['inventory', 'export', 'out'], { cwd })
  assert.equal(exp.code, 0, exp.stderr)
  const exported = readFileSync(join(cwd, 'out', 'machines.yaml'), 'utf8')
  assert.match(exported, /passwordFrom: env:BMC_PW/)
  assert.match(exported, new RegExp(`kgFrom: file:${join(cwd, 'kg.txt').replaceAll('/', '\\/')}`))
  assert.ok(!exported.includes(PASSWORD) && !exported.includes(KG))

  const unset = rackboot(['machines', 'bmc', 'set', 'a1', '--unset', 'kg'], { cwd })
  assert.equal(unset.code, 0, unset.stderr)
  assert.equal(JSON.parse(rackboot(['machines', 'bmc', 'show', 'a1', '--json'], { cwd }).stdout).bmc.hasKg, false)
  noSecrets(set, show, text, ipmi, exp, unset)
})

test('bad flags and values are usage errors (exit 2) that never repeat a secret; --help for each command', () => {
  const cwd = setup(['a1'])
  writeFileSync(join(cwd, 'not.pem'), 'hello\n')
  const env = { BMC_PW: PASSWORD }
  const ok = rackboot(['machines', 'bmc', 'set', 'a1', '--type', 'ipmi', '--address', '10.0.0.5', '--password-from', 'env:BMC_PW'], { cwd, env })
  assert.equal(ok.code, 0, ok.stderr)
  const cases: [string[], RegExp][] = [
    [['set', 'a1', '--password', PASSWORD], /--password is not taken: secrets never go on the command line .*--password-from env:VAR or file:PATH/],
    [['set', 'a1', `--password=${PASSWORD}`], /--password is not taken/],
    [['set', 'a1', '--kg', KG], /--kg is not taken.*--kg-from/],
    [['set', 'a1', '--password-from', PASSWORD], /--password-from takes env:VARIABLE or file:PATH \(never the secret itself\)/],
    [['set', 'a1', '--password-from', 'env:NOT_SET_ANYWHERE'], /--password-from env:NOT_SET_ANYWHERE: environment variable NOT_SET_ANYWHERE is not set/],
    [['set', 'a1', '--cipher-suites', '17,5'], /--cipher-suites takes 17 and\/or 3/],
    [['set', 'a1', '--auth', 'digest'], /--auth must be one of auto, session, basic/],
    [['set', 'a1', '--unset', 'colour'], /--unset takes one of port, username/],
    [['set', 'a1', '--system-id', '1'], /systemId: systemId is a Redfish setting, but this BMC is ipmi/],
    [['set', 'a1', '--type', 'redfish', '--kg-from', 'env:BMC_PW'], /kg: kg is an IPMI setting, but this BMC is redfish/],
    [['set', 'a1', '--type', 'redfish', '--ca-file', 'not.pem'], /ca: the PEM is not a PEM certificate/],
    [['set', 'a1', '--type', 'redfish', '--ca-file', 'missing.pem'], /--ca-file missing\.pem: cannot read it: ENOENT/],
    [['set', 'a1'], /machines bmc set needs at least one setting/],
    [['set', 'a1', '--colour', 'red'], /Unknown option '--colour'/],
    [['show', 'a1', '--type', 'ipmi'], /machines bmc show does not take --type/],
    [['remove', 'a1'], /add --yes to confirm/],
    [['adopt', 'a1', '--all'], /give MACHINEs or --all, not both/],
    [['dance', 'a1'], /unknown machines bmc command 'dance'/],
  ]
  for (const [args, why] of cases) {
    const r = rackboot(['machines', 'bmc', ...args], { cwd, env })
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`)
    assert.match(r.stderr, why, args.join(' '))
    noSecrets(r)
  }
  // Nothing of that was stored.
  const view = JSON.parse(rackboot(['machines', 'bmc', 'show', 'a1', '--json'], { cwd }).stdout).bmc
  assert.deepEqual([view.type, view.address, view.hasKg, view.systemId], ['ipmi', '10.0.0.5', false, null])

  for (const sub of ['show', 'set', 'adopt', 'remove']) {
    const r = rackboot(['machines', 'bmc', sub, '--help'], { cwd })
    assert.equal(r.code, 0, sub)
    assert.match(r.stdout, new RegExp(`^rackboot machines bmc ${sub} `), sub)
    if (sub === 'set') assert.match(r.stdout, /--cipher-suites 17,3/)
  }
  const top = rackboot(['machines', 'bmc', '--help'], { cwd })
  assert.equal(top.code, 0)
  assert.match(top.stdout, /show MACHINE .*\n\s+set MACHINE .*\n\s+adopt MACHINE/)
  assert.equal(rackboot(['machines', 'bmc'], { cwd }).code, 2)
  assert.match(rackboot(['machines', '--help'], { cwd }).stdout, /bmc show\|set\|adopt\|remove MACHINE/)
})

test('adopt: one machine, or --all with a table of what changed (--dry-run writes nothing); remove', async () => {
  const cwd = setup(['moved', 'fresh', 'same', 'silent', 'rf'])
  const env = { BMC_PW: PASSWORD }
  await withInventory(cwd, async (inv) => {
    const id = async (name: string) => (await inv.machines.byName(name))!.id
    const report = async (name: string, address: string) => inv.machines.setHardware(await id(name), { bmc: { address, mac: '3c:ec:ef:00:00:01' } }, Date.now())
    await inv.bmcs.put(await id('moved'), { type: 'ipmi', address: '10.30.0.1', username: 'ADMIN', password: PASSWORD, privilege: 'operator' })
    await inv.bmcs.put(await id('same'), { type: 'ipmi', address: '10.30.0.3', username: 'ADMIN' })
    await inv.bmcs.put(await id('rf'), { type: 'redfish', address: 'https://10.30.0.5:8443', username: 'root', password: PASSWORD, systemId: '1' })
    await report('moved', '10.30.0.11')
    await report('fresh', '10.30.0.12')
    await report('same', '10.30.0.3')
    await report('rf', '10.30.0.15')
  })
  const one = rackboot(['machines', 'bmc', 'adopt', 'silent'], { cwd })
  assert.equal(one.code, 1, one.stdout + one.stderr)
  assert.match(one.stdout, /silent\s+-\s+-\s+-\s+skipped: the discovery agent reported no BMC address/)

  // Without --type only machines that have a BMC record are adopted; "same" has nothing to change.
  const dry = rackboot(['machines', 'bmc', 'adopt', '--all', '--dry-run'], { cwd })
  assert.equal(dry.code, 0, dry.stderr)
  assert.match(dry.stdout, /^MACHINE\s+PREVIOUS\s+REPORTED\s+ADDRESS\s+RESULT$/m)
  assert.match(dry.stdout, /^moved\s+10\.30\.0\.1\s+10\.30\.0\.11\s+10\.30\.0\.11\s+would adopt$/m)
  assert.match(dry.stdout, /^rf\s+https:\/\/10\.30\.0\.5:8443\s+10\.30\.0\.15\s+https:\/\/10\.30\.0\.15:8443\s+would adopt$/m)
  assert.doesNotMatch(dry.stdout, /^(fresh|same|silent)\s/m)
  assert.match(dry.stdout, /2 BMCs would be adopted/)
  const unchanged = JSON.parse(rackboot(['machines', 'bmc', 'show', 'moved', '--json'], { cwd }).stdout)
  assert.equal(unchanged.bmc.address, '10.30.0.1', 'a dry run writes nothing')
  assert.equal(unchanged.reported, '10.30.0.11')

  const real = rackboot(['machines', 'bmc', 'adopt', '--all'], { cwd })
  assert.equal(real.code, 0, real.stderr)
  assert.match(real.stdout, /^moved\s+10\.30\.0\.1\s+10\.30\.0\.11\s+10\.30\.0\.11\s+adopted$/m)
  assert.match(real.stdout, /^rf\s+https:\/\/10\.30\.0\.5:8443\s+10\.30\.0\.15\s+https:\/\/10\.30\.0\.15:8443\s+adopted$/m)
  assert.match(real.stdout, /2 BMCs adopted/)
  // With --type and credentials, a machine without a record gets one; the records that exist are not touched.
  const all = rackboot(['machines', 'bmc', 'adopt', '--all', '--type', 'ipmi', '--username', 'ADMIN', '--password-from', 'env:BMC_PW', '--json'], { cwd, env })
  assert.equal(all.code, 0, all.stderr)
  assert.deepEqual(JSON.parse(all.stdout).map((o: any) => `${o.machine} ${o.previous} ${o.address} ${o.result}`), ['fresh null 10.30.0.12 created'])
  const again = rackboot(['machines', 'bmc', 'adopt', '--all', '--type', 'ipmi'], { cwd })
  assert.equal(again.stdout, 'nothing to adopt: every reported BMC address is the stored one\n')
  await withInventory(cwd, async (inv) => {
    const moved = (await inv.machines.byName('moved'))!.id
    const b = await inv.bmcs.get(moved)
    assert.deepEqual([b?.address, b?.privilege, b?.username], ['10.30.0.11', 'operator', 'ADMIN'], 'only the address changed')
    assert.equal((await inv.bmcs.credentials(moved))?.password, PASSWORD)
    const fresh = (await inv.machines.byName('fresh'))!.id
    assert.equal((await inv.bmcs.credentials(fresh))?.password, PASSWORD)
    assert.equal((await inv.bmcs.get((await inv.machines.byName('rf'))!.id))?.systemId, '1')
  })

  const rm = rackboot(['machines', 'bmc', 'remove', 'moved', '--yes'], { cwd })
  assert.equal(rm.code, 0, rm.stderr)
  assert.equal(JSON.parse(rackboot(['machines', 'bmc', 'show', 'moved', '--json'], { cwd }).stdout).bmc, null)
  assert.equal(rackboot(['machines', 'bmc', 'remove', 'moved', '--yes'], { cwd }).code, 1, 'no BMC to remove')
  noSecrets(one, dry, all, real, again, rm)
})
