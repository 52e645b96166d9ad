// The kernel for the agent (and the Talos stand-in): Debian's linux-image-<abi>-<arch>, the package the
// linux-image-<arch> metapackage points at today, unpacked from its .deb. The vmlinuz and the modules come from the
// same package, so their versions always match. Another architecture's package comes through a private apt
// configuration (apt.ts), never by changing the host's dpkg.
import { execFile } from 'node:child_process'
import { readdir, readFile, stat } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { promisify } from 'node:util'
import { gunzip } from 'node:zlib'
import type { Logger } from '../log.js'
import { RackbootError } from '../errors.js'
import { aptFor, type DebArch } from './apt.js'
import { cachedDebs, extractDeb, fetchDeb, resolveDeb, resolveMetapackage, sha256File, type ProgressFn } from './debian.js'

export interface DebianKernel {
  /** The kernel release, `uname -r` inside the VM (e.g. 6.1.0-56-amd64). */
  release: string
  arch: DebArch
  packageName: string
  packageVersion: string
  /** SHA256 of the .deb: identifies the kernel and modules in cache keys. */
  debSha256: string
  vmlinuz: string
  /** lib/modules/<release> inside the unpacked package. */
  modulesDir: string
}

export interface KernelOptions {
  cacheDir: string
  log: Logger
  onProgress?: ProgressFn | undefined
  /** A specific package (e.g. linux-image-6.1.0-56-amd64); default: what linux-image-<arch> depends on. */
  packageName?: string | undefined
  /** Debian architecture (default amd64). */
  arch?: DebArch | undefined
}

/** Kernel .debs of an architecture in the cache: linux-image-6.1.0-57-arm64_6.1.192-3_arm64.deb. */
export function kernelDebPattern(arch: DebArch): RegExp {
  return new RegExp(`^linux-image-\\d[^_]*-${arch}(-unsigned)?_[^_]+_${arch}\\.deb$`)
}

/**
 * Downloads (once) and unpacks the kernel package. Without apt lists or a mirror it falls back to the newest
 * kernel .deb already in the cache, so a built appliance keeps working offline.
 */
export async function fetchDebianKernel(options: KernelOptions): Promise<DebianKernel> {
  const { cacheDir, log, onProgress } = options
  const arch = options.arch ?? 'amd64'
  let deb: string
  let packageName: string
  let packageVersion: string
  let debSha256: string
  try {
    onProgress?.({ phase: 'resolve', message: `resolving the Debian ${arch} kernel package` })
    const apt = await aptFor({ arch, cacheDir, log, onProgress })
    packageName = options.packageName ?? (await resolveMetapackage(`linux-image-${arch}`, /^linux-image-\d/, apt))
    const pkg = await resolveDeb(packageName, apt)
    deb = await fetchDeb(pkg, cacheDir, onProgress, apt)
    packageVersion = pkg.version
    debSha256 = pkg.sha256
  } catch (err) {
    const cached = (await cachedDebs(cacheDir, kernelDebPattern(arch))).filter((f) => !options.packageName || f.includes(`/${options.packageName}_`))
    const newest = cached.at(-1)
    if (!newest) throw err
    log.warn({ err, deb: newest }, 'cannot reach apt for the kernel: using the newest cached kernel package')
    deb = newest
    const base = newest.split('/').pop() ?? ''
    packageName = base.split('_')[0] ?? ''
    packageVersion = decodeURIComponent(base.split('_')[1] ?? '')
    debSha256 = await sha256File(newest)
  }
  const root = await extractDeb(deb, join(cacheDir, 'unpacked', (deb.split('/').pop() ?? '').replace(/\.deb$/, '')), onProgress)
  const boot = await readdir(join(root, 'boot'))
  const image = boot.find((f) => f.startsWith('vmlinuz-'))
  if (!image) throw new RackbootError('RB_ERR_NOT_FOUND', `${deb} holds no boot/vmlinuz-*`)
  const release = image.slice('vmlinuz-'.length)
  const modulesDir = join(root, 'lib', 'modules', release)
  if (!(await stat(modulesDir).catch(() => null))) {
    throw new RackbootError('RB_ERR_NOT_FOUND', `${deb} has no lib/modules/${release} matching its kernel`)
  }
  return { release, arch, packageName, packageVersion, debSha256, vmlinuz: join(root, 'boot', image), modulesDir }
}

const gunzipAsync = promisify(gunzip)

/**
 * The kernel image as a boot loader loads it. Old Debian arm64 kernels were a gzipped Image, which neither GRUB nor
 * iPXE nor EFI firmware start: those are unpacked here. Everything else is returned as it is.
 */
export async function readKernelImage(path: string): Promise<Buffer> {
  const data = await readFile(path)
  if (data[0] === 0x1f && data[1] === 0x8b) return gunzipAsync(data)
  return data
}

const MODULE_FILE = /\.ko(\.xz|\.zst|\.gz)?$/

/** Module names use '_' and '-' interchangeably (nvme-core.ko is "nvme_core"). */
export function moduleName(fileOrName: string): string {
  return (fileOrName.split('/').pop() ?? '').replace(MODULE_FILE, '').replace(/-/g, '_')
}

async function walk(dir: string, out: string[]): Promise<string[]> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name)
    if (entry.isDirectory()) await walk(full, out)
    else if (MODULE_FILE.test(entry.name)) out.push(full)
  }
  return out
}

const MODINFO_CANDIDATES = ['modinfo', '/usr/sbin/modinfo', '/sbin/modinfo']

interface ModInfo {
  depends: string[]
  aliases: string[]
}

/** `modinfo FILE` (kmod): the depends and alias fields. */
function modinfo(file: string, index = 0): Promise<ModInfo> {
  const cmd = MODINFO_CANDIDATES[index]
  if (!cmd) return Promise.reject(new RackbootError('RB_ERR_NOT_FOUND', 'modinfo not found (Debian package kmod)'))
  return new Promise((resolve, reject) => {
    execFile(cmd, [file], { encoding: 'utf8', timeout: 10_000, maxBuffer: 8 * 1024 * 1024 }, (err, stdout) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') return resolve(modinfo(file, index + 1))
      if (err) return reject(new RackbootError('RB_ERR_INTERNAL', `modinfo ${file} failed`, { cause: err }))
      const info: ModInfo = { depends: [], aliases: [] }
      for (const line of stdout.split('\n')) {
        const m = /^(\w+):\s*(.*)$/.exec(line)
        if (!m?.[1]) continue
        const value = (m[2] ?? '').trim()
        if (m[1] === 'depends') info.depends.push(...value.split(',').map((d) => d.trim()).filter(Boolean))
        else if (m[1] === 'alias' && value) info.aliases.push(value)
      }
      resolve(info)
    })
  })
}

export interface KernelModule {
  /** Normalized name ('_' for '-'). */
  name: string
  /** Path relative to modulesDir. */
  file: string
  /** Normalized names of the modules it needs loaded first (built-in ones left out). */
  depends: string[]
  /** Device patterns (modinfo's alias globs, e.g. pci:v00008086d000010D3sv*sd*bc*sc*i*). */
  aliases: string[]
}

export interface ResolvedModules {
  /** Each module after the modules it depends on: insmod them in this order. */
  modules: KernelModule[]
  /** Requested modules that are built into the kernel (nothing to load). */
  builtin: string[]
  /** Requested modules this kernel does not have. */
  missing: string[]
}

/** Resolves modules and their dependencies (modinfo's depends, recursively) into a load order. */
export async function resolveModules(modulesDir: string, wanted: readonly string[]): Promise<ResolvedModules> {
  const byName = new Map<string, string>()
  for (const file of await walk(join(modulesDir, 'kernel'), [])) byName.set(moduleName(file), file)
  const builtinText = await readFile(join(modulesDir, 'modules.builtin'), 'utf8').catch(() => '')
  const builtinSet = new Set(builtinText.split('\n').filter(Boolean).map(moduleName))
  const modules: KernelModule[] = []
  const builtin: string[] = []
  const missing: string[] = []
  const done = new Set<string>()
  const visiting = new Set<string>()
  const visit = async (name: string, requested: boolean): Promise<boolean> => {
    if (done.has(name)) return byName.has(name)
    const file = byName.get(name)
    if (!file) {
      if (builtinSet.has(name)) {
        if (requested) builtin.push(name)
      } else if (requested) missing.push(name)
      else throw new RackbootError('RB_ERR_NOT_FOUND', `module dependency ${name} is neither a module nor built in`)
      done.add(name)
      return false
    }
    if (visiting.has(name)) throw new RackbootError('RB_ERR_INTERNAL', `module dependency cycle at ${name}`)
    visiting.add(name)
    const info = await modinfo(file)
    const depends: string[] = []
    for (const dep of info.depends) {
      const depName = moduleName(dep)
      if (await visit(depName, false)) depends.push(depName)
    }
    visiting.delete(name)
    done.add(name)
    modules.push({ name, file: relative(modulesDir, file), depends, aliases: info.aliases })
    return true
  }
  for (const name of wanted) await visit(moduleName(name), true)
  return { modules, builtin, missing }
}

/** A module alias glob (fnmatch: * ? [..]) as an anchored POSIX extended regex, for awk's `~`. */
export function aliasGlobToRegex(glob: string): string {
  let re = '^'
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!
    if (c === '*') re += '.*'
    else if (c === '?') re += '.'
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2)
      if (end < 0) re += '\\['
      else {
        let set = glob.slice(i + 1, end)
        if (set.startsWith('!')) set = '^' + set.slice(1)
        re += `[${set}]`
        i = end
      }
    } else if ('.+(){}|^$\\'.includes(c)) re += '\\' + c
    else re += c
  }
  return re + '$'
}

/** The literal start of an alias glob (up to 14 characters, e.g. "pci:v00008086d"): the index key in the image. */
export function aliasPrefix(glob: string): string {
  const m = /^[^*?[\\]*/.exec(glob)
  return (m?.[0] ?? '').slice(0, 14)
}
