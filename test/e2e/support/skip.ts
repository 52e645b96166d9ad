// Why a VM test cannot run here, or null. Tests call these and skip loudly with the reason.
import { existsSync } from 'node:fs'
import { netnsSkipReason, which } from '../../support/netns.js'
import { testAgentAssets, testFakeTalosAssets } from './assets.js'
import { IPXE_ROM_DIR, OVMF_CODE, OVMF_VARS, type BootMode } from './vm.js'

/** Root, network namespaces, QEMU and the firmware the mode needs. */
export function vmSkipReason(mode: BootMode = 'direct', programs: string[] = []): string | null {
  const base = netnsSkipReason(['qemu-system-x86_64', ...programs])
  if (base) return base.includes('qemu-system') ? `${base} (Debian package qemu-system-x86)` : base
  if (mode === 'bios' && !existsSync(join(IPXE_ROM_DIR, 'efi-virtio.rom'))) return `missing ${IPXE_ROM_DIR}/efi-virtio.rom (Debian package ipxe-qemu)`
  if ((mode === 'uefi' || mode === 'uefi-http') && (!existsSync(OVMF_CODE) || !existsSync(OVMF_VARS))) return `missing ${OVMF_CODE} (Debian package ovmf)`
  if (mode === 'uefi' && !existsSync('/usr/lib/ipxe/ipxe.efi')) return 'missing /usr/lib/ipxe/ipxe.efi (Debian package ipxe)'
  return null
}

function join(a: string, b: string): string {
  return `${a}/${b}`
}

/** Null when the agent assets (Debian kernel + busybox initramfs) are built or can be; else why not. */
export async function agentAssetsSkipReason(): Promise<string | null> {
  try {
    await testAgentAssets()
    return null
  } catch (err) {
    return `cannot build the agent image (Debian kernel .deb via apt, busybox-static, kmod): ${(err as Error).message}`
  }
}

export async function fakeTalosSkipReason(): Promise<string | null> {
  try {
    await testFakeTalosAssets()
    return null
  } catch (err) {
    return `cannot build the Talos stand-in image: ${(err as Error).message}`
  }
}

interface SkipContext {
  skip(message?: string): void
}

/** Skips (saying why) and returns true when the VM test cannot run: `if (await skipUnlessVm(t, { mode: 'bios', agent: true })) return`. */
export async function skipUnlessVm(
  t: SkipContext,
  options: { mode?: BootMode; programs?: string[]; agent?: boolean; fakeTalos?: boolean } = {},
): Promise<boolean> {
  let reason = vmSkipReason(options.mode ?? 'direct', options.programs ?? [])
  if (!reason && options.agent) reason = await agentAssetsSkipReason()
  if (!reason && options.fakeTalos) reason = await fakeTalosSkipReason()
  if (reason) {
    console.error(`# SKIP: ${reason}`)
    t.skip(reason)
    return true
  }
  return false
}

export { which }
