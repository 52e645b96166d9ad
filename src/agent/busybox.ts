// The busybox for the initramfs: a statically linked binary for the image's architecture (the initramfs has no
// libc). The host's /bin/busybox is used when it is the static build for that architecture (Debian busybox-static);
// otherwise busybox-static's .deb for the architecture is fetched into the cache and unpacked, never installed.
import { execFile } from 'node:child_process'
import { open, readFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import type { Logger } from '../log.js'
import { RackbootError } from '../errors.js'
import { aptFor, type DebArch } from './apt.js'
import { cachedDebs, extractDeb, fetchDeb, resolveDeb, sha256File, type ProgressFn } from './debian.js'
import { which } from '../processes.js'

export interface Busybox {
  path: string
  sha256: string
  /** "1.35.0 (Debian 1:1.35.0-4+deb12u1+b1)", from the binary's banner; "unknown" when it has none. */
  version: string
  /** Applet paths relative to / (e.g. "bin/sh", "usr/bin/wget"). */
  applets: string[]
}

/** ELF e_machine of each architecture (the ELF specification's EM_X86_64 and EM_AARCH64). */
export const ELF_MACHINE: Record<DebArch, number> = { amd64: 0x3e, arm64: 0xb7 }

/**
 * True when `head` (the ELF header, at least 64 bytes) is a 64-bit little-endian ELF executable for `arch` without
 * a program interpreter (statically linked). The program header table is `table`, else read from `head` itself.
 */
export function isStaticElfHeader(head: Buffer, arch: DebArch, table?: Buffer): boolean {
  if (head.length < 64) return false
  // ELF magic, 64-bit, little endian, executable or PIE, machine.
  if (head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2 || head[5] !== 1) return false
  const type = head.readUInt16LE(16)
  if ((type !== 2 && type !== 3) || head.readUInt16LE(18) !== ELF_MACHINE[arch]) return false
  const phoff = Number(head.readBigUInt64LE(32))
  const phentsize = head.readUInt16LE(54)
  const phnum = head.readUInt16LE(56)
  if (phnum === 0 || phentsize < 4) return false
  const ph = table ?? head.subarray(phoff, phoff + phentsize * phnum)
  if (ph.length < phentsize * phnum) return false
  for (let i = 0; i < phnum; i++) {
    if (ph.readUInt32LE(i * phentsize) === 3) return false // PT_INTERP: dynamically linked
  }
  return true
}

/** True when `path` is a statically linked ELF executable for `arch` (default amd64). */
export async function isStaticElf(path: string, arch: DebArch = 'amd64'): Promise<boolean> {
  let fh
  try {
    fh = await open(path, 'r')
  } catch {
    return false
  }
  try {
    const head = Buffer.alloc(64)
    const { bytesRead } = await fh.read(head, 0, 64, 0)
    if (bytesRead < 64 || head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2) return false
    const phoff = Number(head.readBigUInt64LE(32))
    const table = Buffer.alloc(Math.min(head.readUInt16LE(54) * head.readUInt16LE(56), 64 * 1024))
    await fh.read(table, 0, table.length, phoff)
    return isStaticElfHeader(head, arch, table)
  } finally {
    await fh.close()
  }
}

/** The x86-64 check, as it was before other architectures. */
export const isStaticX8664Elf = (path: string): Promise<boolean> => isStaticElf(path, 'amd64')

/** Whether this machine runs programs of `arch` natively. */
export function runsNatively(arch: DebArch): boolean {
  return (arch === 'amd64' && process.arch === 'x64') || (arch === 'arm64' && process.arch === 'arm64')
}

/**
 * Applet names read from a busybox binary itself, for one that cannot run here (another architecture): busybox
 * keeps them as one sorted, NUL-separated string that starts "[\0[[\0" (applet_tables.h). Null when not found.
 */
export function appletNamesFromBinary(bin: Buffer): string[] | null {
  const start = bin.indexOf(Buffer.from('\0[\0[[\0', 'latin1'))
  if (start < 0) return null
  const names: string[] = []
  let at = start + 1
  for (;;) {
    const end = bin.indexOf(0, at)
    if (end <= at) break
    const name = bin.toString('latin1', at, end)
    if (!/^[\w.[-]+$/.test(name)) break
    // Sorted by strcmp: anything out of order is past the table.
    if (names.length > 0 && Buffer.compare(Buffer.from(names[names.length - 1]!, 'latin1'), Buffer.from(name, 'latin1')) >= 0) break
    names.push(name)
    at = end + 1
  }
  return names.length >= 2 ? names : null
}

/** The version in busybox's banner ("BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1)"), read from the binary. */
export function busyboxVersionFromBinary(bin: Buffer): string {
  const at = bin.indexOf('BusyBox v')
  if (at < 0) return 'unknown'
  const text = bin.toString('latin1', at + 'BusyBox v'.length, at + 120)
  return (/^[0-9][0-9.]*( \([\x20-\x7e]+?\))?/.exec(text)?.[0]) ?? 'unknown'
}

function listApplets(path: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    execFile(path, ['--list-full'], { encoding: 'utf8', timeout: 10_000 }, (err, stdout) => {
      if (err) reject(new RackbootError('RB_ERR_INTERNAL', `${path} --list-full failed`, { cause: err }))
      else resolve(stdout.split('\n').map((l) => l.trim()).filter((l) => l && !l.includes('..') && l !== 'bin/busybox'))
    })
  })
}

/**
 * The applets of a busybox that cannot run here: names from the binary, each in the directory the host's own
 * busybox puts it (when there is one), else bin/ (the images' PATH covers /sbin, /bin, /usr/sbin and /usr/bin).
 */
async function foreignApplets(path: string, bin: Buffer): Promise<string[]> {
  const names = appletNamesFromBinary(bin)
  if (!names) throw new RackbootError('RB_ERR_INTERNAL', `${path}: no applet table found in the binary`)
  const dirs = new Map<string, string>()
  const host = which('busybox')
  if (host) {
    for (const full of await listApplets(host).catch(() => [] as string[])) {
      const slash = full.lastIndexOf('/')
      dirs.set(full.slice(slash + 1), full.slice(0, slash))
    }
  }
  return names.filter((n) => n !== 'busybox').map((n) => `${dirs.get(n) ?? 'bin'}/${n}`)
}

async function describe(path: string, arch: DebArch): Promise<Busybox> {
  const bin = await readFile(path)
  const applets = runsNatively(arch) ? await listApplets(path) : await foreignApplets(path, bin)
  return { path, sha256: await sha256File(path), version: busyboxVersionFromBinary(bin), applets }
}

export interface BusyboxOptions {
  cacheDir: string
  log: Logger
  onProgress?: ProgressFn | undefined
  /** Candidates on the host, first static one for the architecture wins (default /bin/busybox, /usr/bin/busybox). */
  hostPaths?: string[]
  /** Debian architecture (default amd64). */
  arch?: DebArch | undefined
}

export async function findBusybox(options: BusyboxOptions): Promise<Busybox> {
  const arch = options.arch ?? 'amd64'
  for (const candidate of options.hostPaths ?? ['/bin/busybox', '/usr/bin/busybox']) {
    if (await isStaticElf(candidate, arch)) return describe(candidate, arch)
  }
  options.log.info({ arch }, 'no static busybox for this architecture on this host: fetching busybox-static')
  let deb: string
  try {
    const apt = await aptFor({ arch, cacheDir: options.cacheDir, log: options.log, onProgress: options.onProgress })
    deb = await fetchDeb(await resolveDeb('busybox-static', apt), options.cacheDir, options.onProgress, apt)
  } catch (err) {
    // Offline: the newest busybox-static of this architecture already in the cache.
    const newest = (await cachedDebs(options.cacheDir, new RegExp(`^busybox-static_[^_]+_${arch}\\.deb$`))).at(-1)
    if (!newest) throw err
    options.log.warn({ err, deb: newest }, 'cannot reach apt for busybox-static: using the cached package')
    deb = newest
  }
  const name = basename(deb)
  const root = await extractDeb(deb, join(options.cacheDir, 'unpacked', name.replace(/\.deb$/, '')), options.onProgress)
  for (const rel of ['bin/busybox', 'usr/bin/busybox']) {
    const path = join(root, rel)
    if (await isStaticElf(path, arch)) return describe(path, arch)
  }
  throw new RackbootError('RB_ERR_NOT_FOUND', `${name} holds no static ${arch} busybox`)
}
