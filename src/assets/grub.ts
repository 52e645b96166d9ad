// GRUB netboot images rackboot provides itself: Debian 12 ships no arm64 iPXE, so arm64 machines network-boot
// Debian's signed, monolithic GRUB netboot image (embedded prefix /grub, tftp/http/efinet built in), which then reads
// grub.cfg. The images come from grub-efi-<arch>-signed, fetched with `apt-get download` (a private apt for another
// architecture: agent/apt.ts), checked against the archive's SHA256 and unpacked in the cache, never installed.
import { existsSync } from 'node:fs'
import { basename, join } from 'node:path'
import { aptFor, type DebArch } from '../agent/apt.js'
import { cachedDebs, extractDeb, fetchDeb, resolveDeb, type BuildProgress, type ProgressFn } from '../agent/debian.js'
import { RackbootError } from '../errors.js'
import type { Logger } from '../log.js'
import { createProgress, type Progress } from './progress.js'
import type { AssetStore, ManifestEntry } from './store.js'

export interface GrubImage {
  arch: DebArch
  /** The Debian package that holds it. */
  package: string
  /** Its path inside the package. */
  member: string
  /** Its name in the assets directory, under grub/. */
  name: string
}

export const GRUB_IMAGES: readonly GrubImage[] = [
  { arch: 'arm64', package: 'grub-efi-arm64-signed', member: 'usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed', name: 'grubnetaa64.efi' },
  { arch: 'amd64', package: 'grub-efi-amd64-signed', member: 'usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed', name: 'grubnetx64.efi' },
]

/** File names `assets import` files under grub/ (as Debian's package names them, with or without .signed). */
export const GRUB_FILES = GRUB_IMAGES.map((g) => g.name)

/** The grub/ name for a file called `name` (grubnetaa64.efi.signed → grubnetaa64.efi), or null when not a GRUB image. */
export function grubAssetName(name: string): string | null {
  const plain = name.replace(/\.signed$/, '')
  return GRUB_FILES.includes(plain) ? plain : null
}

export interface FetchGrubOptions {
  store: AssetStore
  /** Downloaded .debs, unpacked trees and the private apt state; reused. */
  cacheDir: string
  log: Logger
  /** Which images (default: all, arm64 first). */
  arches?: readonly DebArch[]
  /** A progress bar per download (default: assets/progress.ts on stderr). */
  progress?: (label: string, total: number | null) => Progress
  /** Phases other than the download (updating apt lists, unpacking). */
  onPhase?: (message: string) => void
}

/** A ProgressFn that draws the download phase as one progress bar per .deb. */
function downloadBar(make: (label: string, total: number | null) => Progress, onPhase?: (message: string) => void): ProgressFn & { finish(): void } {
  let bar: Progress | null = null
  let label = ''
  const fn = ((p: BuildProgress) => {
    if (p.phase !== 'download') return onPhase?.(p.message)
    const name = p.message.replace(/^download(ing|ed) /, '')
    if (!bar || name !== label) {
      bar?.finish()
      label = name
      bar = make(name, p.total ?? null)
    }
    if (p.done !== undefined) bar.update(p.done)
  }) as ProgressFn & { finish(): void }
  fn.finish = () => {
    bar?.finish(`${label}: downloaded`)
    bar = null
  }
  return fn
}

/**
 * Fetches the GRUB netboot images into <assetsDir>/grub/ and records each in the manifest (source: package and
 * version). Offline, the newest cached .deb of the package is used (it was checked when it was downloaded).
 */
export async function fetchGrub(options: FetchGrubOptions): Promise<ManifestEntry[]> {
  const { store, cacheDir, log } = options
  const arches = options.arches ?? GRUB_IMAGES.map((g) => g.arch)
  const out: ManifestEntry[] = []
  for (const image of GRUB_IMAGES.filter((g) => arches.includes(g.arch))) {
    const progress = downloadBar(options.progress ?? createProgress, options.onPhase)
    let deb: string
    let version: string
    let verified: string
    try {
      const apt = await aptFor({ arch: image.arch, cacheDir, log, onProgress: progress })
      const pkg = await resolveDeb(image.package, apt)
      deb = await fetchDeb(pkg, cacheDir, progress, apt)
      progress.finish()
      version = pkg.version
      verified = 'Debian archive SHA256 of the .deb'
    } catch (err) {
      progress.finish()
      const newest = (await cachedDebs(cacheDir, new RegExp(`^${image.package}_[^_]+_${image.arch}\\.deb$`))).at(-1)
      if (!newest) throw err
      log.warn({ err: (err as Error).message, deb: newest }, `cannot reach apt for ${image.package}: using the cached package`)
      deb = newest
      version = decodeURIComponent(basename(newest).split('_')[1] ?? '')
      verified = 'Debian archive SHA256 of the .deb (checked when it was cached)'
    }
    const root = await extractDeb(deb, join(cacheDir, 'unpacked', basename(deb).replace(/\.deb$/, '')), progress)
    const src = join(root, image.member)
    if (!existsSync(src)) throw new RackbootError('RB_ERR_NOT_FOUND', `${basename(deb)} holds no ${image.member}`)
    out.push(await store.importFile(src, join('grub', image.name), { source: `debian:${image.package} ${version}`, verifiedBy: verified }))
  }
  return out
}
