// The discovery agent's boot assets: Debian's kernel and a busybox initramfs whose /init loads the NIC and disk
// drivers, takes a DHCP lease, collects the hardware report and POSTs it to rackboot (see sh/agent-init.sh). Built
// for amd64 (agent/) or arm64 (agent/arm64/); the scripts are the same shell for both.
import { join } from 'node:path'
import type { Logger } from '../log.js'
import type { DebArch } from './apt.js'
import type { ProgressFn } from './debian.js'
import { buildImage, type BuiltAssets } from './image.js'
import { AGENT_VERSION, agentInitScript, collectScript, ipv6Script, udhcpcScript, wipeScript } from './scripts.js'

/** Drivers every agent image carries: QEMU's devices (the tests) and the common PC ones. */
export const AGENT_MODULES = ['virtio_pci', 'virtio_net', 'virtio_blk', 'virtio_scsi', 'sd_mod', 'e1000', 'e1000e', 'nvme', 'ahci'] as const

/**
 * Drivers for server hardware, carried when the kernel has them: Intel, Broadcom and Mellanox NICs, SAS/RAID HBAs.
 * Chips that need firmware from outside the kernel package still fail to probe (no firmware in the image).
 */
export const AGENT_OPTIONAL_MODULES = ['ata_piix', 'igb', 'ixgbe', 'i40e', 'ice', 'bnxt_en', 'tg3', 'mlx5_core', 'megaraid_sas', 'mpt3sas', 'smartpqi'] as const

/** Drivers found on arm64 servers only (ThunderX and HiSilicon NICs, platform AHCI), carried when present. */
export const ARM64_OPTIONAL_MODULES = ['ahci_platform', 'nicvf', 'hns3', 'xgene_enet'] as const

/**
 * The modules an image for `arch` must carry, and those it carries when the kernel has them. On arm64 only QEMU's
 * virtio NIC is required (virtio core is built in there: lab.md); every other amd64 driver is carried if Debian's
 * arm64 kernel builds it as a module.
 */
export function agentModules(arch: DebArch): { required: string[]; optional: string[] } {
  if (arch === 'amd64') return { required: [...AGENT_MODULES], optional: [...AGENT_OPTIONAL_MODULES] }
  const required = ['virtio_pci', 'virtio_net']
  const optional = [...AGENT_MODULES, ...AGENT_OPTIONAL_MODULES, ...ARM64_OPTIONAL_MODULES].filter((m) => !required.includes(m))
  return { required, optional }
}

/** Where the agent lives in the assets directory: agent/ for amd64 (as always), agent/<arch>/ for the others. */
export function agentAssetDir(arch: DebArch = 'amd64'): string {
  return arch === 'amd64' ? 'agent' : join('agent', arch)
}

export interface AgentAssetsOptions {
  /** Written: outDir/vmlinuz, outDir/agent.img (and agent.img.manifest.json, the cache record). */
  outDir: string
  /** Debian architecture (default amd64): the kernel, busybox and modules come from that architecture's packages. */
  arch?: DebArch
  /** Downloaded .debs and their unpacked trees; reused across builds. */
  cacheDir: string
  log: Logger
  onProgress?: ProgressFn
  /** Pin a kernel package (e.g. linux-image-6.1.0-56-amd64) instead of linux-image-<arch>'s current one. */
  kernelPackage?: string
  /** Extra modules to carry (must exist in the kernel). */
  extraModules?: string[]
  /** Rebuild even when a cached build matches. */
  force?: boolean
}

export type AgentAssets = BuiltAssets

export function buildAgentAssets(options: AgentAssetsOptions): Promise<AgentAssets> {
  const arch = options.arch ?? 'amd64'
  const modules = agentModules(arch)
  return buildImage({
    imageName: 'agent.img',
    outDir: options.outDir,
    cacheDir: options.cacheDir,
    log: options.log,
    onProgress: options.onProgress,
    kernelPackage: options.kernelPackage,
    arch,
    modules: [...modules.required, ...(options.extraModules ?? [])],
    optionalModules: modules.optional,
    init: agentInitScript(),
    files: [
      { path: 'bin/rackboot-collect', data: collectScript(), mode: 0o755 },
      { path: 'etc/rackboot/udhcpc.script', data: udhcpcScript(), mode: 0o755 },
      { path: 'etc/rackboot/wipe.sh', data: wipeScript() },
      { path: 'etc/rackboot/ipv6.sh', data: ipv6Script() },
      { path: 'etc/rackboot/version', data: `${AGENT_VERSION}\n` },
    ],
    force: options.force,
  })
}
