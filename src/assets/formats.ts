// What a boot file is, told from its bytes (never its name), and whether that is what the place it goes needs.
// `assets import` once took 100 MB of random bytes as a Talos kernel; the machine found out at boot. Here:
//
//   x86_64 kernel   Linux bzImage: 0x55AA at 510, "HdrS" at 0x202, boot protocol at 0x206, 64-bit entry
//                   (xloadflags bit 0 at 0x236, protocol ≥ 2.12) (Documentation/arch/x86/boot.rst)
//   arm64 kernel    arm64 Image: "ARM\x64" at 0x38 (Documentation/arch/arm64/booting.rst), or an EFI zboot image
//                   ("MZ", "zimg" at 4, drivers/firmware/efi/libstub/zboot-header.S) or PE for machine 0xAA64
//   initramfs       cpio newc/crc ("070701"/"070702"), or a compressed stream (gzip, zstd, xz, lz4 legacy, lzma,
//                   bzip2, lzop) whose first bytes, decompressed where that is cheap, are a cpio archive
//   iPXE, GRUB      *.efi: PE/COFF EFI application for the arch its name says (x86_64 0x8664, arm64 0xAA64);
//                   *.kpxe, *.kkpxe, *.pxe: iPXE's PXE prefix (pxeprefix.S: `jmp $0x7c0, $1f`, "PXE->EB:");
//                   *.lkrn: a bzImage
import { spawn } from 'node:child_process'
import { open } from 'node:fs/promises'
import { basename } from 'node:path'
import * as zlib from 'node:zlib'
import { RackbootError } from '../errors.js'
import { which } from '../processes.js'

/** How much of a file is read to tell what it is (enough for an ISO 9660 descriptor at 32 KiB and a first xz block). */
export const HEAD_BYTES = 1024 * 1024

export type Compression = 'gzip' | 'zstd' | 'xz' | 'lz4' | 'lz4-frame' | 'lzma' | 'bzip2' | 'lzop'

export type FormatKind =
  | 'bzimage' | 'arm64-image' | 'riscv64-image' | 'efi-zboot' | 'pe' | 'elf' | 'ipxe-pxe' | 'x86-boot-code'
  | 'cpio' | 'compressed' | 'option-rom' | 'disk-image' | 'iso9660' | 'archive' | 'text' | 'empty' | 'zeros' | 'random' | 'unknown'

/** What a file looks like. */
export interface Format {
  kind: FormatKind
  /** x86_64, i386, x86 (bitness unknown), arm64, arm, riscv64, loongarch64; null when not a program. */
  arch: string | null
  /** A few words a person reads in an error: "x86_64 bzImage (boot protocol 2.15, Linux 6.12.40-talos)". */
  description: string
  compression?: Compression
  /** For a PE image: whether it is an EFI application (subsystem 10). */
  efiApplication?: boolean
  /** For a PE image: a unified kernel image (has a .linux section). */
  uki?: boolean
  /** For an x86 boot image: an old zImage (loaded low), which iPXE and modern loaders do not boot. */
  zImage?: boolean
  /** For cpio: whether the kernel unpacks this cpio format (newc and crc only). */
  kernelReadable?: boolean
}

/** What the place a file goes needs. */
export type AssetExpectation =
  /** A Linux kernel iPXE can boot; arch null accepts x86_64 or arm64 (the discovery agent's). */
  | { kind: 'kernel'; arch: 'x86_64' | 'arm64' | null }
  | { kind: 'initramfs' }
  | { kind: 'ipxe-efi'; arch: string }
  | { kind: 'ipxe-pxe' }
  | { kind: 'ipxe-lkrn' }

const PE_MACHINES: Record<number, string> = {
  0x014c: 'i386', 0x8664: 'x86_64', 0xaa64: 'arm64', 0x01c2: 'arm', 0x01c4: 'arm', 0x5032: 'riscv32', 0x5064: 'riscv64',
  0x6264: 'loongarch64', 0x0200: 'ia64',
}
const ELF_MACHINES: Record<number, string> = { 3: 'i386', 62: 'x86_64', 183: 'arm64', 40: 'arm', 243: 'riscv', 258: 'loongarch' }

/** Talos and Debian spell architectures amd64/arm64; kernels and iPXE x86_64/arm64. */
export function normalArch(arch: string): string {
  return arch === 'amd64' ? 'x86_64' : arch === 'aarch64' ? 'arm64' : arch
}

function ascii(buf: Buffer, at: number, text: string): boolean {
  return buf.length >= at + text.length && buf.toString('latin1', at, at + text.length) === text
}

function u16(buf: Buffer, at: number): number | null {
  return buf.length >= at + 2 ? buf.readUInt16LE(at) : null
}

function u32(buf: Buffer, at: number): number | null {
  return buf.length >= at + 4 ? buf.readUInt32LE(at) : null
}

function cString(buf: Buffer, at: number, max: number): string {
  if (at < 0 || at >= buf.length) return ''
  const end = buf.indexOf(0, at)
  const s = buf.toString('latin1', at, Math.min(end < 0 ? buf.length : end, at + max))
  return /^[\x20-\x7e]*$/.test(s) ? s : ''
}

function compressionOf(buf: Buffer): Compression | null {
  if (buf.length >= 3 && buf[0] === 0x1f && ((buf[1] === 0x8b && buf[2] === 0x08) || buf[1] === 0x9e)) return 'gzip'
  if (buf.length >= 4 && buf.readUInt32BE(0) === 0x28b52ffd) return 'zstd'
  if (buf.length >= 6 && buf.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz'
  if (buf.length >= 4 && buf.readUInt32BE(0) === 0x02214c18) return 'lz4'
  if (buf.length >= 4 && buf.readUInt32BE(0) === 0x04224d18) return 'lz4-frame'
  if (buf.length >= 10 && ascii(buf, 0, 'BZh') && buf[3]! >= 0x31 && buf[3]! <= 0x39 && buf.readUIntBE(4, 6) === 0x314159265359) return 'bzip2'
  if (buf.length >= 9 && buf.subarray(0, 9).equals(Buffer.from([0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'lzop'
  // lzma "alone": properties (lc/lp/pb; 0x5d is what every encoder writes by default), a dictionary size that is
  // 2^n or 2^n + 2^(n-1), then the size (-1 when unknown, else well under 2^48). The kernel itself looks for 5d 00 00.
  if (buf.length >= 13 && buf[0] === 0x5d && buf[1] === 0x00 && buf[2] === 0x00) {
    const dict = buf.readUInt32LE(1)
    const size = buf.readBigUInt64LE(5)
    const dictOk = [...Array(32).keys()].some((n) => dict === 2 ** n || dict === 2 ** n + 2 ** Math.max(n - 1, 0))
    if (dictOk && (size === 0xffffffffffffffffn || size < 2n ** 48n)) return 'lzma'
  }
  return null
}

/** cpio's old binary header (magic 070707 octal in either byte order), with a sane NUL-terminated first name. */
function oldBinaryCpio(buf: Buffer): boolean {
  if (buf.length < 28) return false
  const le = buf.readUInt16LE(0) === 0o70707
  if (!le && buf.readUInt16BE(0) !== 0o70707) return false
  const nameSize = le ? buf.readUInt16LE(20) : buf.readUInt16BE(20)
  if (nameSize < 2 || nameSize > 1024 || buf.length < 26 + nameSize) return false
  return buf[26 + nameSize - 1] === 0 && /^[\x20-\x7e]+$/.test(buf.toString('latin1', 26, 26 + nameSize - 1))
}

/** Bits of entropy per byte of a sample (8 for random bytes, ~4.5 for English text, 0 for one repeated byte). */
function entropy(buf: Buffer): number {
  const counts = new Array<number>(256).fill(0)
  for (const b of buf) counts[b]!++
  let e = 0
  for (const c of counts) if (c) e -= (c / buf.length) * Math.log2(c / buf.length)
  return e
}

function isText(buf: Buffer): boolean {
  const sample = buf.subarray(0, 4096)
  if (sample.length === 0) return false
  let bad = 0
  for (const b of sample) if (b < 0x09 || (b > 0x0d && b < 0x20) || b === 0x7f) bad++
  return bad === 0 && !sample.toString('utf8').includes('\ufffd')
}

function peFormat(buf: Buffer): Format | null {
  const peAt = u32(buf, 0x3c)
  if (peAt === null || peAt > buf.length - 24 || !ascii(buf, peAt, 'PE\0\0')) return null
  const machine = buf.readUInt16LE(peAt + 4)
  const arch = PE_MACHINES[machine] ?? null
  const sections = buf.readUInt16LE(peAt + 6)
  const optSize = buf.readUInt16LE(peAt + 20)
  const opt = peAt + 24
  const subsystem = u16(buf, opt + 68)
  const names: string[] = []
  for (let i = 0, at = opt + optSize; i < sections && at + 8 <= buf.length; i++, at += 40) names.push(cString(buf, at, 8))
  const archWord = arch ?? `unknown-machine 0x${machine.toString(16).padStart(4, '0')}`
  if (names.includes('.linux')) return { kind: 'pe', arch, efiApplication: subsystem === 10, uki: true, description: `${archWord} unified kernel image (UKI, an EFI application)` }
  const what = subsystem === 10 ? 'EFI application' : subsystem === 11 || subsystem === 12 ? 'EFI driver' : subsystem === 13 ? 'EFI option ROM' : subsystem === 2 || subsystem === 3 ? 'Windows program' : 'PE executable'
  return { kind: 'pe', arch, efiApplication: subsystem === 10, description: `${archWord} ${what}` }
}

/** What `head` (the first bytes of a file, up to HEAD_BYTES) is. `size` is the whole file's, when known. */
export function identify(head: Buffer, size: number = head.length): Format {
  if (size === 0 || head.length === 0) return { kind: 'empty', arch: null, description: 'an empty file' }

  // x86 bzImage first: an x86 kernel with an EFI stub also starts with "MZ".
  if (u16(head, 510) === 0xaa55 && ascii(head, 0x202, 'HdrS')) {
    const protocol = head.readUInt16LE(0x206)
    const version = `${protocol >> 8}.${(protocol & 0xff).toString().padStart(2, '0')}`
    const loadedHigh = ((head[0x211] ?? 0) & 1) === 1
    const kernelVersionAt = u16(head, 0x20e)
    const release = kernelVersionAt ? cString(head, 0x200 + kernelVersionAt, 120).split(' ')[0] ?? '' : ''
    const x64 = protocol >= 0x020c && ((head[0x236] ?? 0) & 1) === 1
    const arch = protocol >= 0x020c ? (x64 ? 'x86_64' : 'i386') : 'x86'
    const detail = `boot protocol ${version}${release ? `, ${/^\d/.test(release) && !release.includes('git') ? `Linux ${release}` : `version ${release}`}` : ''}`
    return { kind: 'bzimage', arch, zImage: !loadedHigh, description: `${arch} ${loadedHigh ? 'bzImage' : 'zImage (not a bzImage)'} (${detail})` }
  }
  if (ascii(head, 0, 'MZ') && ascii(head, 4, 'zimg')) {
    const pe = peFormat(head)
    const comp = cString(head, 0x18, 16)
    const arch = pe?.arch ?? null
    return { kind: 'efi-zboot', arch, efiApplication: true, description: `${arch ?? 'unknown-arch'} EFI zboot kernel${comp ? ` (${comp})` : ''}` }
  }
  if (ascii(head, 0x38, 'ARM\x64')) {
    const stub = ascii(head, 0, 'MZ') && peFormat(head) !== null
    return { kind: 'arm64-image', arch: 'arm64', efiApplication: stub, description: `arm64 Image${stub ? ' (EFI stub)' : ' (no EFI stub)'}` }
  }
  if (ascii(head, 0x38, 'RSC\x05')) return { kind: 'riscv64-image', arch: 'riscv64', description: 'riscv64 Image' }
  if (ascii(head, 0, 'MZ')) return peFormat(head) ?? { kind: 'unknown', arch: null, description: 'an MS-DOS executable (MZ without a PE header)' }
  if (ascii(head, 0, '\x7fELF') && head.length >= 20) {
    const machine = head[5] === 2 ? head.readUInt16BE(18) : head.readUInt16LE(18)
    const arch = ELF_MACHINES[machine] ?? null
    return { kind: 'elf', arch, description: `${arch ?? `machine ${machine}`} ELF file (an uncompressed vmlinux or a program, not a boot image)` }
  }
  // iPXE's PXE prefix (undionly.kpxe, ipxe.pxe): `jmp $0x7c0, $1f` (EA 05 00 C0 07), its banner "PXE->EB:" nearby.
  if (head[0] === 0xea && u16(head, 3) === 0x07c0) {
    if (head.subarray(0, 4096).includes('PXE->EB:')) return { kind: 'ipxe-pxe', arch: 'x86', description: 'iPXE PXE image' }
    return { kind: 'x86-boot-code', arch: 'x86', description: 'x86 real-mode boot code (a PXE program, but not iPXE)' }
  }
  if (ascii(head, 0, '070701') || ascii(head, 0, '070702')) {
    return { kind: 'cpio', arch: null, kernelReadable: true, description: `cpio archive (${head[5] === 0x32 ? 'newc with CRC' : 'newc'})` }
  }
  if (ascii(head, 0, '070707')) return { kind: 'cpio', arch: null, kernelReadable: false, description: 'cpio archive in the old ASCII format (the kernel reads only newc: cpio -H newc)' }
  if (oldBinaryCpio(head)) return { kind: 'cpio', arch: null, kernelReadable: false, description: 'cpio archive in the old binary format (the kernel reads only newc: cpio -H newc)' }
  const compression = compressionOf(head)
  if (compression) {
    const name = compression === 'lz4-frame' ? 'lz4 frame' : compression
    return { kind: 'compressed', arch: null, compression, description: `${name} stream` }
  }
  if (head[0] === 0x55 && head[1] === 0xaa && u16(head, 0x18) !== null && ascii(head, head.readUInt16LE(0x18), 'PCIR')) {
    return { kind: 'option-rom', arch: null, description: 'a PCI option ROM (a NIC firmware image, not a network boot program)' }
  }
  if (ascii(head, 0x8001, 'CD001')) return { kind: 'iso9660', arch: null, description: 'an ISO 9660 image (a CD/DVD image)' }
  if (ascii(head, 0, 'QFI\xfb')) return { kind: 'disk-image', arch: null, description: 'a qcow2 disk image' }
  if (ascii(head, 512, 'EFI PART')) return { kind: 'disk-image', arch: null, description: 'a disk image (GPT)' }
  if (ascii(head, 0, 'hsqs')) return { kind: 'disk-image', arch: null, description: 'a squashfs image' }
  if (ascii(head, 0, 'PK\x03\x04')) return { kind: 'archive', arch: null, description: 'a zip archive' }
  if (ascii(head, 257, 'ustar')) return { kind: 'archive', arch: null, description: 'a tar archive' }
  if (u16(head, 510) === 0xaa55) return { kind: 'disk-image', arch: null, description: 'a disk image or boot sector (MBR signature, no kernel header)' }
  if (isText(head)) {
    const text = head.subarray(0, 4096).toString('utf8')
    const start = text.trimStart()
    if (/^<(!doctype html|html|head|body)/i.test(start) || /<html[\s>]/i.test(text)) return { kind: 'text', arch: null, description: 'an HTML page (an error or login page saved as the file?)' }
    if (/^#!ipxe/i.test(start)) return { kind: 'text', arch: null, description: 'an iPXE script' }
    if (/^[[{]/.test(start)) return { kind: 'text', arch: null, description: 'JSON text' }
    if (/^[0-9a-f]{64,128}\s/i.test(start)) return { kind: 'text', arch: null, description: 'a checksum list' }
    const first = start.split('\n')[0]!.slice(0, 40)
    return { kind: 'text', arch: null, description: `text ("${first}${start.split('\n')[0]!.length > 40 ? '…' : ''}")` }
  }
  if (head.every((b) => b === 0)) return { kind: 'zeros', arch: null, description: 'zero bytes' }
  const sample = head.subarray(0, 65536)
  if (sample.length >= 1024 && entropy(sample) > 7.5) return { kind: 'random', arch: null, description: 'random data' }
  return { kind: 'unknown', arch: null, description: `unrecognised binary data (starts ${head.subarray(0, 8).toString('hex')})` }
}

// ---- A look inside compressed streams -------------------------------------------------------------------------

/** How many decompressed bytes are enough to tell what a stream holds. */
const PEEK_BYTES = 64 * 1024
const PEEK_TIMEOUT_MS = 5_000

export interface Peek {
  /** The first decompressed bytes (up to 64 KiB); empty when nothing came out. */
  out: Buffer
  /** The decoder's complaint, if it had one (a truncated head makes most decoders complain: expected). */
  error: string | null
  /** Why nothing was tried (no decoder here). */
  unavailable?: string
}

function zlibPeek(stream: zlib.Gunzip | NodeJS.ReadWriteStream, input: Buffer): Promise<Peek> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let n = 0
    let settled = false
    const finish = (error: string | null) => {
      if (settled) return
      settled = true
      ;(stream as unknown as { destroy(): void }).destroy()
      resolve({ out: Buffer.concat(chunks).subarray(0, PEEK_BYTES), error })
    }
    stream.on('data', (c: Buffer) => {
      chunks.push(c)
      n += c.length
      if (n >= PEEK_BYTES) finish(null)
    })
    stream.on('end', () => finish(null))
    stream.on('error', (e: Error) => finish(e.message))
    stream.end(input)
  })
}

/** Runs a decompressor program on `input` and keeps the first bytes it writes. */
function programPeek(program: string, args: string[], input: Buffer): Promise<Peek> {
  return new Promise((resolve) => {
    const child = spawn(program, args, { stdio: ['pipe', 'pipe', 'pipe'] })
    const chunks: Buffer[] = []
    let n = 0
    let stderr = ''
    let settled = false
    const finish = (error: string | null) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (child.exitCode === null) child.kill('SIGKILL')
      resolve({ out: Buffer.concat(chunks).subarray(0, PEEK_BYTES), error })
    }
    const timer = setTimeout(() => finish(`${program} took longer than ${PEEK_TIMEOUT_MS} ms`), PEEK_TIMEOUT_MS)
    child.stdout.on('data', (c: Buffer) => {
      chunks.push(c)
      n += c.length
      if (n >= PEEK_BYTES) finish(null)
    })
    child.stderr.on('data', (c: Buffer) => {
      if (stderr.length < 1000) stderr += c.toString()
    })
    child.on('error', (e) => finish(e.message))
    child.on('close', (code) => finish(code === 0 ? null : stderr.trim().split('\n')[0] || `${program} exited with ${code}`))
    // The decoder may stop reading early (it has what it needs, or found garbage): not an error here.
    child.stdin.on('error', () => {})
    child.stdin.end(input)
  })
}

const PROGRAMS: Partial<Record<Compression, { program: string; args: string[] }>> = {
  xz: { program: 'xz', args: ['-dc', '--memlimit-decompress=256MiB'] },
  lzma: { program: 'xz', args: ['--format=lzma', '-dc', '--memlimit-decompress=256MiB'] },
  zstd: { program: 'zstd', args: ['-dcq', '--memory=256MB'] },
  lz4: { program: 'lz4', args: ['-dcq'] },
  bzip2: { program: 'bzip2', args: ['-dcq'] },
  lzop: { program: 'lzop', args: ['-dcq'] },
}

/**
 * The first bytes a compressed stream holds: gzip (and zstd on Node ≥ 22.15) with node:zlib, the others through
 * their usual programs (xz-utils, zstd, lz4, bzip2, lzop) when installed, fed `head` only, so a large file costs
 * no more than its first megabyte.
 */
export async function peekDecompressed(head: Buffer, compression: Compression): Promise<Peek> {
  if (compression === 'gzip') return zlibPeek(zlib.createGunzip({ finishFlush: zlib.constants.Z_SYNC_FLUSH }), head)
  const native = (zlib as unknown as { createZstdDecompress?: () => NodeJS.ReadWriteStream }).createZstdDecompress
  if (compression === 'zstd' && typeof native === 'function') return zlibPeek(native(), head)
  const p = PROGRAMS[compression]
  if (!p) return { out: Buffer.alloc(0), error: null, unavailable: `no decoder for ${compression}` }
  const path = which(p.program)
  if (!path) return { out: Buffer.alloc(0), error: null, unavailable: `no ${p.program} program here` }
  return programPeek(path, p.args, head)
}

// ---- Checks ---------------------------------------------------------------------------------------------------

/** What the file at `rel` (a path inside the assets directory) must be; null when the place has no rule. */
export function expectationFor(rel: string, options: { ipxeArch?: string } = {}): AssetExpectation | null {
  const parts = rel.split(/[\\/]/)
  const name = parts[parts.length - 1]!
  if (parts[0] === 'talos' && parts.length >= 4) {
    const arch = normalArch(parts[parts.length - 2]!)
    if (name === 'vmlinuz') return { kind: 'kernel', arch: arch === 'arm64' ? 'arm64' : 'x86_64' }
    if (name.startsWith('initramfs')) return { kind: 'initramfs' }
    return null
  }
  if (parts[0] === 'agent' && parts.length === 2) {
    if (name === 'vmlinuz') return { kind: 'kernel', arch: null }
    if (/\.(img|cpio)(\.\w+)?$|^initr/.test(name)) return { kind: 'initramfs' }
    return null
  }
  // agent/arm64/: the agent for another architecture (agent/ itself is amd64's, kept where it always was).
  if (parts[0] === 'agent' && parts.length === 3 && ['amd64', 'x86_64', 'arm64', 'aarch64'].includes(parts[1]!)) {
    if (name === 'vmlinuz') return { kind: 'kernel', arch: normalArch(parts[1]!) === 'arm64' ? 'arm64' : 'x86_64' }
    if (/\.(img|cpio)(\.\w+)?$|^initr/.test(name)) return { kind: 'initramfs' }
    return null
  }
  // GRUB netboot images (grubnetaa64.efi, grubnetx64.efi): EFI applications for the arch their name says.
  if (parts[0] === 'grub' && parts.length === 2 && /\.efi$/i.test(name)) return { kind: 'ipxe-efi', arch: ipxeArchFromName(name) }
  if (parts[0] === 'ipxe' && parts.length === 2) {
    if (/\.efi$/i.test(name)) return { kind: 'ipxe-efi', arch: normalArch(options.ipxeArch ?? ipxeArchFromName(name)) }
    if (/\.(kpxe|kkpxe|kkkpxe|pxe)$/i.test(name)) return { kind: 'ipxe-pxe' }
    if (/\.lkrn$/i.test(name)) return { kind: 'ipxe-lkrn' }
  }
  return null
}

/** The arch an EFI binary's name says: ipxe-arm64.efi, snp-aa64.efi, grubnetaa64.efi, ipxe-i386.efi; x86_64 otherwise. */
export function ipxeArchFromName(name: string): string {
  const n = name.toLowerCase()
  if (/arm64|aarch64|aa64/.test(n)) return 'arm64'
  if (/riscv64/.test(n)) return 'riscv64'
  if (/loong/.test(n)) return 'loongarch64'
  if (/i386|ia32|\bx86\b|-x86\./.test(n)) return 'i386'
  if (/arm32|arm(?!64)/.test(n)) return 'arm'
  return 'x86_64'
}

const NOUN: Record<AssetExpectation['kind'], string> = {
  kernel: 'a kernel',
  initramfs: 'an initramfs',
  'ipxe-efi': 'an EFI program',
  'ipxe-pxe': 'an iPXE PXE image',
  'ipxe-lkrn': 'an iPXE .lkrn (bzImage)',
}

function wanted(expect: AssetExpectation): string {
  switch (expect.kind) {
    case 'kernel':
      return expect.arch === 'x86_64' ? 'an x86_64 Linux bzImage' : expect.arch === 'arm64' ? 'an arm64 Linux Image or EFI zboot image' : 'an x86_64 bzImage or an arm64 Image'
    case 'initramfs':
      return 'a cpio archive (newc), plain or compressed'
    case 'ipxe-efi':
      return `an ${expect.arch} EFI application`
    case 'ipxe-pxe':
      return "iPXE's PXE image (undionly.kpxe, ipxe.pxe)"
    case 'ipxe-lkrn':
      return 'an x86 bzImage'
  }
}

export interface CheckResult {
  /** What the file is, as recorded in the manifest: "x86_64 bzImage (boot protocol 2.15, Linux 6.12.40)". */
  format: string
}

/** Reads the first HEAD_BYTES of a file and its size. */
export async function readHead(file: string): Promise<{ head: Buffer; size: number }> {
  const fh = await open(file, 'r')
  try {
    const { size } = await fh.stat()
    const buf = Buffer.alloc(Math.min(size, HEAD_BYTES))
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0)
    return { head: buf.subarray(0, bytesRead), size }
  } finally {
    await fh.close()
  }
}

/** What a compressed stream holds: the inner format, or why that could not be told. */
type Inside =
  | { status: 'told'; inner: Format; words: string }
  | { status: 'corrupt'; words: string }
  | { status: 'unchecked'; note: string }

async function lookInside(f: Format, head: Buffer, size: number): Promise<Inside> {
  const peek = await peekDecompressed(head, f.compression!)
  if (peek.unavailable) return { status: 'unchecked', note: `contents not checked: ${peek.unavailable}` }
  if (peek.out.length < 6) {
    // Nothing came out of the part read: a corrupt stream when that was the whole file, else undecided (one
    // bzip2 block can be 900 kB of input).
    if (size <= head.length) return { status: 'corrupt', words: `${f.description} that does not decompress (${peek.error ?? 'no output'})` }
    return { status: 'unchecked', note: 'contents not checked: its first block is longer than the part read' }
  }
  const inner = identify(peek.out)
  return { status: 'told', inner, words: `${f.description} holding ${inner.description}` }
}

const KERNEL_KINDS: FormatKind[] = ['bzimage', 'arm64-image', 'efi-zboot', 'riscv64-image']

/**
 * Checks that `head` (the start of the file, `size` bytes in all) is what `expect` needs. Returns what it is;
 * throws RB_ERR_VALIDATION with one line naming the file and what it looks like instead.
 */
export async function checkFormat(label: string, head: Buffer, size: number, expect: AssetExpectation): Promise<CheckResult> {
  const f = identify(head, size)
  const refuse = (what: string, tail: string): never => {
    throw new RackbootError('RB_ERR_VALIDATION', `${label}: ${what}, ${tail}`, { details: { file: label, found: what, expected: wanted(expect) } })
  }
  const notA = (what: string) => refuse(what, `not ${NOUN[expect.kind]} (expected ${wanted(expect)})`)
  switch (expect.kind) {
    case 'kernel': {
      if (f.kind === 'compressed') {
        // A compressed kernel (Debian's arm64 vmlinuz is a gzipped Image): say so, iPXE boots it only unpacked.
        const inside = await lookInside(f, head, size)
        if (inside.status === 'told' && [...KERNEL_KINDS, 'elf'].includes(inside.inner.kind)) return refuse(inside.words, 'not a kernel iPXE can boot (decompress it first)')
        return notA(f.description)
      }
      if (f.kind === 'bzimage' && f.zImage) return notA(f.description)
      // An EFI program for arm64 (a PE image, not a UKI) is what arm64 firmware and iPXE start; on x86_64 only the
      // bzImage layout is a kernel both BIOS and UEFI iPXE boot.
      const arm64Pe = f.kind === 'pe' && f.arch === 'arm64' && f.efiApplication && !f.uki
      if (!KERNEL_KINDS.includes(f.kind) && !arm64Pe) {
        if (f.kind === 'pe' && f.arch && f.arch !== 'arm64' && expect.arch === 'arm64') return refuse(f.description, 'expected arm64')
        return notA(f.description)
      }
      const want = expect.arch
      const ok = want === null ? f.arch === 'x86_64' || f.arch === 'arm64' : f.arch === want
      if (!ok) {
        if (f.kind === 'bzimage' && f.arch === 'x86') return refuse(f.description, `expected ${want ?? 'x86_64'} (no 64-bit entry point: a 32-bit kernel, an iPXE .lkrn, or one older than Linux 3.8)`)
        return refuse(f.description, `expected ${want ?? 'x86_64 or arm64'}`)
      }
      return { format: f.description }
    }
    case 'initramfs': {
      if (f.kind === 'cpio') {
        if (!f.kernelReadable) return refuse(f.description, 'not an initramfs the kernel unpacks')
        return { format: f.description }
      }
      if (f.kind !== 'compressed') return notA(f.description)
      if (f.compression === 'lz4-frame') return refuse(f.description, "not an initramfs the kernel unpacks (it reads lz4's legacy format only: lz4 -l)")
      const inside = await lookInside(f, head, size)
      if (inside.status === 'unchecked') return { format: `${f.description} (${inside.note})` }
      if (inside.status === 'corrupt') return notA(inside.words)
      if (inside.inner.kind === 'cpio' && inside.inner.kernelReadable) return { format: `${f.compression}-compressed ${inside.inner.description}` }
      return notA(inside.words)
    }
    case 'ipxe-efi': {
      if (f.kind !== 'pe' || !f.efiApplication) return notA(f.description)
      if (f.arch !== normalArch(expect.arch)) return refuse(f.description, `expected ${normalArch(expect.arch)}`)
      return { format: f.description }
    }
    case 'ipxe-pxe': {
      if (f.kind !== 'ipxe-pxe') return notA(f.description)
      return { format: f.description }
    }
    case 'ipxe-lkrn': {
      if (f.kind !== 'bzimage' || f.zImage) return notA(f.description)
      return { format: f.description }
    }
  }
}

/** checkFormat on a file on disk. `label` names it in errors (default: its base name). */
export async function checkFile(file: string, expect: AssetExpectation, label: string = basename(file)): Promise<CheckResult> {
  const { head, size } = await readHead(file)
  return checkFormat(label, head, size, expect)
}
