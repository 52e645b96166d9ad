// The harness's network-boot modes end to end, with dnsmasq (Debian dnsmasq-base) as the reference boot server
// (DHCP, TFTP of Debian's ipxe.efi, router advertisements) and the sink serving an iPXE script that boots the
// discovery agent: BIOS through the NIC's iPXE ROM, UEFI through OVMF's own PXE and TFTP ipxe.efi (lab.md).
// These prove the QEMU command lines the rackboot end-to-end tests use.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { AgentReport } from '../../src/agent/index.js'
import { createVmLab, skipUnlessVm, testAgentAssets, type BootMode } from '../e2e/support/index.js'

const HARD_TIMEOUT = 240_000

describe('PXE boots through the harness', { concurrency: 2 }, () => {
  for (const mode of ['bios', 'uefi'] as const satisfies BootMode[]) {
    test(`${mode}: firmware PXE -> iPXE -> HTTP -> the agent reports`, { timeout: 2 * HARD_TIMEOUT }, async (t) => {
      if (await skipUnlessVm(t, { mode, agent: true, programs: ['dnsmasq'] })) return
      const assets = await testAgentAssets()
      const lab = await createVmLab(t, { ipv6: true })
      const machine = `pxe-${mode}`
      const script = [
        '#!ipxe',
        `kernel \${SINK}/agent/vmlinuz initrd=agent.img console=ttyS0,115200 rackboot.report=\${SINK}/report rackboot.machine=${machine} BOOTIF=01-\${net0/mac:hexhyp}`,
        'initrd ${SINK}/agent/agent.img',
        'boot',
        '',
      ].join('\n')
      const sink = await lab.startSink({
        files: { '/agent/vmlinuz': assets.kernel, '/agent/agent.img': assets.initramfs },
        routes: [{ method: 'GET', path: '/boot.ipxe', responses: [{ body: script }] }],
      })
      await lab.startDnsmasq({ ipxeScriptUrl: sink.url('/boot.ipxe') })
      const uuid = mode === 'bios' ? '11111111-2222-4333-8444-555555555501' : '11111111-2222-4333-8444-555555555502'
      const vm = await lab.startVm({ mode, smbios: { uuid, serial: `SER-${mode}` }, disks: [{ sizeMiB: 16 }], hardTimeoutMs: HARD_TIMEOUT })
      await vm.waitFor(/rackboot-agent: report sent/, HARD_TIMEOUT)
      await vm.waitForExit(30_000)

      const report = sink.requests.find((r) => r.path === '/report')!.json<AgentReport>()
      assert.equal(report.machineId, machine)
      assert.equal(report.smbios.uuid, uuid)
      assert.ok(report.nics.some((n) => n.mac === vm.mac && n.link))
      const at = (path: string) => {
        const r = sink.requests.find((x) => x.path === path)
        return r ? r.at - vm.startedAt : null
      }
      const served = { scriptRequested: at('/boot.ipxe'), kernelRequested: at('/agent/vmlinuz'), initrdRequested: at('/agent/agent.img') }
      assert.ok(served.scriptRequested !== null && served.kernelRequested !== null && served.initrdRequested !== null)
      const serial = vm.timeline()
      if (mode === 'uefi') assert.ok(serial.ipxe !== null, 'ipxe.efi printed its banner on the serial port')
      const phases = { ...served, ...serial }
      t.diagnostic(`${mode} phases (ms since QEMU start): ${JSON.stringify(phases)}`)
    })
  }
})
