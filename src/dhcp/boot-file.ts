// Which boot file a network-boot client gets. Pure: facts and configuration in, a choice with its reason out.
import { archCpuName, type BootFamily, type ClientArch } from './client-arch.js'
import type { RequestFacts } from './facts.js'

export interface BootFileConfig {
  /** Loader per family (settings.dhcp.bootFiles); a family without a name, or named `none`, is not served. */
  bootFiles: Partial<Record<BootFamily, string>>
  /** Per option-93 code overrides, e.g. { "7": "snponly.efi" } or { "19": "none" } (settings.dhcp.archBootFiles). */
  archBootFiles: Record<string, string>
  /** The boot script URL given to iPXE (iPXE expands the ${...} in it). */
  scriptUrl: string
  /** The http:// URL of a loader (a name from the settings above) for a UEFI HTTP boot client. */
  httpBootUrl(loader: string, arch: ClientArch): string
  /** siaddr: the TFTP server. */
  nextServer: string | null
}

/** Per-machine overrides from the lifecycle. */
export interface BootOverride {
  bootFile?: string
  nextServer?: string
}

export type BootChoice =
  | { kind: 'none'; reason: string }
  /** `setting` names where the file came from (absent for a machine override). */
  | { kind: 'tftp'; file: string; nextServer: string | null; reason: string; setting?: string }
  | { kind: 'ipxe-script'; url: string; nextServer: string | null; reason: string }
  /**
   * UEFI HTTP boot: the reply must also carry option 60 "HTTPClient". `loader` is the file behind the URL when
   * rackboot serves it, and `setting` where its name came from.
   */
  | { kind: 'http'; url: string; reason: string; loader?: string; setting?: string }

/** A boot-file setting with this value switches that firmware off. */
export const NO_BOOT_FILE = 'none'

const isUrl = (s: string): boolean => /^[a-z][a-z0-9+.-]*:\/\//i.test(s)

type Configured = { file: string; setting: string; byCode: boolean } | { none: string }

/** The loader the settings name for an architecture: its option 93 code first, then its family. */
function configuredLoader(arch: ClientArch | null, config: BootFileConfig): Configured {
  // No option 93 and no Arch in option 60: old BIOS PXE ROMs.
  const code = arch?.code ?? 0
  const name = arch?.name ?? 'x86 BIOS (no option 93)'
  const byCode = config.archBootFiles[String(code)]
  if (byCode) {
    const setting = `dhcp.archBootFiles.${code}`
    return byCode === NO_BOOT_FILE ? { none: `${setting} is ${NO_BOOT_FILE}: ${name} is not network-booted` } : { file: byCode, setting, byCode: true }
  }
  const family = arch ? arch.family : 'bios'
  if (!family) return { none: `unsupported architecture ${code} (${arch?.name ?? 'unknown'})` }
  const file = config.bootFiles[family]
  if (!file) return { none: `no boot file configured for ${family}` }
  const setting = `dhcp.bootFiles.${family}`
  if (file === NO_BOOT_FILE) return { none: `${setting} is ${NO_BOOT_FILE}: ${name} is not network-booted` }
  return { file, setting, byCode: false }
}

export function chooseBoot(facts: RequestFacts, config: BootFileConfig, override: BootOverride = {}): BootChoice {
  const nextServer = override.nextServer ?? config.nextServer
  const urlOverride = override.bootFile !== undefined && isUrl(override.bootFile) ? override.bootFile : undefined
  const fileOverride = override.bootFile !== undefined && !isUrl(override.bootFile) ? override.bootFile : undefined
  // Order matters: iPXE first (it may also say PXEClient and an EFI arch, and must never get a binary again),
  // then UEFI HTTP boot, then firmware PXE by architecture.
  if (facts.isIpxe) {
    return { kind: 'ipxe-script', url: urlOverride ?? config.scriptUrl, nextServer, reason: urlOverride ? 'ipxe: machine override' : 'ipxe: boot script' }
  }
  if (facts.clientType === 'HTTPClient' || (facts.arch?.http && facts.clientType !== 'PXEClient')) {
    if (urlOverride) return { kind: 'http', url: urlOverride, reason: 'http boot: machine override' }
    if (!facts.arch) return { kind: 'none', reason: 'http boot client without an architecture' }
    const loader = configuredLoader(facts.arch, config)
    if ('none' in loader) return { kind: 'none', reason: loader.none }
    const reason = loader.byCode ? `http boot: arch ${facts.arch.code} mapping` : `http boot: ${facts.arch.name}`
    // A URL in the settings is used as it is; a name is a loader rackboot serves under /assets.
    if (isUrl(loader.file)) return { kind: 'http', url: loader.file, reason, setting: loader.setting }
    return { kind: 'http', url: config.httpBootUrl(loader.file, facts.arch), reason, loader: loader.file, setting: loader.setting }
  }
  if (facts.clientType === 'PXEClient') {
    if (fileOverride) return { kind: 'tftp', file: fileOverride, nextServer, reason: 'pxe: machine override' }
    const loader = configuredLoader(facts.arch, config)
    if ('none' in loader) return { kind: 'none', reason: loader.none }
    const reason = loader.byCode ? `pxe: arch ${facts.arch?.code ?? 0} mapping` : `pxe: ${facts.arch?.name ?? 'x86 BIOS (no option 93)'}`
    return { kind: 'tftp', file: loader.file, nextServer, reason, setting: loader.setting }
  }
  return { kind: 'none', reason: 'not a network-boot client' }
}

/** The ${buildarch}-like name of the client, for URLs and logs. */
export function clientCpu(facts: RequestFacts): string | null {
  return facts.arch ? archCpuName(facts.arch) : null
}
