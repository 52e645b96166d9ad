// Tiny synthetic boot files: each carries exactly the header bytes that make it what it claims (a bzImage, an
// arm64 Image, an EFI zboot image, a PE/COFF EFI application, iPXE's PXE prefix, a newc cpio archive), so the
// format checks are tested byte by byte without shipping real kernels. Real files (Debian's iPXE) are tested too.
import { createHash } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { gzipSync } from 'node:zlib'
import { which } from '../../src/processes.js'

/** Deterministic bytes that look random (sha256 in counter mode): no test flakes on a chance magic number. */
export function noise(size: number, seed = 'rackboot'): Buffer {
  const out = Buffer.alloc(size)
  // The first MiB hashed, then repeated: the checks read no further, and 100 MiB stays quick to make.
  const block = Math.min(size, 1024 * 1024)
  for (let i = 0, at = 0; at < block; i++, at += 32) createHash('sha256').update(`${seed}:${i}`).digest().copy(out, at, 0, Math.min(32, block - at))
  for (let at = block; at < size; at += block) out.copy(out, at, 0, Math.min(block, size - at))
  return out
}

function pad(buf: Buffer, size: number | undefined): Buffer {
  if (size === undefined || size <= buf.length) return buf
  return Buffer.concat([buf, Buffer.alloc(size - buf.length)])
}

export interface BzImageOptions {
  /** Boot protocol, e.g. 0x020f (2.15); below 0x020c there is no xloadflags field. */
  protocol?: number
  /** xloadflags bit 0: the kernel has a 64-bit entry point. */
  x64?: boolean
  /** loadflags bit 0: a bzImage (loaded high) rather than an old zImage. */
  loadedHigh?: boolean
  /** The version string the header points at. */
  version?: string
  /** Start with "MZ" and a PE header, as an x86 kernel with an EFI stub does. */
  efiStub?: boolean
  /** The 0xAA55 boot flag at 510 (default true). */
  bootFlag?: boolean
  size?: number
}

/** A Linux x86 boot image header (Documentation/arch/x86/boot.rst). */
export function bzImage(o: BzImageOptions = {}): Buffer {
  const buf = Buffer.alloc(0x1000)
  if (o.efiStub) peHeader(buf, 0x8664, 10, ['.setup', '.text'], 0x80)
  buf[0x1f1] = 7 // setup_sects
  if (o.bootFlag !== false) buf.writeUInt16LE(0xaa55, 510)
  buf.write('HdrS', 0x202, 'latin1')
  buf.writeUInt16LE(o.protocol ?? 0x020f, 0x206)
  const version = o.version ?? '6.12.40-talos (root@buildkitsandbox) #1 SMP'
  buf.write(version + '\0', 0x600, 'latin1')
  buf.writeUInt16LE(0x600 - 0x200, 0x20e)
  buf[0x211] = o.loadedHigh === false ? 0 : 1
  if ((o.protocol ?? 0x020f) >= 0x020c) buf.writeUInt16LE(o.x64 === false ? 0 : 0x1 | 0x2, 0x236)
  return pad(Buffer.concat([buf, noise(4096, 'bz')]), o.size)
}

/** Writes an MZ stub and a PE32+ header at `peAt` for `machine`, with `subsystem` and sections named. */
function peHeader(buf: Buffer, machine: number, subsystem: number, sections: string[], peAt: number): void {
  buf.write('MZ', 0, 'latin1')
  buf.writeUInt32LE(peAt, 0x3c)
  buf.write('PE\0\0', peAt, 'latin1')
  buf.writeUInt16LE(machine, peAt + 4)
  buf.writeUInt16LE(sections.length, peAt + 6)
  buf.writeUInt16LE(240, peAt + 20) // SizeOfOptionalHeader (PE32+)
  const opt = peAt + 24
  buf.writeUInt16LE(0x20b, opt)
  buf.writeUInt16LE(subsystem, opt + 68)
  sections.forEach((name, i) => buf.write(name, opt + 240 + i * 40, 'latin1'))
}

/** A PE/COFF image: machine 0x8664 x86_64, 0xAA64 arm64, 0x14c i386; subsystem 10 = EFI application. */
export function pe(o: { machine?: number; subsystem?: number; sections?: string[]; size?: number; signature?: string } = {}): Buffer {
  const buf = Buffer.alloc(0x400)
  peHeader(buf, o.machine ?? 0x8664, o.subsystem ?? 10, o.sections ?? ['.text', '.reloc', '.data'], 0x80)
  if (o.signature !== undefined) buf.write(o.signature, 0x80, 'latin1')
  return pad(Buffer.concat([buf, noise(4096, 'pe')]), o.size)
}

/** An arm64 Image header (Documentation/arch/arm64/booting.rst), with or without the EFI stub's PE header. */
export function arm64Image(o: { efiStub?: boolean; size?: number } = {}): Buffer {
  const buf = Buffer.alloc(0x400)
  if (o.efiStub !== false) peHeader(buf, 0xaa64, 10, ['.text', '.data'], 0x40)
  else buf.writeUInt32LE(0x14000000 | 0x10, 0) // b #0x40: code0 of an Image without the stub
  buf.writeBigUInt64LE(0n, 8) // text_offset
  buf.writeBigUInt64LE(0x2000000n, 16) // image_size
  buf.writeBigUInt64LE(0xan, 24) // flags: LE, 4K pages
  buf.write('ARM\x64', 0x38, 'latin1')
  if (o.efiStub !== false) buf.writeUInt32LE(0x40, 0x3c)
  return pad(Buffer.concat([buf, noise(4096, 'arm64')]), o.size)
}

/** A Linux EFI zboot image (drivers/firmware/efi/libstub/zboot-header.S) for `machine`. */
export function zboot(o: { machine?: number; compression?: string; size?: number } = {}): Buffer {
  const buf = Buffer.alloc(0x400)
  peHeader(buf, o.machine ?? 0xaa64, 10, ['.text', '.data'], 0x80)
  buf.write('zimg', 4, 'latin1')
  buf.writeUInt32LE(0x400, 8)
  buf.writeUInt32LE(4096, 12)
  buf.write(`${o.compression ?? 'gzip'}\0`, 0x18, 'latin1')
  buf.writeUInt32LE(0x818223cd, 0x38) // LINUX_PE_MAGIC
  return pad(Buffer.concat([buf, noise(4096, 'zboot')]), o.size)
}

/** iPXE's PXE prefix (src/arch/x86/prefix/pxeprefix.S): `jmp $0x7c0, $1f`, pushes, and its "PXE->EB:" banner. */
export function ipxePxe(o: { banner?: boolean; size?: number } = {}): Buffer {
  const buf = Buffer.alloc(0x800)
  Buffer.from([0xea, 0x05, 0x00, 0xc0, 0x07, 0x66, 0x9c, 0x66, 0x60]).copy(buf, 0)
  buf.write('\x66\x68LRET', 0x0e, 'latin1')
  if (o.banner !== false) buf.write('PXE->EB:\0 PXENV+ at \0 !PXE at \0', 0x3cb, 'latin1')
  return pad(Buffer.concat([buf, noise(4096, 'pxe')]), o.size)
}

/** A newc ("070701") or crc ("070702") cpio archive holding `files`, with its TRAILER!!!. */
export function cpio(files: Record<string, Buffer | string> = { init: '#!/bin/sh\nexec /bin/sh\n' }, magic = '070701'): Buffer {
  const parts: Buffer[] = []
  let ino = 1
  const entry = (name: string, data: Buffer, mode: number) => {
    const hex = (n: number) => n.toString(16).padStart(8, '0')
    const fields = [ino++, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, name.length + 1, 0]
    const header = Buffer.from(magic + fields.map(hex).join('') + name + '\0', 'latin1')
    parts.push(header, Buffer.alloc((4 - (header.length % 4)) % 4), data, Buffer.alloc((4 - (data.length % 4)) % 4))
  }
  for (const [name, data] of Object.entries(files)) entry(name, Buffer.from(data), 0o100755)
  entry('TRAILER!!!', Buffer.alloc(0), 0)
  return Buffer.concat(parts)
}

export function gzip(data: Buffer, size?: number): Buffer {
  return pad(gzipSync(data), size)
}

/** `program args` over `data`, or null when the program is not installed (the caller skips loudly). */
export function compressWith(program: string, args: string[], data: Buffer): Buffer | null {
  const path = which(program)
  if (!path) return null
  return execFileSync(path, args, { input: data, maxBuffer: 64 * 1024 * 1024 })
}

/** A disk image's first sector: a boot sector with the MBR signature, no kernel header. */
export function mbr(): Buffer {
  const buf = noise(4096, 'mbr')
  buf.fill(0, 0x1f0, 0x210)
  buf.writeUInt16LE(0xaa55, 510)
  return buf
}
