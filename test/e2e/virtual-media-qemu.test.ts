// Virtual media end to end: a QEMU guest (TCG) boots rackboot's ISO as its CD and fetches /boot.ipxe from a loopback
// HTTP server. User-mode networking with restrict=on: the guest reaches nothing but one forwarded address
// (10.0.2.100:80 → the test's 127.0.0.1 server); slirp's DHCP gives iPXE its address, as a site's DHCP would.
//   BIOS: SeaBIOS → El Torito → isolinux → ipxe.lkrn + the script as initrd → dhcp → chain /boot.ipxe.
//   UEFI: OVMF → El Torito → ipxe.efi (Debian's 2019 iPXE runs no script from the medium) → DHCP → the boot file
//         DHCP names. slirp's bootfile= stands in for rackboot's DHCP, which hands iPXE the boot script URL.
// One guest at a time, through the machine-wide VM slots; each boot has a hard timeout.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildBootIso, missingIsoTools } from '../../src/assets/virtual-media.js'
import { which } from '../../src/processes.js'
import { SerialLog } from './support/serial-log.js'
import { acquireVmSlot } from './support/slots.js'
import { OVMF_CODE, OVMF_VARS } from './support/vm.js'

const HARD_TIMEOUT_MS = 170_000
const GUEST_SERVER = '10.0.2.100'

interface Hit {
  atMs: number
  url: string
  userAgent: string
}

async function skipUnless(t: TestContext, uefi: boolean): Promise<boolean> {
  let reason: string | null = which('qemu-system-x86_64') ? null : 'needs qemu-system-x86_64 (Debian package qemu-system-x86)'
  reason ??= await missingIsoTools()
  if (!reason && uefi && (!existsSync(OVMF_CODE) || !existsSync(OVMF_VARS))) reason = `needs ${OVMF_CODE} (Debian package ovmf)`
  if (!reason) return false
  console.error(`# SKIP: ${reason}`)
  t.skip(reason)
  return true
}

/** The stand-in for rackboot's /boot.ipxe: records each request; the script it answers keeps iPXE waiting. */
async function bootServer(t: TestContext): Promise<{ port: number; hits: Hit[]; next(): Promise<Hit>; setStart(ms: number): void }> {
  let startedAt = Date.now()
  const hits: Hit[] = []
  const waiters: ((h: Hit) => void)[] = []
  const server: Server = createServer((req, res) => {
    const hit = { atMs: Date.now() - startedAt, url: req.url ?? '', userAgent: String(req.headers['user-agent'] ?? '') }
    hits.push(hit)
    waiters.splice(0).forEach((w) => w(hit))
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end('#!ipxe\necho rackboot-e2e: boot script received\nsleep 600\n')
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.after(() => new Promise<void>((r) => {
    server.closeAllConnections()
    server.close(() => r())
  }))
  return {
    port: (server.address() as AddressInfo).port,
    hits,
    next: () => (hits[0] ? Promise.resolve(hits[0]) : new Promise((r) => waiters.push(r))),
    setStart: (ms) => (startedAt = ms),
  }
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, signal)
  } catch {
    // gone
  }
}

async function bootFromCd(t: TestContext, mode: 'bios' | 'uefi'): Promise<{ hit: Hit; serial: SerialLog; mac: string }> {
  const dir = mkdtempSync(join(tmpdir(), `rb-vm-e2e-${mode}-`))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const server = await bootServer(t)
  const iso = await buildBootIso({ serverUrl: `http://${GUEST_SERVER}`, outDir: join(dir, 'cache') })
  const mac = `52:54:00:7b:${mode === 'bios' ? '01' : '02'}:${Math.floor(Math.random() * 256).toString(16).padStart(2, '0')}`
  // What rackboot's DHCP hands iPXE (scriptUrl), shortened to fit BOOTP's 128-byte file field.
  const bootfile = `http://${GUEST_SERVER}/boot.ipxe?mac=\${net0/mac:hexhyp}&arch=\${buildarch}&platform=\${platform}&via=dhcp`
  // BIOS: ipv6=off, no router advertisements, as on many sites' segments: the ISO's script must not wait for IPv6
  // autoconfiguration. UEFI: slirp's adverts stand in for rackboot's (routerAdverts), there where its DHCP serves.
  const netdev = [
    `user,id=n0,restrict=on,guestfwd=tcp:${GUEST_SERVER}:80-tcp:127.0.0.1:${server.port}`,
    ...(mode === 'uefi' ? [`bootfile=${bootfile}`] : ['ipv6=off']),
  ].join(',')
  const args = [
    '-M', 'q35', '-accel', 'tcg', '-display', 'none', '-nodefaults', '-no-reboot', '-m', '256', '-smp', '1',
    '-chardev', 'stdio,id=ser0,signal=off', '-serial', 'chardev:ser0', '-monitor', 'none',
    '-netdev', netdev,
    // romfile= : no iPXE option ROM, so the only iPXE that can ask is the one on the CD.
    '-device', `virtio-net-pci,netdev=n0,mac=${mac},romfile=`,
    '-drive', `file=${iso.path},media=cdrom,if=none,id=cd0,readonly=on`, '-device', 'ide-cd,drive=cd0,bootindex=1',
  ]
  if (mode === 'uefi') {
    const vars = join(dir, 'vars.fd')
    copyFileSync(OVMF_VARS, vars)
    args.push('-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`, '-drive', `if=pflash,format=raw,unit=1,file=${vars}`)
  }

  const slot = await acquireVmSlot({ signal: AbortSignal.timeout(600_000) })
  t.after(() => slot.release())
  const startedAt = Date.now()
  server.setStart(startedAt)
  const serial = new SerialLog(() => startedAt, join(dir, 'serial.log'))
  let stderr = ''
  // coreutils timeout as QEMU's parent: the guest ends even if this process dies without cleaning up.
  const child = spawn('timeout', ['-s', 'KILL', String(Math.ceil(HARD_TIMEOUT_MS / 1000) + 10), 'qemu-system-x86_64', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'], detached: true,
  })
  child.stdout!.on('data', (d: Buffer) => serial.push(d))
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  t.after(async () => {
    killGroup(child, 'SIGTERM')
    const timer = setTimeout(() => killGroup(child, 'SIGKILL'), 3000)
    await exited
    clearTimeout(timer)
    slot.release()
  })
  let timer: NodeJS.Timeout | undefined
  try {
    const hit = await Promise.race([
      server.next(),
      exited.then(() => {
        throw new Error(`QEMU ended before /boot.ipxe was fetched: ${stderr.trim()}\n${serial.tail()}`)
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${mode}: no /boot.ipxe within ${HARD_TIMEOUT_MS} ms\n--- serial ---\n${serial.tail()}\n--- qemu ---\n${stderr}`)), HARD_TIMEOUT_MS)
      }),
    ])
    return { hit, serial, mac }
  } finally {
    clearTimeout(timer)
  }
}

test('BIOS: a VM boots the ISO as its CD and iPXE fetches /boot.ipxe with its identity', { timeout: 240_000 }, async (t) => {
  if (await skipUnless(t, false)) return
  const { hit, mac } = await bootFromCd(t, 'bios')
  t.diagnostic(`bios: /boot.ipxe fetched ${(hit.atMs / 1000).toFixed(1)} s after QEMU started`)
  const url = new URL(hit.url, 'http://x')
  assert.equal(url.pathname, '/boot.ipxe')
  assert.match(hit.userAgent, /^iPXE\//)
  // The script's own query, filled in by iPXE: the NIC that answered DHCP (netX), and the BIOS build (ipxe.lkrn).
  assert.equal(url.searchParams.get('mac'), mac.replace(/:/g, '-'))
  assert.equal(url.searchParams.get('platform'), 'pcbios')
  assert.equal(url.searchParams.get('manufacturer'), 'QEMU')
  assert.ok(url.searchParams.has('uuid') && url.searchParams.has('serial') && url.searchParams.has('arch'))
})

test('UEFI: OVMF boots the ISO\'s ipxe.efi, which fetches the boot script DHCP names (as rackboot\'s DHCP does)', { timeout: 240_000 }, async (t) => {
  if (await skipUnless(t, true)) return
  const { hit, serial, mac } = await bootFromCd(t, 'uefi')
  const fromCd = serial.find(/BdsDxe: starting Boot\d+ "UEFI QEMU DVD-ROM/)
  const ipxe = serial.find(/iPXE initialising devices/)
  t.diagnostic(`uefi: CD started ${((fromCd?.atMs ?? NaN) / 1000).toFixed(1)} s, iPXE ${((ipxe?.atMs ?? NaN) / 1000).toFixed(1)} s, /boot.ipxe fetched ${(hit.atMs / 1000).toFixed(1)} s after QEMU started`)
  assert.ok(fromCd, `OVMF booted the CD:\n${serial.tail()}`)
  assert.ok(ipxe && ipxe.atMs >= fromCd.atMs, 'iPXE from the CD ran')
  const url = new URL(hit.url, 'http://x')
  assert.equal(url.pathname, '/boot.ipxe')
  assert.match(hit.userAgent, /^iPXE\//)
  assert.equal(url.searchParams.get('via'), 'dhcp', 'the URL DHCP named (Debian\'s ipxe.efi does not run the ISO\'s script)')
  assert.equal(url.searchParams.get('mac'), mac.replace(/:/g, '-'))
  assert.equal(url.searchParams.get('platform'), 'efi')
  assert.equal(url.searchParams.get('arch'), 'x86_64')
})
