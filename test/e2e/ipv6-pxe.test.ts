// IPv6 netboot through the firmware's own PXE, rackboot the only server on an IPv6-only segment (no DHCPv4): OVMF's
// PXEv6 asks rackboot's DHCPv6 (vendor class PXEClient, arch 7) and gets option 59 tftp://[server]/ipxe.efi, loads
// ipxe.efi over TFTP/IPv6 from rackboot, iPXE's own DHCPv6 binding gets it the script URL; from there as in
// ipv6.test.ts (agent over SLAAC -> discovered; allocated -> the Talos stand-in fetches its config over IPv6).
// fw_cfg turns PXEv4 off and PXEv6 on (mode 'uefi-pxe6'): OVMF's first network entry is then "UEFI PXEv6", so no
// ~70 s HTTPv4 attempt comes first as in ipv6.test.ts. What OVMF (Debian 2022.11) did here: DHCPv6 for its own
// config (no arch), then SOLICIT/REQUEST with arch 7 and vendor class PXEClient, then up to 10 s polling for a
// default route before its RRQ (~17 s in all, TCG, loaded; rackboot's boot router now ends that wait within about a
// second: src/dhcp/router-adverts.ts routeFor), a tsize probe it aborts, then the download, a RELEASE after. iPXE's "Configuring" then takes ~30 s although its
// DHCPv6 REPLY comes at once: its DHCPv4 attempt has no server to answer on this segment.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { DEFAULT_MARKERS, skipUnlessVm } from './support/index.js'
import { assertIpv6Discovery, installOverIpv6, startIpv6Rackboot, waitOrExplain } from './support/ipv6.js'

/** Where the firmware's PXEv6 phases are on the serial console (ms after QEMU start in the diagnostics). */
const PXE6_MARKERS: Record<string, RegExp> = {
  ...DEFAULT_MARKERS,
  pxe6: /Start PXE over IPv6/,
  nbp: /Downloading NBP file|NBP file downloaded/,
  script: /boot\.ipxe/,
}

/** Per boot: 155-280 s measured under TCG at load 10-25 on 2 cores (the firmware alone ~50 s to the NBP). */
const HARD_TIMEOUT = 420_000

test('IPv6-only: OVMF PXEv6 -> DHCPv6 tftp:// URL -> ipxe.efi over TFTP/IPv6 -> iPXE -> agent -> discovered; allocated -> Talos stand-in fetches its config', { timeout: 3 * HARD_TIMEOUT }, async (t) => {
  if (await skipUnlessVm(t, { mode: 'uefi-pxe6', agent: true, fakeTalos: true, programs: ['radvd', 'curl'] })) return
  const { rb, prefix } = await startIpv6Rackboot(t)
  const mac = '52:54:00:1a:b0:67'
  const serial = 'LAB-SERIAL-PXE6'
  const smbios = { uuid: '8c3f5a7e-1b2d-4c6e-9f01-23456789ab67', serial, manufacturer: 'LAB', product: 'test' }
  const disks = [{ sizeMiB: 64, serial: 'DISK-PXE6-1' }]
  const v6 = new RegExp(`^${prefix}:`)

  // 1. Discovery: firmware PXE over IPv6, then iPXE, then the agent.
  const vm1 = await rb.lab.startVm({ mode: 'uefi-pxe6', mac, smbios, disks, hardTimeoutMs: HARD_TIMEOUT, name: 'pxe6-discover' })
  await waitOrExplain(vm1, rb, /rackboot-agent: report sent/, HARD_TIMEOUT)
  await vm1.waitForExit(60_000).catch(() => vm1.stop())
  assert.ok(vm1.serial.find(/Start PXE over IPv6/), 'OVMF took its PXEv6 path')
  assert.ok(!vm1.serial.find(/Start (PXE|HTTP Boot) over IPv4/), 'no IPv4 attempt first')
  const { id, events } = await assertIpv6Discovery(rb, { mac, serial, prefix, vm: vm1, loaderUrl: new RegExp(`^tftp://\\[${prefix}::1\\]/ipxe\\.efi$`) })
  const tftp = events.filter((e) => e.type === 'boot.tftp' && e.data.ok === true && e.data.file === 'ipxe.efi')
  assert.ok(tftp.length >= 1 && tftp.every((e) => v6.test(String(e.data.client))), `ipxe.efi over TFTP/IPv6: ${JSON.stringify(events.filter((e) => e.type === 'boot.tftp').map((e) => e.message))}`)
  const report = events.find((e) => e.type === 'boot.agent' && e.at >= vm1.startedAt)
  t.diagnostic(`pxe6 discovery: ${JSON.stringify(vm1.timeline(PXE6_MARKERS))}`)

  // 2. Accepted and allocated: the same firmware path, then the stand-in fetches its config over IPv6.
  const { vm: vm2, configSeconds } = await installOverIpv6(rb, { id, mac, serial, smbios, disks, mode: 'uefi-pxe6', name: 'pxe6', timeoutMs: HARD_TIMEOUT })
  assert.ok(vm2.serial.find(/Start PXE over IPv6/), 'OVMF took its PXEv6 path again')
  t.diagnostic(`pxe6 install: ${JSON.stringify(vm2.timeline(PXE6_MARKERS))}`)
  t.diagnostic(`pxe6: report ${report ? (report.at - vm1.startedAt) / 1000 : '?'} s, config ${configSeconds} s after QEMU start`)
})
