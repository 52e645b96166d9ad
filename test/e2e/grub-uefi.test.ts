// GRUB end to end with real firmware: OVMF's PXE (QEMU TCG, in a network namespace) takes a GRUB netboot image
// (grub-mknetdir, x86_64-efi, Debian's grub-efi-amd64-bin 2.06) from rackboot's TFTP, as rackboot's DHCP offers it
// to x64 UEFI clients; GRUB asks rackboot's TFTP for grub.cfg-01-<mac> and gets the machine's config from the
// lifecycle; it loads the Talos kernel and initramfs from rackboot's HTTP server (GRUB 2.06's HTTP client: the
// canonical header case), and "Talos" (the stand-in) fetches its config with the per-boot token. A profile kernel
// argument that GRUB's parser would split or expand reaches the kernel as it is.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { stringify } from 'yaml'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { generateConfig, generateSecretsBundle } from '../../src/talos/index.js'
import { BIN } from '../support/cli.js'
import { createVmLab, installFakeTalos, skipUnlessVm } from './support/index.js'
import { TALOS } from './support/rackboot.js'

const HARD_TIMEOUT = 240_000
const GRUB_MODULES = '/usr/lib/grub/x86_64-efi'
/** A kernel argument GRUB's parser would split (;), background (&), pipe (|) or expand ($, {}) were it not quoted. */
const NASTY_ARG = 'rackboot.grub=a;b&c|d$e{f}'

/** Why GRUB cannot be had here, or null; installs Debian's grub-efi-amd64-bin when it is missing and we are root. */
function grubSkipReason(): string | null {
  const ready = () => existsSync(join(GRUB_MODULES, 'linux.mod')) && spawnSync('grub-mknetdir', ['--version']).status === 0
  if (ready()) return null
  if (process.getuid?.() !== 0) return `no GRUB netboot modules (${GRUB_MODULES}): install Debian's grub-efi-amd64-bin as root`
  const res = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'grub-efi-amd64-bin'], { encoding: 'utf8', timeout: 300_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
  if (ready()) return null
  return `cannot install Debian's grub-efi-amd64-bin (apt-get exited ${res.status}): ${(res.stderr || res.stdout || '').trim().split('\n').slice(-2).join(' ')}`
}

test('UEFI GRUB: OVMF PXE -> GRUB from rackboot\'s TFTP -> grub.cfg-01-<mac> over TFTP -> Talos over rackboot\'s HTTP -> config fetched', { timeout: 2 * HARD_TIMEOUT }, async (t) => {
  if (await skipUnlessVm(t, { mode: 'uefi', fakeTalos: true, programs: ['radvd', 'curl'] })) return
  const why = grubSkipReason()
  if (why) {
    console.error(`# SKIP: ${why}`)
    return t.skip(why)
  }
  const lab = await createVmLab(t, { ipv6: true })
  const dir = lab.tmpDir
  const assetsDir = join(dir, 'assets')
  // The TFTP root is <assets>/ipxe: the netboot directory goes there, GRUB's prefix is (tftp,<server>)/grub.
  const tftpRoot = join(assetsDir, 'ipxe')
  mkdirSync(tftpRoot, { recursive: true })
  const mk = spawnSync('grub-mknetdir', [`--net-directory=${tftpRoot}`, '--subdir=grub', '-d', GRUB_MODULES], { encoding: 'utf8', timeout: 120_000 })
  assert.equal(mk.status, 0, `grub-mknetdir: ${mk.stderr}`)
  assert.ok(existsSync(join(tftpRoot, 'grub', 'x86_64-efi', 'core.efi')))
  await installFakeTalos(join(assetsDir, 'talos', TALOS, 'amd64'))

  const url = `http://${lab.serverIp}:8080`
  const config = join(dir, 'rackboot.yaml')
  writeFileSync(config, stringify({
    dataDir: join(dir, 'data'),
    assetsDir,
    log: { level: 'info' },
    http: { listen: lab.serverIp, port: 8080, publicUrl: url },
    tftp: { listen: '0.0.0.0', port: 69 },
    dhcp: {
      mode: 'full', interface: lab.serverInterface, serverAddress: lab.serverIp,
      subnets: [{ subnet: lab.subnet, rangeStart: lab.address(100), rangeEnd: lab.address(199), routers: [lab.serverIp], leaseSeconds: 600 }],
      // x64 UEFI firmware PXE (option 93 = 7, as OVMF sends) gets the GRUB image instead of ipxe.efi.
      archBootFiles: { '7': 'grub/x86_64-efi/core.efi' },
    },
    boot: { holdSeconds: 5 },
  }))
  // A machine already allocated (as after discovery, acceptance and allocation): the next boot installs.
  mkdirSync(join(dir, 'data'), { recursive: true })
  const mac = '52:54:00:1a:b0:31'
  const secrets = await generateSecretsBundle({ talosVersion: TALOS, rsaBits: 2048 })
  const base = generateConfig({ secrets, clusterName: 'lab', endpoint: 'https://198.18.0.10:6443', talosVersion: TALOS, role: 'worker' }).yaml
  const server = lab.spawn(['node', BIN, 'serve', '--config', config], { cwd: dir })
  let log = ''
  server.stdout?.on('data', (d) => (log += d))
  server.stderr?.on('data', (d) => (log += d))
  for (let i = 0; i < 120 && !log.includes('rackboot is serving'); i++) await new Promise((r) => setTimeout(r, 250))
  assert.match(log, /rackboot is serving/, `rackboot did not start:\n${log}`)
  const dbFile = join(dir, 'data', 'rackboot.db')
  const seed = await openSqliteInventory({ file: dbFile })
  await seed.profiles.put({ name: 'grub-lab', description: null, talosVersion: TALOS, arch: 'amd64', schematic: null, kernelArgs: ['console=ttyS0,115200', NASTY_ARG], baseConfig: base, patches: [], managedBy: null }, Date.now())
  const m = await seed.machines.create({ name: 'grub-u31', nics: [{ mac, name: null, boot: true }], state: 'provisioning', profile: 'grub-lab' }, Date.now())
  await seed.close()

  const vm = await lab.startVm({ mode: 'uefi', mac, smbios: { uuid: '8c3f5a7e-1b2d-4c6e-9f01-23456789ab31', serial: 'LAB-SERIAL-GRUB' }, disks: [{ sizeMiB: 32 }], hardTimeoutMs: HARD_TIMEOUT })
  let fetched
  try {
    fetched = await vm.waitFor(/fake-talos: config fetched/, HARD_TIMEOUT)
  } catch (err) {
    t.diagnostic(`rackboot log tail:\n${log.split('\n').slice(-40).join('\n')}`)
    throw err
  }
  t.diagnostic(`fake Talos: ${fetched.line}`)
  const cmdline = vm.serial.find(/Kernel command line: /)
  assert.ok(cmdline, 'the kernel printed its command line')
  assert.ok(cmdline.line.split(/\s+/).includes(NASTY_ARG), `GRUB handed ${NASTY_ARG} to the kernel as it is: ${cmdline.line}`)
  await vm.waitForExit(60_000).catch(() => vm.stop())

  const inv = await openSqliteInventory({ file: dbFile })
  let events: { type: string; message: string; at: number; data: Record<string, unknown> }[]
  try {
    events = await inv.events.list({ machineId: m.id, limit: 5000 })
  } finally {
    await inv.close()
  }
  const at = (pred: (e: (typeof events)[number]) => boolean) => {
    const e = events.find(pred)
    return e ? e.at - vm.startedAt : null
  }
  const tftp = events.filter((e) => e.type === 'boot.tftp')
  const phases = {
    dhcp: at((e) => e.type === 'boot.dhcp'),
    grubLoaded: at((e) => e.type === 'boot.tftp' && e.data.file === 'grub/x86_64-efi/core.efi' && e.data.ok === true),
    grubConfig: at((e) => e.type === 'boot.tftp' && /grub\.cfg-01-52-54-00-1a-b0-31$/.test(String(e.data.file)) && e.data.ok === true),
    plan: at((e) => e.type === 'boot.script'),
    kernel: at((e) => e.type === 'boot.asset' && /talos\/v1\.13\.9\/amd64\/vmlinuz/.test(e.message)),
    initramfs: at((e) => e.type === 'boot.asset' && /talos\/v1\.13\.9\/amd64\/initramfs\.xz/.test(e.message)),
    config: at((e) => e.type === 'boot.config' && e.data.status === 200),
  }
  t.diagnostic(`grub phases (ms since QEMU start): ${JSON.stringify({ ...phases, ...vm.timeline() })}`)
  t.diagnostic(`TFTP on the timeline: ${tftp.length} (${tftp.filter((e) => e.data.ok !== true).map((e) => e.message).join('; ') || 'all ok'})`)
  for (const [phase, ms] of Object.entries(phases)) assert.ok(ms !== null, `${phase} is on the timeline:\n${events.map((e) => `${e.type}: ${e.message}`).join('\n')}`)
  assert.deepEqual(events.filter((e) => e.type === 'boot.script').map((e) => e.data.decision), ['install'], 'one plan for the boot')
  // GRUB's probes for files that are not there are counted, not failed steps (OVMF's tsize probe is an abort, not a failure).
  const failed = tftp.filter((e) => e.data.ok !== true && e.data.aborted !== true)
  assert.deepEqual(failed.map((e) => e.message), [], 'no failed TFTP step on the timeline')
  assert.equal(events.filter((e) => e.type === 'boot.config').map((e) => e.data.status).join(','), '200')
  const metrics = await lab.exec(['curl', '-sS', `${url}/metrics`], { timeoutMs: 30_000 })
  t.diagnostic(metrics.stdout.split('\n').filter((l) => /^rackboot_tftp_grub_/.test(l)).join('\n'))
  assert.match(metrics.stdout, /^rackboot_tftp_grub_configs_total\{result="served"\} 1$/m)
})
