// GRUB netboot images rackboot provides itself: Debian 12 ships no arm64 iPXE, so arm64 machines network-boot a
// monolithic GRUB image (embedded prefix /grub, efinet/tftp/http built in), which then reads grub.cfg.
//
// The images are BUILT with grub-mkimage, not taken from grub-efi-<arch>-signed: Debian's signed grubnet*.efi has
// tftp and efinet built in but no http, and it cannot get it. Over PXE it asks TFTP for /grub/<platform>/http.mod and
// loops ("cannot fetch the boot config"); over UEFI HTTP boot its root is (http,host:port), from which it cannot load
// the http module it lacks, so it stops at `grub>`. Shipping http.mod beside it does not help on Secure Boot sites
// either: with shim_lock active GRUB refuses to load any module, which is why Debian builds its signed image
// monolithic. So there is no useful signed option; arm64 netboot runs with Secure Boot off (README, arm64).
//
// Inputs, all .debs fetched with `apt-get download` (a private apt for another architecture: agent/apt.ts), checked
// against the archive's SHA256 and unpacked in the cache, never installed:
// - grub-efi-<arch>-bin: the modules (usr/lib/grub/<platform>/, with moddep.lst) of the target architecture;
// - grub-mkimage: the host's /usr/bin/grub-mkimage when its version is exactly the modules' version (grub-mkimage
//   and the modules it links must come from the same build: across versions it refuses, or builds an image whose
//   kernel and modules disagree), else the host architecture's grub-common of that version, unpacked in the cache
//   and run from there. That binary is dynamically linked against the host's liblzma, libdevmapper, libselinux,
//   libudev and libpcre2, which is fine on the Debian release whose archive it comes from (the host's own).
// grub-mkimage embeds no time stamp or path, so the same inputs give the same bytes (test/assets/grub.test.ts).
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { aptFor, hostApt, hostDebArch, isDebArch, type AptContext, type DebArch } from '../agent/apt.js'
import { cachedDebs, exec, extractDeb, fetchDeb, resolveDeb, type BuildProgress, type ProgressFn } from '../agent/debian.js'
import { RackbootError } from '../errors.js'
import type { Logger } from '../log.js'
import { createProgress, type Progress } from './progress.js'
import type { AssetStore, ManifestEntry } from './store.js'

export interface GrubImage {
  arch: DebArch
  /** The Debian package that holds the modules. */
  package: string
  /** grub-mkimage's -O format, also the module directory's name under usr/lib/grub/. */
  format: string
  /** Its name in the assets directory, under grub/. */
  name: string
}

export const GRUB_IMAGES: readonly GrubImage[] = [
  { arch: 'arm64', package: 'grub-efi-arm64-bin', format: 'arm64-efi', name: 'grubnetaa64.efi' },
  { arch: 'amd64', package: 'grub-efi-amd64-bin', format: 'x86_64-efi', name: 'grubnetx64.efi' },
]

/**
 * The modules built into the image (grub-mkimage adds their dependencies from moddep.lst). The network ones
 * (efinet, tftp, http) so that GRUB can fetch grub.cfg from wherever it was loaded, PXE or HTTP boot; what
 * rackboot's grub.cfg uses (http/grub/config.ts: configfile/source, linux/initrd, test, sleep, echo, regexp, smbios,
 * gzio for compressed kernels); and reboot/halt/chain for the operator at the prompt.
 */
export const GRUB_MODULES: readonly string[] = [
  'efinet', 'net', 'tftp', 'http', 'normal', 'configfile', 'linux', 'echo', 'test', 'sleep', 'smbios', 'regexp', 'gzio',
  'chain', 'reboot', 'halt', 'efi_gop', 'all_video', 'ext2', 'help',
]

/** The prefix GRUB looks for its config and modules under (TFTP /grub/..., HTTP (http,host:port)/grub/...). */
export const GRUB_PREFIX = '/grub'

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
  /** Phases other than the download (updating apt lists, unpacking, building). */
  onPhase?: (message: string) => void
  /**
   * The host's grub-mkimage, used when its version is the modules' (default /usr/bin/grub-mkimage); null never uses
   * it and takes grub-mkimage from the grub-common .deb instead (tests).
   */
  hostMkimage?: string | null
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

interface FetchedDeb {
  deb: string
  version: string
  /** The .deb came from the cache because apt could not be reached. */
  cached: boolean
}

/**
 * One .deb through apt (resolved, downloaded, SHA256-checked by agent/debian.ts). When apt fails, the newest cached
 * .deb of the package (of `version` when given) is used: it was checked when it was downloaded.
 */
async function getDeb(name: string, arch: string, version: string | undefined, apt: () => Promise<AptContext>, cacheDir: string, progress: ProgressFn & { finish(): void }, log: Logger): Promise<FetchedDeb> {
  try {
    const pkg = await resolveDeb(version ? `${name}=${version}` : name, await apt())
    const deb = await fetchDeb(pkg, cacheDir, progress, await apt())
    progress.finish()
    return { deb, version: pkg.version, cached: false }
  } catch (err) {
    progress.finish()
    const debVersion = (f: string) => decodeURIComponent(basename(f).split('_')[1] ?? '')
    const cached = (await cachedDebs(cacheDir, new RegExp(`^${name}_[^_]+_${arch}\\.deb$`))).filter((f) => !version || debVersion(f) === version)
    const newest = cached.at(-1)
    if (!newest) throw err
    log.warn({ err: (err as Error).message, deb: newest }, `cannot reach apt for ${name}: using the cached package`)
    return { deb: newest, version: debVersion(newest), cached: true }
  }
}

/** The version a grub-mkimage reports (`grub-mkimage (GRUB) 2.06-13+deb12u2` → 2.06-13+deb12u2), or null. */
async function mkimageVersion(bin: string): Promise<string | null> {
  if (!existsSync(bin)) return null
  try {
    return /\(GRUB\)\s+(\S+)/.exec(await exec(bin, ['--version'], { env: { ...process.env, LC_ALL: 'C' } }))?.[1] ?? null
  } catch {
    return null
  }
}

/**
 * Builds the GRUB netboot images into <assetsDir>/grub/ (grub-mkimage, the modules of grub-efi-<arch>-bin, see the
 * top of this file) and records each in the manifest (source: the grub-mkimage and module package versions and the
 * module list). Offline, the cached .debs are used (they were checked when they were downloaded).
 */
export async function fetchGrub(options: FetchGrubOptions): Promise<ManifestEntry[]> {
  const { store, cacheDir, log } = options
  const arches = options.arches ?? GRUB_IMAGES.map((g) => g.arch)
  const hostMkimage = options.hostMkimage === undefined ? '/usr/bin/grub-mkimage' : options.hostMkimage
  const out: ManifestEntry[] = []
  for (const image of GRUB_IMAGES.filter((g) => arches.includes(g.arch))) {
    const bar = () => downloadBar(options.progress ?? createProgress, options.onPhase)
    let progress = bar()
    let aptCtx: Promise<AptContext> | undefined
    const bin = await getDeb(image.package, image.arch, undefined, () => (aptCtx ??= aptFor({ arch: image.arch, cacheDir, log, onProgress: progress })), cacheDir, progress, log)
    const binRoot = await extractDeb(bin.deb, join(cacheDir, 'unpacked', basename(bin.deb).replace(/\.deb$/, '')), progress)
    const modules = join(binRoot, 'usr', 'lib', 'grub', image.format)
    if (!existsSync(join(modules, 'moddep.lst'))) throw new RackbootError('RB_ERR_NOT_FOUND', `${basename(bin.deb)} holds no usr/lib/grub/${image.format}/moddep.lst`)

    // grub-mkimage of exactly the modules' version: the host's, else grub-common of the host's architecture.
    let mkimage: string
    let mkimageFrom: string
    let cached = bin.cached
    const hostVersion = hostMkimage ? await mkimageVersion(hostMkimage) : null
    if (hostMkimage && hostVersion === bin.version) {
      mkimage = hostMkimage
      mkimageFrom = `${hostMkimage} (grub-common ${hostVersion})`
    } else {
      if (hostMkimage && hostVersion) log.debug({ host: hostVersion, modules: bin.version }, `${hostMkimage} is ${hostVersion}, the modules ${bin.version}: using grub-common ${bin.version}`)
      const hostArch = await hostDebArch()
      progress = bar()
      // The host's own apt: grub-common of the host's architecture (a binary for this machine).
      const hostCtx: AptContext = isDebArch(hostArch) ? hostApt(hostArch) : { arch: hostArch as DebArch, env: { ...process.env, LC_ALL: 'C' }, root: null }
      const common = await getDeb('grub-common', hostArch, bin.version, () => Promise.resolve(hostCtx), cacheDir, progress, log)
      cached ||= common.cached
      const commonRoot = await extractDeb(common.deb, join(cacheDir, 'unpacked', basename(common.deb).replace(/\.deb$/, '')), progress)
      mkimage = join(commonRoot, 'usr', 'bin', 'grub-mkimage')
      if (!existsSync(mkimage)) throw new RackbootError('RB_ERR_NOT_FOUND', `${basename(common.deb)} holds no usr/bin/grub-mkimage`)
      mkimageFrom = `grub-common ${common.version} (${hostArch}, unpacked in the cache)`
      const v = await mkimageVersion(mkimage)
      if (v !== bin.version) throw new RackbootError('RB_ERR_INTERNAL', `${mkimage} reports version ${v ?? '(none: does it run on this host?)'}, the modules are ${bin.version}`)
    }

    options.onPhase?.(`building grub/${image.name} with grub-mkimage -O ${image.format} (${mkimageFrom}, modules of ${image.package} ${bin.version})`)
    const workParent = join(cacheDir, 'grub-build')
    await mkdir(workParent, { recursive: true })
    const work = await mkdtemp(join(workParent, `${image.name}.`))
    try {
      const built = join(work, image.name)
      await exec(mkimage, ['-O', image.format, '-d', modules, '-p', GRUB_PREFIX, '-o', `${built}.tmp`, ...GRUB_MODULES], { env: { ...process.env, LC_ALL: 'C' }, timeoutMs: 5 * 60_000 })
      await rename(`${built}.tmp`, built)
      const version = bin.version
      out.push(await store.importFile(built, join('grub', image.name), {
        source: `built by grub-mkimage ${version} from ${image.package} ${version} (modules: ${GRUB_MODULES.join(' ')})`,
        verifiedBy: `Debian archive SHA256 of the .debs${cached ? ' (checked when they were cached)' : ''}`,
      }))
    } finally {
      await rm(work, { recursive: true, force: true }).catch(() => undefined)
    }
  }
  return out
}
