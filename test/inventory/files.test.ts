import { loadError, tempDir as makeTempDir } from './helpers.js'
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { cpSync, mkdtempSync, writeFileSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  exportInventory, importInventory, InventoryFileError, loadInventoryFiles, openSqliteInventory,
} from '../../src/inventory/index.js'

const EXAMPLE = join(import.meta.dirname, '..', '..', 'inventory')

const tempDir = (): string => makeTempDir('rb-files-')

test('the example inventory imports, and a second import changes nothing', async (t) => {
  const inv = await openSqliteInventory({ file: ':memory:' })
  t.after(() => inv.close())
  const env = { RACKBOOT_BMC_PASSWORD_R12: 'pw-r12', RACKBOOT_BMC_PASSWORD_R12_DELL: 'pw-dell' }
  const first = await importInventory(inv, loadInventoryFiles(EXAMPLE), { now: 1, env })
  assert.ok(first.changes.length >= 4)
  assert.ok(first.changes.every((c) => c.action === 'created'))
  assert.deepEqual(first.warnings, [])
  const second = await importInventory(inv, loadInventoryFiles(EXAMPLE), { now: 2, env })
  assert.deepEqual(second.changes, [])
  assert.equal(second.unchanged, first.changes.length)
  const m = await inv.machines.byName('r12-u03')
  assert.equal(m?.rack, 'r12')
  assert.deepEqual(m?.nics.map((n) => n.mac), ['3c:ec:ef:12:30:03'])
  const bmc = await inv.bmcs.get(m!.id)
  assert.equal(bmc?.address, '198.51.100.3', 'the YAML merge key overrides the shared anchor')
  assert.equal((await inv.bmcs.credentials(m!.id))?.password, 'pw-r12')
  assert.equal((await inv.reservations.byMac('3c:ec:ef:12:30:03'))?.ip, '192.0.2.23')
  assert.equal((await inv.machines.byUuid('4c4c4544-0058-4b10-8034-b7c04f513933'))?.name, 'r12-u09')
})

test('export writes files that import back with no change', async (t) => {
  const inv = await openSqliteInventory({ file: ':memory:' })
  t.after(() => inv.close())
  await importInventory(inv, loadInventoryFiles(EXAMPLE), { now: 1, env: {} })
  const out = tempDir()
  const res = await exportInventory(inv, out)
  assert.equal(res.machines, 4)
  const again = await importInventory(inv, loadInventoryFiles(out), { now: 2, env: {} })
  assert.deepEqual(again.changes, [])
  // A fresh database fed the export holds the same machines.
  const other = await openSqliteInventory({ file: ':memory:' })
  t.after(() => other.close())
  await importInventory(other, loadInventoryFiles(out), { now: 3, env: {} })
  assert.equal(await other.machines.count(), 4)
  assert.match(readFileSync(join(out, 'machines.yaml'), 'utf8'), /passwordFrom: env:RACKBOOT_BMC_PASSWORD_R12/)
})

test('a change in a file updates only that machine; --prune deletes only what the files owned', async (t) => {
  const inv = await openSqliteInventory({ file: ':memory:' })
  t.after(() => inv.close())
  const dir = tempDir()
  cpSync(EXAMPLE, dir, { recursive: true })
  await importInventory(inv, loadInventoryFiles(dir), { now: 1, env: {} })
  const discovered = await inv.machines.create({ serial: 'FOUND-ON-BOOT' }, 1)
  const rack = join(dir, 'racks', 'r12.yaml')
  const text = readFileSync(rack, 'utf8').replace('unit: 9', 'unit: 10')
  writeFileSync(rack, text.slice(0, text.indexOf('  - name: r12-u07')))
  const res = await importInventory(inv, loadInventoryFiles(dir), { now: 2, env: {} })
  assert.deepEqual(res.changes, [], 'without --prune nothing is deleted and u09 is no longer declared')
  const pruned = await importInventory(inv, loadInventoryFiles(dir), { now: 3, env: {}, prune: true })
  assert.deepEqual(pruned.changes.map((c) => `${c.action} ${c.name}`).sort(), ['deleted r12-u07', 'deleted r12-u09'])
  assert.ok(await inv.machines.get(discovered.id), 'a discovered machine is never pruned')
})

test('a machine that booted before it was declared is adopted by MAC, not duplicated', async (t) => {
  const inv = await openSqliteInventory({ file: ':memory:' })
  t.after(() => inv.close())
  const booted = await inv.machines.create({ nics: [{ mac: 'b0:7b:25:de:07:10', name: null, boot: true }], serial: '7XK4Q93' }, 1)
  const res = await importInventory(inv, loadInventoryFiles(EXAMPLE), { now: 2, env: {} })
  assert.equal(res.changes.find((c) => c.name === 'r12-u07')?.action, 'updated')
  assert.equal((await inv.machines.byName('r12-u07'))?.id, booted.id)
  assert.equal(await inv.machines.count(), 4)
})

test('a malformed file is rejected whole, naming file, line and field, and nothing is imported', async (t) => {
  const inv = await openSqliteInventory({ file: ':memory:' })
  t.after(() => inv.close())
  const dir = tempDir()
  cpSync(EXAMPLE, dir, { recursive: true })
  writeFileSync(
    join(dir, 'racks', 'r13.yaml'),
    ['machines:', '  - name: r13-u01', '    rack: r13', '    nics:', '      - mac: 3c:ec:ef:12:31:01', '  - name: r13-u02', '    nics:', '      - mac: not-a-mac', ''].join('\n'),
  )
  const err = loadError(dir)
  assert.match(err.message, /racks\/r13\.yaml:8:\d+: machines\[1\]\.nics\[0\]\.mac: not a MAC address: 'not-a-mac'/)
  assert.equal(await inv.machines.count(), 0)
})

test('schema errors name the field and line: unknown field, wrong type, bad enum, YAML syntax, duplicates across files', () => {
  const cases: [string, RegExp][] = [
    ['machines:\n  - name: a1\n    serial: S1\n    colour: red\n', /x\.yaml:4:\d+: machines\[0\]\.colour: unknown field 'colour'/],
    ['machines:\n  - name: a1\n    serial: S1\n    unit: twelve\n', /x\.yaml:4:\d+: machines\[0\]\.unit: must be integer/],
    ['machines:\n  - name: a1\n    serial: S1\n    bmc: { type: amt, address: 1.2.3.4 }\n', /x\.yaml:4:\d+: machines\[0\]\.bmc\.type: must be "ipmi"/],
    ['machines:\n  - name: a1\n    serial: [S1\n', /x\.yaml:\d+:\d+: \(yaml\)/],
    ['machines:\n  - name: Bad_Name\n    serial: S1\n', /x\.yaml:2:\d+: machines\[0\]\.name: must be a lower-case DNS label/],
    ['machines:\n  - name: a1\n', /x\.yaml:2:\d+: machines\[0\]: a machine needs at least one of serial, uuid or nics/],
    ['machines:\n  - name: a1\n    serial: S1\n  - name: a2\n    serial: S1\n', /x\.yaml:5:\d+: machines\[1\]\.serial: duplicate serial 'S1' \(already declared at .*x\.yaml:3\)/],
    ['machines:\n  - name: a1\n    serial: S1\n    bmc: { type: ipmi, address: 1.2.3.4, passwordFrom: hunter2 }\n', /machines\[0\]\.bmc\.passwordFrom: must match pattern/],
  ]
  for (const [text, pattern] of cases) {
    const dir = tempDir()
    writeFileSync(join(dir, 'x.yaml'), text)
    assert.match(loadError(dir).message, pattern, text)
  }
})

test('a reference to an unknown profile is an error at its line, and the import writes nothing', async (t) => {
  const inv = await openSqliteInventory({ file: ':memory:' })
  t.after(() => inv.close())
  const dir = tempDir()
  writeFileSync(join(dir, 'm.yaml'), 'machines:\n  - name: a1\n    serial: S1\n  - name: a2\n    serial: S2\n    profile: nope\n')
  await assert.rejects(importInventory(inv, loadInventoryFiles(dir), { now: 1, env: {} }), (err: Error) => {
    assert.match(err.message, /m\.yaml:6:\d+: machines\[1\]\.profile: unknown profile 'nope'/)
    return true
  })
  assert.equal(await inv.machines.count(), 0)
})

test('install-disk selectors and static networks: imported from the example, exported, and read back unchanged', async (t) => {
  const inv = await openSqliteInventory({ file: ':memory:' })
  t.after(() => inv.close())
  await importInventory(inv, loadInventoryFiles(EXAMPLE), { now: 1, env: {} })
  assert.deepEqual((await inv.profiles.get('talos-worker'))?.installDisk, { type: 'nvme', size: '>= 400GB', prefer: 'smallest' })
  assert.deepEqual((await inv.profiles.get('talos-controlplane'))?.installDisk, { type: 'ssd', size: '<= 1TB', model: 'SAMSUNG MZ7L*' })
  assert.deepEqual((await inv.machines.byName('r12-u02'))?.network, {
    addresses: [{ link: 'eno1', addresses: ['192.0.2.22/24'], gateway: '192.0.2.1' }],
    nameservers: ['192.0.2.53', '192.0.2.54'],
  })
  assert.deepEqual((await inv.machines.byName('r12-u03'))?.network?.addresses, [{ mac: '3c:ec:ef:12:30:03', addresses: ['192.0.2.23/24'], gateway: '192.0.2.1', mtu: 9000 }])
  assert.equal((await inv.machines.byName('r12-u07'))?.network, null)

  const out = tempDir()
  await exportInventory(inv, out)
  assert.match(readFileSync(join(out, 'profiles.yaml'), 'utf8'), /installDisk:\n\s+type: nvme\n\s+size: ">= 400GB"\n\s+prefer: smallest/)
  assert.match(readFileSync(join(out, 'machines.yaml'), 'utf8'), /network:\n\s+addresses:\n\s+- link: eno1/)
  const other = await openSqliteInventory({ file: ':memory:' })
  t.after(() => other.close())
  await importInventory(other, loadInventoryFiles(out), { now: 2, env: {} })
  for (const name of ['r12-u02', 'r12-u03', 'r12-u07']) {
    assert.deepEqual((await other.machines.byName(name))?.network, (await inv.machines.byName(name))?.network, name)
  }
  assert.deepEqual((await other.profiles.list()).map((p) => p.installDisk), (await inv.profiles.list()).map((p) => p.installDisk))

  // A changed selector or address is an update of that profile or machine alone.
  const dir = tempDir()
  cpSync(EXAMPLE, dir, { recursive: true })
  const profiles = join(dir, 'profiles.yaml')
  writeFileSync(profiles, readFileSync(profiles, 'utf8').replace('prefer: smallest', 'prefer: largest'))
  const rack = join(dir, 'racks', 'r12.yaml')
  writeFileSync(rack, readFileSync(rack, 'utf8').replace('addresses: [192.0.2.23/24]', 'addresses: [192.0.2.33/24]'))
  const res = await importInventory(inv, loadInventoryFiles(dir), { now: 3, env: {} })
  assert.deepEqual(res.changes.map((c) => `${c.action} ${c.kind} ${c.name} ${c.fields?.join(',') ?? ''}`), ['updated profile talos-worker ', 'updated machine r12-u03 network'])
})

test('install-disk and network mistakes name file, line, column and field', () => {
  const profile = (disk: string) => `profiles:\n  - name: p\n    installDisk:\n${disk}`
  const machine = (network: string) => `machines:\n  - name: a1\n    serial: S1\n    network:\n${network}`
  const cases: [string, RegExp][] = [
    [profile("      size: '>= lots'\n"), /x\.yaml:4:13: profiles\[0\]\.installDisk\.size: bad size condition '>= lots'/],
    [profile('      size: { min: 2TB, max: 1TB }\n'), /x\.yaml:4:\d+: profiles\[0\]\.installDisk\.size: .*min is above max/],
    [profile('      type: spinning-rust\n'), /x\.yaml:4:13: profiles\[0\]\.installDisk\.type: unknown disk type "spinning-rust" \(one of nvme, ssd, hdd, virtual, other\)/],
    [profile('      type: [ssd, floppy]\n'), /x\.yaml:4:\d+: profiles\[0\]\.installDisk\.type\[1\]: unknown disk type "floppy"/],
    [profile('      prefer: fastest\n'), /x\.yaml:4:\d+: profiles\[0\]\.installDisk\.prefer: must be "smallest"/],
    [profile('      colour: red\n'), /x\.yaml:4:\d+: profiles\[0\]\.installDisk\.colour: unknown field 'colour'/],
    [machine('      addresses:\n        - link: eth0\n          addresses: [198.18.0.20]\n'), /x\.yaml:7:\d+: machines\[0\]\.network\.addresses\[0\]\.addresses\[0\]: not an address in CIDR form .*'198\.18\.0\.20'/],
    [machine('      addresses:\n        - link: eth0\n          addresses: [198.18.0.20/33]\n'), /x\.yaml:7:\d+: machines\[0\]\.network\.addresses\[0\]\.addresses\[0\]: not an address in CIDR form/],
    [machine('      addresses:\n        - link: eth0\n          addresses: [198.18.0.20/24]\n          gateway: 198.18.0.300\n'), /x\.yaml:8:20: machines\[0\]\.network\.addresses\[0\]\.gateway: not an IP address: '198\.18\.0\.300'/],
    [machine('      addresses:\n        - link: eth0\n          addresses: [198.18.0.20/24]\n          gateway: fd00::1\n'), /machines\[0\]\.network\.addresses\[0\]\.gateway: gateway fd00::1 is IPv6, but this link has no IPv6 address/],
    [machine('      addresses: []\n      nameservers: [198.18.0.53, dns.example]\n'), /x\.yaml:6:34: machines\[0\]\.network\.nameservers\[1\]: not an IP address: 'dns\.example'/],
    [machine('      addresses:\n        - addresses: [198.18.0.20/24]\n'), /x\.yaml:6:\d+: machines\[0\]\.network\.addresses\[0\]: give the link by name \(link\) or by MAC \(mac\)/],
    [machine('      addresses:\n        - { link: eth0, mac: 3c:ec:ef:12:34:56, addresses: [198.18.0.20/24] }\n'), /x\.yaml:6:\d+: machines\[0\]\.network\.addresses\[0\]: give link or mac, not both/],
    [machine('      addresses:\n        - { mac: 3c:ec:ef:12, addresses: [198.18.0.20/24] }\n'), /machines\[0\]\.network\.addresses\[0\]\.mac: not a MAC address/],
    [machine('      addresses:\n        - { link: eth0, addresses: [198.18.0.20/24] }\n        - { link: eth0, addresses: [198.18.0.21/24] }\n'), /x\.yaml:7:\d+: machines\[0\]\.network\.addresses\[1\]\.link: link eth0 already has addresses in addresses\[0\]/],
    [machine('      addresses:\n        - { link: eth0, addresses: [198.18.0.20/24], mtu: 10 }\n'), /machines\[0\]\.network\.addresses\[0\]\.mtu: must be greater or equal to 68|mtu: must be >= 68/],
    [machine('      addresses:\n        - { link: eth0, addresses: [] }\n'), /machines\[0\]\.network\.addresses\[0\]\.addresses: /],
    [machine('      nameservers: [198.18.0.53]\n'), /x\.yaml:5:\d+: machines\[0\]\.network\.addresses: missing required field 'addresses'/],
    [`${machine('      addresses:\n        - { link: eth0, addresses: [198.18.0.20/24] }\n')}  - name: a2\n    serial: S2\n    network:\n      addresses:\n        - { link: eth0, addresses: [198.18.0.20/25] }\n`,
      /x\.yaml:11:\d+: machines\[1\]\.network\.addresses\[0\]\.addresses\[0\]: duplicate static address '198\.18\.0\.20' \(already declared at .*x\.yaml:6\)/],
  ]
  for (const [text, pattern] of cases) {
    const dir = tempDir()
    writeFileSync(join(dir, 'x.yaml'), text)
    assert.match(loadError(dir).message, pattern, text)
  }
})

test('a class selector that does not parse (or needs backtracking) is an error at its file, line and column', async () => {
  const { checkSelector } = await import('../../src/matching/index.js')
  const dir = tempDir()
  writeFileSync(join(dir, 'classes.yaml'), `classes:
  - name: big
    selectors:
      - cpu.cores >= 32
      - serial =~ "^(a)\\\\1$"
`)
  let caught: unknown
  try {
    loadInventoryFiles(dir, { checkSelector })
  } catch (err) {
    caught = err
  }
  assert.ok(caught instanceof InventoryFileError, 'a bad selector is refused')
  assert.match(caught.message, /classes\.yaml:5:9.*classes\[0\]\.selectors\[1\].*backreference/s)
  // Without the check (the matching layer is the caller's), the file loads.
  assert.equal(loadInventoryFiles(dir).classes.length, 1)
})
