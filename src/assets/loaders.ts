// Network-boot loaders: which firmware gets which file (dhcp.bootFiles, dhcp.archBootFiles), where that file lives
// in the assets directory (iPXE's under ipxe/, GRUB netboot images under grub/), what fetches it, and whether it is
// there. One place, so DHCP's offer, the TFTP and HTTP paths, start-up warnings and /healthz agree.
import { statSync } from 'node:fs'
import { join } from 'node:path'
import { NO_BOOT_FILE } from '../dhcp/boot-file.js'
import { CLIENT_ARCHS, type BootFamily } from '../dhcp/client-arch.js'

/** A boot-file setting with this value switches that firmware off: it is not network-booted. */
export const NO_LOADER = NO_BOOT_FILE

/** GRUB netboot images are named grub*.efi (Debian's signed grubnetx64.efi, grubnetaa64.efi); iPXE's are not. */
const GRUB_IMAGE = /^(?:grub\/)?(grub[^/]*\.efi)$/i

/** The name as a path inside the assets directory's loader folders: no leading slash, `\` as `/`. */
function clean(name: string): string {
  return name.replaceAll('\\', '/').replace(/^\/+/, '')
}

export function isGrubImage(name: string): boolean {
  return GRUB_IMAGE.test(clean(name))
}

/** Where a loader lives, relative to the assets directory: `grub/<image>` for GRUB, `ipxe/<name>` for the rest. */
export function loaderLocation(name: string): string {
  const c = clean(name)
  const grub = GRUB_IMAGE.exec(c)
  return grub ? `grub/${grub[1]}` : `ipxe/${c}`
}

/** The http:// URL of a loader under the server's /assets route (UEFI HTTP boot), where it really lives. */
export function loaderUrl(baseUrl: string, name: string): string {
  return `${baseUrl.replace(/\/+$/, '')}/assets/${loaderLocation(name).split('/').map(encodeURIComponent).join('/')}`
}

/** The command that fetches a loader. */
export function loaderFetchCommand(name: string): string {
  return isGrubImage(name) ? 'rackboot assets fetch grub' : 'rackboot assets fetch ipxe'
}

export interface OfferedLoader {
  /** The setting that names it, e.g. `dhcp.bootFiles.uefiArm64` or `dhcp.archBootFiles.19`. */
  setting: string
  file: string
  /** The CPU of the machines that boot it, for the agent they need next. */
  cpu: 'amd64' | 'arm64' | 'other'
}

export interface LoaderSettings {
  bootFiles: Partial<Record<BootFamily, string>>
  archBootFiles: Record<string, string>
}

const FAMILY_CPU: Record<BootFamily, OfferedLoader['cpu']> = {
  bios: 'amd64', uefiX64: 'amd64', uefiIa32: 'other', uefiArm32: 'other', uefiArm64: 'arm64',
  uefiRiscv32: 'other', uefiRiscv64: 'other', uefiLoongarch64: 'other',
}

const isUrl = (s: string): boolean => /^[a-z][a-z0-9+.-]*:\/\//i.test(s)

/**
 * Every loader DHCP can offer, one entry per setting that names a file: families and per-code mappings, without the
 * ones set to `none` and without URLs (those are served elsewhere).
 */
export function offeredLoaders(s: LoaderSettings): OfferedLoader[] {
  const out: OfferedLoader[] = []
  for (const [family, file] of Object.entries(s.bootFiles) as [BootFamily, string | undefined][]) {
    if (!file || file === NO_LOADER || isUrl(file)) continue
    out.push({ setting: `dhcp.bootFiles.${family}`, file, cpu: FAMILY_CPU[family] })
  }
  for (const [code, file] of Object.entries(s.archBootFiles)) {
    if (!file || file === NO_LOADER || isUrl(file)) continue
    const family = CLIENT_ARCHS.get(Number(code))?.family
    out.push({ setting: `dhcp.archBootFiles.${code}`, file, cpu: family ? FAMILY_CPU[family] : 'other' })
  }
  return out
}

/** What names a loader: a setting, or (absent) a machine's own boot-file override. */
type Named = { file: string; setting?: string | undefined }

/** The fix for a loader that is not on disk: fetch it, or switch that firmware off. */
export function missingLoaderFix(loader: Named): string {
  const fetch = `run ${loaderFetchCommand(loader.file)}`
  return loader.setting ? `${fetch}, or set ${loader.setting}: ${NO_LOADER} to stop network-booting that firmware` : fetch
}

/** One line for a loader that is not on disk: the file, where it was looked for, the fix. */
export function missingLoaderMessage(assetsDir: string, loader: Named): string {
  return `${loader.setting ?? 'the machine\'s boot file'} names ${loader.file}, which is not on this server (${loaderLocation(loader.file)} under ${assetsDir}): ${missingLoaderFix(loader)}`
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile()
  } catch {
    return false
  }
}

export interface LoaderPresenceOptions {
  assetsDir: string
  /** How long an answer is reused (default 5 s): a DHCP reply must not cost a stat syscall. */
  ttlMs?: number
  now?: () => number
  /** Names remembered at most (loader names come from settings and machine overrides; bounded anyway). */
  maxEntries?: number
}

/** Whether a loader is on disk, from a stat made at most once per ttl per name. */
export function createLoaderPresence(o: LoaderPresenceOptions): (name: string) => boolean {
  const ttl = o.ttlMs ?? 5_000
  const now = o.now ?? Date.now
  const max = o.maxEntries ?? 256
  const cache = new Map<string, { present: boolean; at: number }>()
  return (name) => {
    const t = now()
    const hit = cache.get(name)
    if (hit && t - hit.at < ttl) return hit.present
    const present = isFile(join(o.assetsDir, loaderLocation(name)))
    if (!hit && cache.size >= max) cache.delete(cache.keys().next().value!)
    cache.set(name, { present, at: t })
    return present
  }
}
