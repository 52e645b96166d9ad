// arm64 end to end with real firmware, rackboot the only server (its DHCP, TFTP and HTTP in the lab's namespace):
// QEMU virt (cortex-a57, TCG) with AAVMF boots the GRUB netboot image `rackboot assets fetch grub` builds
// (grub/grubnetaa64.efi: grub-mkimage with efinet, tftp and http built in; Debian 12 ships no arm64 iPXE), GRUB reads
// its bootstrap and then the machine's config from rackboot, loads the arm64 discovery agent (`assets build agent
// --arch arm64`) over HTTP, the agent reports and the machine is discovered as arm64; accepted and allocated, the
// next boot loads the arm64 Talos stand-in, which fetches its config. Once by firmware PXE (option 93 = 11: the
// image over TFTP) and once by UEFI HTTP boot (option 93 = 19: the image from /assets/grub/ over HTTP).
//
// What AAVMF and GRUB (2.06-13+deb12u2) were seen to do against rackboot here (TCG, 2 cores):
// - PXE: DISCOVER at ~6-11 s after QEMU start, REQUEST ~3.6 s after the OFFER, TFTP of the image after a tsize probe
//   the firmware aborts; "Welcome to GRUB!" at once. GRUB then asks TFTP for /grub/arm64-efi/{command,fs,crypto,
//   terminal}.lst (not found: fine), /grub/grub.cfg (rackboot's bootstrap; not grub.cfg-01-<mac> first), and the
//   bootstrap sends it to (http,host:port)/grub/grub.cfg-01-${net_default_mac}.
// - UEFI HTTP boot: HEAD + GET /assets/grub/grubnetaa64.efi, then GRUB's root is the HTTP boot device,
//   (http,host:port), prefix /grub: GET /grub/arm64-efi/*.lst, GET /grub/grub.cfg, then the per-machine config.
// - Debian's signed image (grub-efi-arm64-signed) fails both: it has no http module, so over PXE it loops asking
//   TFTP for http.mod and over HTTP boot it stops at `grub>` (why assets fetch grub builds its own).
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { describe, test, type TestContext } from 'node:test'
import { AAVMF_CODE, DEFAULT_MARKERS, installAgentAssets, installFakeTalos, installGrubAssets, qemuArgs, qemuBinary, skipUnlessVm, type BootMode, type Vm } from './support/index.js'
import { allocateForInstall, startRackboot, TALOS, type Rackboot } from './support/rackboot.js'
import { httpRequestAt, phaseTimes, type TimelineEvent } from './support/phases.js'

/** Per boot (lab.md: ~17 s at low load, up to ~40 s under load; GRUB's HTTP download of the 33 MB Image is slow). */
const HARD_TIMEOUT = 300_000



/** The serial markers of an arm64 boot: AAVMF, GRUB, the kernel, then the agent or the stand-in. */
// The kernel's and the agent's markers are the x86 ones; the firmware's and the loader's are AAVMF's and GRUB's.
const { firstOutput: _firstOutput, ipxe: _ipxe, ...LINUX_MARKERS } = DEFAULT_MARKERS
const ARM64_MARKERS: Record<string, RegExp> = {
  firmware: /UEFI firmware/,
  netboot: /Start (PXE|HTTP Boot) over IPv4/,
  nbpLoaded: /NBP file downloaded successfully|BdsDxe: starting Boot.*(PXE|HTTP)/,
  grub: /Welcome to GRUB!/,
  ...LINUX_MARKERS,
}

/**
 * Where a boot is stuck for good (it would only end at the hard timeout): GRUB's prompt (no config it could read),
 * GRUB's config loop failing again and again, a kernel panic.
 */
function stuck(vm: Vm): string | null {
  if (vm.serial.find(/^grub> ?$/)) return 'GRUB stopped at its prompt (grub>): it found no config it could read'
  const loops = vm.serial.findAll(/cannot fetch the boot config/).length
  if (loops >= 3) return `GRUB failed to fetch its config ${loops} times ("rackboot: cannot fetch the boot config")`
  const panic = vm.serial.find(/Kernel panic/)
  if (panic) return `kernel panic: ${panic.line}`
  return null
}

/** Waits for `re`, failing early when the boot is stuck; on failure adds rackboot's log tail to the error. */
async function waitOrExplain(vm: Vm, rb: Rackboot, re: RegExp): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const early = new Promise<never>((_, reject) => {
    timer = setInterval(() => {
      const why = stuck(vm)
      if (why) reject(new Error(`${vm.name}: ${why}\n--- serial tail ---\n${vm.serial.tail(40)}`))
    }, 1_000)
  })
  try {
    await Promise.race([vm.waitFor(re, HARD_TIMEOUT), early])
  } catch (err) {
    const tail = rb.log().split('\n').filter((l) => !/tftp packet|dhcp packet|"level":20/.test(l)).slice(-30).join('\n')
    ;(err as Error).message += `\n--- rackboot log tail ---\n${tail}`
    throw err
  } finally {
    clearInterval(timer)
  }
}

async function arm64Flow(t: TestContext, mode: Extract<BootMode, 'uefi' | 'uefi-http'>, n: number): Promise<void> {
  if (await skipUnlessVm(t, { arch: 'arm64', mode, agent: true, fakeTalos: true, programs: ['curl'] })) return
  const label = mode === 'uefi' ? 'pxe' : 'http'
  const rb = await startRackboot(t, {
    // debug: rackboot logs each HTTP request (the loader's HTTP boot download, GRUB's config requests) for the phases.
    settings: { log: { level: 'debug' } },
    assets: async (assetsDir) => {
      // The operator's commands: `assets fetch grub` (its own code, the test cache as its package cache) and the
      // arm64 agent and stand-in as `assets build agent --arch arm64` makes them.
      await installGrubAssets(assetsDir, 'arm64')
      await installAgentAssets(assetsDir, 'arm64')
      await installFakeTalos(join(assetsDir, 'talos', TALOS, 'arm64'), 'arm64')
    },
  })
  const mac = `52:54:00:1a:b0:${(0x60 + n).toString(16)}`
  const serial = `LAB-SERIAL-ARM64-${label.toUpperCase()}`
  const uuid = `8c3f5a7e-1b2d-4c6e-9f01-23456789ab${(0x60 + n).toString(16)}`
  const smbios = { uuid, serial, manufacturer: 'LAB', product: 'arm64-test' }
  const disks = [{ sizeMiB: 64, serial: `DISK-ARM64-${n}` }]

  // 1. Unknown machine: AAVMF -> GRUB from rackboot -> grub.cfg -> arm64 agent over HTTP -> report -> discovered.
  const vm1 = await rb.lab.startVm({ arch: 'arm64', mode, mac, smbios, disks, hardTimeoutMs: HARD_TIMEOUT, name: `${label}-discover` })
  await waitOrExplain(vm1, rb, /rackboot-agent: report sent/)
  await vm1.waitForExit(60_000).catch(() => vm1.stop())
  const m = await rb.machine(mac)
  assert.ok(m, 'the machine is in the inventory')
  assert.equal(m.state, 'discovered')
  assert.equal(m.arch, 'arm64', 'discovered as arm64')
  assert.equal(m.firmware, 'uefi')
  assert.equal(m.uuid, uuid)
  assert.equal(m.serial, serial)
  assert.ok(m.hardware?.disks?.some((d) => d.serial === `DISK-ARM64-${n}` && d.sizeBytes === 64 * 2 ** 20), JSON.stringify(m.hardware?.disks))
  assert.ok(m.hardware?.nics?.some((x) => x.mac === mac), JSON.stringify(m.hardware?.nics))
  assert.match(vm1.serial.find(/Linux version \d/)?.line ?? '', /arm64|aarch64/, 'an arm64 kernel booted')
  assert.ok(vm1.serial.find(/Kernel command line: .*console=ttyAMA0/), 'the agent was given the PL011 console')

  let events = await rb.events(m.id)
  const loaderTftp = events.filter((e) => e.type === 'boot.tftp' && /grubnetaa64\.efi$/.test(String(e.data.file)) && e.at >= vm1.startedAt)
  const loaderHttp = httpRequestAt(rb.log(), /^\/assets\/grub\/grubnetaa64\.efi/, vm1)
  if (mode === 'uefi') {
    assert.ok(loaderTftp.some((e) => e.data.ok === true), `grubnetaa64.efi came over rackboot's TFTP: ${JSON.stringify(loaderTftp)}`)
  } else {
    assert.equal(loaderTftp.length, 0, 'HTTP boot loads no loader over TFTP')
    assert.ok(loaderHttp !== null, 'HTTP boot fetched /assets/grub/grubnetaa64.efi')
    const offer = events.find((e) => e.type === 'boot.dhcp' && e.at >= vm1.startedAt)
    assert.match(String(offer?.data.bootFile), /^http:\/\/.*\/assets\/grub\/grubnetaa64\.efi$/, JSON.stringify(offer))
  }
  const plans = events.filter((e) => e.type === 'boot.script' && e.at >= vm1.startedAt && e.data.decision !== undefined)
  assert.equal(plans[0]?.data.decision, 'discovery', JSON.stringify(plans))
  const discovery: Record<string, number | null> = {
    ...phaseTimes(events, vm1, {
      dhcp: (e) => e.type === 'boot.dhcp',
      ack: (e) => e.type === 'boot.dhcp' && e.data.reply === 'ack',
      loaderTftp: (e) => e.type === 'boot.tftp' && /grubnetaa64\.efi$/.test(String(e.data.file)) && e.data.ok === true,
      plan: (e) => e.type === 'boot.script',
      kernel: (e) => e.type === 'boot.asset' && /agent\/arm64\/vmlinuz/.test(e.message),
      initramfs: (e) => e.type === 'boot.asset' && /agent\/arm64\/agent\.img/.test(e.message),
      report: (e) => e.type === 'boot.agent',
    }),
    loaderHttp,
    grubBootstrapHttp: httpRequestAt(rb.log(), /^\/grub\/grub\.cfg(\?|$)/, vm1),
    grubConfigHttp: httpRequestAt(rb.log(), /^\/grub\/grub\.cfg-01-/, vm1),
    ...vm1.timeline(ARM64_MARKERS),
  }
  t.diagnostic(`arm64 ${label} discovery phases (ms since QEMU start): ${JSON.stringify(discovery)}`)
  t.diagnostic(`arm64 ${label} GRUB over TFTP: ${events.filter((e) => e.type === 'boot.tftp' && e.at >= vm1.startedAt).map((e) => `${String(e.data.file)}${e.data.ok === true ? '' : ` (${String(e.data.error ?? 'failed')})`}`).join(', ') || 'nothing'}`)
  for (const phase of ['dhcp', 'plan', 'kernel', 'initramfs', 'report'] as const) {
    assert.ok(discovery[phase] !== null, `${phase} is on the timeline:\n${events.map((e) => `${e.type}: ${e.message}`).join('\n')}`)
  }

  // 2. Accepted and allocated with an arm64 profile (a real Talos config as base): the next boot installs.
  await allocateForInstall(rb, { mac, serial, profile: `arm64-worker-${label}`, arch: 'arm64', kernelArgs: ['console=ttyAMA0,115200'] })

  const vm2 = await rb.lab.startVm({ arch: 'arm64', mode, mac, smbios, disks, hardTimeoutMs: HARD_TIMEOUT, name: `${label}-install` })
  await waitOrExplain(vm2, rb, /fake-talos: config fetched/)
  t.diagnostic(`arm64 ${label} fake Talos: ${vm2.serial.find(/fake-talos: config fetched/)?.line ?? ''}`)
  await vm2.waitForExit(60_000).catch(() => vm2.stop())
  events = await rb.events(m.id)
  const installPlans = events.filter((e) => e.type === 'boot.script' && e.at >= vm2.startedAt && e.data.decision !== undefined)
  assert.equal(installPlans[0]?.data.decision, 'install', JSON.stringify(installPlans))
  assert.ok(events.some((e) => e.type === 'boot.asset' && /talos\/v1\.13\.9\/arm64\/vmlinuz/.test(e.message) && e.at >= vm2.startedAt), 'the arm64 Talos kernel was downloaded')
  assert.ok(events.some((e) => e.type === 'boot.asset' && /talos\/v1\.13\.9\/arm64\/initramfs\.xz/.test(e.message) && e.at >= vm2.startedAt), 'the arm64 Talos initramfs was downloaded')
  const served = events.filter((e) => e.type === 'boot.config' && e.data.status === 200 && e.at >= vm2.startedAt)
  assert.equal(served.length, 1, JSON.stringify(events.filter((e) => e.type === 'boot.config')))
  const install: Record<string, number | null> = {
    ...phaseTimes(events, vm2, {
      dhcp: (e) => e.type === 'boot.dhcp',
      loaderTftp: (e) => e.type === 'boot.tftp' && /grubnetaa64\.efi$/.test(String(e.data.file)) && e.data.ok === true,
      plan: (e) => e.type === 'boot.script',
      kernel: (e) => e.type === 'boot.asset' && /talos\/v1\.13\.9\/arm64\/vmlinuz/.test(e.message),
      initramfs: (e) => e.type === 'boot.asset' && /talos\/v1\.13\.9\/arm64\/initramfs\.xz/.test(e.message),
      config: (e) => e.type === 'boot.config' && e.data.status === 200,
    }),
    loaderHttp: httpRequestAt(rb.log(), /^\/assets\/grub\/grubnetaa64\.efi/, vm2),
    ...vm2.timeline(ARM64_MARKERS),
  }
  t.diagnostic(`arm64 ${label} install phases (ms since QEMU start): ${JSON.stringify(install)}`)
}

describe('arm64 end to end: AAVMF -> GRUB (grub-mkimage, http built in) -> rackboot', { concurrency: 2 }, () => {
  test('arm64 PXE: AAVMF PXE (arch 11) -> grubnetaa64.efi over TFTP -> GRUB -> arm64 agent -> discovered arm64; allocated -> arm64 Talos stand-in fetches its config', { timeout: 3 * HARD_TIMEOUT }, async (t) => {
    await arm64Flow(t, 'uefi', 1)
  })

  test('arm64 UEFI HTTP boot: AAVMF HTTP boot (arch 19) -> /assets/grub/grubnetaa64.efi -> GRUB -> arm64 agent -> discovered arm64; allocated -> arm64 Talos stand-in fetches its config', { timeout: 3 * HARD_TIMEOUT }, async (t) => {
    await arm64Flow(t, 'uefi-http', 2)
  })
})

test('arm64 guests: qemu-system-aarch64 -M virt -cpu cortex-a57 under TCG, AAVMF with a private VARS copy, no NIC ROM; x86 unchanged', () => {
  const ctx = { ns: null as never, tmpDir: '/tmp/x', tap: 'tap1', name: 'vm1', diskFiles: ['/tmp/x/d0.raw'], mac: '52:54:00:00:00:01' }
  assert.equal(qemuBinary('arm64'), 'qemu-system-aarch64')
  assert.equal(qemuBinary(), 'qemu-system-x86_64')
  const pxe = qemuArgs({ arch: 'arm64', mode: 'uefi', disks: [{ sizeMiB: 8 }] }, { ...ctx, varsFile: '/tmp/x/vm1-vars.fd' })
  const s = pxe.join(' ')
  assert.match(s, /^-M virt -cpu cortex-a57 -accel tcg /)
  assert.ok(s.includes(`if=pflash,format=raw,unit=0,readonly=on,file=${AAVMF_CODE}`), s)
  assert.ok(s.includes('if=pflash,format=raw,unit=1,file=/tmp/x/vm1-vars.fd'), s)
  assert.ok(s.includes('virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01,bootindex=1,romfile='), s)
  assert.ok(!s.includes('IPv4PXESupport'), 'PXE stays on in uefi mode')
  const http = qemuArgs({ arch: 'arm64', mode: 'uefi-http' }, { ...ctx, varsFile: '/tmp/x/v.fd' }).join(' ')
  assert.ok(http.includes('opt/org.tianocore/IPv4PXESupport,string=n'), http)
  assert.throws(() => qemuArgs({ arch: 'arm64', mode: 'bios' }, ctx), /no 'bios'/)
  assert.throws(() => qemuArgs({ arch: 'arm64', mode: 'uefi', disks: [{ sizeMiB: 8, bus: 'sata' }] }, { ...ctx, varsFile: '/tmp/x/v.fd' }), /SATA/)
  // x86 guests keep q35 and OVMF.
  const x86 = qemuArgs({ mode: 'uefi' }, { ...ctx, varsFile: '/tmp/x/v.fd' }).join(' ')
  assert.match(x86, /^-M q35 -accel tcg /)
  assert.ok(x86.includes('/usr/share/OVMF/OVMF_CODE_4M.fd'), x86)
})
