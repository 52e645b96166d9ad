// IPv6 netboot through the firmware's own PXE, rackboot the only server on an IPv6-only segment (no DHCPv4): OVMF's
// PXEv6 asks rackboot's DHCPv6 (vendor class PXEClient, arch 7) and gets option 59 tftp://[server]/ipxe.efi, loads
// ipxe.efi over TFTP/IPv6 from rackboot, iPXE's own DHCPv6 binding gets it the script URL; from there as in
// ipv6.test.ts (agent over SLAAC -> discovered; allocated -> the Talos stand-in fetches its config over IPv6).
// fw_cfg turns PXEv4 off and PXEv6 on (mode 'uefi-pxe6'): OVMF's first network entry is then "UEFI PXEv6", so no
// ~70 s HTTPv4 attempt comes first as in ipv6.test.ts. What OVMF (Debian 2022.11) did here: DHCPv6 for its own
// config (no arch), then SOLICIT/REQUEST with arch 7 and vendor class PXEClient, ~17 s (TCG, loaded) before its RRQ
// (a tsize probe it aborts, then the download), a RELEASE after. iPXE's "Configuring" then takes ~30 s although its
// DHCPv6 REPLY comes at once: its DHCPv4 attempt has no server to answer on this segment.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { DEFAULT_MARKERS, ipv6LabSettings, skipUnlessVm, type Vm } from './support/index.js'
import { allocateForInstall, startRackboot, type Rackboot } from './support/rackboot.js'

/** Where the firmware's PXEv6 phases are on the serial console (ms after QEMU start in the diagnostics). */
const PXE6_MARKERS: Record<string, RegExp> = {
  ...DEFAULT_MARKERS,
  pxe6: /Start PXE over IPv6/,
  nbp: /Downloading NBP file|NBP file downloaded/,
  script: /boot\.ipxe/,
}

/** Per boot: 155-280 s measured under TCG at load 10-25 on 2 cores (the firmware alone ~50 s to the NBP). */
const HARD_TIMEOUT = 420_000

async function waitOrExplain(vm: Vm, rb: Rackboot, re: RegExp): Promise<void> {
  try {
    await vm.waitFor(re, HARD_TIMEOUT)
  } catch (err) {
    const tail = rb.log().split('\n').filter((l) => /dhcp6|tftp|agent|security|refus|"level":[45]0/.test(l)).slice(-30).join('\n')
    ;(err as Error).message += `\n--- serial tail ---\n${vm.serial.tail(30)}\n--- rackboot log ---\n${tail}`
    throw err
  }
}

test('IPv6-only: OVMF PXEv6 -> DHCPv6 tftp:// URL -> ipxe.efi over TFTP/IPv6 -> iPXE -> agent -> discovered; allocated -> Talos stand-in fetches its config', { timeout: 3 * HARD_TIMEOUT }, async (t) => {
  if (await skipUnlessVm(t, { mode: 'uefi-pxe6', agent: true, fakeTalos: true, programs: ['radvd', 'curl'] })) return
  let prefix = ''
  const rb = await startRackboot(t, {
    settings: async (lab) => {
      const s = await ipv6LabSettings(lab)
      prefix = s.prefix
      return s.settings
    },
  })
  const mac = '52:54:00:1a:b0:67'
  const serial = 'LAB-SERIAL-PXE6'
  const smbios = { uuid: '8c3f5a7e-1b2d-4c6e-9f01-23456789ab67', serial, manufacturer: 'LAB', product: 'test' }
  const disks = [{ sizeMiB: 64, serial: 'DISK-PXE6-1' }]
  const v6 = new RegExp(`^${prefix}:`)

  // 1. Discovery: firmware PXE over IPv6, then iPXE, then the agent.
  const vm1 = await rb.lab.startVm({ mode: 'uefi-pxe6', mac, smbios, disks, hardTimeoutMs: HARD_TIMEOUT, name: 'pxe6-discover' })
  await waitOrExplain(vm1, rb, /rackboot-agent: report sent/)
  await vm1.waitForExit(60_000).catch(() => vm1.stop())
  assert.ok(vm1.serial.find(/Start PXE over IPv6/), 'OVMF took its PXEv6 path')
  assert.ok(!vm1.serial.find(/Start (PXE|HTTP Boot) over IPv4/), 'no IPv4 attempt first')
  const m = await rb.machine(mac)
  assert.ok(m, 'the machine is in the inventory')
  assert.equal(m.state, 'discovered')
  assert.equal(m.serial, serial)
  let events = await rb.events(m.id)
  const dhcp6 = events.filter((e) => e.type === 'boot.dhcp' && e.data.protocol === 'dhcp6')
  const tftpUrl = new RegExp(`^tftp://\\[${prefix}::1\\]/ipxe\\.efi$`)
  assert.ok(dhcp6.some((e) => e.data.ipxe === false && tftpUrl.test(String(e.data.bootFile))), `the firmware was given ipxe.efi by tftp:// URL: ${JSON.stringify(dhcp6.map((e) => e.message))}`)
  assert.ok(dhcp6.some((e) => e.data.ipxe === true && e.data.reply === 'reply'), 'iPXE got its own DHCPv6 binding')
  assert.ok(!events.some((e) => e.type === 'boot.dhcp' && e.data.protocol !== 'dhcp6'), 'no DHCPv4 at all')
  const tftp = events.filter((e) => e.type === 'boot.tftp' && e.data.ok === true && e.data.file === 'ipxe.efi')
  assert.ok(tftp.length >= 1 && tftp.every((e) => v6.test(String(e.data.client))), `ipxe.efi over TFTP/IPv6: ${JSON.stringify(events.filter((e) => e.type === 'boot.tftp').map((e) => e.message))}`)
  const assets = events.filter((e) => e.type === 'boot.asset' && e.at >= vm1.startedAt)
  assert.ok(assets.length >= 2 && assets.every((e) => v6.test(String(e.data.clientIp))), `kernel and initramfs over IPv6: ${JSON.stringify(assets.map((e) => e.data.clientIp))}`)
  const report = events.find((e) => e.type === 'boot.agent' && e.at >= vm1.startedAt)
  t.diagnostic(`pxe6 discovery: ${JSON.stringify(vm1.timeline(PXE6_MARKERS))}`)

  // 2. Accepted and allocated: the same firmware path, then the stand-in fetches its config over IPv6.
  await allocateForInstall(rb, { mac, serial, profile: 'w-pxe6', arch: 'amd64', kernelArgs: ['console=ttyS0,115200'], endpoint: 'https://[2001:db8::10]:6443' })
  const vm2 = await rb.lab.startVm({ mode: 'uefi-pxe6', mac, smbios, disks, hardTimeoutMs: HARD_TIMEOUT, name: 'pxe6-install' })
  await waitOrExplain(vm2, rb, /fake-talos: config fetched/)
  await vm2.waitForExit(60_000).catch(() => vm2.stop())
  assert.ok(vm2.serial.find(/Start PXE over IPv6/), 'OVMF took its PXEv6 path again')
  t.diagnostic(`pxe6 install: ${JSON.stringify(vm2.timeline(PXE6_MARKERS))}`)
  events = await rb.events(m.id)
  const served = events.filter((e) => e.type === 'boot.config' && e.data.status === 200 && e.at >= vm2.startedAt)
  assert.equal(served.length, 1, JSON.stringify(events.filter((e) => e.type === 'boot.config').map((e) => e.message)))
  t.diagnostic(`pxe6: report ${report ? (report.at - vm1.startedAt) / 1000 : '?'} s, config ${(served[0]!.at - vm2.startedAt) / 1000} s after QEMU start`)
})
