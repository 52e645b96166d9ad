// Builds a kernel + busybox initramfs pair from Debian's kernel package: the common part of the discovery agent
// and the Talos stand-in, for amd64 or arm64. Output is reproducible (fixed cpio metadata), written atomically, and
// reused while its inputs (kernel .deb, busybox, module list, files) are unchanged.
import { createHash } from 'node:crypto'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { gzip } from 'node:zlib'
import { RackbootError } from '../errors.js'
import type { Logger } from '../log.js'
import type { DebArch } from './apt.js'
import { CpioBuilder } from './cpio.js'
import { findBusybox } from './busybox.js'
import { sha256File, type ProgressFn } from './debian.js'
import { aliasGlobToRegex, aliasPrefix, fetchDebianKernel, readKernelImage, resolveModules, type KernelModule } from './kernel.js'
import { modulesScript } from './scripts.js'
import { withLock } from './lock.js'

const gzipAsync = promisify(gzip)

/** Bump when the image layout changes, so cached builds are redone. */
const IMAGE_FORMAT = 4

export interface BuiltAssets {
  /** outDir/vmlinuz */
  kernel: string
  /** The initramfs (gzip-compressed newc cpio). */
  initramfs: string
  /** `uname -r` inside the VM. */
  kernelVersion: string
  arch: DebArch
  /** What it was built from, for the assets manifest: packages and versions. */
  source: BuildSource
  bytes: { kernel: number; initramfs: number }
  sha256: { kernel: string; initramfs: string }
  /** True when an earlier build with the same inputs was reused. */
  cached: boolean
}

export interface BuildSource {
  kernelPackage: string
  kernelPackageVersion: string
  /** busybox's version ("1.35.0 (Debian 1:1.35.0-4+deb12u1+b1)"). */
  busybox: string
}

/** The manifest's source line for a built file: "built from linux-image-6.1.0-57-arm64 6.1.192-3 + busybox 1.35.0 (...)". */
export function describeSource(source: BuildSource): string {
  return `built from ${source.kernelPackage} ${source.kernelPackageVersion} + busybox ${source.busybox}`
}

export interface ImageFile {
  path: string
  data: string | Uint8Array
  mode?: number
}

export interface ImageSpec {
  /** File name of the initramfs in outDir, e.g. agent.img. */
  imageName: string
  outDir: string
  cacheDir: string
  log: Logger
  onProgress?: ProgressFn | undefined
  kernelPackage?: string | undefined
  /** Debian architecture of the kernel and busybox (default amd64). */
  arch?: DebArch | undefined
  /** Modules the image carries; each must exist in the kernel (or be built in). */
  modules: readonly string[]
  /** Modules carried when this kernel has them (drivers for real hardware). */
  optionalModules?: readonly string[]
  /**
   * Modules loaded whatever the devices. The others load when a device's modalias matches one of their aliases
   * (sh/modules.sh); this list is for those that no modalias names early enough (sd_mod: SCSI scans are async).
   */
  alwaysLoad?: readonly string[]
  /** The /init script. */
  init: string
  files: readonly ImageFile[]
  force?: boolean | undefined
}

interface Manifest {
  inputs: string
  kernelVersion: string
  arch: DebArch
  source: BuildSource
  bytes: { kernel: number; initramfs: number }
  sha256: { kernel: string; initramfs: string }
}

async function writeAtomic(path: string, data: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`
  await writeFile(tmp, data)
  await rename(tmp, path)
}

async function cachedBuild(spec: ImageSpec, manifestPath: string, inputs: string): Promise<BuiltAssets | null> {
  try {
    const m = JSON.parse(await readFile(manifestPath, 'utf8')) as Manifest
    if (m.inputs !== inputs) return null
    const kernel = join(spec.outDir, 'vmlinuz')
    const initramfs = join(spec.outDir, spec.imageName)
    if ((await sha256File(kernel)) !== m.sha256.kernel || (await sha256File(initramfs)) !== m.sha256.initramfs) return null
    if (!m.source || !m.arch) return null
    return { kernel, initramfs, kernelVersion: m.kernelVersion, arch: m.arch, source: m.source, bytes: m.bytes, sha256: m.sha256, cached: true }
  } catch {
    return null
  }
}

// Alias tails that every device of the bus satisfies ("sv*sd*bc*sc*i*" on PCI, "v*" on virtio): an alias that is
// a literal followed by one of these is a plain prefix, matched by a hash lookup instead of a regex.
const FREE_TAIL: Record<string, RegExp> = {
  pci: /((v|d|sv|sd|bc|sc|i)\*)+$/,
  virtio: /v\*$/,
}

/**
 * The module tables the image's loader reads (sh/modules.sh): modules.dep ("name path dep,dep" or "-", in load
 * order), modules.alias.exact ("literal-prefix name"), modules.alias ("prefix regex name", or "regex name" when the
 * glob starts with a wildcard) and modules.always (names).
 */
export function moduleTables(modules: readonly KernelModule[], always: readonly string[]): { dep: string; exact: string; alias: string; always: string } {
  const dep = modules.map((m) => `${m.name} ${m.file} ${m.depends.join(',') || '-'}`).join('\n') + '\n'
  const exact: string[] = []
  const alias: string[] = []
  for (const m of modules) {
    for (const a of m.aliases) {
      if (/\s/.test(a)) continue
      const bus = a.split(':')[0] ?? ''
      const literal = FREE_TAIL[bus] ? a.replace(FREE_TAIL[bus], '') : a
      if (a.includes(':') && literal !== a && !/[*?[\\]/.test(literal)) {
        exact.push(`${literal} ${m.name}`)
        continue
      }
      const prefix = aliasPrefix(a)
      alias.push(prefix ? `${prefix} ${aliasGlobToRegex(a)} ${m.name}` : `${aliasGlobToRegex(a)} ${m.name}`)
    }
  }
  const names = new Set(modules.map((m) => m.name))
  return {
    dep,
    exact: exact.join('\n') + '\n',
    alias: alias.join('\n') + '\n',
    always: always.map((n) => n.replace(/-/g, '_')).filter((n) => names.has(n)).join('\n') + '\n',
  }
}

export async function buildImage(spec: ImageSpec): Promise<BuiltAssets> {
  const { log, onProgress } = spec
  const arch = spec.arch ?? 'amd64'
  const kernel = await fetchDebianKernel({ cacheDir: spec.cacheDir, log, onProgress, arch, packageName: spec.kernelPackage })
  const busybox = await findBusybox({ cacheDir: spec.cacheDir, log, onProgress, arch })
  const source: BuildSource = { kernelPackage: kernel.packageName, kernelPackageVersion: kernel.packageVersion, busybox: busybox.version }
  const hash = createHash('sha256')
  hash.update(JSON.stringify({ IMAGE_FORMAT, arch, deb: kernel.debSha256, busybox: busybox.sha256, modules: spec.modules, optional: spec.optionalModules ?? [], always: spec.alwaysLoad ?? [] }))
  hash.update(modulesScript())
  hash.update(spec.init)
  for (const f of spec.files) hash.update(`\0${f.path}\0${f.mode ?? 0o644}\0`).update(f.data)
  const inputs = hash.digest('hex')

  await mkdir(spec.outDir, { recursive: true })
  const manifestPath = join(spec.outDir, `${spec.imageName}.manifest.json`)
  return withLock(join(spec.outDir, `.${spec.imageName}.lock`), async () => {
    if (!spec.force) {
      const cached = await cachedBuild(spec, manifestPath, inputs)
      if (cached) {
        log.debug({ image: spec.imageName, kernel: cached.kernelVersion }, 'boot image up to date')
        onProgress?.({ phase: 'done', message: `${spec.imageName} is up to date` })
        return cached
      }
    }
    onProgress?.({ phase: 'modules', message: `resolving kernel modules for ${kernel.release}` })
    const required = await resolveModules(kernel.modulesDir, spec.modules)
    if (required.missing.length > 0) {
      throw new RackbootError('RB_ERR_NOT_FOUND', `kernel ${kernel.release} lacks modules: ${required.missing.join(', ')}`)
    }
    const optional = await resolveModules(kernel.modulesDir, spec.optionalModules ?? [])
    if (optional.missing.length > 0) log.info({ missing: optional.missing }, 'optional modules not in this kernel')
    const modules = [...required.modules]
    for (const m of optional.modules) if (!modules.some((x) => x.name === m.name)) modules.push(m)

    onProgress?.({ phase: 'pack', message: `packing ${spec.imageName}` })
    const cpio = new CpioBuilder()
    for (const d of ['dev', 'proc', 'sys', 'tmp', 'run', 'etc', 'root', 'mnt', 'var', 'bin', 'sbin', 'usr/bin', 'usr/sbin']) cpio.dir(d)
    cpio.dir('tmp', 0o1777)
    // The kernel opens /dev/console for init's stdin/out/err before /init runs: without it init has no output.
    cpio.char('dev/console', 5, 1, 0o600)
    cpio.char('dev/null', 1, 3, 0o666)
    cpio.file('bin/busybox', await readFile(busybox.path), 0o755)
    for (const applet of busybox.applets) cpio.symlink(applet, '/bin/busybox')
    for (const [i, m] of modules.entries()) {
      cpio.file(`lib/modules/${kernel.release}/${m.file}`, await readFile(join(kernel.modulesDir, m.file)), 0o644)
      onProgress?.({ phase: 'pack', message: `packing ${spec.imageName}`, done: i + 1, total: modules.length })
    }
    const tables = moduleTables(modules, spec.alwaysLoad ?? [])
    cpio.file('etc/rackboot/modules.dep', tables.dep)
    cpio.file('etc/rackboot/modules.alias.exact', tables.exact)
    cpio.file('etc/rackboot/modules.alias', tables.alias)
    cpio.file('etc/rackboot/modules.always', tables.always)
    cpio.file('etc/rackboot/modules.sh', modulesScript())
    cpio.file('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n')
    cpio.file('etc/group', 'root:x:0:\n')
    for (const f of spec.files) cpio.file(f.path, f.data, f.mode ?? 0o644)
    cpio.file('init', spec.init, 0o755)
    const raw = cpio.toBuffer()
    onProgress?.({ phase: 'compress', message: `compressing ${spec.imageName} (${raw.length} bytes)` })
    const image = await gzipAsync(raw, { level: 9 })
    const vmlinuz = await readKernelImage(kernel.vmlinuz)

    const kernelPath = join(spec.outDir, 'vmlinuz')
    const imagePath = join(spec.outDir, spec.imageName)
    await writeAtomic(kernelPath, vmlinuz)
    await writeAtomic(imagePath, image)
    const manifest: Manifest = {
      inputs,
      kernelVersion: kernel.release,
      arch,
      source,
      bytes: { kernel: vmlinuz.length, initramfs: image.length },
      sha256: {
        kernel: createHash('sha256').update(vmlinuz).digest('hex'),
        initramfs: createHash('sha256').update(image).digest('hex'),
      },
    }
    await writeAtomic(manifestPath, Buffer.from(JSON.stringify(manifest, null, 2) + '\n'))
    log.info({ image: imagePath, arch, kernel: kernel.release, modules: modules.length, bytes: manifest.bytes }, 'boot image built')
    onProgress?.({ phase: 'done', message: `${spec.imageName} built` })
    return { kernel: kernelPath, initramfs: imagePath, kernelVersion: kernel.release, arch, source, bytes: manifest.bytes, sha256: manifest.sha256, cached: false }
  })
}
