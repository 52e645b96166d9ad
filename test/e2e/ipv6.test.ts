// IPv6 netboot end to end, rackboot the only server on an IPv6-only segment (no DHCPv4 at all): OVMF's UEFI HTTP
// boot over IPv6 asks rackboot's DHCPv6 (option 59, vendor class HTTPClient) and downloads ipxe.efi over HTTP/IPv6;
// iPXE's own DHCPv6 binding gets it the script URL, /boot.ipxe is vouched for by that binding; the discovery agent
// takes its SLAAC address from rackboot's router advertisements (A flag, dhcp6.slaac) and reports over IPv6, vouched
// for by the kernel's neighbour table; accepted and allocated, the Talos stand-in fetches its config the same way.
// What OVMF (Debian 2022.11) does here: PXE is off (fw_cfg), so it tries "UEFI HTTPv4" first and gives up after
// ~70 s without a DHCPv4 server (a firmware timeout no server can shorten), then "UEFI HTTPv6".
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { skipUnlessVm } from './support/index.js'
import { assertIpv6Discovery, installOverIpv6, startIpv6Rackboot, waitOrExplain } from './support/ipv6.js'

/** Per boot: ~70 s of OVMF's IPv4 attempt, then ~40 s of IPv6 boot (TCG; more under load). */
const HARD_TIMEOUT = 420_000

test('IPv6-only: OVMF HTTPv6 -> ipxe.efi -> iPXE over DHCPv6 -> agent over SLAAC -> discovered; allocated -> Talos stand-in fetches its config over IPv6', { timeout: 3 * HARD_TIMEOUT }, async (t) => {
  if (await skipUnlessVm(t, { mode: 'uefi-http', agent: true, fakeTalos: true, programs: ['radvd', 'curl'] })) return
  // No DHCPv4 on the segment; rackboot's router advertisements carry the prefix (M, O and A flags).
  const { rb, prefix } = await startIpv6Rackboot(t)
  const mac = '52:54:00:1a:b0:66'
  const serial = 'LAB-SERIAL-IPV6'
  const smbios = { uuid: '8c3f5a7e-1b2d-4c6e-9f01-23456789ab66', serial, manufacturer: 'LAB', product: 'test' }
  const disks = [{ sizeMiB: 64, serial: 'DISK-IPV6-1' }]

  // 1. Discovery, all of it over IPv6.
  const vm1 = await rb.lab.startVm({ mode: 'uefi-http', mac, smbios, disks, hardTimeoutMs: HARD_TIMEOUT, name: 'ipv6-discover' })
  await waitOrExplain(vm1, rb, /rackboot-agent: report sent/, HARD_TIMEOUT)
  await vm1.waitForExit(60_000).catch(() => vm1.stop())
  assert.ok(vm1.serial.find(/Start HTTP Boot over IPv6/), 'OVMF took its HTTPv6 path')
  assert.ok(vm1.serial.find(/rackboot-agent: network up ipv6 iface=\S+ address=2001:db8:/), 'the agent took its SLAAC address')
  const { id, events } = await assertIpv6Discovery(rb, { mac, serial, prefix, vm: vm1, loaderUrl: /^http:\/\/\[2001:db8:[0-9a-f:]+\]:8080\/assets\/ipxe\/ipxe\.efi$/ })
  const leases = (await rb.api('GET', `/machines/${id}`, (await rb.cliEnv()).RACKBOOT_TOKEN!)).json
  t.diagnostic(`ipv6 machine addresses: ${JSON.stringify(leases?.addresses ?? leases?.leases ?? null)}`)

  // 2. Accepted and allocated: the stand-in fetches its config over IPv6, from its SLAAC address.
  const { vm: vm2, configSeconds } = await installOverIpv6(rb, { id, mac, serial, smbios, disks, mode: 'uefi-http', name: 'ipv6', timeoutMs: HARD_TIMEOUT })
  assert.ok(vm2.serial.find(/fake-talos: network up ipv6/), 'the stand-in took its SLAAC address')
  const report = events.find((e) => e.type === 'boot.agent' && e.at >= vm1.startedAt)
  t.diagnostic(`ipv6: report ${report ? (report.at - vm1.startedAt) / 1000 : '?'} s, config ${configSeconds} s after QEMU start`)
})
