// The virtual media ISO: what a BMC inserts as a CD where PXE is not possible. It boots iPXE, which asks DHCP for
// an address and chains to rackboot's boot script, the same /boot.ipxe the DHCP path hands iPXE.
//
//   BIOS  El Torito → isolinux → ipxe.lkrn with the script as its initrd (iPXE runs a script initrd as its
//         embedded image: lkrn's runtime.c).
//   UEFI  El Torito → FAT efiboot.img → \EFI\BOOT\BOOTX64.EFI = ipxe.efi. Debian's iPXE (2019) reads neither a
//         command line nor autoexec.ipxe, so it autoboots: DHCP, then the boot file DHCP names. rackboot's DHCP
//         (full or proxy) answers iPXE with the boot script URL, so this works where rackboot's DHCP serves the
//         segment. \autoexec.ipxe is in the FAT image too: an iPXE from 2021 on (ipxeDir) runs it instead.
//
// Built with xorriso and mtools from Debian files, reproducibly (fixed dates), cached under the data directory by
// the hash of its inputs (script text and binaries), rebuilt only when one changes. A user's own ISO
// (virtualMedia.iso) is served as is instead.
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { copyFile, mkdir, readdir, rename, rm, stat, truncate, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { RackbootError } from '../errors.js'
import { IPXE_IDENTITY_QUERY } from '../http/ipxe/scripts.js'
import type { Logger } from '../log.js'
import { which } from '../processes.js'

/** Bumped whenever the ISO's layout changes, so cached images from an older layout are not reused. */
const LAYOUT_VERSION = 1
// 2024-01-01T00:00:00Z: every date in the image (FAT needs one after 1980), so equal inputs give equal bytes.
const FIXED_EPOCH = 1_704_067_200
const PREFIX = 'rackboot-'
const BUILD_DIR_PREFIX = '.build-'

export interface BootIsoInputs {
  /** Where ipxe.lkrn and ipxe.efi are (settings assetSources.ipxeDir; Debian package ipxe). */
  ipxeDir?: string
  /** isolinux.bin (Debian package isolinux). */
  isolinuxBin?: string
  /** The isohybrid MBR (Debian package isolinux). */
  isohybridMbr?: string
  /** ldlinux.c32 (Debian package syslinux-common). */
  ldlinux?: string
}

export interface BuildBootIsoOptions extends BootIsoInputs {
  /** rackboot's base URL as machines reach it (http.publicUrl): the script chains to <serverUrl>/boot.ipxe. */
  serverUrl: string
  /** The cache directory (<dataDir>/virtual-media). */
  outDir: string
  /** Budget of one build, all tools together (default 60 s). */
  timeoutMs?: number
  /** Built images kept in outDir (default 4): one per server URL in use. */
  keep?: number
  log?: Logger
}

export interface BootIso {
  path: string
  size: number
  mtime: Date
  /** A strong ETag for a built image (its inputs' hash); a weak one (size and mtime) for a user's file. */
  etag: string
  source: 'built' | 'user'
  /** Built by this call (false: the cached image, or the user's file). */
  fresh: boolean
  /** The script inside; null for a user's ISO. */
  script: string | null
}

const DEFAULTS = {
  ipxeDir: '/usr/lib/ipxe',
  isolinuxBin: '/usr/lib/ISOLINUX/isolinux.bin',
  isohybridMbr: '/usr/lib/ISOLINUX/isohdpfx.bin',
  ldlinux: '/usr/lib/syslinux/modules/bios/ldlinux.c32',
}

const TOOLS = [
  { program: 'xorriso', pkg: 'xorriso' },
  { program: 'mformat', pkg: 'mtools' },
  { program: 'mmd', pkg: 'mtools' },
  { program: 'mcopy', pkg: 'mtools' },
] as const

const INSTALL_HINT = 'install the Debian packages xorriso mtools isolinux syslinux-common ipxe, ' +
  'or set virtualMedia.iso to an ISO of your own'

function inputFiles(o: BootIsoInputs): { name: string; path: string; pkg: string }[] {
  const ipxeDir = o.ipxeDir ?? DEFAULTS.ipxeDir
  return [
    { name: 'ipxe.lkrn', path: join(ipxeDir, 'ipxe.lkrn'), pkg: 'ipxe' },
    { name: 'ipxe.efi', path: join(ipxeDir, 'ipxe.efi'), pkg: 'ipxe' },
    { name: 'isolinux.bin', path: o.isolinuxBin ?? DEFAULTS.isolinuxBin, pkg: 'isolinux' },
    { name: 'isohdpfx.bin', path: o.isohybridMbr ?? DEFAULTS.isohybridMbr, pkg: 'isolinux' },
    { name: 'ldlinux.c32', path: o.ldlinux ?? DEFAULTS.ldlinux, pkg: 'syslinux-common' },
  ]
}

function notServable(message: string, cause?: unknown): RackbootError {
  return new RackbootError('RB_ERR_NOT_SERVABLE', message, cause === undefined ? {} : { cause })
}

/**
 * The iPXE script on the ISO. `ifconf --configurator dhcp` rather than `dhcp` (which also waits for IPv6
 * autoconfiguration: measured under TCG without router advertisements, the script came at 18.3 s instead of 5.5 s).
 * `${netX/...}` rather than the DHCP path's `${net0/...}`: a CD boot has no boot NIC; ifconf configures the first
 * interface that answers, which netX then names. Loops until it gets a script.
 */
export function bootIsoScript(serverUrl: string): string {
  const base = serverUrl.replace(/\/+$/, '')
  if (!/^https?:\/\/[^\s/$?#{}]+(\/[^\s$?#{}]*)?$/.test(base)) {
    throw new RackbootError('RB_ERR_VALIDATION', `virtual media: the server URL must be http://host[:port][/path] without spaces, $, { or }: ${JSON.stringify(serverUrl)}`)
  }
  const query = IPXE_IDENTITY_QUERY.replaceAll('${net0/', '${netX/')
  return [
    '#!ipxe',
    `echo rackboot: virtual media boot, asking ${base} for the boot script`,
    ':start',
    'ifconf --configurator dhcp || goto nonet',
    `chain --replace --autofree ${base}/boot.ipxe?${query} || goto failed`,
    ':failed',
    `echo rackboot: cannot fetch the boot script from ${base}, retrying in 10 s`,
    'sleep 10',
    'goto start',
    ':nonet',
    'echo rackboot: no DHCP answer on any interface, retrying in 10 s',
    'sleep 10',
    'goto start',
    '',
  ].join('\n')
}

/** What is missing to build the ISO (tools, Debian files), with the fix; null when everything is there. */
export async function missingIsoTools(inputs: BootIsoInputs = {}): Promise<string | null> {
  const missing: string[] = []
  const pkgs = new Set<string>()
  for (const t of TOOLS) {
    if (!which(t.program)) {
      missing.push(t.program)
      pkgs.add(t.pkg)
    }
  }
  for (const f of inputFiles(inputs)) {
    const ok = await stat(f.path).then((s) => s.isFile(), () => false)
    if (!ok) {
      missing.push(f.path)
      pkgs.add(f.pkg)
    }
  }
  if (missing.length === 0) return null
  return `cannot build the virtual media ISO: missing ${missing.join(', ')} (Debian packages ${[...pkgs].join(' ')}); ${INSTALL_HINT}`
}

// Hashes of input files by path, reused while size, mtime and inode stay the same (a boot storm of range requests
// must not re-read the binaries each time).
const digests = new Map<string, { size: number; mtimeMs: number; ino: number; sha256: string }>()

async function digestOf(path: string): Promise<string> {
  const s = await stat(path)
  const hit = digests.get(path)
  if (hit && hit.size === s.size && hit.mtimeMs === s.mtimeMs && hit.ino === s.ino) return hit.sha256
  const h = createHash('sha256')
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer)
  const sha256 = h.digest('hex')
  digests.set(path, { size: s.size, mtimeMs: s.mtimeMs, ino: s.ino, sha256 })
  return sha256
}

function run(program: string, args: string[], signal: AbortSignal, cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(program, args, {
      cwd, signal, killSignal: 'SIGKILL', maxBuffer: 4 * 1024 * 1024, encoding: 'utf8',
      // Fixed dates (xorriso and mtools honour SOURCE_DATE_EPOCH); no user mtools configuration.
      env: { ...process.env, SOURCE_DATE_EPOCH: String(FIXED_EPOCH), MTOOLSRC: '/dev/null', MTOOLS_SKIP_CHECK: '1', LC_ALL: 'C' },
    }, (err, _stdout, stderr) => {
      if (!err) return resolve()
      const why = signal.aborted ? 'timed out' : `failed (${(err as NodeJS.ErrnoException).code ?? 'error'})`
      reject(new Error(`${program} ${why}: ${String(stderr).trim().split('\n').slice(-5).join(' | ')}`))
    })
  })
}

async function isoOf(path: string, etag: string, fresh: boolean, script: string): Promise<BootIso> {
  const s = await stat(path)
  return { path, size: s.size, mtime: s.mtime, etag, source: 'built', fresh, script }
}

// Builds in flight, by output path: concurrent callers wait for the same one.
const building = new Map<string, Promise<BootIso>>()

/**
 * The ISO for `serverUrl`: the cached image when its inputs are unchanged, else a new build. Throws a RackbootError
 * RB_ERR_NOT_SERVABLE (503) naming what is missing or what failed.
 */
export async function buildBootIso(options: BuildBootIsoOptions): Promise<BootIso> {
  const script = bootIsoScript(options.serverUrl)
  const missing = await missingIsoTools(options)
  if (missing) throw notServable(missing)
  const files = inputFiles(options)
  const hashes = await Promise.all(files.map(async (f) => [f.name, await digestOf(f.path)] as const))
  const key = createHash('sha256').update(JSON.stringify({ layout: LAYOUT_VERSION, script, files: hashes })).digest('hex')
  const out = join(options.outDir, `${PREFIX}${key.slice(0, 24)}.iso`)
  const etag = `"${key.slice(0, 32)}"`
  const cached = await isoOf(out, etag, false, script).catch(() => null)
  if (cached) return cached
  const pending = building.get(out)
  if (pending) return pending
  const job = build(options, files, script, out).then(() => isoOf(out, etag, true, script))
  building.set(out, job)
  try {
    return await job
  } finally {
    building.delete(out)
  }
}

async function build(options: BuildBootIsoOptions, files: ReturnType<typeof inputFiles>, script: string, out: string): Promise<void> {
  const started = Date.now()
  const work = join(options.outDir, `${BUILD_DIR_PREFIX}${randomBytes(6).toString('hex')}`)
  const tree = join(work, 'tree')
  const signal = AbortSignal.timeout(options.timeoutMs ?? 60_000)
  const path = (name: string) => files.find((f) => f.name === name)!.path
  try {
    await mkdir(options.outDir, { recursive: true })
    await removeStaleBuilds(options.outDir)
    await mkdir(tree, { recursive: true })
    await Promise.all([
      copyFile(path('isolinux.bin'), join(tree, 'isolinux.bin')),
      copyFile(path('ldlinux.c32'), join(tree, 'ldlinux.c32')),
      copyFile(path('ipxe.lkrn'), join(tree, 'ipxe.lkrn')),
      writeFile(join(tree, 'boot.ipxe'), script),
      writeFile(join(work, 'autoexec.ipxe'), script),
      // TIMEOUT 0 / PROMPT 0: straight into iPXE, no menu to wait at.
      writeFile(join(tree, 'isolinux.cfg'), ['DEFAULT rackboot', 'PROMPT 0', 'TIMEOUT 0', 'LABEL rackboot', '  KERNEL /ipxe.lkrn', '  INITRD /boot.ipxe', ''].join('\n')),
    ])
    // The FAT image the UEFI El Torito entry points at: room for ipxe.efi, the script and FAT's own overhead.
    const efi = join(work, 'BOOTX64.EFI')
    await copyFile(path('ipxe.efi'), efi)
    const efiSize = (await stat(efi)).size
    const imgBytes = Math.max(1024 * 1024, Math.ceil((efiSize + script.length + 256 * 1024) / 65536) * 65536)
    const img = join(tree, 'efiboot.img')
    await writeFile(img, Buffer.alloc(0))
    await truncate(img, imgBytes)
    // Every file gets the fixed date (mcopy -m and xorriso keep a file's mtime), so equal inputs give equal bytes.
    for (const f of [efi, join(work, 'autoexec.ipxe'), ...(await readdir(tree)).map((n) => join(tree, n))]) await utimes(f, FIXED_EPOCH, FIXED_EPOCH)
    await run('mformat', ['-i', img, '-N', '52424f4f', '-v', 'RACKBOOT', '::'], signal, work)
    await run('mmd', ['-i', img, '::/EFI', '::/EFI/BOOT'], signal, work)
    await run('mcopy', ['-m', '-i', img, efi, '::/EFI/BOOT/BOOTX64.EFI'], signal, work)
    await run('mcopy', ['-m', '-i', img, join(work, 'autoexec.ipxe'), '::/autoexec.ipxe'], signal, work)
    await utimes(img, FIXED_EPOCH, FIXED_EPOCH)
    await utimes(tree, FIXED_EPOCH, FIXED_EPOCH)
    const iso = join(work, 'rackboot.iso')
    await run('xorriso', [
      '-as', 'mkisofs', '-o', iso, '-V', 'RACKBOOT', '-J', '-R',
      '-isohybrid-mbr', path('isohdpfx.bin'),
      '-c', 'boot.cat',
      '-b', 'isolinux.bin', '-no-emul-boot', '-boot-load-size', '4', '-boot-info-table',
      '-eltorito-alt-boot', '-e', 'efiboot.img', '-no-emul-boot', '-isohybrid-gpt-basdat',
      tree,
    ], signal, work)
    // Atomic: a reader (or another process building the same key) sees the whole file or none.
    await rename(iso, out)
    options.log?.info({ iso: out, ms: Date.now() - started }, 'virtual media ISO built')
    await prune(options.outDir, options.keep ?? 4, out)
  } catch (err) {
    throw notServable(`cannot build the virtual media ISO in ${options.outDir}: ${(err as Error).message}; ` +
      'set virtualMedia.iso to serve an ISO of your own instead', err)
  } finally {
    await rm(work, { recursive: true, force: true })
  }
}

/** Build directories a killed process left behind (older than an hour, so a build in progress is spared). */
async function removeStaleBuilds(dir: string): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith(BUILD_DIR_PREFIX)) continue
    const s = await stat(join(dir, name)).catch(() => null)
    if (s && Date.now() - s.mtimeMs > 3_600_000) await rm(join(dir, name), { recursive: true, force: true })
  }
}

/** Keeps the newest `keep` images (one per server URL in use); a BMC reading a removed one keeps its open file. */
async function prune(dir: string, keep: number, current: string): Promise<void> {
  const isos: { path: string; mtimeMs: number }[] = []
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith(PREFIX) || !name.endsWith('.iso')) continue
    const s = await stat(join(dir, name)).catch(() => null)
    if (s) isos.push({ path: join(dir, name), mtimeMs: s.mtimeMs })
  }
  isos.sort((a, b) => b.mtimeMs - a.mtimeMs)
  for (const old of isos.filter((i) => i.path !== current).slice(Math.max(0, keep - 1))) await rm(old.path, { force: true })
}

/** A user's ISO (virtualMedia.iso), served as is. */
export async function userBootIso(path: string): Promise<BootIso> {
  const s = await stat(path).catch((err: NodeJS.ErrnoException) => {
    throw notServable(`virtualMedia.iso ${path}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`, err)
  })
  if (!s.isFile()) throw notServable(`virtualMedia.iso ${path} is not a file`)
  return { path, size: s.size, mtime: s.mtime, etag: `W/"${s.size.toString(16)}-${Math.floor(s.mtimeMs).toString(16)}"`, source: 'user', fresh: false, script: null }
}

export interface BootIsoProviderOptions extends BootIsoInputs {
  /** A user's ISO, served as is (virtualMedia.iso); empty or absent: build one. */
  iso?: string | null
  outDir: string
  timeoutMs?: number
  log?: Logger
  /** How long a result is reused before the inputs are looked at again (default 2 s). */
  recheckMs?: number
  /** How long a failed build is reported before it is tried again (default 30 s): a BMC's retries start no builds. */
  failureTtlMs?: number
}

export interface BootIsoProvider {
  /** The ISO for machines that reach rackboot at `serverUrl`; throws RB_ERR_NOT_SERVABLE with the reason. */
  get(serverUrl: string): Promise<BootIso>
}

/** The ISO with its inputs looked at most every `recheckMs`, and a failure remembered for `failureTtlMs`. */
export function createBootIsoProvider(options: BootIsoProviderOptions): BootIsoProvider {
  const recheckMs = options.recheckMs ?? 2_000
  const failureTtlMs = options.failureTtlMs ?? 30_000
  const memo = new Map<string, { at: number; result: Promise<BootIso>; failed: boolean }>()
  return {
    get(serverUrl) {
      const now = Date.now()
      const hit = memo.get(serverUrl)
      if (hit && now - hit.at < (hit.failed ? failureTtlMs : recheckMs)) return hit.result
      const result = options.iso
        ? userBootIso(options.iso)
        : buildBootIso({ ...options, serverUrl })
      const entry = { at: now, result, failed: false }
      // A few server URLs at most (one per base URL in use); the map cannot grow past what the caller passes.
      memo.set(serverUrl, entry)
      result.catch((err: unknown) => {
        entry.failed = true
        entry.at = Date.now()
        options.log?.warn({ err: (err as Error).message }, 'virtual media ISO unavailable')
      })
      return result
    },
  }
}
