// The busybox for the initramfs: a statically linked x86-64 binary (the initramfs has no libc). The host's
// /bin/busybox is used when it is the static build (Debian busybox-static); otherwise busybox-static's .deb is
// fetched into the cache and unpacked, never installed.
import { execFile } from 'node:child_process'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '../log.js'
import { RackbootError } from '../errors.js'
import { extractDeb, fetchDeb, resolveDeb, sha256File, type ProgressFn } from './debian.js'

export interface Busybox {
  path: string
  sha256: string
  /** Applet paths relative to / (e.g. "bin/sh", "usr/bin/wget"), from `busybox --list-full`. */
  applets: string[]
}

/** True when `path` is an x86-64 ELF executable without a program interpreter (statically linked). */
export async function isStaticX8664Elf(path: string): Promise<boolean> {
  let fh
  try {
    fh = await open(path, 'r')
  } catch {
    return false
  }
  try {
    const head = Buffer.alloc(64)
    await fh.read(head, 0, 64, 0)
    // ELF magic, 64-bit, little endian, machine x86-64 (0x3e).
    if (head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2 || head[5] !== 1 || head.readUInt16LE(18) !== 0x3e) return false
    const phoff = Number(head.readBigUInt64LE(32))
    const phentsize = head.readUInt16LE(54)
    const phnum = head.readUInt16LE(56)
    const table = Buffer.alloc(phentsize * phnum)
    await fh.read(table, 0, table.length, phoff)
    for (let i = 0; i < phnum; i++) {
      if (table.readUInt32LE(i * phentsize) === 3) return false // PT_INTERP: dynamically linked
    }
    return true
  } finally {
    await fh.close()
  }
}

function listApplets(path: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    execFile(path, ['--list-full'], { encoding: 'utf8', timeout: 10_000 }, (err, stdout) => {
      if (err) reject(new RackbootError('RB_ERR_INTERNAL', `${path} --list-full failed`, { cause: err }))
      else resolve(stdout.split('\n').map((l) => l.trim()).filter((l) => l && !l.includes('..') && l !== 'bin/busybox'))
    })
  })
}

export interface BusyboxOptions {
  cacheDir: string
  log: Logger
  onProgress?: ProgressFn
  /** Candidates on the host, first static one wins (default /bin/busybox, /usr/bin/busybox). */
  hostPaths?: string[]
}

export async function findBusybox(options: BusyboxOptions): Promise<Busybox> {
  for (const candidate of options.hostPaths ?? ['/bin/busybox', '/usr/bin/busybox']) {
    if (await isStaticX8664Elf(candidate)) {
      return { path: candidate, sha256: await sha256File(candidate), applets: await listApplets(candidate) }
    }
  }
  options.log.info('no static busybox on this host: fetching busybox-static')
  const pkg = await resolveDeb('busybox-static')
  const deb = await fetchDeb(pkg, options.cacheDir, options.onProgress)
  const root = await extractDeb(deb, join(options.cacheDir, 'unpacked', pkg.filename.replace(/\.deb$/, '')), options.onProgress)
  for (const rel of ['bin/busybox', 'usr/bin/busybox']) {
    const path = join(root, rel)
    if (await isStaticX8664Elf(path)) return { path, sha256: await sha256File(path), applets: await listApplets(path) }
  }
  throw new RackbootError('RB_ERR_NOT_FOUND', `${pkg.filename} holds no static x86-64 busybox`)
}
