import { test } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import {
  DEFAULT_SCHEMAS_DIR,
  chooseSchema,
  createConfigLinter,
  listSchemas,
  parseConfigDocuments,
  parseTalosVersion,
  type ConfigDocument,
  type LintIssue,
  type SchemaInfo,
} from '../../src/talos/index.js'
import { isRackbootError } from '../../src/errors.js'
import { deepFreeze, recordCopy } from '../../src/talos/documents.js'

const linter = createConfigLinter()

const V1 = (machine: string, cluster = ''): string => `version: v1alpha1
machine:
  type: worker
  token: abcdef.0123456789abcdef
${machine}${cluster ? `cluster:\n${cluster}` : ''}`
const INSTALL = '  install:\n    disk: /dev/sda\n'

function only(issues: LintIssue[], keyword?: string): LintIssue[] {
  return keyword ? issues.filter((i) => i.keyword === keyword) : issues
}

test('a broken config gives precise errors: document, kind, name, path, message', () => {
  const config = `${V1(`${INSTALL}  instal:\n    disk: /dev/sdb\n`)}
---
apiVersion: v1alpha1
kind: LinkConfig
name: eth0
mtu: "big"
up: true
---
apiVersion: v1alpha1
kind: HostnameConfig
hostname: node-1
auto: stable
---
apiVersion: v1alpha1
kind: FrobnicatorConfig
---
apiVersion: v1alpha1
kind: LinkConfig
name: eth0
---
kind: ResolverConfig
`
  const r = linter.lint(config, { talosVersion: 'v1.13.9' })
  assert.equal(r.ok, false)
  const byDoc = (i: number): LintIssue[] => r.errors.filter((e) => e.documentIndex === i)
  assert.deepEqual(byDoc(0), [{ documentIndex: 0, kind: 'v1alpha1', path: '/machine', message: "unknown field 'instal' at /machine", keyword: 'additionalProperties' }])
  assert.deepEqual(byDoc(1).map((e) => [e.kind, e.name, e.path, e.keyword]), [['LinkConfig', 'eth0', '/mtu', 'type']])
  assert.match(byDoc(1)[0]!.message, /^\/mtu must be integer/)
  assert.deepEqual(byDoc(2).map((e) => [e.kind, e.path, e.keyword]), [['HostnameConfig', '/auto', 'hostname']])
  assert.deepEqual(byDoc(3).map((e) => [e.kind, e.path, e.message]), [['FrobnicatorConfig', '/kind', 'unknown document kind v1alpha1/FrobnicatorConfig for Talos v1.13.9']])
  assert.deepEqual(byDoc(4).map((e) => [e.kind, e.name, e.keyword]), [['LinkConfig', 'eth0', 'duplicate']])
  assert.match(byDoc(4)[0]!.message, /also document 1/)
  assert.deepEqual(byDoc(5).map((e) => [e.path, e.message]), [['', 'document has no apiVersion']])
  assert.equal(r.errors.length, 6)
})

test('enum, required and type errors name the field and the allowed values', () => {
  const r = linter.lint(`${V1(INSTALL).replace('type: worker', 'type: master')}---
apiVersion: v1alpha1
kind: HostnameConfig
auto: sometimes
---
apiVersion: v1alpha1
kind: Layer2VIPConfig
link: eth0
`, { talosVersion: 'v1.12.11' })
  const messages = r.errors.map((e) => `${e.documentIndex} ${e.path} ${e.message}`)
  assert.ok(messages.includes('0 /machine/type /machine/type must be one of: "controlplane", "worker"'), messages.join('\n'))
  assert.ok(messages.includes('1 /auto /auto must be one of: "stable", "off"'), messages.join('\n'))
  assert.ok(messages.some((m) => m.startsWith("2  missing required field 'name'")), messages.join('\n'))
})

test('allowances: persist, legacy machine.network, install.extraKernelArgs and init are warnings, not errors', () => {
  const r = linter.lint(`version: v1alpha1
persist: true
machine:
  type: init
  install:
    disk: /dev/sda
    extraKernelArgs: [console=ttyS0]
  features:
    rbac: true
  network:
    hostname: node-1
    interfaces:
      - interface: eth0
        dhcp: true
`, { talosVersion: 'v1.13.9' })
  assert.deepEqual(r.errors, [])
  assert.equal(r.ok, true)
  assert.deepEqual(only(r.warnings, 'allowance').map((w) => w.path).sort(), [
    '/machine/features/rbac',
    '/machine/install/extraKernelArgs',
    '/machine/network',
    '/machine/type',
    '/persist',
  ])
  // On the 1.12 schema machine.network exists (kubespan only): the legacy keys are reported one by one.
  const r12 = linter.lint(`${V1(INSTALL)}  network:\n    hostname: n1\n    kubespan:\n      enabled: true\n`, { talosVersion: 'v1.12.11' })
  assert.deepEqual(r12.errors, [])
  assert.deepEqual(only(r12.warnings, 'allowance').map((w) => w.path), ['/machine/network/hostname'])
})

test('1.14: fields moved out of v1alpha1 are checked against the 1.13 schema', () => {
  const good = linter.lint(`${V1('  install:\n    disk: /dev/sda\n    wipe: false\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.33.0\n', '  network:\n    dnsDomain: cluster.local\n')}`, { talosVersion: 'v1.14.0' })
  assert.deepEqual(good.errors, [])
  assert.deepEqual(only(good.warnings, 'allowance').map((w) => w.path), ['/machine/install', '/machine/kubelet', '/cluster/network'])
  assert.match(good.warnings.find((w) => w.path === '/machine/install')!.message, /checked against the v1\.13\.9 schema/)
  const bad = linter.lint(V1('  install:\n    disc: /dev/sda\n'), { talosVersion: 'v1.14.0' })
  assert.deepEqual(bad.errors.map((e) => [e.path, e.message]), [['/machine/install', "unknown field 'disc' at /machine/install"]])
})

test('schema quirks: Talos kind names the schema spells differently, and kinds the schema lacks', () => {
  const r = linter.lint(`${V1('')}---
apiVersion: v1alpha1
kind: UnattendedInstallConfig
provisioning:
  diskSelector:
    match: disk.dev_path == "/dev/sda"
---
apiVersion: v1alpha1
kind: ImageVerificationConfig
rules: []
`, { talosVersion: 'v1.14.0-rc.1' })
  assert.deepEqual(r.errors, [])
  assert.ok(r.warnings.some((w) => w.kind === 'ImageVerificationConfig' && /not in the Talos/.test(w.message)))
  const wrong = linter.lint('apiVersion: v1alpha1\nkind: UnattendedInstall\n', { talosVersion: 'v1.14.0-rc.1' })
  assert.match(wrong.errors[0]!.message, /Talos registers this kind as UnattendedInstallConfig/)
  const bad = linter.lint('apiVersion: v1alpha1\nkind: UnattendedInstallConfig\nreboot: maybe\n', { talosVersion: 'v1.14.0-rc.1' })
  assert.deepEqual(bad.errors.map((e) => e.path), ['/reboot'])
})

test('install disk: required on metal up to 1.13; 1.14 may install through UnattendedInstallConfig', () => {
  const r13 = linter.lint(V1(''), { talosVersion: 'v1.13.9' })
  assert.deepEqual(r13.errors.map((e) => [e.path, e.keyword]), [['/machine/install', 'install']])
  assert.equal(linter.lint(V1(''), { talosVersion: 'v1.13.9', mode: 'container' }).ok, true)
  assert.equal(linter.lint(V1('  install:\n    diskSelector:\n      size: ">= 100GB"\n'), { talosVersion: 'v1.13.9' }).ok, true)
  const r14 = linter.lint(V1(''), { talosVersion: 'v1.14.0' })
  assert.equal(r14.ok, true)
  assert.ok(r14.warnings.some((w) => w.keyword === 'install'))
})

test('a config without the v1alpha1 document is incomplete, not invalid', () => {
  const r = linter.lint('apiVersion: v1alpha1\nkind: EventSinkConfig\nendpoint: "[fd00::1]:8090"\n---\napiVersion: v1alpha1\nkind: KmsgLogConfig\nname: rackboot\nurl: tcp://198.18.0.1:8092\n', { talosVersion: 'v1.13.9' })
  assert.equal(r.ok, true)
  assert.deepEqual(r.warnings.map((w) => w.keyword), ['incomplete'])
})

test('YAML syntax errors and non-mapping documents are reported, not thrown', () => {
  const r = linter.lint('machine:\n  type: [worker\n', { talosVersion: 'v1.13.9' })
  assert.equal(r.ok, false)
  assert.equal(r.errors[0]!.keyword, 'yaml')
  assert.match(r.errors[0]!.message, /line \d+/)
  assert.equal(linter.lint('- a\n- b\n', { talosVersion: 'v1.13.9' }).errors[0]!.keyword, 'yaml')
})

test('versions without their own schema use the nearest one and soften unknown fields', () => {
  const r = linter.lint(`${V1(INSTALL)}---\napiVersion: v1alpha1\nkind: BrandNewConfig\n`, { talosVersion: 'v1.15.2' })
  assert.equal(r.schemaVersion, 'v1.14.0-rc.1')
  assert.equal(r.ok, true)
  assert.ok(r.warnings.some((w) => w.keyword === 'schema'))
  assert.ok(r.warnings.some((w) => w.keyword === 'kind' && w.kind === 'BrandNewConfig'))
})

test('schema choice: same minor first (release over pre-release), else nearest minor, older on a tie', () => {
  const s = (label: string): SchemaInfo => ({ file: label, label, version: parseTalosVersion(label) })
  const all = [s('v1.14.0-rc.1'), s('v1.13.9'), s('v1.12.11'), s('v1.14.1'), s('v1.16.0')]
  assert.equal(chooseSchema(all, 'v1.13.2').label, 'v1.13.9')
  assert.equal(chooseSchema(all, 'v1.14.0-rc.1').label, 'v1.14.1')
  assert.equal(chooseSchema(all, 'v1.11.0').label, 'v1.12.11')
  assert.equal(chooseSchema(all, 'v1.15.0').label, 'v1.14.1')
  assert.equal(chooseSchema(all, 'v1.20.0').label, 'v1.16.0')
  assert.throws(() => chooseSchema([], 'v1.13.0'), (e: unknown) => isRackbootError(e, 'RB_ERR_SETTINGS'))
})

test('schemas come from a configurable directory; an unversioned file is named by its $id', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rackboot-schemas-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  copyFileSync(join(DEFAULT_SCHEMAS_DIR, 'talos-config.v1.13.9.schema.json'), join(dir, 'talos-config.schema.json'))
  writeFileSync(join(dir, 'README.md'), 'not a schema')
  assert.deepEqual(listSchemas(dir).map((i) => i.label), ['v1.13-main'])
  const registry = new Registry()
  const local = createConfigLinter({ schemasDir: dir, registry })
  assert.equal(local.schemaFor('v1.13.9').label, 'v1.13-main')
  assert.equal(local.lint(V1(INSTALL), { talosVersion: 'v1.13.9' }).ok, true)
  assert.equal(local.lint(V1(''), { talosVersion: 'v1.13.9' }).ok, false)
  const metric = registry.getSingleMetric('rackboot_talos_config_lint_total')
  assert.ok(metric)
  assert.throws(() => createConfigLinter({ schemasDir: join(dir, 'missing') }).lint(V1(INSTALL), { talosVersion: 'v1.13.9' }), (e: unknown) => isRackbootError(e, 'RB_ERR_SETTINGS'))
})

test('lint counts runs by result', async () => {
  const registry = new Registry()
  const counted = createConfigLinter({ registry })
  counted.lint(V1(INSTALL), { talosVersion: 'v1.13.9' })
  counted.lint(V1(''), { talosVersion: 'v1.13.9' })
  counted.lint(V1(''), { talosVersion: 'v1.13.9' })
  const values = (await registry.getSingleMetric('rackboot_talos_config_lint_total')!.get()).values
  assert.deepEqual(Object.fromEntries(values.map((v) => [v.labels.result, v.value])), { ok: 1, failed: 2 })
})

test('a machine\'s copy of a checked document: only the changed values are checked, with the whole check\'s result', () => {
  // What render.ts does: the profile's document deep-frozen and checked once, each machine's a copy along the path
  // to the values it writes. Each result must be the one a fresh linter gives the same documents, unfrozen.
  const profile = deepFreeze(parseConfigDocuments(`${V1(INSTALL)}persist: true\n`))
  const copyWith = (write: (machine: Record<string, any>, install: Record<string, any>) => void): ConfigDocument[] => {
    const doc: Record<string, any> = { ...profile[0] }
    const machine = (doc.machine = { ...doc.machine })
    const install = (machine.install = { ...machine.install })
    recordCopy(doc, profile[0]!)
    recordCopy(machine, profile[0]!.machine as object)
    recordCopy(install, (profile[0]!.machine as any).install)
    write(machine, install)
    return deepFreeze([doc])
  }
  const cached = createConfigLinter()
  const fresh = (docs: ConfigDocument[]) => createConfigLinter().lint(structuredClone(docs) as ConfigDocument[], { talosVersion: 'v1.13.9' })
  const first = cached.lint(profile, { talosVersion: 'v1.13.9' })
  assert.equal(first.ok, true)
  assert.deepEqual(first.warnings.map((w) => w.path), ['/persist'])
  const cases: Array<[string, (m: Record<string, any>, i: Record<string, any>) => void, boolean]> = [
    ['a good disk', (_m, i) => { i.disk = '/dev/nvme0n1' }, true],
    ['a disk of the wrong type', (_m, i) => { i.disk = 42 }, false],
    ['an unknown field in a changed section', (_m, i) => { i.disk = '/dev/sdb'; i.bogus = true }, false],
    ['a wrong type one level up', (m) => { m.install = 'sda' }, false],
    ['init, the legacy machine type', (m) => { m.type = 'init' }, true],
    ['a bad machine type', (m) => { m.type = 'router' }, false],
    ['a removed section', (m) => { delete m.install }, false],
  ]
  for (const [name, write, ok] of cases) {
    const docs = copyWith(write)
    const got = cached.lint(docs, { talosVersion: 'v1.13.9' })
    assert.deepEqual(got, fresh(docs), name)
    assert.equal(got.ok, ok, name)
  }
})

test('a machine\'s copy of a checked typed document: the same, for the fields its values change', () => {
  const profile = deepFreeze(parseConfigDocuments(`${V1(INSTALL)}---
apiVersion: v1alpha1
kind: LinkConfig
name: eno1
up: true
mtu: 1500
---
apiVersion: v1alpha1
kind: HostnameConfig
hostname: base
auto: off
`))
  const cached = createConfigLinter()
  assert.equal(cached.lint(profile, { talosVersion: 'v1.13.9' }).ok, true)
  const copyWith = (index: number, write: (doc: Record<string, any>) => void): ConfigDocument[] => {
    const doc: Record<string, any> = { ...profile[index] }
    recordCopy(doc, profile[index]!)
    write(doc)
    const docs = profile.slice()
    docs[index] = doc
    return deepFreeze(docs)
  }
  const cases: Array<[string, number, (d: Record<string, any>) => void, boolean]> = [
    ['a good MTU', 1, (d) => { d.mtu = 9000 }, true],
    ['an MTU of the wrong type', 1, (d) => { d.mtu = 'big' }, false],
    ['addresses', 1, (d) => { d.addresses = [{ address: '10.0.0.9/16' }] }, true],
    ['addresses of the wrong shape', 1, (d) => { d.addresses = [{ adress: '10.0.0.9/16' }] }, false],
    ['another name: another document', 1, (d) => { d.name = 'eno2' }, true],
    ['a hostname', 2, (d) => { d.hostname = 'node-1' }, true],
    ['auto beside a hostname', 2, (d) => { d.auto = 'stable' }, false],
  ]
  for (const [name, index, write, ok] of cases) {
    const docs = copyWith(index, write)
    const got = cached.lint(docs, { talosVersion: 'v1.13.9' })
    assert.deepEqual(got, createConfigLinter().lint(structuredClone(docs) as ConfigDocument[], { talosVersion: 'v1.13.9' }), name)
    assert.equal(got.ok, ok, name)
  }
})
