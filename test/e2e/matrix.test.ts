// Issue #19's boot matrix, the modes the other e2e files do not install with, rackboot the only server:
// - UEFI HTTP boot (OVMF, option 93 = 16): the offer names ipxe.efi by http:// URL, iPXE fetches its script, the
//   agent reports (discovered); accepted and allocated, the next boot loads the Talos stand-in, which fetches its
//   config.
// - A relayed segment: the guest on its own link behind a DHCP relay in its own namespace (Debian's dnsmasq
//   --dhcp-relay), the segment a dhcp.subnets entry chosen by giaddr, routed to rackboot's TFTP and HTTP; BIOS (the
//   iPXE NIC ROM) discovers, then installs. Discovery runs with no router advertising on the segment: iPXE waits
//   ~16 s for IPv6 and rackboot's timeline says so ("iPXE asked for its script N s after its DHCP lease (relayed
//   segment)", src/lifecycle/ipxe-wait.ts); the install boot runs with radvd on the segment and has no such wait.
// Success is judged by serial markers (the agent's report, the stand-in's "config fetched") and rackboot's timeline.
import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import { DEFAULT_MARKERS, skipUnlessVm, type Vm } from './support/index.js'
import { allocateForInstall, startRackboot, type Rackboot } from './support/rackboot.js'
import { createRelaySegment, pickRelayOctet } from './support/relay.js'
import { httpRequestAt, phaseTimes, type TimelineEvent } from './support/phases.js'

/** Per boot (lab.md: 10-22 s at low load, ~40 s under load or with iPXE's IPv6 wait). */
const HARD_TIMEOUT = 300_000

/** ms after QEMU start of the first event matching each phase (the server's clock, same machine). */
function phases(events: TimelineEvent[], vm: Vm): Record<string, number | null> {
  const defs: Record<string, (e: TimelineEvent) => boolean> = {
    dhcp: (e) => e.type === 'boot.dhcp',
    ack: (e) => e.type === 'boot.dhcp' && e.data.reply === 'ack',
    ipxeAck: (e) => e.type === 'boot.dhcp' && e.data.reply === 'ack' && e.data.ipxe === true,
    nbpTftp: (e) => e.type === 'boot.tftp' && e.data.ok === true,
    script: (e) => e.type === 'boot.script' && e.data.decision !== undefined,
    kernel: (e) => e.type === 'boot.asset' && /vmlinuz/.test(e.message),
    initramfs: (e) => e.type === 'boot.asset' && /(agent\.img|initramfs\.xz)/.test(e.message),
    report: (e) => e.type === 'boot.agent',
    config: (e) => e.type === 'boot.config' && e.data.status === 200,
  }
  return phaseTimes(events, vm, defs)
}

// The usual iPXE, kernel and agent markers, with the firmware's netboot line instead of its first output.
const { firstOutput: _firstOutput, ...BOOT_MARKERS } = DEFAULT_MARKERS
const MARKERS: Record<string, RegExp> = { netboot: /Start (PXE|HTTP Boot) over IPv4/, ...BOOT_MARKERS }

/** No DHCP lease for the guest this long after QEMU start: the path is broken, no need to wait out the hard timeout. */
const NO_LEASE_MS = 75_000

/** Rejects once `vm` has had no DHCP ACK from rackboot for NO_LEASE_MS (polled from the timeline). */
function leaseWatch(vm: Vm, rb: Rackboot): { promise: Promise<never>; cancel(): void } {
  let timer: NodeJS.Timeout | undefined
  const promise = new Promise<never>((_, reject) => {
    timer = setInterval(() => {
      if (Date.now() - vm.startedAt < NO_LEASE_MS) return
      void (async () => {
        const m = await rb.machine(vm.mac)
        const acked = m ? (await rb.events(m.id)).some((e) => e.type === 'boot.dhcp' && e.data.reply === 'ack' && e.at >= vm.startedAt) : false
        if (!acked) reject(new Error(`${vm.name}: no DHCP lease from rackboot ${NO_LEASE_MS / 1000} s after QEMU start\n--- serial tail ---\n${vm.serial.tail(20)}`))
        else clearInterval(timer)
      })().catch(() => undefined)
    }, 5_000)
  })
  promise.catch(() => undefined)
  return { promise, cancel: () => clearInterval(timer) }
}

/** Waits for `re` (failing early without a lease); on failure adds rackboot's log tail (and any extra log) to the error. */
async function waitOrExplain(vm: Vm, rb: Rackboot, re: RegExp, extra?: () => string): Promise<void> {
  const watch = leaseWatch(vm, rb)
  try {
    await Promise.race([vm.waitFor(re, HARD_TIMEOUT), watch.promise])
  } catch (err) {
    const tail = rb.log().split('\n').filter((l) => !/tftp packet|dhcp packet|"level":20/.test(l)).slice(-25).join('\n')
    ;(err as Error).message += `\n--- rackboot log tail ---\n${tail}${extra ? `\n--- relay ---\n${extra().split('\n').slice(-25).join('\n')}` : ''}`
    throw err
  } finally {
    watch.cancel()
  }
}

/** The install boot's checks: decision install, the stand-in's kernel and initramfs, exactly one config served. */
function assertInstalled(events: TimelineEvent[], vm: Vm): void {
  const plans = events.filter((e) => e.type === 'boot.script' && e.at >= vm.startedAt && e.data.decision !== undefined)
  assert.equal(plans[0]?.data.decision, 'install', JSON.stringify(plans))
  assert.ok(events.some((e) => e.type === 'boot.asset' && /talos\/v1\.13\.9\/amd64\/vmlinuz/.test(e.message) && e.at >= vm.startedAt), 'the Talos kernel was downloaded')
  assert.ok(events.some((e) => e.type === 'boot.asset' && /talos\/v1\.13\.9\/amd64\/initramfs\.xz/.test(e.message) && e.at >= vm.startedAt), 'the Talos initramfs was downloaded')
  const served = events.filter((e) => e.type === 'boot.config' && e.data.status === 200 && e.at >= vm.startedAt)
  assert.equal(served.length, 1, JSON.stringify(events.filter((e) => e.type === 'boot.config')))
}

async function uefiFlow(t: TestContext, mode: 'uefi' | 'uefi-http'): Promise<void> {
  if (await skipUnlessVm(t, { mode, agent: true, fakeTalos: true, programs: ['radvd', 'curl'] })) return
  // debug: rackboot logs each HTTP request (the firmware's download of ipxe.efi) for the phases.
  const rb = await startRackboot(t, { settings: { log: { level: 'debug' } } })
  const http = mode === 'uefi-http'
  const n = http ? 0x71 : 0x73
  const mac = `52:54:00:1a:b0:${n.toString(16)}`
  const serial = http ? 'LAB-SERIAL-UEFI-HTTP' : 'LAB-SERIAL-UEFI-PXE'
  const smbios = { uuid: `8c3f5a7e-1b2d-4c6e-9f01-23456789ab${n.toString(16)}`, serial, manufacturer: 'LAB', product: 'test' }
  const disks = [{ sizeMiB: 64, serial: `DISK-${mode.toUpperCase()}-1` }]

  // 1. Unknown machine: OVMF HTTP boot (arch 16) -> ipxe.efi over HTTP, or OVMF PXE (arch 7) -> ipxe.efi over TFTP;
  //    then iPXE -> script -> agent -> discovered.
  const vm1 = await rb.lab.startVm({ mode, mac, smbios, disks, hardTimeoutMs: HARD_TIMEOUT, name: `${mode}-discover` })
  await waitOrExplain(vm1, rb, /rackboot-agent: report sent/)
  await vm1.waitForExit(60_000).catch(() => vm1.stop())
  const m = await rb.machine(mac)
  assert.ok(m, 'the machine is in the inventory')
  assert.equal(m.state, 'discovered')
  assert.equal(m.firmware, 'uefi')
  assert.equal(m.serial, serial)
  assert.ok(m.hardware?.disks?.some((d) => d.serial === disks[0]!.serial), JSON.stringify(m.hardware?.disks))
  let events = await rb.events(m.id)
  const offer = events.find((e) => e.type === 'boot.dhcp' && e.at >= vm1.startedAt && e.data.ipxe !== true && e.data.bootFile)
  const tftp = events.filter((e) => e.type === 'boot.tftp' && e.at >= vm1.startedAt)
  if (http) {
    assert.match(String(offer?.data.bootFile), /^http:\/\/.*ipxe\.efi$/, `the HTTP boot offer names ipxe.efi by URL: ${JSON.stringify(offer)}`)
    assert.equal(tftp.length, 0, `HTTP boot uses no TFTP: ${JSON.stringify(tftp)}`)
    assert.ok(vm1.serial.find(/Start HTTP Boot over IPv4/), 'OVMF took its HTTP boot path')
  } else {
    assert.match(String(offer?.data.bootFile), /(^|\/)ipxe\.efi$/, `the PXE offer names ipxe.efi: ${JSON.stringify(offer)}`)
    assert.ok(tftp.some((e) => e.data.file === 'ipxe.efi' && e.data.ok === true), `ipxe.efi came over rackboot's TFTP: ${JSON.stringify(tftp)}`)
    assert.ok(vm1.serial.find(/Start PXE over IPv4/), 'OVMF took its PXE path')
  }
  const nbp = (vm: Vm): Record<string, number | null> => (http ? { nbpHttp: httpRequestAt(rb.log(), /ipxe\.efi/, vm) } : {})
  const discovery: Record<string, number | null> = { ...phases(events, vm1), ...nbp(vm1), ...vm1.timeline(MARKERS) }
  t.diagnostic(`${mode} discovery phases (ms since QEMU start): ${JSON.stringify(discovery)}`)
  for (const phase of ['dhcp', http ? 'nbpHttp' : 'nbpTftp', 'script', 'kernel', 'initramfs', 'report']) assert.ok(discovery[phase] != null, `${phase} is on the timeline`)

  // 2. Accepted and allocated: the next boot the same way installs (the stand-in fetches its config).
  await allocateForInstall(rb, { mac, serial, profile: `w-${mode}`, arch: 'amd64', kernelArgs: ['console=ttyS0,115200'] })
  const vm2 = await rb.lab.startVm({ mode, mac, smbios, disks, hardTimeoutMs: HARD_TIMEOUT, name: `${mode}-install` })
  await waitOrExplain(vm2, rb, /fake-talos: config fetched/)
  t.diagnostic(`${mode} fake Talos: ${vm2.serial.find(/fake-talos: config fetched/)?.line ?? ''}`)
  await vm2.waitForExit(60_000).catch(() => vm2.stop())
  events = await rb.events(m.id)
  assertInstalled(events, vm2)
  t.diagnostic(`${mode} install phases (ms since QEMU start): ${JSON.stringify({ ...phases(events, vm2), ...nbp(vm2), ...vm2.timeline(MARKERS) })}`)
}

async function relayedFlow(t: TestContext): Promise<void> {
  if (await skipUnlessVm(t, { mode: 'bios', agent: true, fakeTalos: true, programs: ['radvd', 'curl', 'dnsmasq'] })) return
  let octet = 0
  const rb = await startRackboot(t, {
    settings: async (lab) => {
      octet = await pickRelayOctet(lab)
      const y = `198.18.${octet}`
      return {
        dhcp: {
          mode: 'full', interface: lab.serverInterface, serverAddress: lab.serverIp,
          subnets: [
            { subnet: lab.subnet, rangeStart: lab.address(100), rangeEnd: lab.address(199), routers: [lab.serverIp], leaseSeconds: 600 },
            // The relayed segment: chosen by the relay's giaddr (y.1), its router the relay.
            { subnet: `${y}.0/24`, rangeStart: `${y}.50`, rangeEnd: `${y}.99`, routers: [`${y}.1`], leaseSeconds: 600 },
          ],
        },
      }
    },
  })
  const seg = await createRelaySegment(t, rb.lab, { octet })
  const mac = '52:54:00:1a:b0:72'
  const serial = 'LAB-SERIAL-RELAYED'
  const smbios = { uuid: '8c3f5a7e-1b2d-4c6e-9f01-23456789ab72', serial, manufacturer: 'LAB', product: 'test' }
  const disks = [{ sizeMiB: 64, serial: 'DISK-RELAYED-1' }]

  // 1. Discovery through the relay, no router advertising on the segment: iPXE waits for IPv6, and says so.
  const vm1 = await seg.startVm({ mode: 'bios', mac, smbios, disks, hardTimeoutMs: HARD_TIMEOUT, name: 'relayed-discover' })
  await waitOrExplain(vm1, rb, /rackboot-agent: report sent/, seg.relayLog)
  await vm1.waitForExit(60_000).catch(() => vm1.stop())
  const m = await rb.machine(mac)
  assert.ok(m, 'the machine is in the inventory')
  assert.equal(m.state, 'discovered')
  assert.equal(m.firmware, 'bios')
  let events = await rb.events(m.id)
  const acks = events.filter((e) => e.type === 'boot.dhcp' && e.data.reply === 'ack' && e.at >= vm1.startedAt)
  assert.ok(acks.length > 0, JSON.stringify(events.filter((e) => e.type === 'boot.dhcp')))
  for (const ack of acks) {
    assert.equal(ack.data.relay, seg.relayIp, `relayed with giaddr ${seg.relayIp}: ${JSON.stringify(ack.data)}`)
    assert.equal(ack.data.subnet, seg.subnet, `the giaddr chose the relayed subnet: ${JSON.stringify(ack.data)}`)
    assert.match(String(ack.data.ip), new RegExp(`^${seg.address(0).replace(/0$/, '').replace(/\./g, '\\.')}\\d+$`), JSON.stringify(ack.data))
  }
  assert.ok(m.hardware?.nics?.some((n) => n.mac === mac), JSON.stringify(m.hardware?.nics))
  const discovery = { ...phases(events, vm1), ...vm1.timeline(MARKERS) }
  t.diagnostic(`relayed bios discovery phases, no RAs (ms since QEMU start): ${JSON.stringify(discovery)}`)
  const slow = events.find((e) => e.type === 'boot.script' && e.data.slow === true && e.at >= vm1.startedAt)
  assert.ok(slow, `without router advertisements iPXE waits for IPv6 and the timeline says so:\n${events.filter((e) => e.at >= vm1.startedAt).map((e) => `${e.type}: ${e.message}`).join('\n')}`)
  assert.equal(slow.data.relayed, true, JSON.stringify(slow.data))
  assert.match(slow.message, /iPXE asked for its script \d+\.\d s after its DHCP lease \(relayed segment\)/)
  t.diagnostic(`relayed timeline: ${slow.message}`)

  // 2. Allocated, radvd on the segment: the install boot goes through the relay without iPXE's IPv6 wait.
  await allocateForInstall(rb, { mac, serial, profile: 'w-relayed', arch: 'amd64', kernelArgs: ['console=ttyS0,115200'] })
  await seg.startRouterAdverts()
  const vm2 = await seg.startVm({ mode: 'bios', mac, smbios, disks, hardTimeoutMs: HARD_TIMEOUT, name: 'relayed-install' })
  await waitOrExplain(vm2, rb, /fake-talos: config fetched/, seg.relayLog)
  t.diagnostic(`relayed fake Talos: ${vm2.serial.find(/fake-talos: config fetched/)?.line ?? ''}`)
  await vm2.waitForExit(60_000).catch(() => vm2.stop())
  events = await rb.events(m.id)
  assertInstalled(events, vm2)
  const install: Record<string, number | null> = { ...phases(events, vm2), ...vm2.timeline(MARKERS) }
  t.diagnostic(`relayed bios install phases, radvd on the segment (ms since QEMU start): ${JSON.stringify(install)}`)
  assert.ok(events.filter((e) => e.type === 'boot.dhcp' && e.at >= vm2.startedAt).every((e) => e.data.relay === seg.relayIp), 'every DHCP exchange went through the relay')
  assert.ok(!events.some((e) => e.type === 'boot.script' && e.data.slow === true && e.at >= vm2.startedAt), 'with RAs on the segment iPXE does not wait')
  assert.ok(install.script! - install.ipxeAck! < 8_000, `iPXE waited for IPv6 despite radvd: ${JSON.stringify(install)}`)
}

describe('boot matrix: UEFI HTTP, a relayed segment, UEFI PXE install; rackboot the only server', { concurrency: 2 }, () => {
  test('UEFI HTTP boot: OVMF (arch 16) -> ipxe.efi over HTTP -> iPXE -> agent -> discovered; allocated -> Talos stand-in fetches its config', { timeout: 3 * HARD_TIMEOUT }, async (t) => {
    await uefiFlow(t, 'uefi-http')
  })

  // boot-flow.test.ts discovers over OVMF PXE; this one installs that way too.
  test('UEFI PXE: OVMF (arch 7) -> ipxe.efi over TFTP -> iPXE -> agent -> discovered; allocated -> Talos stand-in fetches its config', { timeout: 3 * HARD_TIMEOUT }, async (t) => {
    await uefiFlow(t, 'uefi')
  })

  test('relayed segment: BIOS iPXE behind dnsmasq --dhcp-relay in its own netns, subnet by giaddr -> discovered (timeline shows the IPv6 wait without RAs); with radvd -> installs', { timeout: 3 * HARD_TIMEOUT }, async (t) => {
    await relayedFlow(t)
  })
})
