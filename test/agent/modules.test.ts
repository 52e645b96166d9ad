// Driver loading in the images: alias globs become regexes or exact prefixes at build time, and the loader
// (src/agent/sh/modules.sh, run by busybox sh against a fake sysfs) loads what the devices need, dependencies
// first, in passes as loading modules brings new devices.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { test } from 'node:test'
import { moduleTables } from '../../src/agent/image.js'
import { aliasGlobToRegex, aliasPrefix, moduleName, type KernelModule } from '../../src/agent/kernel.js'
import { which } from '../support/netns.js'

const busybox = which('busybox')

test('alias globs become anchored extended regexes; the literal start is the index key', () => {
  assert.equal(aliasGlobToRegex('pci:v00008086d*sv*sd*bc01sc06i01*'), '^pci:v00008086d.*sv.*sd.*bc01sc06i01.*$')
  assert.equal(aliasGlobToRegex('of:N*T*Cfsl,mpc8.xx?'), '^of:N.*T.*Cfsl,mpc8\\.xx.$')
  assert.equal(aliasGlobToRegex('usb:v[0-9]p[!A]d(x)+$'), '^usb:v[0-9]p[^A]d\\(x\\)\\+\\$$')
  assert.equal(aliasPrefix('pci:v00008086d000010D3sv*'), 'pci:v00008086d')
  assert.equal(aliasPrefix('scsi:t-0x00*'), 'scsi:t-0x00')
  assert.equal(aliasPrefix('*anything'), '')
  assert.equal(moduleName('kernel/drivers/nvme/host/nvme-core.ko'), 'nvme_core')
  assert.equal(moduleName('crc64-rocksoft.ko.xz'), 'crc64_rocksoft')
  for (const [glob, hit, miss] of [
    ['pci:v*d*sv*sd*bc01sc08i02*', 'pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02', 'pci:v00001B36d00000010sv00001AF4sd00001100bc01sc06i01'],
    ['virtio:d00000001v*', 'virtio:d00000001v00001AF4', 'virtio:d00000002v00001AF4'],
  ] as const) {
    const re = new RegExp(aliasGlobToRegex(glob))
    assert.ok(re.test(hit) && !re.test(miss), glob)
  }
})

const M = (name: string, depends: string[], aliases: string[]): KernelModule => ({ name, file: `kernel/${name}.ko`, depends, aliases })

// In load order, as resolveModules gives them.
const MODULES: KernelModule[] = [
  M('virtio_ring', [], []),
  M('virtio', [], []),
  M('virtio_pci', ['virtio_ring', 'virtio'], ['pci:v00001AF4d*sv*sd*bc*sc*i*']),
  M('failover', [], []),
  M('net_failover', ['failover'], []),
  M('virtio_net', ['virtio_ring', 'virtio', 'net_failover'], ['virtio:d00000001v*']),
  M('virtio_blk', ['virtio_ring', 'virtio'], ['virtio:d00000002v*']),
  M('scsi_mod', [], []),
  M('libata', ['scsi_mod'], []),
  M('libahci', ['libata'], []),
  M('ahci', ['libahci', 'libata'], ['pci:v*d*sv*sd*bc01sc06i01*', 'pci:v00001B4Bd00009123sv*sd*bc01sc06i01*']),
  M('e1000e', [], ['pci:v00008086d000010D3sv*sd*bc*sc*i*', 'pci:v00008086d0000105Esv00008086sd0000115Ebc*sc*i*']),
  M('sd_mod', ['scsi_mod'], ['scsi:t-0x00*', 'block-major-8-*']),
]

test('module tables: plain vendor/device aliases are exact prefixes, the rest regexes', () => {
  const t = moduleTables(MODULES, ['sd-mod', 'not_in_image'])
  assert.deepEqual(t.exact.trim().split('\n'), [
    'pci:v00001AF4 virtio_pci',
    'virtio:d00000001 virtio_net',
    'virtio:d00000002 virtio_blk',
    'pci:v00008086d000010D3 e1000e',
    'pci:v00008086d0000105Esv00008086sd0000115E e1000e',
  ])
  assert.deepEqual(t.alias.trim().split('\n'), [
    'pci:v ^pci:v.*d.*sv.*sd.*bc01sc06i01.*$ ahci',
    'pci:v00001B4Bd ^pci:v00001B4Bd00009123sv.*sd.*bc01sc06i01.*$ ahci',
    'scsi:t-0x00 ^scsi:t-0x00.*$ sd_mod',
    'block-major-8- ^block-major-8-.*$ sd_mod',
  ])
  assert.equal(t.dep.split('\n')[2], 'virtio_pci kernel/virtio_pci.ko virtio_ring,virtio')
  assert.equal(t.dep.split('\n')[0], 'virtio_ring kernel/virtio_ring.ko -')
  assert.equal(t.always, 'sd_mod\n', 'only modules the image has')
})

function put(root: string, path: string, content: string): void {
  mkdirSync(dirname(join(root, path)), { recursive: true })
  writeFileSync(join(root, path), content)
}

test('the loader loads what the devices need, dependencies first, in passes', { skip: busybox ? false : 'needs busybox' }, (t) => {
  const root = mkdtempSync(join(tmpdir(), 'rb-modules-'))
  t.after(() => rmSync(root, { recursive: true, force: true }))
  const tables = moduleTables(MODULES, [])
  put(root, 'etc/modules.dep', tables.dep)
  put(root, 'etc/modules.alias.exact', tables.exact)
  put(root, 'etc/modules.alias', tables.alias)
  put(root, 'etc/modules.always', tables.always)
  // A virtio NIC, a virtio disk and the q35 AHCI controller (matched by class only). No e1000e.
  put(root, 'sys/bus/pci/devices/0000:00:03.0/modalias', 'pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00\n')
  put(root, 'sys/bus/pci/devices/0000:00:04.0/modalias', 'pci:v00001AF4d00001042sv00001AF4sd00001100bc01sc00i00\n')
  put(root, 'sys/bus/pci/devices/0000:00:1f.2/modalias', 'pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01\n')
  put(root, 'sys/bus/pci/devices/0000:00:1f.0/modalias', 'pci:v00008086d00002918sv00001AF4sd00001100bc06sc01i00\n')
  mkdirSync(join(root, 'tmp'))
  const script = `
MODULES_SYSFS=${root}/sys MODULES_ETC=${root}/etc MODULES_TMP=${root}/tmp
. ${new URL('../../src/agent/sh/modules.sh', import.meta.url).pathname}
# Stand-in for insmod: records the module, and virtio_pci brings the virtio devices, as the kernel does.
insmod() {
  echo "\${1##*/}" >> ${root}/loaded
  case $1 in
    */virtio_pci.ko)
      mkdir -p ${root}/sys/bus/virtio/devices/virtio0 ${root}/sys/bus/virtio/devices/virtio1
      echo virtio:d00000001v00001AF4 > ${root}/sys/bus/virtio/devices/virtio0/modalias
      echo virtio:d00000002v00001AF4 > ${root}/sys/bus/virtio/devices/virtio1/modalias ;;
  esac
}
load_modules
echo "loaded=$MODULES_LOADED"
load_modules
echo "again=$MODULES_LOADED"
`
  const out = execFileSync(busybox!, ['sh', '-c', script], { encoding: 'utf8' })
  assert.match(out, /loaded=11\nagain=11\n/, 'a second call loads nothing new')
  const loaded = execFileSync('cat', [join(root, 'loaded')], { encoding: 'utf8' }).trim().split('\n')
  assert.deepEqual(loaded, [
    // pass 1: the PCI drivers and their dependencies, in load order
    'virtio_ring.ko', 'virtio.ko', 'virtio_pci.ko', 'scsi_mod.ko', 'libata.ko', 'libahci.ko', 'ahci.ko',
    // pass 2: for the devices virtio_pci created
    'failover.ko', 'net_failover.ko', 'virtio_net.ko', 'virtio_blk.ko',
  ])
  assert.ok(!loaded.includes('e1000e.ko') && !loaded.includes('sd_mod.ko'), 'no device, no driver')
})
