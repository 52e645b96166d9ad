// rackboot end to end with real PXE firmware: QEMU (TCG) in a network namespace, rackboot's own DHCP, TFTP and HTTP
// serving it. An unknown machine boots the discovery agent and appears discovered with its SMBIOS identity, disks
// and NICs; accepted and allocated, it boots "Talos" (a Debian kernel with a stand-in initramfs that does what Talos
// does with talos.config=) and fetches its config; installed, its next boot leaves iPXE for the disk.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { generateConfig, generateSecretsBundle } from '../../src/talos/index.js'
import { skipUnlessVm } from './support/index.js'
import { startRackboot, TALOS } from './support/rackboot.js'

const HARD_TIMEOUT = 240_000

/** ms after QEMU start at which each timeline event was recorded (the server's clock, same machine). */
function phases(events: { type: string; message: string; at: number }[], startedAt: number, after = 0): Record<string, number> {
  const out: Record<string, number> = {}
  const first = (name: string, pred: (e: { type: string; message: string }) => boolean) => {
    const e = events.find((x) => x.at >= after && pred(x))
    if (e) out[name] = e.at - startedAt
  }
  first('dhcpSeen', (e) => e.type === 'boot.dhcp')
  first('tftpDone', (e) => e.type === 'boot.tftp' && /ipxe\.efi|undionly/.test(e.message))
  first('scriptServed', (e) => e.type === 'boot.script')
  first('kernelDownloaded', (e) => e.type === 'boot.asset' && /vmlinuz/.test(e.message))
  first('initramfsDownloaded', (e) => e.type === 'boot.asset' && /(agent\.img|initramfs\.xz)/.test(e.message))
  first('reportReceived', (e) => e.type === 'boot.agent')
  first('configServed', (e) => e.type === 'boot.config')
  return out
}

describe('end to end with real PXE firmware', { concurrency: 2 }, () => {
  test('BIOS: unknown -> agent -> discovered; accepted and allocated -> Talos config fetched; installed -> boots its disk', { timeout: 3 * HARD_TIMEOUT }, async (t) => {
    if (await skipUnlessVm(t, { mode: 'bios', agent: true, fakeTalos: true, programs: ['radvd', 'curl'] })) return
    const rb = await startRackboot(t)
    const uuid = '8c3f5a7e-1b2d-4c6e-9f01-23456789ab01'
    const smbios = { uuid, serial: 'LAB-SERIAL-BIOS', manufacturer: 'LAB', product: 'test' }
    const disks = [{ sizeMiB: 64, serial: 'DISK-BIOS-1' }]
    const mac = '52:54:00:1a:b0:01'

    // 1. Unknown machine: DHCP -> iPXE (the NIC ROM) -> /boot.ipxe -> discovery agent -> report -> discovered.
    const vm1 = await rb.lab.startVm({ mode: 'bios', mac, smbios, disks, hardTimeoutMs: HARD_TIMEOUT })
    await vm1.waitFor(/rackboot-agent: report sent/, HARD_TIMEOUT)
    await vm1.waitForExit(60_000)
    const m = await rb.machine(mac)
    assert.ok(m, 'the machine is in the inventory')
    assert.equal(m.state, 'discovered')
    assert.equal(m.uuid, uuid)
    assert.equal(m.serial, 'LAB-SERIAL-BIOS')
    assert.equal(m.firmware, 'bios')
    assert.ok(m.hardware?.disks?.some((d) => d.serial === 'DISK-BIOS-1' && d.sizeBytes === 64 * 2 ** 20), JSON.stringify(m.hardware?.disks))
    assert.ok(m.hardware?.nics?.some((n) => n.mac === mac), JSON.stringify(m.hardware?.nics))
    assert.ok((m.hardware?.memory?.totalBytes ?? 0) > 100 * 2 ** 20)
    const discovery = phases(await rb.events(m.id), vm1.startedAt)
    t.diagnostic(`bios discovery phases (ms since QEMU start): ${JSON.stringify({ ...discovery, ...vm1.timeline() })}`)
    // iPXE fetches nothing until IPv6 autoconfiguration ends: within seconds with rackboot's router advertisement,
    // after ~16 s of router solicitations without one.
    assert.ok(discovery.scriptServed! - discovery.dhcpSeen! < 10_000, `iPXE waited for IPv6: ${JSON.stringify(discovery)}`)

    // 2. Accept, allocate with a profile whose base config is a real Talos config, boot again: kernel, initramfs, config.
    assert.equal((await rb.cli(['machines', 'accept', mac])).code, 0)
    const secrets = await generateSecretsBundle({ talosVersion: TALOS, rsaBits: 2048 })
    const base = generateConfig({ secrets, clusterName: 'lab', endpoint: 'https://198.18.0.10:6443', talosVersion: TALOS, role: 'worker' }).yaml
    const token = JSON.parse((await rb.cli(['tokens', 'create', 'e2e', '--scope', 'admin', '--scope', 'provision', '--scope', 'read', '--json'])).stdout).secret
    const profile = await rb.api('POST', '/profiles', token, { name: 'lab-worker', talosVersion: TALOS, arch: 'amd64', kernelArgs: ['console=ttyS0,115200'], baseConfig: base })
    assert.ok(profile.status === 201 || profile.status === 200, JSON.stringify(profile))
    const alloc = await rb.api('POST', '/allocations', token, { count: 1, selector: `serial == "LAB-SERIAL-BIOS"`, profile: 'lab-worker', idempotencyKey: 'e2e-1' })
    assert.equal(alloc.status, 201, JSON.stringify(alloc.json))
    assert.equal((await rb.machine(mac))?.state, 'provisioning')

    const vm2 = await rb.lab.startVm({ mode: 'bios', mac, smbios, disks, hardTimeoutMs: HARD_TIMEOUT })
    const fetched = await vm2.waitFor(/fake-talos: config fetched/, HARD_TIMEOUT)
    t.diagnostic(`fake Talos: ${fetched.line}`)
    await vm2.waitForExit(60_000)
    const events = await rb.events(m.id)
    const served = events.filter((e) => e.type === 'boot.config' && e.data.status === 200)
    assert.equal(served.length, 1, JSON.stringify(events.filter((e) => e.type === 'boot.config')))
    assert.ok(events.some((e) => e.type === 'boot.asset' && /talos\/v1\.13\.9\/amd64\/initramfs\.xz/.test(e.message) && e.at >= vm2.startedAt))
    const install = phases(events, vm2.startedAt, vm2.startedAt)
    t.diagnostic(`bios install phases (ms since QEMU start): ${JSON.stringify({ ...install, ...vm2.timeline() })}`)

    // 3. Installed (what Talos would report), the next boot gets `exit`: iPXE hands back to the firmware's disk.
    const inv = await openSqliteInventory({ file: join(rb.dataDir, 'rackboot.db') })
    assert.equal(await inv.machines.setState(m.id, 'provisioning', 'installed', Date.now()), true)
    await inv.close()
    const vm3 = await rb.lab.startVm({ mode: 'bios', mac, smbios, disks, hardTimeoutMs: 90_000 })
    for (let i = 0; i < 240; i++) {
      const ev = await rb.events(m.id)
      if (ev.some((e) => e.type === 'boot.script' && e.at >= vm3.startedAt)) break
      await new Promise((r) => setTimeout(r, 500))
    }
    const last = (await rb.events(m.id)).filter((e) => e.type === 'boot.script' && e.at >= vm3.startedAt)
    assert.equal(last[0]?.data.decision, 'local-disk', JSON.stringify(last))
    await vm3.stop()
  })

  test('UEFI: OVMF PXE -> TFTP ipxe.efi from rackboot -> iPXE -> agent -> discovered', { timeout: 2 * HARD_TIMEOUT }, async (t) => {
    if (await skipUnlessVm(t, { mode: 'uefi', agent: true, programs: ['radvd'] })) return
    const rb = await startRackboot(t)
    const uuid = '8c3f5a7e-1b2d-4c6e-9f01-23456789ab02'
    const mac = '52:54:00:1a:b0:02'
    const vm = await rb.lab.startVm({ mode: 'uefi', mac, smbios: { uuid, serial: 'LAB-SERIAL-UEFI' }, disks: [{ sizeMiB: 32, serial: 'DISK-UEFI-1' }], hardTimeoutMs: HARD_TIMEOUT })
    await vm.waitFor(/rackboot-agent: report sent/, HARD_TIMEOUT)
    await vm.waitForExit(60_000)
    const m = await rb.machine(mac)
    assert.equal(m?.state, 'discovered')
    assert.equal(m?.uuid, uuid)
    assert.equal(m?.firmware, 'uefi')
    assert.ok(m?.hardware?.disks?.some((d) => d.serial === 'DISK-UEFI-1'))
    const events = await rb.events(m!.id)
    const tftp = events.filter((e) => e.type === 'boot.tftp')
    assert.ok(tftp.some((e) => e.data.file === 'ipxe.efi' && e.data.ok === true), `ipxe.efi came over rackboot's TFTP: ${JSON.stringify(tftp)}`)
    t.diagnostic(`uefi discovery phases (ms since QEMU start): ${JSON.stringify({ ...phases(events, vm.startedAt), ...vm.timeline() })}`)
  })
})
