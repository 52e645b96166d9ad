// Per-machine GRUB configs, as MAAS does them: GRUB asks for grub.cfg-01-<mac> (over TFTP by itself, over HTTP
// from the bootstrap), and the lifecycle decides what that machine boots now, exactly as for /boot.ipxe: the same
// plan (identity checked against the asking address, tokens minted only there), the same target, rendered for GRUB.
import { isMac, normalizeMac } from '../../inventory/index.js'
import { RackbootError } from '../../errors.js'
import { createBootTargets, type BootRoutesDeps, type BootTarget } from '../plugins/boot.js'
import { grubBootstrapConfig, grubHoldConfig, grubHttpPath, grubKernelConfig, grubLocalConfig } from './config.js'

/** Where GRUB's per-machine configs live over HTTP: `${base}${GRUB_HTTP_DIR}/grub.cfg-01-<mac>`. */
export const GRUB_HTTP_DIR = '/grub'

export interface GrubRequest {
  /** The MAC in the file name GRUB asked for (aa-bb-... or aa:bb:...): a claim the boot service checks. */
  mac: string
  /** Asked again after a wait (the backoff grows with it). */
  attempt?: number
  /** GRUB's ${grub_cpu} (x86_64, i386, arm64...) and ${grub_platform} (efi, pc), when the bootstrap sent them. */
  cpu?: string | null
  platform?: string | null
}

export interface GrubConfigs {
  /** The config for the machine whose MAC GRUB names, asked from `clientIp`; `base` is rackboot's http:// URL. */
  forMac(request: GrubRequest, clientIp: string | null, base: string): Promise<string>
  /** The bootstrap: asks for the per-machine config by ${net_default_mac}. */
  bootstrap(base: string): string
}

/** The MAC as GRUB writes it in file names: lowercase, dashes. */
export function grubMac(mac: string): string {
  if (!isMac(mac)) throw new RackbootError('RB_ERR_VALIDATION', `not a MAC address: ${JSON.stringify(mac.slice(0, 64))}`)
  return normalizeMac(mac).replaceAll(':', '-')
}

/** GRUB's ${grub_platform} in the boot service's terms (iPXE's ${platform}: efi, pcbios). */
function platformFact(platform: string | null | undefined): string | null {
  if (platform === 'pc') return 'pcbios'
  return platform === 'efi' ? 'efi' : null
}

export function createGrubConfigs(deps: BootRoutesDeps): GrubConfigs {
  const targets = createBootTargets(deps)

  function perMachineUrl(base: string, mac: string, attempt: number): string {
    return grubHttpPath(`${base}${GRUB_HTTP_DIR}/grub.cfg-01-${mac}${attempt > 0 ? `?attempt=${attempt}` : ''}`)
  }

  function render(target: BootTarget, base: string, mac: string): string {
    switch (target.kind) {
      case 'local-disk':
        return grubLocalConfig(target.message)
      case 'hold':
        return grubHoldConfig({ message: target.message, sleepSeconds: target.sleepSeconds, retry: perMachineUrl(base, mac, target.retryAttempt) })
      case 'kernel':
        return grubKernelConfig({
          banner: target.banner,
          kernelUrl: target.kernelUrl,
          initrdUrl: target.initrdUrl,
          // The MAC GRUB asked with is the NIC it booted from (and the network vouched for it, or this is no kernel).
          args: [...target.args, ...(target.bootIf ? [`BOOTIF=01-${mac}`] : [])],
          retry: perMachineUrl(base, mac, target.retryAttempt),
        })
    }
  }

  return {
    async forMac(request, clientIp, base) {
      const mac = grubMac(request.mac)
      const attempt = request.attempt ?? 0
      // The MAC is a claim from the network: the boot service believes it only as far as the asking address vouches.
      const plan = await deps.boot.plan({ mac, uuid: null, serial: null, manufacturer: null, product: null, buildArch: request.cpu ?? null, platform: platformFact(request.platform) }, clientIp)
      return render(targets.target(plan, base, attempt, { httpOnly: true }), base, mac)
    },
    bootstrap(base) {
      return grubBootstrapConfig(`${grubHttpPath(`${base}${GRUB_HTTP_DIR}`)}/grub.cfg-01-\${net_default_mac}?cpu=\${grub_cpu}&platform=\${grub_platform}`)
    },
  }
}
