// End-to-end test harness: network lab (netns, bridge, taps, server end), QEMU guests under TCG with timed serial
// logs, a request-recording HTTP sink, boot assets (discovery agent, Talos stand-in) and skip helpers.
//
//   test('a new machine PXE-boots the agent', { timeout: 300_000 }, async (t) => {
//     if (await skipUnlessVm(t, { mode: 'bios', agent: true })) return
//     const lab = await createVmLab(t, { ipv6: true })          // torn down by t.after, never throws
//     await installAgentAssets(assetsDir)
//     const server = lab.spawn(['node', '--import', 'tsx', 'src/main.ts', 'serve', '--set', `dhcp.serverAddress=${lab.serverIp}`, ...], { cwd })
//     const vm = await lab.startVm({ mode: 'bios', smbios: { uuid, serial }, disks: [{ sizeMiB: 64 }], hardTimeoutMs: 240_000 })
//     await vm.waitFor(/rackboot-agent: report sent/, 240_000)   // rejects early if QEMU dies, with the serial tail
//     t.diagnostic(JSON.stringify(vm.timeline()))                  // ms since QEMU start per boot phase
//   })
//
// At most MAX_VMS (2) guests run at once on the machine, across test files: startVm waits for a slot.
export { createVmLab, type VmLab, type VmLabOptions } from './lab.js'
export { AAVMF_CODE, AAVMF_VARS, DEFAULT_MARKERS, qemuArgs, qemuBinary, randomMac, type BootMode, type VmArch, type DiskOptions, type SmbiosOptions, type Vm, type VmExit, type VmOptions } from './vm.js'
export { SerialLog, cleanSerial, type SerialLine, type SerialMatch } from './serial-log.js'
export { acquireVmSlot, MAX_VMS, type VmSlot } from './slots.js'
export type { Sink, SinkRequest, SinkRoute, SinkResponse } from './sink.js'
export { installAgentAssets, installFakeTalos, installGrubAssets, testAgentAssets, testFakeTalosAssets, testCacheDir } from './assets.js'
export { createRelaySegment, pickRelayOctet, type RelaySegment } from './relay.js'
export { agentAssetsSkipReason, fakeTalosSkipReason, skipUnlessVm, vmSkipReason } from './skip.js'
