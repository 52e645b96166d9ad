import { loadError, tempDir as makeTempDir } from './helpers.js'
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  exportInventory, importInventory, InventoryFileError, loadInventoryFiles, type Bmc,
} from '../../src/inventory/index.js'
import { TEST_CA_PEM } from './helpers.js'
import { eachBackend, inventoryBackends, skipped, type Backend } from '../support/backends.js'

const backends = inventoryBackends()


// Per-BMC settings in the inventory files (issue 18): Redfish system, CA, auth; IPMI suites, privilege, K_G,
// read-back strictness; boot method. Imported, exported without secrets, and read back unchanged.

const KG = '0123456789abcdef0123456789abcdef01234567'
const PASSWORD = 'hunter2-Secret9'

const tempDir = (): string => makeTempDir('rb-bmc-files-')

/** Two machines with every BMC setting there is: a Redfish one (system in the address, CA file) and an IPMI one. */
function writeFleet(dir: string, overrides: { rfAuth?: string; kgFrom?: string | null } = {}): void {
  mkdirSync(join(dir, 'certs'), { recursive: true })
  writeFileSync(join(dir, 'certs', 'bmc-ca.pem'), `subject=CN = rackboot test BMC CA\n${TEST_CA_PEM}`)
  writeFileSync(join(dir, 'm.yaml'), `machines:
  - name: rf-1
    serial: RF1
    bmc:
      type: redfish
      address: https://10.30.12.7:8443/redfish/v1/Systems/System.Embedded.1
      username: root
      passwordFrom: env:RF_PW
      fingerprint: 5e:2f:8a:11:9c:40:7d:3b:a2:61:0f:c4:77:18:e9:52:3c:6d:90:ab:14:f7:28:c5:6e:03:d9:81:4a:b6:2e:75
      caFile: certs/bmc-ca.pem
      auth: ${overrides.rfAuth ?? 'session'}
      bootMethod: virtual-media
  - name: ipmi-1
    serial: IPMI1
    bmc:
      type: ipmi
      address: 10.30.12.8
      port: 6230
      username: ADMIN
      passwordFrom: env:IPMI_PW
      cipherSuites: [17, 3]
      privilege: operator
${overrides.kgFrom === null ? '' : `      kgFrom: ${overrides.kgFrom ?? 'env:IPMI_KG'}\n`}      bootVerify: device
`)
}

const ENV = { RF_PW: PASSWORD, IPMI_PW: PASSWORD, IPMI_KG: KG.toUpperCase() }

/** A BMC record without what differs between two databases (machine id) or is not the files' (power state). */
function comparable(b: Bmc | null) {
  assert.ok(b)
  const { machineId: _, power: __, ...rest } = b
  return rest
}

eachBackend('every BMC setting imports, exports without secrets, and reads back unchanged (same and fresh database)', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const dir = tempDir()
  writeFleet(dir)
  const first = await importInventory(inv, loadInventoryFiles(dir), { now: 1, env: ENV })
  assert.deepEqual(first.warnings, [])
  const rf = await inv.machines.byName('rf-1')
  const ipmi = await inv.machines.byName('ipmi-1')
  const rfBmc = await inv.bmcs.get(rf!.id)
  // The system path left the address (the driver would drop it) and became the systemId.
  assert.equal(rfBmc?.address, 'https://10.30.12.7:8443')
  assert.equal(rfBmc?.systemId, 'System.Embedded.1')
  assert.equal(rfBmc?.caPem, TEST_CA_PEM, 'the CA file is read at import, text around the PEM block dropped')
  assert.equal(rfBmc?.auth, 'session')
  assert.equal(rfBmc?.bootMethod, 'virtual-media')
  assert.equal(rfBmc?.fingerprint, '5e2f8a119c407d3ba2610fc47718e9523c6d90ab14f728c56e03d9814ab62e75')
  assert.equal(rfBmc?.hasKg, false)
  const ipmiBmc = await inv.bmcs.get(ipmi!.id)
  assert.deepEqual(
    { port: ipmiBmc?.port, cipherSuites: ipmiBmc?.cipherSuites, privilege: ipmiBmc?.privilege, bootVerify: ipmiBmc?.bootVerify, hasKg: ipmiBmc?.hasKg, auth: ipmiBmc?.auth, bootMethod: ipmiBmc?.bootMethod },
    { port: 6230, cipherSuites: [17, 3], privilege: 'operator', bootVerify: 'device', hasKg: true, auth: 'auto', bootMethod: 'pxe' },
  )
  const creds = await inv.bmcs.credentials(ipmi!.id)
  assert.equal(creds?.kg?.toString('hex'), KG, 'K_G from the environment, hex, stored sealed')
  assert.equal(creds?.password, PASSWORD)

  // The same files again: nothing to do.
  const again = await importInventory(inv, loadInventoryFiles(dir), { now: 2, env: ENV })
  assert.deepEqual(again.changes, [])

  const out = tempDir()
  await exportInventory(inv, out)
  const text = readFileSync(join(out, 'machines.yaml'), 'utf8')
  assert.ok(!text.includes(PASSWORD) && !text.toLowerCase().includes(KG), 'no password or K_G in the export')
  assert.match(text, /passwordFrom: env:IPMI_PW/)
  assert.match(text, /kgFrom: env:IPMI_KG/)
  assert.match(text, /address: https:\/\/10\.30\.12\.7:8443\n/)
  assert.match(text, /systemId: System\.Embedded\.1/)
  assert.match(text, /ca: \|\n\s+-----BEGIN CERTIFICATE-----/, 'the CA is written inline')
  assert.match(text, /auth: session/)
  assert.match(text, /cipherSuites:\n\s+- 17\n\s+- 3/)
  assert.match(text, /privilege: operator/)
  assert.match(text, /bootVerify: device/)
  assert.match(text, /bootMethod: virtual-media/)

  const back = await importInventory(inv, loadInventoryFiles(out), { now: 3, env: ENV })
  assert.deepEqual(back.changes, [], 'the export reads back into the same database with no change')
  const other = await backend.open()
  t.after(() => other.close())
  await importInventory(other, loadInventoryFiles(out), { now: 4, env: ENV })
  for (const name of ['rf-1', 'ipmi-1']) {
    const a = (await inv.machines.byName(name))!
    const b = (await other.machines.byName(name))!
    assert.deepEqual(comparable(await other.bmcs.get(b.id)), comparable(await inv.bmcs.get(a.id)), name)
    assert.deepEqual(await other.bmcs.credentials(b.id), await inv.bmcs.credentials(a.id), name)
  }
})

eachBackend('a changed setting or K_G updates that machine (field bmc); a K_G the files no longer name is removed', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const dir = tempDir()
  writeFleet(dir)
  await importInventory(inv, loadInventoryFiles(dir), { now: 1, env: ENV })
  writeFleet(dir, { rfAuth: 'basic' })
  let res = await importInventory(inv, loadInventoryFiles(dir), { now: 2, env: ENV })
  assert.deepEqual(res.changes.map((c) => `${c.action} ${c.name} ${c.fields?.join(',')}`), ['updated rf-1 bmc'])
  assert.equal((await inv.bmcs.get((await inv.machines.byName('rf-1'))!.id))?.auth, 'basic')

  const ipmiId = (await inv.machines.byName('ipmi-1'))!.id
  res = await importInventory(inv, loadInventoryFiles(dir), { now: 3, env: { ...ENV, IPMI_KG: 'ffff' } })
  assert.deepEqual(res.changes.map((c) => `${c.action} ${c.name} ${c.fields?.join(',')}`), ['updated ipmi-1 bmc'], 'a new K_G is a change')
  assert.equal((await inv.bmcs.credentials(ipmiId))?.kg?.toString('hex'), 'ffff')

  // An unset variable keeps the stored K_G, with a warning (as for passwords).
  res = await importInventory(inv, loadInventoryFiles(dir), { now: 4, env: { RF_PW: PASSWORD, IPMI_PW: PASSWORD } })
  assert.deepEqual(res.changes, [])
  assert.deepEqual(res.warnings, ['machine ipmi-1: BMC K_G not set: environment variable IPMI_KG is not set'])
  assert.equal((await inv.bmcs.credentials(ipmiId))?.kg?.toString('hex'), 'ffff')

  writeFleet(dir, { rfAuth: 'basic', kgFrom: null })
  res = await importInventory(inv, loadInventoryFiles(dir), { now: 5, env: ENV })
  assert.deepEqual(res.changes.map((c) => `${c.action} ${c.name} ${c.fields?.join(',')}`), ['updated ipmi-1 bmc'])
  assert.equal((await inv.bmcs.get(ipmiId))?.hasKg, false)
  assert.equal((await inv.bmcs.credentials(ipmiId))?.password, PASSWORD, 'the password stays')

  // A K_G set through the API or CLI (not from the files) stays.
  await inv.bmcs.put(ipmiId, { ...(await inv.bmcs.get(ipmiId))!, kg: 'abcd' })
  res = await importInventory(inv, loadInventoryFiles(dir), { now: 6, env: ENV })
  assert.deepEqual(res.changes, [])
  assert.equal((await inv.bmcs.credentials(ipmiId))?.kg?.toString('hex'), 'abcd')

  // K_G that is not hex: an error at kgFrom's line, which never quotes the value.
  writeFleet(dir, { rfAuth: 'basic', kgFrom: 'file:' + join(dir, 'kg.txt') })
  writeFileSync(join(dir, 'kg.txt'), 'not-hex-s3cret-key\n')
  await assert.rejects(importInventory(inv, loadInventoryFiles(dir), { now: 7, env: ENV }), (err: Error) => {
    assert.ok(err instanceof InventoryFileError)
    assert.match(err.message, /m\.yaml:23:\d+: machines\[1\]\.bmc\.kgFrom: file:.*kg\.txt is not a K_G in hex/)
    assert.ok(!err.message.includes('s3cret'), err.message)
    return true
  })
  assert.equal((await inv.bmcs.credentials(ipmiId))?.kg?.toString('hex'), 'abcd', 'nothing was written')
})

eachBackend('a Redfish system path in the address: split, agreed with systemId, or an error naming file, line and machine', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const machine = (bmc: string) => `machines:\n  - name: rf-2\n    serial: RF2\n    bmc:\n${bmc}`
  const dir = tempDir()
  // Both spellings of one system agree; the systemId as written is kept (without a trailing slash).
  writeFileSync(join(dir, 'x.yaml'), machine('      type: redfish\n      address: https://bmc.example:443/redfish/v1/Systems/2/\n      systemId: /redfish/v1/Systems/2/\n'))
  await importInventory(inv, loadInventoryFiles(dir), { now: 1, env: {} })
  const b = await inv.bmcs.get((await inv.machines.byName('rf-2'))!.id)
  assert.deepEqual({ address: b?.address, systemId: b?.systemId }, { address: 'https://bmc.example', systemId: '/redfish/v1/Systems/2' })
  // Only the service root: no system named, the address is its origin.
  writeFileSync(join(dir, 'x.yaml'), machine('      type: redfish\n      address: https://10.0.0.9/redfish/v1\n'))
  assert.deepEqual(loadInventoryFiles(dir).machines[0]?.value.bmc, { type: 'redfish', address: 'https://10.0.0.9' })

  writeFileSync(join(dir, 'x.yaml'), machine('      type: redfish\n      address: https://10.0.0.9/redfish/v1/Systems/1\n      systemId: "2"\n'))
  assert.match(loadError(dir).message, /x\.yaml:7:\d+: machines\[0\]\.bmc\.systemId: machine rf-2: the address names system 1, but systemId is 2/)
})

test('BMC setting mistakes name file, line, column and field', () => {
  const machine = (bmc: string) => `machines:\n  - name: a1\n    serial: S1\n    bmc:\n${bmc}`
  const rf = (extra: string) => machine(`      type: redfish\n      address: 10.0.0.9\n${extra}`)
  const ipmi = (extra: string) => machine(`      type: ipmi\n      address: 10.0.0.9\n${extra}`)
  const cases: [string, RegExp, Record<string, string>?][] = [
    [rf('      cipherSuites: [17]\n'), /x\.yaml:7:\d+: machines\[0\]\.bmc\.cipherSuites: cipherSuites is an IPMI setting, but this BMC is redfish/],
    [rf('      privilege: user\n'), /x\.yaml:7:\d+: machines\[0\]\.bmc\.privilege: privilege is an IPMI setting/],
    [rf('      kgFrom: env:KG\n'), /x\.yaml:7:\d+: machines\[0\]\.bmc\.kgFrom: kgFrom is an IPMI setting/],
    [rf('      bootVerify: device\n'), /x\.yaml:7:\d+: machines\[0\]\.bmc\.bootVerify: bootVerify is an IPMI setting/],
    [ipmi('      systemId: "1"\n'), /x\.yaml:7:\d+: machines\[0\]\.bmc\.systemId: systemId is a Redfish setting, but this BMC is ipmi/],
    [ipmi('      auth: basic\n'), /x\.yaml:7:\d+: machines\[0\]\.bmc\.auth: auth is a Redfish setting/],
    [ipmi('      caFile: ca.pem\n'), /x\.yaml:7:\d+: machines\[0\]\.bmc\.caFile: caFile is a Redfish setting/],
    [ipmi('      bootMethod: virtual-media\n'), /x\.yaml:7:\d+: machines\[0\]\.bmc\.bootMethod: bootMethod virtual-media needs a Redfish BMC/],
    [ipmi('      cipherSuites: [17, 5]\n'), /x\.yaml:7:\d+: machines\[0\]\.bmc\.cipherSuites: cipher suite 5 is not supported \(17 or 3\)/],
    [ipmi('      privilege: root\n'), /x\.yaml:7:\d+: machines\[0\]\.bmc\.privilege: must be one of user, operator, administrator/],
    [rf('      auth: digest\n'), /x\.yaml:7:\d+: machines\[0\]\.bmc\.auth: must be one of auto, session, basic/],
    [rf('      bootMethod: floppy\n'), /x\.yaml:7:\d+: machines\[0\]\.bmc\.bootMethod: must be one of pxe, uefi-http, virtual-media/],
    [ipmi('      kgFrom: 0123abcd\n'), /x\.yaml:7:\d+: machines\[0\]\.bmc\.kgFrom: must match pattern/],
    [rf('      caFile: missing.pem\n'), /x\.yaml:7:\d+: machines\[0\]\.bmc\.caFile: cannot read missing\.pem: ENOENT/],
    [rf('      caFile: not-pem.txt\n'), /x\.yaml:7:\d+: machines\[0\]\.bmc\.caFile: not-pem\.txt is not a PEM certificate \(no -----BEGIN CERTIFICATE----- block\)/, { 'not-pem.txt': 'hello\n' }],
    [rf('      caFile: broken.pem\n'), /x\.yaml:7:\d+: machines\[0\]\.bmc\.caFile: broken\.pem is not a PEM certificate: certificate 1 does not parse/,
      { 'broken.pem': TEST_CA_PEM.replace('MIIBlTCC', 'MIIBlTCD') }],
    [rf('      caFile: with-key.pem\n'), /x\.yaml:7:\d+: machines\[0\]\.bmc\.caFile: with-key\.pem holds a private key/,
      { 'with-key.pem': `${TEST_CA_PEM}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n` }],
    [rf('      ca: not a certificate\n'), /x\.yaml:7:\d+: machines\[0\]\.bmc\.ca: the inline PEM is not a PEM certificate/],
    [rf(`      ca: |\n${TEST_CA_PEM.trimEnd().replace(/^/gm, '        ')}
      caFile: ca.pem\n`), /machines\[0\]\.bmc\.caFile: give ca or caFile, not both/, { 'ca.pem': TEST_CA_PEM }],
    [rf('      systemId: a/b\n'), /x\.yaml:7:\d+: machines\[0\]\.bmc\.systemId: not a Redfish system Id or \/redfish\/v1\/Systems\/<id> path: 'a\/b'/],
    [machine('      type: redfish\n      address: https://10.0.0.9/redfish/v1/Managers/1\n'), /x\.yaml:6:\d+: machines\[0\]\.bmc\.address: path \/redfish\/v1\/Managers\/1 is not a Redfish system/],
    [machine('      type: ipmi\n      address: https://10.0.0.9\n'), /x\.yaml:6:\d+: machines\[0\]\.bmc\.address: an IPMI address is a host name or IP address, not a URL/],
  ]
  for (const [text, pattern, files] of cases) {
    const dir = tempDir()
    writeFileSync(join(dir, 'x.yaml'), text)
    for (const [name, body] of Object.entries(files ?? {})) writeFileSync(join(dir, name), body)
    assert.match(loadError(dir).message, pattern, text)
  }
  // A password in an address URL is refused without repeating it.
  const dir = tempDir()
  writeFileSync(join(dir, 'x.yaml'), machine('      type: redfish\n      address: https://root:calvin-Secret9@10.0.0.9/\n'))
  const err = loadError(dir)
  assert.match(err.message, /machines\[0\]\.bmc\.address: user name and password do not belong in the address/)
  assert.ok(!err.message.includes('calvin-Secret9'))
})
