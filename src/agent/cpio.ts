// A writer for the cpio "newc" format (SVR4 without CRC), the format the Linux kernel unpacks as an initramfs
// (Documentation/driver-api/early-userspace/buffer-format.rst). Entries get fixed inode numbers and one mtime, so the
// same input always gives the same bytes (and the same gzip), which keeps cached builds comparable.
import { RackbootError } from '../errors.js'

const S_IFDIR = 0o040000
const S_IFREG = 0o100000
const S_IFLNK = 0o120000
const S_IFCHR = 0o020000
const S_IFBLK = 0o060000

export type CpioEntry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; data: Uint8Array | string; mode?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'char' | 'block'; path: string; major: number; minor: number; mode?: number }

export interface CpioOptions {
  /** Modification time of every entry, seconds since the epoch (default 0: reproducible output). */
  mtime?: number
}

function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new RackbootError('RB_ERR_VALIDATION', `cpio: field value out of range: ${n}`)
  }
  return n.toString(16).padStart(8, '0')
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4
}

/** Archive paths are relative ("bin/sh"): the kernel unpacks them under /. */
export function normalizeCpioPath(path: string): string {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.')
  if (parts.length === 0 || parts.includes('..')) {
    throw new RackbootError('RB_ERR_VALIDATION', `cpio: bad path ${JSON.stringify(path)}`)
  }
  return parts.join('/')
}

interface Header {
  ino: number
  mode: number
  nlink: number
  mtime: number
  size: number
  rdevMajor: number
  rdevMinor: number
  name: string
}

function header(h: Header): Buffer {
  const name = Buffer.from(h.name + '\0', 'utf8')
  const fields = [
    '070701',
    hex8(h.ino),
    hex8(h.mode),
    hex8(0), // uid: root
    hex8(0), // gid: root
    hex8(h.nlink),
    hex8(h.mtime),
    hex8(h.size),
    hex8(0), // devmajor
    hex8(0), // devminor
    hex8(h.rdevMajor),
    hex8(h.rdevMinor),
    hex8(name.length),
    hex8(0), // check (only used by the "crc" variant)
  ].join('')
  const head = Buffer.from(fields, 'ascii')
  return Buffer.concat([head, name, Buffer.alloc(pad4(head.length + name.length))])
}

/** Encodes entries in the order given (parents must come before children) followed by the trailer. */
export function encodeCpio(entries: readonly CpioEntry[], options: CpioOptions = {}): Buffer {
  const mtime = options.mtime ?? 0
  const chunks: Buffer[] = []
  let ino = 1
  const seen = new Set<string>()
  for (const entry of entries) {
    const name = normalizeCpioPath(entry.path)
    if (seen.has(name)) throw new RackbootError('RB_ERR_VALIDATION', `cpio: duplicate path ${name}`)
    seen.add(name)
    let mode: number
    let data: Buffer = Buffer.alloc(0)
    let rdevMajor = 0
    let rdevMinor = 0
    let nlink = 1
    switch (entry.type) {
      case 'dir':
        mode = S_IFDIR | (entry.mode ?? 0o755)
        nlink = 2
        break
      case 'file':
        mode = S_IFREG | (entry.mode ?? 0o644)
        data = typeof entry.data === 'string' ? Buffer.from(entry.data, 'utf8') : Buffer.from(entry.data.buffer, entry.data.byteOffset, entry.data.byteLength)
        break
      case 'symlink':
        mode = S_IFLNK | 0o777
        data = Buffer.from(entry.target, 'utf8')
        break
      case 'char':
      case 'block':
        mode = (entry.type === 'char' ? S_IFCHR : S_IFBLK) | (entry.mode ?? 0o600)
        rdevMajor = entry.major
        rdevMinor = entry.minor
        break
    }
    chunks.push(header({ ino: ino++, mode, nlink, mtime, size: data.length, rdevMajor, rdevMinor, name }))
    if (data.length > 0) chunks.push(data, Buffer.alloc(pad4(data.length)))
  }
  chunks.push(header({ ino: 0, mode: 0, nlink: 1, mtime: 0, size: 0, rdevMajor: 0, rdevMinor: 0, name: 'TRAILER!!!' }))
  return Buffer.concat(chunks)
}

/**
 * Collects entries for an archive: parent directories are added on demand, and a later entry for the same path
 * replaces the earlier one (so a script can override a busybox applet link).
 */
export class CpioBuilder {
  private readonly entries = new Map<string, CpioEntry>()

  dir(path: string, mode = 0o755): this {
    const name = normalizeCpioPath(path)
    const existing = this.entries.get(name)
    if (existing && existing.type !== 'dir') throw new RackbootError('RB_ERR_VALIDATION', `cpio: ${name} is not a directory`)
    if (!existing || mode !== 0o755) {
      this.parents(name)
      this.entries.set(name, { type: 'dir', path: name, mode })
    }
    return this
  }

  file(path: string, data: Uint8Array | string, mode = 0o644): this {
    return this.put({ type: 'file', path, data, mode })
  }

  symlink(path: string, target: string): this {
    return this.put({ type: 'symlink', path, target })
  }

  char(path: string, major: number, minor: number, mode = 0o600): this {
    return this.put({ type: 'char', path, major, minor, mode })
  }

  has(path: string): boolean {
    return this.entries.has(normalizeCpioPath(path))
  }

  get size(): number {
    return this.entries.size
  }

  /** Parents first (insertion order already guarantees it), then the trailer. */
  toBuffer(options: CpioOptions = {}): Buffer {
    return encodeCpio([...this.entries.values()], options)
  }

  private put(entry: CpioEntry): this {
    const name = normalizeCpioPath(entry.path)
    const existing = this.entries.get(name)
    if (existing?.type === 'dir') throw new RackbootError('RB_ERR_VALIDATION', `cpio: ${name} is a directory`)
    this.parents(name)
    // Delete first so the replacement keeps "parents before children" (it moves to the end).
    this.entries.delete(name)
    this.entries.set(name, { ...entry, path: name })
    return this
  }

  private parents(name: string): void {
    const parts = name.split('/')
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/')
      const existing = this.entries.get(dir)
      if (!existing) this.entries.set(dir, { type: 'dir', path: dir, mode: 0o755 })
      else if (existing.type !== 'dir') throw new RackbootError('RB_ERR_VALIDATION', `cpio: ${dir} is not a directory`)
    }
  }
}
