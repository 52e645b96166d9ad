// The discovery agent's boot assets: Debian's kernel and a busybox initramfs whose /init loads the NIC and disk
// drivers, takes a DHCP lease, collects the hardware report and POSTs it to rackboot (see sh/agent-init.sh).
import type { Logger } from '../log.js'
import type { ProgressFn } from './debian.js'
import { buildImage, type BuiltAssets } from './image.js'
import { AGENT_VERSION, agentInitScript, collectScript, udhcpcScript, wipeScript } from './scripts.js'

/** Drivers every agent image carries: QEMU's devices (the tests) and the common PC ones. */
export const AGENT_MODULES = ['virtio_pci', 'virtio_net', 'virtio_blk', 'virtio_scsi', 'sd_mod', 'e1000', 'e1000e', 'nvme', 'ahci'] as const

/**
 * Drivers for server hardware, carried when the kernel has them: Intel, Broadcom and Mellanox NICs, SAS/RAID HBAs.
 * Chips that need firmware from outside the kernel package still fail to probe (no firmware in the image).
 */
export const AGENT_OPTIONAL_MODULES = ['ata_piix', 'igb', 'ixgbe', 'i40e', 'ice', 'bnxt_en', 'tg3', 'mlx5_core', 'megaraid_sas', 'mpt3sas', 'smartpqi'] as const

export interface AgentAssetsOptions {
  /** Written: outDir/vmlinuz, outDir/agent.img (and agent.img.manifest.json, the cache record). */
  outDir: string
  /** Downloaded .debs and their unpacked trees; reused across builds. */
  cacheDir: string
  log: Logger
  onProgress?: ProgressFn
  /** Pin a kernel package (e.g. linux-image-6.1.0-56-amd64) instead of linux-image-amd64's current one. */
  kernelPackage?: string
  /** Extra modules to carry (must exist in the kernel). */
  extraModules?: string[]
  /** Rebuild even when a cached build matches. */
  force?: boolean
}

export type AgentAssets = BuiltAssets

export function buildAgentAssets(options: AgentAssetsOptions): Promise<AgentAssets> {
  return buildImage({
    imageName: 'agent.img',
    outDir: options.outDir,
    cacheDir: options.cacheDir,
    log: options.log,
    onProgress: options.onProgress,
    kernelPackage: options.kernelPackage,
    modules: [...AGENT_MODULES, ...(options.extraModules ?? [])],
    optionalModules: AGENT_OPTIONAL_MODULES,
    init: agentInitScript(),
    files: [
      { path: 'bin/rackboot-collect', data: collectScript(), mode: 0o755 },
      { path: 'etc/rackboot/udhcpc.script', data: udhcpcScript(), mode: 0o755 },
      { path: 'etc/rackboot/wipe.sh', data: wipeScript() },
      { path: 'etc/rackboot/version', data: `${AGENT_VERSION}\n` },
    ],
    force: options.force,
  })
}
