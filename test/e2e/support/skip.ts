// Why a VM test cannot run here, or null. Tests call these and skip loudly with the reason.
import { existsSync } from 'node:fs'
import { netnsSkipReason, which } from '../../support/netns.js'
import type { DebArch } from '../../../src/agent/index.js'
import { testAgentAssets, testFakeTalosAssets } from './assets.js'
import { AAVMF_CODE, AAVMF_VARS, IPXE_ROM_DIR, OVMF_CODE, OVMF_VARS, isUefiMode, qemuBinary, type BootMode, type VmArch } from './vm.js'

/** Root, network namespaces, QEMU and the firmware the mode (and architecture) needs. */
export function vmSkipReason(mode: BootMode = 'direct', programs: string[] = [], arch: VmArch = 'x86_64'): string | null {
  if (arch === 'arm64') {
    const base = netnsSkipReason([qemuBinary('arm64'), ...programs])
    if (base) return base.includes('qemu-system') ? `${base} (Debian package qemu-system-arm)` : base
    if (mode === 'bios') return "arm64 has no 'bios' mode"
    if (isUefiMode(mode) && (!existsSync(AAVMF_CODE) || !existsSync(AAVMF_VARS))) return `missing ${AAVMF_CODE} (Debian package qemu-efi-aarch64)`
    return null
  }
  const base = netnsSkipReason(['qemu-system-x86_64', ...programs])
  if (base) return base.includes('qemu-system') ? `${base} (Debian package qemu-system-x86)` : base
  if (mode === 'bios' && !existsSync(join(IPXE_ROM_DIR, 'efi-virtio.rom'))) return `missing ${IPXE_ROM_DIR}/efi-virtio.rom (Debian package ipxe-qemu)`
  if (isUefiMode(mode) && (!existsSync(OVMF_CODE) || !existsSync(OVMF_VARS))) return `missing ${OVMF_CODE} (Debian package ovmf)`
  if ((mode === 'uefi' || mode === 'uefi-pxe6') && !existsSync('/usr/lib/ipxe/ipxe.efi')) return 'missing /usr/lib/ipxe/ipxe.efi (Debian package ipxe)'
  return null
}

function join(a: string, b: string): string {
  return `${a}/${b}`
}

/** Null when the agent assets (Debian kernel + busybox initramfs) are built or can be; else why not. */
export async function agentAssetsSkipReason(arch: DebArch = 'amd64'): Promise<string | null> {
  try {
    await testAgentAssets(arch)
    return null
  } catch (err) {
    const what = arch === 'amd64' ? 'Debian kernel .deb via apt, busybox-static, kmod' : `Debian ${arch} kernel and busybox-static .debs via a private ${arch} apt`
    return `cannot build the ${arch === 'amd64' ? '' : `${arch} `}agent image (${what}): ${(err as Error).message}`
  }
}

export async function fakeTalosSkipReason(arch: DebArch = 'amd64'): Promise<string | null> {
  try {
    await testFakeTalosAssets(arch)
    return null
  } catch (err) {
    return `cannot build the ${arch === 'amd64' ? '' : `${arch} `}Talos stand-in image: ${(err as Error).message}`
  }
}

interface SkipContext {
  skip(message?: string): void
}

/** Skips (saying why) and returns true when the VM test cannot run: `if (await skipUnlessVm(t, { mode: 'bios', agent: true })) return`. */
export async function skipUnlessVm(
  t: SkipContext,
  options: { mode?: BootMode; arch?: VmArch; programs?: string[]; agent?: boolean; fakeTalos?: boolean } = {},
): Promise<boolean> {
  let reason = vmSkipReason(options.mode ?? 'direct', options.programs ?? [], options.arch ?? 'x86_64')
  const debArch: DebArch = options.arch === 'arm64' ? 'arm64' : 'amd64'
  if (!reason && options.agent) reason = await agentAssetsSkipReason(debArch)
  if (!reason && options.fakeTalos) reason = await fakeTalosSkipReason(debArch)
  if (reason) {
    console.error(`# SKIP: ${reason}`)
    t.skip(reason)
    return true
  }
  return false
}

export { which }
