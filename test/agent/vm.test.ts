// Boots the discovery agent and the Talos stand-in directly (-kernel/-initrd, no PXE) under TCG on a lab network
// with busybox udhcpd and a recording HTTP server, and checks what reaches the server.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import type { AgentReport } from '../../src/agent/index.js'
import { createVmLab, skipUnlessVm, testAgentAssets, testFakeTalosAssets } from '../e2e/support/index.js'

const HARD_TIMEOUT = 180_000
// Several guests, at most two at a time (the harness's machine-wide slots): a test may wait for slots first.
const TEST_TIMEOUT = 3 * HARD_TIMEOUT + 60_000

describe('VM boots', { concurrency: 4 }, () => {

test('the agent reports the VM hardware to rackboot.report= and powers off', { timeout: TEST_TIMEOUT }, async (t) => {
  if (await skipUnlessVm(t, { agent: true })) return
  const assets = await testAgentAssets()
  const lab = await createVmLab(t)
  const sink = await lab.startSink({ routes: [{ method: 'POST', path: '/api/v1/agent/report', responses: [{ status: 503 }, { status: 200, body: '{"ok":true}' }] }] })
  await lab.startDhcp()
  const uuid = '8c3f5a7e-1b2d-4c6e-9f01-23456789abcd'
  const mac = '52:54:00:1a:b0:01'
  const vm = await lab.startVm({
    mode: 'direct',
    mac,
    smbios: { uuid, serial: 'LAB "SERIAL" 1', manufacturer: 'LAB', product: 'test', boardSerial: 'BOARD-1', chassisSerial: 'CHASSIS-1' },
    disks: [{ sizeMiB: 64, serial: 'DISK-A1' }, { sizeMiB: 32, serial: 'NVME-B2', bus: 'nvme' }],
    direct: {
      kernel: assets.kernel,
      initrd: assets.initramfs,
      append: `console=ttyS0,115200 rackboot.report=${sink.url('/api/v1/agent/report')} rackboot.token=tok-123 rackboot.machine=m-42`,
    },
    hardTimeoutMs: HARD_TIMEOUT,
  })
  await vm.waitFor(/rackboot-agent: report sent/, HARD_TIMEOUT)
  const exit = await vm.waitForExit(30_000)
  assert.equal(exit.reason, 'exit', 'the agent powers the VM off')
  assert.ok(vm.timeOf(/rackboot-agent: report retry attempt=1/) !== null, 'the 503 answer was retried')

  const posts = sink.requests.filter((r) => r.method === 'POST' && r.path === '/api/v1/agent/report')
  assert.equal(posts.length, 2)
  const req = posts[1]!
  assert.equal(req.headers.authorization, 'Bearer tok-123')
  assert.equal(req.headers['content-type'], 'application/json')
  const report = req.json<AgentReport>()
  assert.equal(report.agentVersion, '1')
  assert.equal(report.machineId, 'm-42')
  assert.equal(report.smbios.uuid, uuid)
  assert.equal(report.smbios.serial, 'LAB "SERIAL" 1')
  assert.equal(report.smbios.manufacturer, 'LAB')
  assert.equal(report.smbios.product, 'test')
  assert.equal(report.smbios.boardSerial, 'BOARD-1')
  assert.equal(report.smbios.chassisSerial, 'CHASSIS-1')
  assert.equal(report.cpu.threads, 1)
  assert.ok(report.memory.totalBytes > 300 * 1024 * 1024 && report.memory.totalBytes <= 512 * 1024 * 1024, `memory ${report.memory.totalBytes}`)
  const vda = report.disks.find((d) => d.name === 'vda')
  assert.deepEqual(vda && { serial: vda.serial, sizeBytes: vda.sizeBytes, type: vda.type }, { serial: 'DISK-A1', sizeBytes: 64 * 1024 * 1024, type: 'virtual' })
  const nvme = report.disks.find((d) => d.name.startsWith('nvme'))
  assert.deepEqual(nvme && { serial: nvme.serial, sizeBytes: nvme.sizeBytes, type: nvme.type }, { serial: 'NVME-B2', sizeBytes: 32 * 1024 * 1024, type: 'nvme' })
  const nic = report.nics.find((n) => n.mac === mac)
  assert.ok(nic, `NIC ${mac} in ${JSON.stringify(report.nics)}`)
  assert.equal(nic.driver, 'virtio_net')
  assert.equal(nic.link, true)
  const times = vm.timeline()
  t.diagnostic(`agent phases (ms): ${JSON.stringify(times)}`)
})

test('the Talos stand-in fetches talos.config= with Talos-style variables and reports it', { timeout: TEST_TIMEOUT }, async (t) => {
  if (await skipUnlessVm(t, { fakeTalos: true })) return
  const assets = await testFakeTalosAssets()
  const lab = await createVmLab(t)
  const config = 'version: v1alpha1\nmachine:\n  type: worker\n'
  const sink = await lab.startSink({
    routes: [
      { method: 'GET', path: '/talos/config', responses: [{ status: 404 }, { status: 200, body: config }] },
      { method: 'POST', path: '/fake-talos/report', responses: [{ status: 200 }] },
    ],
  })
  await lab.startDhcp()
  const uuid = '0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b'
  const mac = '52:54:00:1a:b0:02'
  const configUrl = `${sink.url('/talos/config')}?u=\${uuid}&mac=\${mac}&s=\${serial}&code=\${code}`
  const vm = await lab.startVm({
    mode: 'direct',
    mac,
    smbios: { uuid, serial: 'S-77' },
    direct: {
      kernel: assets.kernel,
      initrd: assets.initramfs,
      // console=tty0 last, as Talos images have it: the stand-in must still mirror its markers to the serial port.
      append: `console=ttyS0,115200 console=tty0 talos.platform=metal slab_nomerge pti=on talos.config=${configUrl} fake-talos.report=${sink.url('/fake-talos/report')}`,
    },
    hardTimeoutMs: HARD_TIMEOUT,
  })
  const fetched = await vm.waitFor(/fake-talos: config fetched (\d+) bytes sha256=([0-9a-f]{64})/, HARD_TIMEOUT)
  assert.equal(Number(fetched.match[1]), config.length)
  assert.equal(fetched.match[2], createHash('sha256').update(config).digest('hex'))
  await vm.waitFor(/fake-talos: report sent/, 60_000)
  await vm.waitForExit(30_000)

  const gets = sink.requests.filter((r) => r.path === '/talos/config')
  assert.equal(gets.length, 2, '404 is retried like Talos does')
  // Keys sorted, values escaped as Go's url.Values.Encode; ${code} has no value and goes out literally.
  assert.equal(gets[1]!.url, `/talos/config?code=%24%7Bcode%7D&mac=52%3A54%3A00%3A1a%3Ab0%3A02&s=S-77&u=${uuid}`)
  const report = sink.requests.find((r) => r.path === '/fake-talos/report')!.json<Record<string, unknown>>()
  assert.equal(report.status, 'fetched')
  assert.equal(report.complete, true)
  assert.equal(report.attempts, 2)
  assert.equal(Buffer.from(String(report.configBase64), 'base64').toString(), config)
})

test('the Talos stand-in fails as Talos does on a 204 and on missing KSPP arguments', { timeout: TEST_TIMEOUT }, async (t) => {
  if (await skipUnlessVm(t, { fakeTalos: true })) return
  const assets = await testFakeTalosAssets()
  const lab = await createVmLab(t)
  const sink = await lab.startSink({ routes: [{ method: 'GET', path: '/cfg', responses: [{ status: 204 }] }] })
  await lab.startDhcp()
  const vm = await lab.startVm({
    mode: 'direct',
    direct: {
      kernel: assets.kernel,
      initrd: assets.initramfs,
      append: `console=ttyS0,115200 talos.platform=metal slab_nomerge pti=on talos.config=${sink.url('/cfg')} fake-talos.report=${sink.url('/done')}`,
    },
    hardTimeoutMs: HARD_TIMEOUT,
  })
  const failed = await vm.waitFor(/fake-talos: config (failed|fetched).*/, HARD_TIMEOUT)
  assert.match(failed.line, /config failed empty config \(HTTP 204\)/)
  await vm.waitForExit(60_000)
  const report = sink.requests.find((r) => r.path === '/done')!.json<Record<string, unknown>>()
  assert.equal(report.status, 'failed')
  assert.equal(report.httpStatus, 204)
  assert.equal(sink.requests.filter((r) => r.path === '/cfg').length, 1, 'a 204 is not retried')
  assert.equal(vm.timeOf(/fake-talos: config fetched/), null)

  // Without pti=on Talos refuses to boot: the stand-in too, before any network.
  const vm2 = await lab.startVm({
    mode: 'direct',
    direct: { kernel: assets.kernel, initrd: assets.initramfs, append: `console=ttyS0,115200 slab_nomerge talos.config=${sink.url('/cfg')}` },
    hardTimeoutMs: HARD_TIMEOUT,
  })
  await vm2.waitFor(/fake-talos: config failed KSPP kernel parameter pti=on is required/, HARD_TIMEOUT)
  await vm2.waitForExit(60_000)
})

const MiB = 1024 * 1024

/** A 64 MiB disk with an MBR partition (20-40 MiB) and recognisable bytes everywhere. */
function usedDisk(path: string): void {
  const fd = openSync(path, 'w')
  try {
    ftruncateSync(fd, 64 * MiB)
    writeSync(fd, Buffer.alloc(64 * MiB, 0x41), 0, 64 * MiB, 0)
    const mbr = Buffer.alloc(512, 0x41)
    mbr.fill(0, 446, 510)
    // One Linux partition: start sector 40960 (20 MiB), 40960 sectors (20 MiB).
    mbr[446 + 4] = 0x83
    mbr.writeUInt32LE(40960, 446 + 8)
    mbr.writeUInt32LE(40960, 446 + 12)
    mbr[510] = 0x55
    mbr[511] = 0xaa
    writeSync(fd, mbr, 0, 512, 0)
  } finally {
    closeSync(fd)
  }
}

function isZero(buf: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (buf[i] !== 0) return false
  return true
}

test('with rackboot.wipe=1 the agent wipes the disks and lists them in the report', { timeout: TEST_TIMEOUT }, async (t) => {
  if (await skipUnlessVm(t, { agent: true })) return
  const assets = await testAgentAssets()
  const lab = await createVmLab(t)
  const disk = join(lab.tmpDir, 'used.raw')
  usedDisk(disk)
  const sink = await lab.startSink({})
  await lab.startDhcp()
  const vm = await lab.startVm({
    mode: 'direct',
    disks: [{ sizeMiB: 64, path: disk, serial: 'USED-1' }],
    direct: { kernel: assets.kernel, initrd: assets.initramfs, append: `console=ttyS0,115200 rackboot.wipe=1 rackboot.report=${sink.url('/report')}` },
    hardTimeoutMs: HARD_TIMEOUT,
  })
  await vm.waitFor(/rackboot-agent: wiped vda/, HARD_TIMEOUT)
  await vm.waitFor(/rackboot-agent: report sent/, 60_000)
  await vm.waitForExit(30_000)
  const report = sink.requests.find((r) => r.path === '/report')!.json<AgentReport>()
  assert.deepEqual(report.wiped, ['vda'])
  assert.equal(report.wipeFailed, undefined)
  assert.equal(report.disks[0]?.serial, 'USED-1')
  const bytes = readFileSync(disk)
  assert.ok(isZero(bytes, 0, 16 * MiB), 'the first 16 MiB (partition table)')
  assert.ok(isZero(bytes, 48 * MiB, 64 * MiB), 'the last 16 MiB')
  assert.ok(isZero(bytes, 20 * MiB, 21 * MiB) && isZero(bytes, 39 * MiB, 40 * MiB), "the partition's first and last MiB")
  assert.equal(bytes[30 * MiB], 0x41, 'a quick wipe: the middle of the partition is left')
})
})
