// Which boot file a network-boot client gets. Pure: facts and configuration in, a choice with its reason out.
import { archCpuName, type BootFamily, type ClientArch } from './client-arch.js'
import type { RequestFacts } from './facts.js'

export interface BootFileConfig {
  /** TFTP loader per family (settings.dhcp.bootFiles); a family without a name is not served. */
  bootFiles: Partial<Record<BootFamily, string>>
  /** Per option-93 code overrides, e.g. { "7": "snponly.efi" } (settings.dhcp.archBootFiles). */
  archBootFiles: Record<string, string>
  /** The boot script URL given to iPXE (iPXE expands the ${...} in it). */
  scriptUrl: string
  /** The http:// URL of the loader for a UEFI HTTP boot client. */
  httpBootUrl(arch: ClientArch): string
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
  | { kind: 'tftp'; file: string; nextServer: string | null; reason: string }
  | { kind: 'ipxe-script'; url: string; nextServer: string | null; reason: string }
  /** UEFI HTTP boot: the reply must also carry option 60 "HTTPClient". */
  | { kind: 'http'; url: string; reason: string }

const isUrl = (s: string): boolean => /^[a-z][a-z0-9+.-]*:\/\//i.test(s)

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
    if (!facts.arch.family) return { kind: 'none', reason: `unsupported architecture ${facts.arch.code} (${facts.arch.name})` }
    return { kind: 'http', url: config.httpBootUrl(facts.arch), reason: `http boot: ${facts.arch.name}` }
  }
  if (facts.clientType === 'PXEClient') {
    if (fileOverride) return { kind: 'tftp', file: fileOverride, nextServer, reason: 'pxe: machine override' }
    // No option 93 and no Arch in option 60: old BIOS PXE ROMs.
    const code = facts.arch?.code ?? 0
    const byCode = config.archBootFiles[String(code)]
    if (byCode) return { kind: 'tftp', file: byCode, nextServer, reason: `pxe: arch ${code} mapping` }
    const family = facts.arch ? facts.arch.family : 'bios'
    if (!family) return { kind: 'none', reason: `unsupported architecture ${code} (${facts.arch?.name ?? 'unknown'})` }
    const file = config.bootFiles[family]
    if (!file) return { kind: 'none', reason: `no boot file configured for ${family}` }
    return { kind: 'tftp', file, nextServer, reason: `pxe: ${facts.arch?.name ?? 'x86 BIOS (no option 93)'}` }
  }
  return { kind: 'none', reason: 'not a network-boot client' }
}

/** The ${buildarch}-like name of the client, for URLs and logs. */
export function clientCpu(facts: RequestFacts): string | null {
  return facts.arch ? archCpuName(facts.arch) : null
}
