import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import {
  applyMachineValues,
  createConfigLinter,
  generateConfig,
  generateSecretsBundle,
  parseConfigDocuments,
  renderMachineConfig,
  type ConfigDocument,
  type SecretsBundle,
} from '../../src/talos/index.js'
import { isRackbootError } from '../../src/errors.js'

let secrets: SecretsBundle
before(async () => {
  secrets = await generateSecretsBundle({ talosVersion: 'v1.13.9', rsaBits: 2048 })
})
const linter = createConfigLinter()

const base = (talosVersion: string, role: 'controlplane' | 'worker' = 'worker') =>
  generateConfig({ secrets, clusterName: 'lab', endpoint: 'https://198.18.0.5:6443', talosVersion, role })
const find = (docs: ConfigDocument[], kind: string, name?: string): Record<string, any> | undefined =>
  docs.find((d) => d.kind === kind && (name === undefined || d.name === name)) as Record<string, any> | undefined
const main = (docs: ConfigDocument[]): Record<string, any> => docs.find((d) => d.kind === undefined) as Record<string, any>

test('patches apply in order: class, then profile, then machine; values last', () => {
  const out = renderMachineConfig({
    base: base('v1.13.9'),
    talosVersion: 'v1.13.9',
    classPatches: ['machine:\n  nodeLabels:\n    tier: class\n  certSANs: [class]\n'],
    profilePatches: [{ machine: { nodeLabels: { tier: 'profile' }, certSANs: ['profile'] } }],
    machinePatches: [
      'machine:\n  certSANs: [machine]\n',
      'apiVersion: v1alpha1\nkind: HostnameConfig\nauto: off\nhostname: from-patch\n',
    ],
    values: { hostname: 'from-values', installDisk: '/dev/nvme0n1' },
  })
  const m = main(out.documents)
  assert.equal(m.machine.nodeLabels.tier, 'profile')
  assert.deepEqual(m.machine.certSANs, ['class', 'profile', 'machine'])
  assert.equal(find(out.documents, 'HostnameConfig')!.hostname, 'from-values')
  assert.equal(m.machine.install.disk, '/dev/nvme0n1')
  assert.deepEqual(parseConfigDocuments(out.yaml), out.documents)
  assert.equal(linter.lint(out.yaml, { talosVersion: 'v1.13.9' }).ok, true)
})

test('a failing patch names its stage and position', () => {
  assert.throws(
    () => renderMachineConfig({ base: base('v1.13.9'), talosVersion: 'v1.13.9', profilePatches: ['machine: {}\n', '- op: remove\n  path: /machine/nope\n'] }),
    (e: unknown) => isRackbootError(e, 'RB_ERR_VALIDATION') && /^profile patch 1: JSON6902 patches are not supported/.test((e as Error).message),
  )
  assert.throws(
    () => renderMachineConfig({ base: base('v1.13.9'), talosVersion: 'v1.13.9', machinePatches: ['machine:\n  certSANs: {x: 1}\n'] }),
    (e: unknown) => isRackbootError(e, 'RB_ERR_VALIDATION') && /certSANs/.test((e as Error).message),
  )
})

for (const version of ['v1.12.11', 'v1.13.9', 'v1.14.0-rc.1'] as const) {
  test(`per-machine values land where Talos ${version} reads them, and lint clean`, () => {
    const out = renderMachineConfig({
      base: base(version, 'controlplane').yaml,
      talosVersion: version,
      values: {
        hostname: 'cp-01',
        installDisk: '/dev/nvme0n1',
        installImage: 'factory.talos.dev/metal-installer/abc:v1.13.9',
        addresses: [
          { link: 'eth0', addresses: ['198.18.0.21/24'], gateway: '198.18.0.1', mtu: 9000 },
          { mac: '3C:EC:EF:12:34:56', addresses: ['198.19.0.21/24'] },
        ],
        nameservers: ['198.18.0.53'],
      },
    })
    const docs = out.documents
    assert.deepEqual(find(docs, 'HostnameConfig'), { apiVersion: 'v1alpha1', kind: 'HostnameConfig', auto: 'off', hostname: 'cp-01' })
    assert.deepEqual(find(docs, 'LinkConfig', 'eth0'), {
      apiVersion: 'v1alpha1', kind: 'LinkConfig', name: 'eth0', up: true, mtu: 9000, addresses: [{ address: '198.18.0.21/24' }], routes: [{ gateway: '198.18.0.1' }],
    })
    assert.deepEqual(find(docs, 'LinkAliasConfig', 'net-3cecef123456')!.selector, { match: 'mac(link.permanent_addr) == "3c:ec:ef:12:34:56"' })
    assert.deepEqual(find(docs, 'LinkConfig', 'net-3cecef123456')!.addresses, [{ address: '198.19.0.21/24' }])
    assert.deepEqual(find(docs, 'ResolverConfig')!.nameservers, [{ address: '198.18.0.53' }])
    if (version === 'v1.14.0-rc.1') {
      assert.equal(main(docs).machine.install, undefined)
      assert.deepEqual(find(docs, 'UnattendedInstallConfig')!.provisioning.diskSelector, { match: 'disk.dev_path == "/dev/nvme0n1"' })
      assert.equal(find(docs, 'UnattendedInstallConfig')!.installer.image, 'factory.talos.dev/metal-installer/abc:v1.13.9')
      // hostDNS from the generated ResolverConfig is kept.
      assert.equal(find(docs, 'ResolverConfig')!.hostDNS.enabled, true)
    } else {
      assert.equal(main(docs).machine.install.disk, '/dev/nvme0n1')
      assert.equal(main(docs).machine.install.image, 'factory.talos.dev/metal-installer/abc:v1.13.9')
    }
    const lint = linter.lint(out.yaml, { talosVersion: version })
    assert.deepEqual(lint.errors, [])
  })
}

test('install disk by serial: a v1alpha1 diskSelector up to 1.13, a CEL match from 1.14', () => {
  const v13 = applyMachineValues(base('v1.13.9').documents, 'v1.13.9', { installDisk: { path: '/dev/sda', serial: 'S4EVNX0N' } })
  assert.deepEqual(main(v13).machine.install.diskSelector, { serial: 'S4EVNX0N' })
  assert.equal(main(v13).machine.install.disk, undefined)
  assert.equal(linter.lint(v13, { talosVersion: 'v1.13.9' }).ok, true)
  const v14 = applyMachineValues(base('v1.14.0').documents, 'v1.14.0', { installDisk: { path: '/dev/sda', serial: 'S4EVNX0N' } })
  assert.deepEqual(find(v14, 'UnattendedInstallConfig')!.provisioning, { diskSelector: { match: 'disk.serial == "S4EVNX0N"' }, wipe: false })
})

test('1.14 keeps using machine.install when the config already has it (Talos refuses both)', () => {
  const legacyBase = 'version: v1alpha1\nmachine:\n  type: worker\n  install:\n    disk: /dev/sda\n'
  const out = renderMachineConfig({ base: legacyBase, talosVersion: 'v1.14.0', values: { installDisk: '/dev/sdb' } })
  assert.equal(main(out.documents).machine.install.disk, '/dev/sdb')
  assert.equal(find(out.documents, 'UnattendedInstallConfig'), undefined)
})

test('before 1.12 the values go to machine.network and merge with existing interfaces', () => {
  const docs = applyMachineValues(base('v1.11.6').documents, 'v1.11.6', {
    hostname: 'w-01',
    addresses: [{ link: 'eth0', addresses: ['198.18.0.22/24'], gateway: '198.18.0.1' }, { mac: '3c:ec:ef:00:00:01', addresses: ['fd00::22/64'], gateway: 'fd00::1' }],
    nameservers: ['198.18.0.53'],
  })
  const network = main(docs).machine.network
  assert.equal(network.hostname, 'w-01')
  assert.deepEqual(network.nameservers, ['198.18.0.53'])
  assert.deepEqual(network.interfaces, [
    { interface: 'eth0', addresses: ['198.18.0.22/24'], routes: [{ network: '0.0.0.0/0', gateway: '198.18.0.1' }], dhcp: false },
    { deviceSelector: { hardwareAddr: '3c:ec:ef:00:00:01' }, addresses: ['fd00::22/64'], routes: [{ network: '::/0', gateway: 'fd00::1' }], dhcp: false },
  ])
  assert.equal(find(docs, 'HostnameConfig'), undefined)
  // The input documents are untouched.
  assert.deepEqual(main(base('v1.11.6').documents).machine.network, {})
})

test('bad values are rejected', () => {
  const docs = base('v1.13.9').documents
  const bad = [
    { hostname: '-bad-' },
    { installDisk: 'sda' },
    { addresses: [{ addresses: ['198.18.0.1/24'] }] },
    { addresses: [{ link: 'eth0', addresses: ['198.18.0.1'] }] },
    { addresses: [{ mac: 'zz:zz', addresses: ['198.18.0.1/24'] }] },
  ]
  for (const values of bad) {
    assert.throws(() => applyMachineValues(docs, 'v1.13.9', values), (e: unknown) => isRackbootError(e, 'RB_ERR_VALIDATION'), JSON.stringify(values))
  }
})
