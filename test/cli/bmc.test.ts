import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { openSqliteInventory, type Inventory } from '../../src/inventory/index.js'
import { TEST_CA_PEM } from '../inventory/helpers.js'
import { cliInProcess, rackbootAsync, startApi, tempCwd, type ApiServer, type CliResult } from '../support/cli.js'

// `rackboot machines bmc show|set|adopt|remove`, through the API and with --data-dir: settings with the API's checks,
// secrets only from env:/file: and never printed, adopting the address the discovery agent reported.

const PASSWORD = 'calvin-Secret9-cli'
const KG = '00112233445566778899aabbccddeeff00112233'
const FP = '5e2f8a119c407d3ba2610fc47718e9523c6d90ab14f728c56e03d9814ab62e75'

async function withApi(t: { after(fn: () => unknown): void }, machines: string[]): Promise<ApiServer> {
  const api = await startApi()
  t.after(() => api.close())
  for (const [i, name] of machines.entries()) await api.inventory.machines.create({ name, serial: `S${i}` }, Date.now())
  return api
}

function noSecrets(...results: CliResult[]): void {
  for (const r of results) {
    const text = r.stdout + r.stderr
    for (const secret of [PASSWORD, KG]) assert.ok(!text.includes(secret), `output quotes a secret: ${text}`)
  }
}

test('through the API, set and show: every setting, secrets from env:/file: only and never printed; a type change drops the other type\'s settings', async (t) => {
  const api = await withApi(t, ['a1'])
  const cwd = api.dir
  writeFileSync(join(cwd, 'ca.pem'), TEST_CA_PEM)
  writeFileSync(join(cwd, 'kg.txt'), `${KG}\n`)
  const set = await api.cli(['machines', 'bmc', 'set', 'a1', '--type', 'redfish', '--address', 'https://10.0.0.7:8443/redfish/v1/Systems/2',
    '--username', 'root', '--password-from', 'env:BMC_PW', '--ca-file', 'ca.pem', '--auth', 'basic', '--boot-method', 'uefi-http',
    '--fingerprint', FP.toUpperCase(), '--insecure'], { env: { BMC_PW: PASSWORD } })
  assert.equal(set.code, 0, set.stderr)
  assert.equal(set.stdout, 'a1: BMC added: redfish https://10.0.0.7:8443\n')
  const [show, text] = await Promise.all([api.cli(['machines', 'bmc', 'show', 'a1', '--json'], { scope: 'read' }), api.cli(['machines', 'bmc', 'show', 'a1'], { scope: 'read' })])
  assert.equal(show.code, 0, show.stderr)
  const view = JSON.parse(show.stdout)
  assert.deepEqual(view.bmc, {
    type: 'redfish', address: 'https://10.0.0.7:8443', port: null, username: 'root', hasPassword: true, hasKg: false, insecure: true,
    fingerprint: FP, systemId: '2', ca: TEST_CA_PEM, auth: 'basic', cipherSuites: null, privilege: null, bootVerify: null, bootMethod: 'uefi-http',
  })
  assert.match(text.stdout, /^system\s+2$/m)
  assert.match(text.stdout, /^password\s+stored$/m)
  assert.match(text.stdout, /^tls\s+NOT verified \(insecure\)$/m)

  // Only what is given changes; a type change drops the Redfish settings; K_G from a file.
  const ipmi = await api.cli(['machines', 'bmc', 'set', 'a1', '--type', 'ipmi', '--address', '10.0.0.8', '--kg-from', `file:${join(cwd, 'kg.txt')}`,
    '--cipher-suites', '3,17', '--privilege', 'user', '--boot-verify', 'strict', '--boot-method', 'pxe', '--unset', 'insecure', '--unset', 'fingerprint'])
  assert.equal(ipmi.code, 0, ipmi.stderr)
  assert.equal(ipmi.stdout, 'a1: BMC changed (type, address, insecure, fingerprint, systemId, ca, auth, cipherSuites, privilege, bootVerify, bootMethod, kg): ipmi 10.0.0.8\n')
  const m = (await api.inventory.machines.byName('a1'))!
  const after = (await api.inventory.bmcs.get(m.id))!
  assert.deepEqual([after.systemId, after.caPem, after.auth, after.cipherSuites, after.privilege, after.bootVerify, after.hasKg, after.hasPassword, after.username],
    [null, null, 'auto', [3, 17], 'user', 'strict', true, true, 'root'])
  const creds = await api.inventory.bmcs.credentials(m.id)
  assert.equal(creds?.password, PASSWORD)
  assert.equal(creds?.kg?.toString('hex'), KG)
  await api.timeline.flush()
  const events = await api.inventory.events.list({ machineId: m.id })
  assert.deepEqual(events.filter((e) => e.type === 'machine.updated').map((e) => e.message.replace(/ \([^)]*\)$/, '')), [
    'BMC added by token root: redfish https://10.0.0.7:8443', 'BMC changed by token root: ipmi 10.0.0.8',
  ])
  assert.ok(!JSON.stringify(events).includes(PASSWORD) && !JSON.stringify(events).includes(KG))
  const unset = await api.cli(['machines', 'bmc', 'set', 'a1', '--unset', 'kg'])
  assert.equal(unset.code, 0, unset.stderr)
  assert.equal((await api.inventory.bmcs.get(m.id))?.hasKg, false)
  noSecrets(set, show, text, ipmi, unset)
})

test('bad flags and values are usage errors (exit 2) that never repeat a secret, checked here or by the server', async (t) => {
  const api = await withApi(t, ['a1'])
  const cwd = api.dir
  writeFileSync(join(cwd, 'not.pem'), 'hello\n')
  const ok = await api.cli(['machines', 'bmc', 'set', 'a1', '--type', 'ipmi', '--address', '10.0.0.5', '--password-from', 'env:BMC_PW'], { env: { BMC_PW: PASSWORD } })
  assert.equal(ok.code, 0, ok.stderr)
  const cases: [string[], RegExp][] = [
    [['set', 'a1', '--password', PASSWORD], /--password is not taken: secrets never go on the command line .*--password-from env:VAR or file:PATH/],
    [['set', 'a1', `--password=${PASSWORD}`], /--password is not taken/],
    [['set', 'a1', '--kg', KG], /--kg is not taken.*--kg-from/],
    [['set', 'a1', '--password-from', PASSWORD], /--password-from takes env:VARIABLE or file:PATH \(never the secret itself\)/],
    [['set', 'a1', '--password-from', 'env:NOT_SET_ANYWHERE'], /--password-from env:NOT_SET_ANYWHERE: environment variable NOT_SET_ANYWHERE is not set/],
    [['set', 'a1', '--cipher-suites', '17,5'], /--cipher-suites takes 17 and\/or 3/],
    [['set', 'a1', '--auth', 'digest'], /option '--auth <auth>' argument 'digest' is invalid\. Allowed choices are auto, session, basic/],
    [['set', 'a1', '--unset', 'colour'], /--unset takes one of port, username/],
    // The server's checks, in the inventory files' words.
    [['set', 'a1', '--system-id', '1'], /systemId: systemId is a Redfish setting, but this BMC is ipmi/],
    [['set', 'a1', '--type', 'redfish', '--kg-from', 'env:BMC_PW'], /kg: kg is an IPMI setting, but this BMC is redfish/],
    [['set', 'a1', '--type', 'redfish', '--ca-file', join(cwd, 'not.pem')], /ca: the PEM is not a PEM certificate/],
    [['set', 'a1', '--type', 'redfish', '--ca-file', 'missing.pem'], /--ca-file missing\.pem: cannot read it: ENOENT/],
    [['set', 'a1'], /machines bmc set needs at least one setting/],
    [['set', 'a1', '--colour', 'red'], /unknown option '--colour'/],
    [['show', 'a1', '--type', 'ipmi'], /^rackboot machines bmc show: unknown option '--type'/],
    [['remove', 'a1'], /add --yes to confirm/],
    [['adopt', 'a1', '--all'], /give MACHINEs or --all, not both/],
    [['dance', 'a1'], /unknown command 'dance'/],
  ]
  for (const [args, why] of cases) {
    const r = await cliInProcess(['machines', 'bmc', ...args], { ...api.env(), BMC_PW: PASSWORD })
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`)
    assert.match(r.stderr, why, args.join(' '))
    noSecrets(r)
  }
  // Nothing of that was stored.
  const m = (await api.inventory.machines.byName('a1'))!
  const b = (await api.inventory.bmcs.get(m.id))!
  assert.deepEqual([b.type, b.address, b.hasKg, b.systemId], ['ipmi', '10.0.0.5', false, null])
})

async function reportBmcs(inv: Inventory): Promise<void> {
  const id = async (name: string) => (await inv.machines.byName(name))!.id
  const report = async (name: string, address: string) => inv.machines.setHardware(await id(name), { bmc: { address, mac: '3c:ec:ef:00:00:01' } }, Date.now())
  await inv.bmcs.put(await id('moved'), { type: 'ipmi', address: '10.30.0.1', username: 'ADMIN', password: PASSWORD, privilege: 'operator' })
  await inv.bmcs.put(await id('same'), { type: 'ipmi', address: '10.30.0.3', username: 'ADMIN' })
  await inv.bmcs.put(await id('rf'), { type: 'redfish', address: 'https://10.30.0.5:8443', username: 'root', password: PASSWORD, systemId: '1' })
  await report('moved', '10.30.0.11')
  await report('fresh', '10.30.0.12')
  await report('same', '10.30.0.3')
  await report('rf', '10.30.0.15')
}

test('through the API, adopt: one machine, or --all with a table of what changed (--dry-run writes nothing); remove', async (t) => {
  const api = await withApi(t, ['moved', 'fresh', 'same', 'silent', 'rf'])
  await reportBmcs(api.inventory)
  const [one, dry] = await Promise.all([api.cli(['machines', 'bmc', 'adopt', 'silent']), api.cli(['machines', 'bmc', 'adopt', '--all', '--dry-run'])])
  assert.equal(one.code, 1, one.stdout + one.stderr)
  assert.match(one.stdout, /silent\s+-\s+-\s+-\s+skipped: the discovery agent reported no BMC address/)

  // Without --type only machines that have a BMC record are adopted; "same" has nothing to change.
  assert.equal(dry.code, 0, dry.stderr)
  assert.match(dry.stdout, /^MACHINE\s+PREVIOUS\s+REPORTED\s+ADDRESS\s+RESULT$/m)
  assert.match(dry.stdout, /^moved\s+10\.30\.0\.1\s+10\.30\.0\.11\s+10\.30\.0\.11\s+would adopt$/m)
  assert.match(dry.stdout, /^rf\s+https:\/\/10\.30\.0\.5:8443\s+10\.30\.0\.15\s+https:\/\/10\.30\.0\.15:8443\s+would adopt$/m)
  assert.doesNotMatch(dry.stdout, /^(fresh|same|silent)\s/m)
  assert.match(dry.stdout, /2 BMCs would be adopted/)
  const moved = (await api.inventory.machines.byName('moved'))!.id
  assert.equal((await api.inventory.bmcs.get(moved))?.address, '10.30.0.1', 'a dry run writes nothing')

  const real = await api.cli(['machines', 'bmc', 'adopt', '--all'])
  assert.equal(real.code, 0, real.stderr)
  assert.match(real.stdout, /^moved\s+10\.30\.0\.1\s+10\.30\.0\.11\s+10\.30\.0\.11\s+adopted$/m)
  assert.match(real.stdout, /^rf\s+https:\/\/10\.30\.0\.5:8443\s+10\.30\.0\.15\s+https:\/\/10\.30\.0\.15:8443\s+adopted$/m)
  assert.match(real.stdout, /2 BMCs adopted/)
  // With --type and credentials, a machine without a record gets one; the records that exist are not touched.
  const all = await api.cli(['machines', 'bmc', 'adopt', '--all', '--type', 'ipmi', '--username', 'ADMIN', '--password-from', 'env:BMC_PW', '--json'], { env: { BMC_PW: PASSWORD } })
  assert.equal(all.code, 0, all.stderr)
  assert.deepEqual(JSON.parse(all.stdout).map((o: any) => `${o.machine} ${o.previous} ${o.address} ${o.result}`), ['fresh null 10.30.0.12 created'])
  const again = await api.cli(['machines', 'bmc', 'adopt', '--all', '--type', 'ipmi'])
  assert.equal(again.stdout, 'nothing to adopt: every reported BMC address is the stored one\n')
  const b = await api.inventory.bmcs.get(moved)
  assert.deepEqual([b?.address, b?.privilege, b?.username], ['10.30.0.11', 'operator', 'ADMIN'], 'only the address changed')
  assert.equal((await api.inventory.bmcs.credentials(moved))?.password, PASSWORD)
  assert.equal((await api.inventory.bmcs.credentials((await api.inventory.machines.byName('fresh'))!.id))?.password, PASSWORD)

  const rm = await api.cli(['machines', 'bmc', 'remove', 'moved', '--yes'])
  assert.equal(rm.code, 0, rm.stderr)
  const [shown, twice] = await Promise.all([api.cli(['machines', 'bmc', 'show', 'moved', '--json']), api.cli(['machines', 'bmc', 'remove', 'moved', '--yes'])])
  assert.equal(JSON.parse(shown.stdout).bmc, null)
  assert.equal(twice.code, 1, 'no BMC to remove')
  noSecrets(one, dry, all, real, again, rm)
})

test('--data-dir: set, show, adopt and export on the database itself (the secret\'s reference is kept for the export)', async () => {
  const cwd = tempCwd('rb-cli-bmc-')
  const dataDir = join(cwd, 'data')
  mkdirSync(dataDir, { mode: 0o700 })
  const inv = await openSqliteInventory({ file: join(dataDir, 'rackboot.db'), secretKeyFile: join(dataDir, 'secret.key') })
  for (const name of ['moved', 'fresh', 'same', 'silent', 'rf']) await inv.machines.create({ name, serial: name }, Date.now())
  await reportBmcs(inv)
  await inv.close()
  const local = (args: string[]) => rackbootAsync([...args, '--data-dir', dataDir], { cwd, env: { BMC_PW: PASSWORD } })
  const [set, dry] = await Promise.all([
    local(['machines', 'bmc', 'set', 'silent', '--type', 'ipmi', '--address', '10.0.0.9', '--username', 'ADMIN', '--password-from', 'env:BMC_PW']),
    local(['machines', 'bmc', 'adopt', '--all', '--dry-run']),
  ])
  assert.equal(set.code, 0, set.stderr)
  assert.equal(set.stdout, 'silent: BMC added: ipmi 10.0.0.9\n')
  assert.match(dry.stdout, /^moved\s+10\.30\.0\.1\s+10\.30\.0\.11\s+10\.30\.0\.11\s+would adopt$/m)
  assert.match(dry.stdout, /2 BMCs would be adopted/)
  const [show, exp] = await Promise.all([local(['machines', 'bmc', 'show', 'silent']), local(['inventory', 'export', join(cwd, 'out')])])
  assert.match(show.stdout, /^address\s+10\.0\.0\.9$/m)
  assert.match(show.stdout, /^password\s+stored$/m)
  assert.equal(exp.code, 0, exp.stderr)
  const exported = readFileSync(join(cwd, 'out', 'machines.yaml'), 'utf8')
  assert.match(exported, /passwordFrom: env:BMC_PW/)
  assert.ok(!exported.includes(PASSWORD))
  noSecrets(set, dry, show, exp)
})
