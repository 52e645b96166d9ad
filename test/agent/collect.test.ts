// The hardware collector (src/agent/sh/collect.sh) run by busybox sh, with busybox's own applets, against a fake
// sysfs/procfs tree: the JSON it prints must parse, match the report schema and carry the right values, including
// strings with quotes, backslashes and control characters.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { test } from 'node:test'
import Value from 'typebox/value'
import { AgentReportSchema, collectScriptPath, type AgentReport } from '../../src/agent/index.js'
import { which } from '../support/netns.js'

const busybox = which('busybox')
const skip = busybox ? false : 'needs busybox (Debian package busybox-static)'

function put(root: string, path: string, content: string | Buffer): void {
  const full = join(root, path)
  mkdirSync(dirname(full), { recursive: true })
  writeFileSync(full, content)
}

function link(root: string, path: string, target: string): void {
  const full = join(root, path)
  mkdirSync(dirname(full), { recursive: true })
  symlinkSync(target, full)
}

const TRICKY_SERIAL = 'SER "quoted" \\back\tslash'

/** A machine: 2 sockets x 2 cores x 2 threads, four real disks and some to skip, two NICs plus lo and a bridge. */
function fakeMachine(root: string): void {
  const dmi = 'sys/class/dmi/id'
  put(root, `${dmi}/product_uuid`, '4c4c4544-0042-3510-8051-b4c04f4e3132\n')
  put(root, `${dmi}/product_serial`, `  ${TRICKY_SERIAL}   \n`)
  put(root, `${dmi}/sys_vendor`, 'Acme, Inc.\n')
  put(root, `${dmi}/product_name`, 'Rack\u0001Server 9000\n')
  put(root, `${dmi}/board_serial`, '.BRD123.\n')
  put(root, `${dmi}/chassis_serial`, '\n')

  let cpuinfo = ''
  let n = 0
  for (const socket of [0, 1]) {
    for (const core of [0, 1]) {
      for (let thread = 0; thread < 2; thread++) {
        cpuinfo += `processor\t: ${n++}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz\nphysical id\t: ${socket}\nsiblings\t: 4\ncore id\t\t: ${core}\ncpu cores\t: 2\n\n`
      }
    }
  }
  put(root, 'proc/cpuinfo', cpuinfo)
  put(root, 'proc/meminfo', 'MemTotal:       16303856 kB\nMemFree:         1000000 kB\n')

  const pci = 'sys/devices/pci0000:00'
  // virtio-blk disk
  put(root, `${pci}/0000:00:04.0/virtio2/modalias`, 'virtio:d00000002v00001AF4\n')
  link(root, `${pci}/0000:00:04.0/virtio2/driver`, '../../../../bus/virtio/drivers/virtio_blk')
  link(root, 'sys/block/vda/device', `../../devices/pci0000:00/0000:00:04.0/virtio2`)
  put(root, 'sys/block/vda/size', '20971520\n')
  put(root, 'sys/block/vda/queue/rotational', '1\n')
  put(root, 'sys/block/vda/serial', 'VIRTIO-SER\n')
  // NVMe
  put(root, `${pci}/0000:00:05.0/nvme/nvme0/serial`, 'S4EWNX0R123456      \n')
  put(root, `${pci}/0000:00:05.0/nvme/nvme0/model`, 'Samsung SSD 970 EVO Plus 1TB            \n')
  link(root, 'sys/block/nvme0n1/device', `../../devices/pci0000:00/0000:00:05.0/nvme/nvme0`)
  put(root, 'sys/block/nvme0n1/size', '1953525168\n')
  put(root, 'sys/block/nvme0n1/queue/rotational', '0\n')
  put(root, 'sys/block/nvme0n1/wwid', 'eui.0025385b71b12345\n')
  // SATA disk behind the SCSI layer: serial only in the VPD page 0x80
  const sda = `${pci}/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0`
  put(root, `${sda}/model`, 'ST4000NM0035-1V4\n')
  put(root, `${sda}/vpd_pg80`, Buffer.concat([Buffer.from([0x00, 0x80, 0x00, 0x0a]), Buffer.from('  ZC1ABCDE'), Buffer.from([0])]))
  put(root, `${sda}/wwid`, 'naa.5000c500a1b2c3d4\n')
  link(root, `${sda}/driver`, '../../../../../../../bus/scsi/drivers/sd')
  link(root, 'sys/block/sda/device', `../../devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0`)
  put(root, 'sys/block/sda/size', '7814037168\n')
  put(root, 'sys/block/sda/queue/rotational', '1\n')
  // SATA SSD without serial, with a t10 id that is not a WWN
  const sdb = `${pci}/0000:00:1f.2/ata2/host1/target1:0:0/1:0:0:0`
  put(root, `${sdb}/model`, 'INTEL SSDSC2KB48\n')
  put(root, `${sdb}/wwid`, 't10.ATA     INTEL SSDSC2KB480G8\n')
  link(root, 'sys/block/sdb/device', `../../devices/pci0000:00/0000:00:1f.2/ata2/host1/target1:0:0/1:0:0:0`)
  put(root, 'sys/block/sdb/size', '937703088\n')
  put(root, 'sys/block/sdb/queue/rotational', '0\n')
  // Not disks
  for (const name of ['loop0', 'sr0', 'ram0', 'zram0', 'nvme0c0n1', 'dm-0', 'md127']) put(root, `sys/block/${name}/size`, '8\n')

  // NICs
  const virtioNet = `${pci}/0000:00:03.0/virtio0`
  link(root, `${virtioNet}/driver`, '../../../../bus/virtio/drivers/virtio_net')
  link(root, 'sys/class/net/eth0/device', `../../../devices/pci0000:00/0000:00:03.0/virtio0`)
  put(root, 'sys/class/net/eth0/address', '52:54:00:12:34:56\n')
  put(root, 'sys/class/net/eth0/carrier', '1\n')
  put(root, 'sys/class/net/eth0/speed', '-1\n')
  put(root, 'sys/class/net/eth0/operstate', 'up\n')
  const e1000e = `${pci}/0000:00:19.0`
  link(root, `${e1000e}/driver`, '../../../bus/pci/drivers/e1000e')
  link(root, 'sys/class/net/eno1/device', `../../../devices/pci0000:00/0000:00:19.0`)
  put(root, 'sys/class/net/eno1/address', 'a0:36:9f:00:00:01\n')
  put(root, 'sys/class/net/eno1/carrier', '0\n')
  put(root, 'sys/class/net/eno1/operstate', 'down\n')
  const igb = `${pci}/0000:02:00.0`
  link(root, `${igb}/driver`, '../../../bus/pci/drivers/igb')
  link(root, 'sys/class/net/enp2s0/device', `../../../devices/pci0000:00/0000:02:00.0`)
  put(root, 'sys/class/net/enp2s0/address', 'a0:36:9f:00:00:02\n')
  put(root, 'sys/class/net/enp2s0/carrier', '1\n')
  put(root, 'sys/class/net/enp2s0/speed', '1000\n')
  put(root, 'sys/class/net/lo/address', '00:00:00:00:00:00\n')
  put(root, 'sys/class/net/br0/address', '02:00:00:00:00:01\n')
}

interface Env {
  root: string
  bin: string
}

/** A PATH of busybox applets only (as in the initramfs), plus a directory for fake programs. */
function setup(t: { after(fn: () => void): void }): Env {
  const root = mkdtempSync(join(tmpdir(), 'rb-collect-'))
  t.after(() => rmSync(root, { recursive: true, force: true }))
  const bin = join(root, 'bin')
  mkdirSync(bin)
  for (const applet of ['awk', 'sed', 'tr', 'dd', 'readlink', 'cat', 'sort', 'cut', 'wc', 'head', 'sh']) symlinkSync(busybox!, join(bin, applet))
  fakeMachine(root)
  return { root, bin }
}

function collect(env: Env, extra: Record<string, string> = {}, shell = busybox!): { stdout: string; report: AgentReport } {
  const args = shell === busybox ? ['sh', collectScriptPath()] : [collectScriptPath()]
  const stdout = execFileSync(shell, args, {
    encoding: 'utf8',
    env: { PATH: env.bin, RACKBOOT_SYSFS: join(env.root, 'sys'), RACKBOOT_PROCFS: join(env.root, 'proc'), ...extra },
  })
  return { stdout, report: JSON.parse(stdout) as AgentReport }
}

test('the collector reports SMBIOS, CPU, memory, disks and NICs from sysfs and procfs', { skip }, (t) => {
  const env = setup(t)
  const { stdout, report } = collect(env, { RACKBOOT_MACHINE: 'm-"7"' })
  assert.equal(stdout.split('\n').length, 2, 'one line of JSON')
  assert.ok(Value.Check(AgentReportSchema, report), JSON.stringify([...Value.Errors(AgentReportSchema, report)]))
  assert.equal(report.agentVersion, '1')
  assert.equal(report.machineId, 'm-"7"')
  assert.deepEqual(report.smbios, {
    uuid: '4c4c4544-0042-3510-8051-b4c04f4e3132',
    serial: TRICKY_SERIAL,
    manufacturer: 'Acme, Inc.',
    product: 'Rack\u0001Server 9000',
    boardSerial: '.BRD123.',
    chassisSerial: '',
  })
  assert.deepEqual(report.cpu, { model: 'Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz', sockets: 2, cores: 4, threads: 8 })
  assert.deepEqual(report.memory, { totalBytes: 16303856 * 1024 })
  assert.deepEqual(report.disks, [
    { name: 'nvme0n1', model: 'Samsung SSD 970 EVO Plus 1TB', serial: 'S4EWNX0R123456', sizeBytes: 1953525168 * 512, rotational: false, type: 'nvme', wwn: 'eui.0025385b71b12345' },
    { name: 'sda', model: 'ST4000NM0035-1V4', serial: 'ZC1ABCDE', sizeBytes: 7814037168 * 512, rotational: true, type: 'hdd', wwn: 'naa.5000c500a1b2c3d4' },
    { name: 'sdb', model: 'INTEL SSDSC2KB48', serial: '', sizeBytes: 937703088 * 512, rotational: false, type: 'ssd', wwn: '' },
    { name: 'vda', model: '', serial: 'VIRTIO-SER', sizeBytes: 20971520 * 512, rotational: true, type: 'virtual', wwn: '' },
  ])
  assert.deepEqual(report.nics, [
    { name: 'eno1', mac: 'a0:36:9f:00:00:01', driver: 'e1000e', link: false },
    { name: 'enp2s0', mac: 'a0:36:9f:00:00:02', driver: 'igb', link: true, speedMbps: 1000 },
    { name: 'eth0', mac: '52:54:00:12:34:56', driver: 'virtio_net', link: true },
  ])
  assert.equal(report.bmc, undefined, 'no ipmitool: no bmc key')
  assert.equal(report.wiped, undefined)
  // The escapes themselves, not just what JSON.parse makes of them.
  assert.ok(stdout.includes(String.raw`"serial":"SER \"quoted\" \\back\tslash"`), stdout)
  assert.ok(stdout.includes(String.raw`"product":"Rack\u0001Server 9000"`), stdout)
})

test('the collector adds the BMC from ipmitool lan print and the wipe result', { skip }, (t) => {
  const env = setup(t)
  writeFileSync(
    join(env.bin, 'ipmitool'),
    '#!/bin/sh\n[ "$1 $2" = "lan print" ] || exit 1\ncat <<EOF\nSet in Progress         : Set Complete\nIP Address Source       : Static Address\nIP Address              : 198.18.5.20\nSubnet Mask             : 255.255.255.0\nMAC Address             : AA:BB:CC:DD:EE:0F\nEOF\n',
  )
  chmodSync(join(env.bin, 'ipmitool'), 0o755)
  const { report } = collect(env, { RACKBOOT_WIPE: '1', RACKBOOT_WIPED: ' vda sda', RACKBOOT_WIPE_FAILED: 'sdb' })
  assert.ok(Value.Check(AgentReportSchema, report))
  assert.deepEqual(report.bmc, { address: '198.18.5.20', mac: 'aa:bb:cc:dd:ee:0f' })
  assert.deepEqual(report.wiped, ['vda', 'sda'])
  assert.deepEqual(report.wipeFailed, ['sdb'])
  const none = collect(env, { RACKBOOT_WIPE: '1', RACKBOOT_WIPED: '' }).report
  assert.deepEqual(none.wiped, [], 'a wipe run with no disks still says so')
  assert.equal(none.wipeFailed, undefined)
})

test('an empty machine still gives a valid report', { skip }, (t) => {
  const root = mkdtempSync(join(tmpdir(), 'rb-collect-empty-'))
  t.after(() => rmSync(root, { recursive: true, force: true }))
  const bin = join(root, 'bin')
  mkdirSync(bin)
  for (const applet of ['awk', 'sed', 'tr', 'dd', 'readlink', 'cat']) symlinkSync(busybox!, join(bin, applet))
  const { report } = collect({ root, bin })
  assert.ok(Value.Check(AgentReportSchema, report))
  assert.deepEqual(report.disks, [])
  assert.deepEqual(report.nics, [])
  assert.deepEqual(report.cpu, { model: '', sockets: 1, cores: 1, threads: 1 })
  assert.equal(report.memory.totalBytes, 0)
  assert.equal(report.smbios.uuid, '')
})

test('the collector is plain POSIX sh: dash gives the same report', { skip: skip || (which('dash') ? false : 'needs dash') }, (t) => {
  const env = setup(t)
  assert.equal(collect(env, {}, which('dash')!).stdout, collect(env).stdout)
})

test('arm64: the CPU model is named from cpuinfo\'s implementer and part codes (there is no model name)', { skip }, (t) => {
  const env = setup(t)
  const arm = (implementer: string, part: string, n = 4) =>
    Array.from({ length: n }, (_, i) => `processor\t: ${i}\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes\nCPU implementer\t: ${implementer}\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: ${part}\nCPU revision\t: 1\n\n`).join('')
  for (const [implementer, part, model] of [
    ['0x41', '0xd0c', 'ARM Neoverse-N1'],
    ['0x41', '0xd07', 'ARM Cortex-A57'],
    ['0xc0', '0xac3', 'Ampere AmpereOne'],
    ['0x48', '0xD01', 'HiSilicon Kunpeng-920'],
    ['0x41', '0xfff', 'ARM part 0xfff'],
    ['0x99', '0x001', 'implementer 0x99 part 0x001'],
  ] as const) {
    put(env.root, 'proc/cpuinfo', arm(implementer, part))
    const { report } = collect(env)
    assert.deepEqual(report.cpu, { model, sockets: 1, cores: 4, threads: 4 }, `${implementer}/${part}`)
  }
  // A model name, where one is given, still wins.
  put(env.root, 'proc/cpuinfo', 'processor\t: 0\nmodel name\t: Some CPU\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n')
  assert.equal(collect(env).report.cpu.model, 'Some CPU')
})
