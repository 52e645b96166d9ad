// IPv6 netboot end to end, rackboot the only server on an IPv6-only segment (no DHCPv4 at all): OVMF's UEFI HTTP
// boot over IPv6 asks rackboot's DHCPv6 (option 59, vendor class HTTPClient) and downloads ipxe.efi over HTTP/IPv6;
// iPXE's own DHCPv6 binding gets it the script URL, /boot.ipxe is vouched for by that binding; the discovery agent
// takes its SLAAC address from rackboot's router advertisements (A flag, dhcp6.slaac) and reports over IPv6, vouched
// for by the kernel's neighbour table; accepted and allocated, the Talos stand-in fetches its config the same way.
// What OVMF (Debian 2022.11) does here: PXE is off (fw_cfg), so it tries "UEFI HTTPv4" first and gives up after
// ~70 s without a DHCPv4 server (a firmware timeout no server can shorten), then "UEFI HTTPv6".
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ipv6LabSettings, skipUnlessVm, type Vm } from './support/index.js'
import { allocateForInstall, startRackboot, type Rackboot } from './support/rackboot.js'

/** Per boot: ~70 s of OVMF's IPv4 attempt, then ~40 s of IPv6 boot (TCG; more under load). */
const HARD_TIMEOUT = 420_000

async function waitOrExplain(vm: Vm, rb: Rackboot, re: RegExp): Promise<void> {
  try {
    await vm.waitFor(re, HARD_TIMEOUT)
  } catch (err) {
    const tail = rb.log().split('\n').filter((l) => /dhcp6|agent|security|refus|"level":[45]0/.test(l)).slice(-25).join('\n')
    ;(err as Error).message += `\n--- serial tail ---\n${vm.serial.tail(25)}\n--- rackboot log ---\n${tail}`
    throw err
  }
}

test('IPv6-only: OVMF HTTPv6 -> ipxe.efi -> iPXE over DHCPv6 -> agent over SLAAC -> discovered; allocated -> Talos stand-in fetches its config over IPv6', { timeout: 3 * HARD_TIMEOUT }, async (t) => {
  if (await skipUnlessVm(t, { mode: 'uefi-http', agent: true, fakeTalos: true, programs: ['radvd', 'curl'] })) return
  let prefix = ''
  const rb = await startRackboot(t, {
    // No DHCPv4 on the segment; rackboot's router advertisements carry the prefix (M, O and A flags).
    settings: async (lab) => {
      const s = await ipv6LabSettings(lab)
      prefix = s.prefix
      return s.settings
    },
  })
  const mac = '52:54:00:1a:b0:66'
  const serial = 'LAB-SERIAL-IPV6'
  const smbios = { uuid: '8c3f5a7e-1b2d-4c6e-9f01-23456789ab66', serial, manufacturer: 'LAB', product: 'test' }
  const disks = [{ sizeMiB: 64, serial: 'DISK-IPV6-1' }]
  const v6 = new RegExp(`^${prefix}:`)

  // 1. Discovery, all of it over IPv6.
  const vm1 = await rb.lab.startVm({ mode: 'uefi-http', mac, smbios, disks, hardTimeoutMs: HARD_TIMEOUT, name: 'ipv6-discover' })
  await waitOrExplain(vm1, rb, /rackboot-agent: report sent/)
  await vm1.waitForExit(60_000).catch(() => vm1.stop())
  assert.ok(vm1.serial.find(/Start HTTP Boot over IPv6/), 'OVMF took its HTTPv6 path')
  assert.ok(vm1.serial.find(/rackboot-agent: network up ipv6 iface=\S+ address=2001:db8:/), 'the agent took its SLAAC address')
  const m = await rb.machine(mac)
  assert.ok(m, 'the machine is in the inventory')
  assert.equal(m.state, 'discovered')
  assert.equal(m.serial, serial)
  let events = await rb.events(m.id)
  const dhcp6 = events.filter((e) => e.type === 'boot.dhcp' && e.data.protocol === 'dhcp6')
  assert.ok(dhcp6.some((e) => /^http:\/\/\[2001:db8:[0-9a-f:]+\]:8080\/assets\/ipxe\/ipxe\.efi$/.test(String(e.data.bootFile))), `the firmware was given ipxe.efi by IPv6 URL: ${JSON.stringify(dhcp6.map((e) => e.message))}`)
  assert.ok(dhcp6.some((e) => e.data.ipxe === true && e.data.reply === 'reply'), 'iPXE got its own DHCPv6 binding')
  assert.ok(!events.some((e) => e.type === 'boot.dhcp' && e.data.protocol !== 'dhcp6'), 'no DHCPv4 at all')
  const assets = events.filter((e) => e.type === 'boot.asset' && e.at >= vm1.startedAt)
  assert.ok(assets.length >= 2 && assets.every((e) => v6.test(String(e.data.clientIp))), `kernel and initramfs over IPv6: ${JSON.stringify(assets.map((e) => e.data.clientIp))}`)
  const leases = (await rb.api('GET', `/machines/${m.id}`, (await rb.cliEnv()).RACKBOOT_TOKEN!)).json
  t.diagnostic(`ipv6 machine addresses: ${JSON.stringify(leases?.addresses ?? leases?.leases ?? null)}`)

  // 2. Accepted and allocated: the stand-in fetches its config over IPv6, from its SLAAC address.
  await allocateForInstall(rb, { mac, serial, profile: 'w-ipv6', arch: 'amd64', kernelArgs: ['console=ttyS0,115200'], endpoint: 'https://[2001:db8::10]:6443' })
  const vm2 = await rb.lab.startVm({ mode: 'uefi-http', mac, smbios, disks, hardTimeoutMs: HARD_TIMEOUT, name: 'ipv6-install' })
  await waitOrExplain(vm2, rb, /fake-talos: config fetched/)
  await vm2.waitForExit(60_000).catch(() => vm2.stop())
  assert.ok(vm2.serial.find(/fake-talos: network up ipv6/), 'the stand-in took its SLAAC address')
  events = await rb.events(m.id)
  const served = events.filter((e) => e.type === 'boot.config' && e.data.status === 200 && e.at >= vm2.startedAt)
  assert.equal(served.length, 1, JSON.stringify(events.filter((e) => e.type === 'boot.config').map((e) => e.message)))
  const report = events.find((e) => e.type === 'boot.agent' && e.at >= vm1.startedAt)
  t.diagnostic(`ipv6: report ${report ? (report.at - vm1.startedAt) / 1000 : '?'} s, config ${(served[0]!.at - vm2.startedAt) / 1000} s after QEMU start`)
})
