// The IPv6-only segment of the IPv6 netboot tests (ipv6.test.ts, ipv6-pxe.test.ts): a global prefix on the server's
// end, rackboot's DHCPv6 over a range in it, its router advertisements (M, O and A flags), no DHCPv4 at all, HTTP and
// TFTP on both families; and the steps both tests take on it (a discovery checked for IPv6 all the way, an install).
import assert from 'node:assert/strict'
import type { VmLab } from './lab.js'
import { allocateForInstall, startRackboot, type Rackboot } from './rackboot.js'
import type { BootMode, SmbiosOptions, Vm } from './vm.js'

/** Adds 2001:db8:X::1/64 to the lab's server end and returns rackboot's settings for an IPv6-only segment. */
export async function ipv6LabSettings(lab: VmLab): Promise<{ prefix: string; settings: Record<string, unknown> }> {
  const prefix = `2001:db8:${lab.serverIp.split('.')[2]}`
  await lab.serverNs!.ip(['addr', 'add', `${prefix}::1/64`, 'dev', lab.serverInterface, 'nodad'])
  return {
    prefix,
    settings: {
      log: { level: 'debug' },
      http: { listen: '::', port: 8080, publicUrl: `http://${lab.serverIp}:8080` },
      tftp: { listen: '::', port: 69 },
      dhcp: { mode: 'off', routerAdverts: 'on', interface: lab.serverInterface },
      dhcp6: { enabled: true, interface: lab.serverInterface, serverAddress: `${prefix}::1`, prefix: `${prefix}::/64`, rangeStart: `${prefix}::100`, rangeEnd: `${prefix}::1ff` },
    },
  }
}

/** rackboot serving an IPv6-only lab segment, and the segment's prefix (2001:db8:X). */
export async function startIpv6Rackboot(t: { after(fn: () => unknown): void }): Promise<{ rb: Rackboot; prefix: string }> {
  let prefix = ''
  const rb = await startRackboot(t, {
    settings: async (lab) => {
      const s = await ipv6LabSettings(lab)
      prefix = s.prefix
      return s.settings
    },
  })
  return { rb, prefix }
}

/** Waits for `re` on the guest's console; on failure the error carries the serial tail and rackboot's IPv6/boot log lines. */
export async function waitOrExplain(vm: Vm, rb: Rackboot, re: RegExp, timeoutMs: number): Promise<void> {
  try {
    await vm.waitFor(re, timeoutMs)
  } catch (err) {
    const tail = rb.log().split('\n').filter((l) => /dhcp6|tftp|agent|security|refus|"level":[45]0/.test(l)).slice(-30).join('\n')
    ;(err as Error).message += `\n--- serial tail ---\n${vm.serial.tail(30)}\n--- rackboot log ---\n${tail}`
    throw err
  }
}

type TimelineEvent = Awaited<ReturnType<Rackboot['events']>>[number]

/**
 * A discovery that was IPv6 all the way: the machine discovered with its serial, the firmware's and iPXE's DHCPv6
 * exchanges on its timeline (`loaderUrl` the firmware's boot URL), no DHCPv4, kernel and initramfs fetched from
 * addresses in the prefix. Returns the machine's id and timeline.
 */
export async function assertIpv6Discovery(rb: Rackboot, o: { mac: string; serial: string; prefix: string; vm: Vm; loaderUrl: RegExp }): Promise<{ id: string; events: TimelineEvent[] }> {
  const m = await rb.machine(o.mac)
  assert.ok(m, 'the machine is in the inventory')
  assert.equal(m.state, 'discovered')
  assert.equal(m.serial, o.serial)
  const events = await rb.events(m.id)
  const dhcp6 = events.filter((e) => e.type === 'boot.dhcp' && e.data.protocol === 'dhcp6')
  assert.ok(dhcp6.some((e) => e.data.ipxe === false && o.loaderUrl.test(String(e.data.bootFile))), `the firmware was given ipxe.efi by ${o.loaderUrl}: ${JSON.stringify(dhcp6.map((e) => e.message))}`)
  assert.ok(dhcp6.some((e) => e.data.ipxe === true && e.data.reply === 'reply'), 'iPXE got its own DHCPv6 binding')
  assert.ok(!events.some((e) => e.type === 'boot.dhcp' && e.data.protocol !== 'dhcp6'), 'no DHCPv4 at all')
  const v6 = new RegExp(`^${o.prefix}:`)
  const assets = events.filter((e) => e.type === 'boot.asset' && e.at >= o.vm.startedAt)
  assert.ok(assets.length >= 2 && assets.every((e) => v6.test(String(e.data.clientIp))), `kernel and initramfs over IPv6: ${JSON.stringify(assets.map((e) => e.data.clientIp))}`)
  return { id: m.id, events }
}

/**
 * Accepts and allocates the machine, boots it again the same way, and checks the Talos stand-in fetched its config
 * once. Returns the install VM and the seconds from its start to the config.
 */
export async function installOverIpv6(rb: Rackboot, o: {
  id: string; mac: string; serial: string; smbios: SmbiosOptions; disks: { sizeMiB: number; serial: string }[]; mode: BootMode; name: string; timeoutMs: number
}): Promise<{ vm: Vm; configSeconds: number }> {
  await allocateForInstall(rb, { mac: o.mac, serial: o.serial, profile: `w-${o.name}`, arch: 'amd64', kernelArgs: ['console=ttyS0,115200'], endpoint: 'https://[2001:db8::10]:6443' })
  const vm = await rb.lab.startVm({ mode: o.mode, mac: o.mac, smbios: o.smbios, disks: o.disks, hardTimeoutMs: o.timeoutMs, name: `${o.name}-install` })
  await waitOrExplain(vm, rb, /fake-talos: config fetched/, o.timeoutMs)
  await vm.waitForExit(60_000).catch(() => vm.stop())
  const events = await rb.events(o.id)
  const served = events.filter((e) => e.type === 'boot.config' && e.data.status === 200 && e.at >= vm.startedAt)
  assert.equal(served.length, 1, JSON.stringify(events.filter((e) => e.type === 'boot.config').map((e) => e.message)))
  return { vm, configSeconds: (served[0]!.at - vm.startedAt) / 1000 }
}
