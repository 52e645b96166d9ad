// The end-to-end harness's own parts that need no VM: QEMU command lines per boot mode (lab.md), the timed serial
// log, the machine-wide VM slots, and the lab network with its recording HTTP sink.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { acquireVmSlot, cleanSerial, createVmLab, qemuArgs, SerialLog } from '../e2e/support/index.js'
import { netnsSkipReason, run } from '../support/netns.js'

const ctx = { ns: {} as never, tmpDir: '/tmp/x', tap: 'tap1', name: 'vm1', mac: '52:54:00:00:00:01', diskFiles: ['/tmp/x/d0.raw', '/tmp/x/d1.raw'] }

function after(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1] ?? ''] : []))
}

test('bios: TCG, q35, the NIC with its iPXE ROM, network boot first', () => {
  const args = qemuArgs({ mode: 'bios', smbios: { uuid: 'u-1', serial: 'S,1', manufacturer: 'LAB', product: 'p' }, disks: [{ sizeMiB: 8, serial: 'D0' }] }, ctx)
  assert.deepEqual(after(args, '-accel'), ['tcg'])
  assert.deepEqual(after(args, '-M'), ['q35'])
  assert.ok(args.includes('-nodefaults') && args.includes('-no-reboot'))
  assert.deepEqual(after(args, '-device')[0], 'virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01,bootindex=1')
  assert.deepEqual(after(args, '-netdev'), ['tap,id=n0,ifname=tap1,script=no,downscript=no'])
  assert.deepEqual(after(args, '-smbios'), ['type=1,manufacturer=LAB,product=p,serial=S,,1,uuid=u-1'], 'commas doubled')
  assert.deepEqual(after(args, '-boot'), ['order=n'])
  assert.ok(after(args, '-device').includes('virtio-blk-pci,drive=d0,serial=D0,bootindex=2'))
  assert.ok(!args.some((a) => a.includes('pflash')))
})

test('uefi: OVMF code read-only, a private VARS copy, no NIC ROM, IPv6 PXE off; uefi-http turns IPv4 PXE off', () => {
  const args = qemuArgs({ mode: 'uefi' }, { ...ctx, varsFile: '/tmp/x/vm1-vars.fd' })
  assert.equal(after(args, '-device')[0], 'virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01,bootindex=1,romfile=')
  assert.deepEqual(after(args, '-drive'), [
    'if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd',
    'if=pflash,format=raw,unit=1,file=/tmp/x/vm1-vars.fd',
  ])
  assert.deepEqual(after(args, '-fw_cfg'), ['name=opt/org.tianocore/IPv6PXESupport,string=n'])
  const http = qemuArgs({ mode: 'uefi-http' }, { ...ctx, varsFile: '/tmp/x/v.fd' })
  assert.deepEqual(after(http, '-fw_cfg'), ['name=opt/org.tianocore/IPv6PXESupport,string=n', 'name=opt/org.tianocore/IPv4PXESupport,string=n'])
  assert.throws(() => qemuArgs({ mode: 'uefi' }, ctx), /VARS/)
})

test('direct: -kernel/-initrd/-append with panic=-1; disks on every bus', () => {
  const args = qemuArgs(
    {
      mode: 'direct',
      direct: { kernel: '/k', initrd: '/i', append: 'console=ttyS0' },
      disks: [{ sizeMiB: 8, bus: 'nvme', serial: 'N1' }, { sizeMiB: 8, bus: 'sata' }],
      smbios: { boardSerial: 'B', chassisSerial: 'C' },
      noReboot: false,
    },
    ctx,
  )
  assert.deepEqual(after(args, '-append'), ['console=ttyS0 panic=-1'])
  assert.deepEqual(after(args, '-kernel'), ['/k'])
  assert.ok(!args.includes('-no-reboot'))
  assert.ok(after(args, '-device').includes('nvme,drive=d0,serial=N1'))
  assert.ok(after(args, '-device').includes('ide-hd,drive=d1,bus=ide.1'))
  assert.deepEqual(after(args, '-smbios'), ['type=2,serial=B', 'type=3,serial=C'])
  assert.deepEqual(after(qemuArgs({ mode: 'direct', direct: { kernel: 'k', initrd: 'i', append: 'panic=5' } }, ctx), '-append'), ['panic=5'])
  assert.throws(() => qemuArgs({ mode: 'direct' }, ctx), /direct option/)
})

test('serial log: lines timed from their first byte, ANSI and CR removed, waiters resolved', async () => {
  let start = 1_000
  const log = new SerialLog(() => start)
  const waiting = log.next(/report sent/)
  log.push('\x1b[2J\x1b[01;01HBdsDxe: loading\r\n', 1_500)
  log.push('rackboot-agent: rep', 2_000)
  log.push('ort sent attempt=1\nnext', 2_600)
  let early = false
  const prompt = log.next(/^next/, { partial: true })
  const whole = log.next(/^next/)
  void whole.promise.then(() => (early = true))
  const m = await waiting.promise
  assert.equal(m.atMs, 1_000, 'time of the first byte of the line')
  assert.equal((await prompt.promise).line, 'next', 'a prompt without newline')
  await new Promise((r) => setImmediate(r))
  assert.equal(early, false, 'a line still being written does not satisfy a normal waiter')
  log.push(' line\n', 2_700)
  assert.equal((await whole.promise).line, 'next line')
  assert.equal(m.line, 'rackboot-agent: report sent attempt=1')
  assert.equal(log.find(/BdsDxe/)?.line, 'BdsDxe: loading')
  assert.equal(log.find(/^next line$/)?.atMs, 1_600)
  assert.equal(log.find(/nothing/), null)
  assert.equal(cleanSerial('\x1b[0m\x1b(Bok\r'), 'ok')
  assert.equal(log.findAll(/./).length, 3)
  assert.equal(log.find(/^next/, { complete: true })?.line, 'next line')
  start = 0
})

test('VM slots: at most N at once, a released slot is taken by the next waiter', async (t) => {
  // A private slot directory: the real one is shared with VM tests running in other processes.
  const dir = mkdtempSync(join(tmpdir(), 'rb-slots-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const max = 2
  const a = await acquireVmSlot({ max, dir })
  const b = await acquireVmSlot({ max, dir })
  let third = false
  const c = acquireVmSlot({ max, dir, pollMs: 20 }).then((s) => {
    third = true
    return s
  })
  await new Promise((r) => setTimeout(r, 150))
  assert.equal(third, false, 'the third waits')
  a.release()
  const s = await c
  assert.equal(third, true)
  b.release()
  s.release()
  const abort = new AbortController()
  const x = await acquireVmSlot({ max: 1, dir })
  const waiting = acquireVmSlot({ max: 1, dir, signal: abort.signal, pollMs: 20 })
  abort.abort()
  await assert.rejects(waiting, /gave up/)
  x.release()
  // A slot whose owner died is taken over.
  writeFileSync(join(dir, 'slot-0'), '999999999')
  const y = await acquireVmSlot({ max: 1, dir, pollMs: 20 })
  y.release()
})

test('lab: server end on the host, a sink there, and destroy removes namespaces and links', { skip: netnsSkipReason() ?? false }, async () => {
  const lab = await createVmLab(undefined, { serverSide: 'host' })
  try {
    assert.match(lab.serverIp, /^198\.18\.\d+\.1$/)
    const sink = await lab.startSink({ routes: [{ path: '/hello', responses: [{ status: 201, body: 'at ${SINK}' }, { status: 202 }] }] })
    const first = await fetch(sink.url('/hello'))
    assert.equal(first.status, 201)
    assert.equal(await first.text(), `at http://${lab.serverIp}:${sink.port}`)
    assert.equal((await fetch(sink.url('/hello'))).status, 202)
    assert.equal((await fetch(sink.url('/hello'))).status, 202, 'the last response repeats')
    const post = await fetch(sink.url('/report'), { method: 'POST', body: '{"a":1}', headers: { authorization: 'Bearer x' } })
    assert.equal(post.status, 200)
    const got = await sink.waitForRequest({ method: 'POST', path: '/report' }, 5_000)
    assert.deepEqual(got.json(), { a: 1 })
    assert.equal(got.headers.authorization, 'Bearer x')
    await assert.rejects(sink.waitForRequest({ path: '/never' }, 200), /no matching request/)
  } finally {
    await lab.destroy()
    await lab.destroy()
  }
  const left = await run(['ip', '-o', 'link', 'show', 'dev', lab.serverInterface], { check: false })
  assert.notEqual(left.code, 0, 'host end of the veth removed')
  const netns = (await run(['ip', 'netns', 'list'])).stdout
  assert.ok(!netns.includes(lab.bridgeNs.name))
})
