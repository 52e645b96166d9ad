// Boot files are checked by their bytes: a kernel for the declared arch, an initramfs, iPXE binaries for the
// firmware they are named for. Synthetic files for every accepted and refused case, Debian's real iPXE builds,
// and the import and fetch paths that use the checks (checksums included).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { checkFile, checkFormat, expectationFor, HEAD_BYTES, type AssetExpectation } from '../../src/assets/formats.js'
import { createAssetStore } from '../../src/assets/index.js'
import { which } from '../../src/processes.js'
import { arm64Image, bzImage, compressWith, cpio, gzip, ipxePxe, mbr, noise, pe, zboot } from './synthetic.js'

const KERNEL_AMD64: AssetExpectation = { kind: 'kernel', arch: 'x86_64' }
const KERNEL_ARM64: AssetExpectation = { kind: 'kernel', arch: 'arm64' }
const INITRAMFS: AssetExpectation = { kind: 'initramfs' }
const EFI_X64: AssetExpectation = { kind: 'ipxe-efi', arch: 'x86_64' }
const EFI_ARM64: AssetExpectation = { kind: 'ipxe-efi', arch: 'arm64' }
const PXE: AssetExpectation = { kind: 'ipxe-pxe' }
const LKRN: AssetExpectation = { kind: 'ipxe-lkrn' }

// As checkFile reads a file: its first HEAD_BYTES, and its size.
const check = (name: string, buf: Buffer, expect: AssetExpectation) => checkFormat(name, buf.subarray(0, HEAD_BYTES), buf.length, expect)

async function accepted(name: string, buf: Buffer, expect: AssetExpectation, format: RegExp): Promise<void> {
  const res = await check(name, buf, expect)
  assert.match(res.format, format, `${name} as ${JSON.stringify(expect)}`)
}

async function refused(name: string, buf: Buffer, expect: AssetExpectation, message: RegExp): Promise<void> {
  await assert.rejects(check(name, buf, expect), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'RB_ERR_VALIDATION')
    assert.match(err.message, message)
    assert.ok(err.message.startsWith(`${name}: `), `names the file: ${err.message}`)
    assert.ok(!err.message.includes('\n'), `one line: ${err.message}`)
    return true
  })
}

const sha = (alg: string, b: Buffer) => createHash(alg).update(b).digest('hex')

function tmp(): string {
  const dir = mkdtempSync(join(tmpdir(), 'rb-formats-'))
  if (!process.env.RACKBOOT_KEEP_TEST_TMP) process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
  return dir
}

test('where a file goes says what it must be', () => {
  assert.deepEqual(expectationFor('talos/v1.13.9/amd64/vmlinuz'), KERNEL_AMD64)
  assert.deepEqual(expectationFor('talos/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba/v1.13.9/arm64/vmlinuz'), KERNEL_ARM64)
  assert.deepEqual(expectationFor('talos/v1.13.9/arm64/initramfs.xz'), INITRAMFS)
  assert.deepEqual(expectationFor('agent/vmlinuz'), { kind: 'kernel', arch: null })
  assert.deepEqual(expectationFor('agent/agent.img'), INITRAMFS)
  assert.deepEqual(expectationFor('ipxe/ipxe.efi'), EFI_X64)
  assert.deepEqual(expectationFor('ipxe/snponly.efi'), EFI_X64)
  assert.deepEqual(expectationFor('ipxe/ipxe-arm64.efi'), EFI_ARM64)
  assert.deepEqual(expectationFor('ipxe/snp-aa64.efi'), EFI_ARM64)
  assert.deepEqual(expectationFor('ipxe/undionly.kpxe'), PXE)
  assert.deepEqual(expectationFor('ipxe/undionly.kkpxe'), PXE)
  assert.deepEqual(expectationFor('ipxe/ipxe.pxe'), PXE)
  assert.deepEqual(expectationFor('ipxe/ipxe.lkrn'), LKRN)
  assert.equal(expectationFor('extras/notes.txt'), null)
  assert.equal(expectationFor('ipxe/ipxe.iso'), null)
})

test('x86_64 kernels: a bzImage with a 64-bit entry point, EFI stub or not', async () => {
  await accepted('vmlinuz-amd64', bzImage(), KERNEL_AMD64, /^x86_64 bzImage \(boot protocol 2\.15, Linux 6\.12\.40-talos\)$/)
  await accepted('vmlinuz-amd64', bzImage({ efiStub: true }), KERNEL_AMD64, /^x86_64 bzImage/)
  await accepted('vmlinuz-amd64', bzImage({ protocol: 0x020c }), KERNEL_AMD64, /protocol 2\.12/)
  // The discovery agent's kernel may be either arch.
  await accepted('vmlinuz', bzImage(), { kind: 'kernel', arch: null }, /x86_64 bzImage/)
  await accepted('vmlinuz', arm64Image(), { kind: 'kernel', arch: null }, /arm64 Image/)
})

test('arm64 kernels: an arm64 Image, an EFI zboot image or an arm64 PE', async () => {
  await accepted('vmlinuz-arm64', arm64Image(), KERNEL_ARM64, /^arm64 Image \(EFI stub\)$/)
  await accepted('vmlinuz-arm64', arm64Image({ efiStub: false }), KERNEL_ARM64, /^arm64 Image \(no EFI stub\)$/)
  await accepted('vmlinuz-arm64', zboot(), KERNEL_ARM64, /^arm64 EFI zboot kernel \(gzip\)$/)
  await accepted('vmlinuz-arm64', zboot({ compression: 'zstd' }), KERNEL_ARM64, /zboot kernel \(zstd\)/)
  await accepted('vmlinuz-arm64', pe({ machine: 0xaa64 }), KERNEL_ARM64, /^arm64 EFI application$/)
})

test('kernels refused, each with what it is instead', async () => {
  await refused('vmlinuz-amd64', noise(100_000), KERNEL_AMD64, /^vmlinuz-amd64: random data, not a kernel \(expected an x86_64 Linux bzImage\)$/)
  await refused('vmlinuz-amd64', gzip(noise(50_000)), KERNEL_AMD64, /: gzip stream, not a kernel/)
  await refused('vmlinuz-arm64', gzip(arm64Image()), KERNEL_ARM64, /: gzip stream holding arm64 Image \(EFI stub\), not a kernel iPXE can boot \(decompress it first\)$/)
  await refused('vmlinuz-arm64', bzImage(), KERNEL_ARM64, /: x86_64 bzImage \(boot protocol 2\.15, Linux 6\.12\.40-talos\), expected arm64$/)
  await refused('vmlinuz-amd64', arm64Image(), KERNEL_AMD64, /: arm64 Image \(EFI stub\), expected x86_64$/)
  await refused('vmlinuz-amd64', zboot(), KERNEL_AMD64, /: arm64 EFI zboot kernel \(gzip\), expected x86_64$/)
  await refused('vmlinuz-arm64', zboot({ machine: 0x5064 }), KERNEL_ARM64, /: riscv64 EFI zboot kernel \(gzip\), expected arm64$/)
  await refused('vmlinuz-arm64', pe({ machine: 0x8664 }), KERNEL_ARM64, /: x86_64 EFI application, expected arm64$/)
  await refused('vmlinuz-amd64', bzImage({ x64: false }), KERNEL_AMD64, /: i386 bzImage .*, expected x86_64$/)
  await refused('vmlinuz-amd64', bzImage({ protocol: 0x0207, version: '1.0.0+git-20190125.36a4c85-5.1' }), KERNEL_AMD64, /: x86 bzImage \(boot protocol 2\.07, version 1\.0\.0\+git.*\), expected x86_64 \(no 64-bit entry point/)
  await refused('vmlinuz-amd64', bzImage({ bootFlag: false }), KERNEL_AMD64, /^vmlinuz-amd64: (random data|unrecognised binary data .*), not a kernel/)
  await refused('vmlinuz-amd64', bzImage({ loadedHigh: false }), KERNEL_AMD64, /: x86_64 zImage \(not a bzImage\).*, not a kernel/)
  await refused('vmlinuz-amd64', pe({ machine: 0x8664, sections: ['.osrel', '.cmdline', '.linux', '.initrd'] }), KERNEL_AMD64, /: x86_64 unified kernel image \(UKI, an EFI application\), not a kernel/)
  await refused('vmlinuz-amd64', pe({ machine: 0x8664 }), KERNEL_AMD64, /: x86_64 EFI application, not a kernel/)
  const elf = Buffer.alloc(4096)
  elf.write('\x7fELF\x02\x01\x01', 0, 'latin1')
  elf.writeUInt16LE(62, 18)
  await refused('vmlinux', elf, KERNEL_AMD64, /: x86_64 ELF file \(an uncompressed vmlinux or a program, not a boot image\), not a kernel/)
  await refused('vmlinuz-amd64', Buffer.from('<!DOCTYPE html><html><head><title>404</title></head></html>\n'), KERNEL_AMD64, /: an HTML page .*, not a kernel/)
  await refused('vmlinuz-amd64', Buffer.alloc(0), KERNEL_AMD64, /: an empty file, not a kernel/)
  await refused('vmlinuz-amd64', Buffer.alloc(8192), KERNEL_AMD64, /: zero bytes, not a kernel/)
  await refused('vmlinuz-amd64', cpio(), KERNEL_AMD64, /: cpio archive \(newc\), not a kernel/)
  await refused('vmlinuz-amd64', mbr(), KERNEL_AMD64, /: a disk image or boot sector \(MBR signature, no kernel header\), not a kernel/)
  await refused('vmlinuz-amd64', ipxePxe(), KERNEL_AMD64, /: iPXE PXE image, not a kernel/)
})

test('initramfs: a newc cpio archive, plain or compressed, looked inside where that is cheap', async (t) => {
  await accepted('initramfs.cpio', cpio(), INITRAMFS, /^cpio archive \(newc\)$/)
  await accepted('initramfs.cpio', cpio(undefined, '070702'), INITRAMFS, /^cpio archive \(newc with CRC\)$/)
  // Early microcode first, then the compressed main archive: it starts with a cpio.
  await accepted('initrd.img', Buffer.concat([cpio({ 'kernel/x86/microcode/GenuineIntel.bin': noise(1000) }), gzip(cpio())]), INITRAMFS, /^cpio/)
  await accepted('initramfs.gz', gzip(cpio()), INITRAMFS, /^gzip-compressed cpio archive \(newc\)$/)
  // Padding after the stream (as release tools leave) changes nothing.
  await accepted('initramfs.gz', gzip(cpio(), 700_000), INITRAMFS, /^gzip-compressed cpio/)
  const archive = cpio({ init: '#!/bin/sh\n', 'bin/busybox': noise(200_000, 'busybox') })
  const tools: Array<[string, string, string[], RegExp]> = [
    ['xz', 'xz', ['-c', '--check=crc32'], /^xz-compressed cpio archive \(newc\)$/],
    ['zstd', 'zstd', ['-c', '-q'], /^zstd-compressed cpio archive \(newc\)$/],
    ['lzma', 'xz', ['--format=lzma', '-c'], /^lzma-compressed cpio archive \(newc\)$/],
    ['bzip2', 'bzip2', ['-c'], /^bzip2-compressed cpio archive \(newc\)$/],
    ['lz4', 'lz4', ['-l', '-c', '-q'], /^lz4-compressed cpio archive \(newc\)$/],
  ]
  for (const [name, program, args, format] of tools) {
    const compressed = compressWith(program, args, archive)
    if (!compressed) {
      t.diagnostic(`SKIPPED: ${name} initramfs cases: no ${program} program here (apt-get install ${program === 'xz' ? 'xz-utils' : program})`)
      continue
    }
    await accepted(`initramfs.${name}`, compressed, INITRAMFS, format)
  }
  // lzop: the kernel reads it; without the lzop program the magic number is all there is to go on.
  const lzop = Buffer.concat([Buffer.from([0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a]), noise(2000, 'lzop')])
  if (!which('lzop')) await accepted('initramfs.lzo', lzop, INITRAMFS, /^lzop stream \(contents not checked: no lzop program here\)$/)
  else await refused('initramfs.lzo', lzop, INITRAMFS, /lzop stream that does not decompress/)
  // A magic number alone is accepted when no decoder is at hand, and says so (checked in the lz4 case: a legacy
  // block of 8 MiB is longer than the part read).
  const bigLz4 = compressWith('lz4', ['-l', '-c', '-q'], cpio({ big: Buffer.concat([...Array(9).keys()].map((i) => noise(1024 * 1024, `lz4-${i}`))) }))
  if (bigLz4) await accepted('initramfs.lz4', bigLz4, INITRAMFS, /^lz4 stream \(contents not checked: its first block is longer than the part read\)$/)
})

test('initramfs refused, each with what it is instead', async (t) => {
  await refused('initramfs-amd64.xz', noise(100_000), INITRAMFS, /^initramfs-amd64\.xz: random data, not an initramfs \(expected a cpio archive \(newc\), plain or compressed\)$/)
  await refused('initramfs-amd64.xz', bzImage(), INITRAMFS, /: x86_64 bzImage .*, not an initramfs/)
  await refused('initramfs-amd64.xz', gzip(noise(50_000)), INITRAMFS, /: gzip stream holding random data, not an initramfs/)
  await refused('initramfs-amd64.xz', gzip(bzImage()), INITRAMFS, /: gzip stream holding x86_64 bzImage .*, not an initramfs/)
  await refused('initramfs-amd64.xz', Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3]), noise(2000)]), INITRAMFS, /: gzip stream that does not decompress \(.*\), not an initramfs/)
  await refused('initramfs.cpio', Buffer.concat([Buffer.from('070707'), noise(500)]), INITRAMFS, /: cpio archive in the old ASCII format .*, not an initramfs the kernel unpacks$/)
  await refused('initramfs.lz4', Buffer.concat([Buffer.from([0x04, 0x22, 0x4d, 0x18]), noise(500)]), INITRAMFS, /: lz4 frame stream, not an initramfs the kernel unpacks \(it reads lz4's legacy format only: lz4 -l\)$/)
  const iso = Buffer.alloc(0x9000)
  iso.write('\x01CD001', 0x8000, 'latin1')
  await refused('initramfs-amd64.xz', iso, INITRAMFS, /: an ISO 9660 image .*, not an initramfs/)
  await refused('initramfs-amd64.xz', Buffer.from('#!ipxe\nchain http://x/boot.ipxe\n'), INITRAMFS, /: an iPXE script, not an initramfs/)
  if (!which('xz')) {
    t.diagnostic('SKIPPED: xz initramfs refusals: no xz program here (apt-get install xz-utils)')
    return
  }
  // A disk image compressed as Talos once published (metal-amd64.raw.xz), taken for the initramfs.
  await refused('initramfs-amd64.xz', compressWith('xz', ['-c'], Buffer.concat([mbr(), Buffer.alloc(100_000)]))!, INITRAMFS, /: xz stream holding a disk image or boot sector \(MBR signature, no kernel header\), not an initramfs/)
  await refused('initramfs-amd64.xz', Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), noise(5000)]), INITRAMFS, /: xz stream that does not decompress \(.*\), not an initramfs/)
})

test('iPXE binaries: EFI for the named arch, the PXE prefix, the .lkrn bzImage', async () => {
  await accepted('ipxe.efi', pe({ machine: 0x8664 }), EFI_X64, /^x86_64 EFI application$/)
  await accepted('ipxe-arm64.efi', pe({ machine: 0xaa64 }), EFI_ARM64, /^arm64 EFI application$/)
  await accepted('undionly.kpxe', ipxePxe(), PXE, /^iPXE PXE image$/)
  await accepted('ipxe.lkrn', bzImage({ protocol: 0x0207 }), LKRN, /^x86 bzImage/)
  await refused('ipxe.efi', pe({ machine: 0xaa64 }), EFI_X64, /^ipxe\.efi: arm64 EFI application, expected x86_64$/)
  await refused('ipxe-arm64.efi', pe({ machine: 0x8664 }), EFI_ARM64, /^ipxe-arm64\.efi: x86_64 EFI application, expected arm64$/)
  await refused('ipxe.efi', pe({ machine: 0x8664, subsystem: 3 }), EFI_X64, /: x86_64 Windows program, not an EFI program \(expected an x86_64 EFI application\)$/)
  await refused('ipxe.efi', pe({ machine: 0x8664, subsystem: 11 }), EFI_X64, /: x86_64 EFI driver, not an EFI program/)
  await refused('ipxe.efi', noise(70_000), EFI_X64, /: random data, not an EFI program/)
  await refused('ipxe.efi', pe({ signature: 'NE\0\0' }), EFI_X64, /: an MS-DOS executable \(MZ without a PE header\), not an EFI program/)
  await refused('ipxe.efi', ipxePxe(), EFI_X64, /: iPXE PXE image, not an EFI program/)
  await refused('undionly.kpxe', pe(), PXE, /^undionly\.kpxe: x86_64 EFI application, not an iPXE PXE image \(expected iPXE's PXE image \(undionly\.kpxe, ipxe\.pxe\)\)$/)
  await refused('undionly.kpxe', ipxePxe({ banner: false }), PXE, /: x86 real-mode boot code \(a PXE program, but not iPXE\), not an iPXE PXE image/)
  await refused('undionly.kpxe', noise(70_000), PXE, /: random data, not an iPXE PXE image/)
  await refused('undionly.kpxe', Buffer.from('bios'), PXE, /: text \("bios"\), not an iPXE PXE image/)
  await refused('ipxe.lkrn', pe(), LKRN, /: x86_64 EFI application, not an iPXE \.lkrn/)
  await refused('ipxe.lkrn', noise(70_000), LKRN, /: random data, not an iPXE \.lkrn/)
})

test("Debian's real iPXE builds (/usr/lib/ipxe) pass for their names and fail for the others", async (t) => {
  const dir = '/usr/lib/ipxe'
  const files = ['undionly.kpxe', 'undionly.kkpxe', 'ipxe.pxe', 'ipxe.efi', 'snponly.efi', 'ipxe.lkrn'].filter((f) => existsSync(join(dir, f)))
  if (files.length === 0) {
    t.skip(`SKIPPED LOUDLY: no Debian iPXE files in ${dir} (apt-get install ipxe): real-binary format checks not run`)
    return
  }
  t.diagnostic(`checking ${files.map((f) => join(dir, f)).join(', ')}`)
  for (const f of files) {
    const rel = `ipxe/${f}`
    const res = await checkFile(join(dir, f), expectationFor(rel)!)
    t.diagnostic(`${f}: ${res.format}`)
    if (f.endsWith('.efi')) {
      assert.equal(res.format, 'x86_64 EFI application')
      await assert.rejects(checkFile(join(dir, f), EFI_ARM64), new RegExp(`^RackbootError: ${f.replace('.', '\\.')}: x86_64 EFI application, expected arm64$`))
      await assert.rejects(checkFile(join(dir, f), PXE), /x86_64 EFI application, not an iPXE PXE image/)
    } else if (f.endsWith('.lkrn')) {
      assert.match(res.format, /^x86 bzImage \(boot protocol 2\.\d\d/)
      await assert.rejects(checkFile(join(dir, f), KERNEL_AMD64), /ipxe\.lkrn: x86 bzImage .*expected x86_64 \(no 64-bit entry point/)
    } else {
      assert.equal(res.format, 'iPXE PXE image')
      await assert.rejects(checkFile(join(dir, f), EFI_X64), /iPXE PXE image, not an EFI program/)
      await assert.rejects(checkFile(join(dir, f), KERNEL_AMD64), /iPXE PXE image, not a kernel/)
    }
  }
  // `assets fetch ipxe` from the Debian directory: every file passes and its format is recorded.
  const store = createAssetStore({ dir: join(tmp(), 'assets') })
  const entries = await store.importIpxe(dir)
  assert.ok(entries.length >= 1)
  for (const e of entries) assert.match(e.format!, /iPXE PXE image|x86_64 EFI application/, e.path)
})

test('import: the content is checked before anything lands in the store', async () => {
  const dir = tmp()
  const store = createAssetStore({ dir: join(dir, 'assets') })
  // The bug this fixes: 100 MB of random bytes accepted as a Talos kernel.
  const junk = join(dir, 'vmlinuz-amd64')
  writeFileSync(junk, noise(100 * 1024 * 1024, 'junk'))
  await assert.rejects(store.importFile(junk, 'talos/v1.13.9/amd64/vmlinuz'), { code: 'RB_ERR_VALIDATION', message: `${junk}: random data, not a kernel (expected an x86_64 Linux bzImage)` })
  assert.equal(existsSync(join(dir, 'assets', 'talos', 'v1.13.9', 'amd64')), false, 'nothing is written, not even a directory')
  rmSync(junk)
  // An arm64 kernel imported as amd64 says what it is.
  const arm = join(dir, 'vmlinuz-arm64')
  writeFileSync(arm, arm64Image({ size: 200_000 }))
  await assert.rejects(store.importFile(arm, 'talos/v1.13.9/amd64/vmlinuz'), { message: `${arm}: arm64 Image (EFI stub), expected x86_64` })
  // Good files go in with their format recorded.
  const kernel = join(dir, 'k')
  writeFileSync(kernel, bzImage({ size: 300_000 }))
  const initrd = join(dir, 'i')
  writeFileSync(initrd, gzip(cpio()))
  const k = await store.importFile(kernel, 'talos/v1.13.9/amd64/vmlinuz')
  assert.equal(k.format, 'x86_64 bzImage (boot protocol 2.15, Linux 6.12.40-talos)')
  assert.equal(k.verified, null)
  assert.equal((await store.importFile(initrd, 'talos/v1.13.9/amd64/initramfs.xz')).format, 'gzip-compressed cpio archive (newc)')
  assert.equal((await store.importFile(arm, 'talos/v1.13.9/arm64/vmlinuz')).format, 'arm64 Image (EFI stub)')
  assert.equal(store.manifest()['talos/v1.13.9/amd64/vmlinuz']!.format, k.format)
  // A place with no rule takes anything, and records what it looks like.
  const notes = join(dir, 'notes.txt')
  writeFileSync(notes, 'rack 7, row B\n')
  assert.equal((await store.importFile(notes, 'extras/notes.txt')).format, 'text ("rack 7, row B")')
  // A caller may say what to expect where the path cannot (an arm64 iPXE under a name without the arch).
  const efi = join(dir, 'ipxe.efi')
  writeFileSync(efi, pe({ machine: 0xaa64 }))
  await assert.rejects(store.importFile(efi, 'ipxe/ipxe.efi'), /arm64 EFI application, expected x86_64/)
  assert.equal((await store.importFile(efi, 'ipxe/ipxe.efi', { expect: EFI_ARM64 })).format, 'arm64 EFI application')
  assert.deepEqual(readdirSync(join(dir, 'assets', 'talos', 'v1.13.9', 'amd64')).sort(), ['initramfs.xz', 'vmlinuz'], 'no .tmp left behind')
})

test('import with a release checksum: --sha256 HEX or the release checksum list (sha256sum.txt / sha512sum.txt)', async () => {
  const dir = tmp()
  const store = createAssetStore({ dir: join(dir, 'assets') })
  const kernel = bzImage({ size: 300_000 })
  const initrd = gzip(cpio(), 50_000)
  const kf = join(dir, 'vmlinuz-amd64')
  const inf = join(dir, 'initramfs-amd64.xz')
  writeFileSync(kf, kernel)
  writeFileSync(inf, initrd)
  const rk = 'talos/v1.13.9/amd64/vmlinuz'
  const ri = 'talos/v1.13.9/amd64/initramfs.xz'
  // --sha256
  assert.equal((await store.importFile(kf, rk, { sha256: sha('sha256', kernel).toUpperCase() })).verified, 'sha256 (given)')
  await assert.rejects(store.importFile(kf, rk, { sha256: sha('sha256', initrd) }), {
    code: 'RB_ERR_VALIDATION',
    message: `${kf}: sha256 mismatch against sha256 (given) (expected ${sha('sha256', initrd).slice(0, 16)}…, got ${sha('sha256', kernel).slice(0, 16)}…): not imported`,
  })
  await assert.rejects(store.importFile(kf, rk, { sha256: 'abc' }), { message: `${kf}: the sha256 given is not 64 hex digits: 'abc'` })
  // The release's sha256sum.txt and sha512sum.txt, as `sha256sum` writes them (text and binary mode markers).
  const sums256 = join(dir, 'sha256sum.txt')
  writeFileSync(sums256, `${sha('sha256', Buffer.from('iso'))}  metal-amd64.iso\n${sha('sha256', kernel)}  vmlinuz-amd64\n${sha('sha256', initrd)} *initramfs-amd64.xz\n`)
  const sums512 = join(dir, 'sha512sum.txt')
  writeFileSync(sums512, `${sha('sha512', kernel)}  _out/vmlinuz-amd64\n${sha('sha512', initrd)}  _out/initramfs-amd64.xz\n`)
  assert.equal((await store.importFile(kf, rk, { checksums: sums256 })).verified, 'sha256sum.txt')
  assert.equal((await store.importFile(inf, ri, { checksums: sums256 })).verified, 'sha256sum.txt')
  assert.equal((await store.importFile(kf, rk, { checksums: sums512 })).verified, 'sha512sum.txt', 'names with a directory match by base name')
  assert.equal((await store.importFile(kf, rk, { checksums: sums512, sha256: sha('sha256', kernel) })).verified, 'sha256 (given), sha512sum.txt')
  // A renamed copy is found under the release's name for what it is imported as.
  const renamed = join(dir, 'vmlinuz')
  writeFileSync(renamed, kernel)
  assert.equal((await store.importFile(renamed, rk, { checksums: sums512 })).verified, 'sha512sum.txt')
  // The wrong file for the list's entry: refused, and the good copy already there stays.
  await assert.rejects(store.importFile(inf, rk, { checksums: sums256 }), { message: `${inf}: gzip stream, not a kernel (expected an x86_64 Linux bzImage)` })
  const other = join(dir, 'kernel-amd64')
  writeFileSync(other, bzImage({ size: 300_001 }))
  await assert.rejects(store.importFile(other, rk, { checksums: sums256 }), new RegExp(`^RackbootError: ${other}: sha256 mismatch against sha256sum\\.txt \\(expected ${sha('sha256', kernel).slice(0, 16)}…`))
  assert.ok(readFileSync(join(dir, 'assets', rk)).equals(kernel))
  // A list that does not name the file, a list that is not one, a list that is not there.
  await assert.rejects(store.importFile(other, 'talos/v1.13.9/arm64/vmlinuz', { checksums: sums256, expect: KERNEL_AMD64 }), { message: `${other}: ${sums256} lists no kernel-amd64 or vmlinuz-arm64 or kernel-arm64` })
  const notList = join(dir, 'README')
  writeFileSync(notList, 'hello\n')
  await assert.rejects(store.importFile(kf, rk, { checksums: notList }), { message: `${notList} holds no sha256sum or sha512sum lines ('<hex>  <name>')` })
  await assert.rejects(store.importFile(kf, rk, { checksums: join(dir, 'nope.txt') }), { code: 'RB_ERR_NOT_FOUND', message: `cannot read the checksum list ${join(dir, 'nope.txt')}: ENOENT` })
  // checksumName: the caller names the entry.
  assert.equal((await store.importFile(other, rk, { checksums: sums256, checksumName: 'vmlinuz-amd64' }).catch((e: Error) => e.message)), `${other}: sha256 mismatch against sha256sum.txt (expected ${sha('sha256', kernel).slice(0, 16)}…, got ${sha('sha256', readFileSync(other)).slice(0, 16)}…): not imported`)
})

// A stand-in for the Talos release page on loopback.
async function mirror(files: Record<string, Buffer | string>): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const body = files[req.url!]
    if (body === undefined) {
      res.writeHead(404)
      return res.end('not found')
    }
    res.writeHead(200, { 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server }
}

const quiet = () => ({ update() {}, finish() {} })

test('fetch: verified against the checksum list the release publishes, says when there is none, checks the format', async (t) => {
  const kernel = bzImage({ size: 300_000 })
  const initrd = gzip(cpio(), 100_000)
  const arm = arm64Image({ size: 200_000 })
  const m = await mirror({
    // v1.13.9 publishes sha256sum.txt only here (a mirror that dropped sha512sum.txt).
    '/v1.13.9/vmlinuz-amd64': kernel, '/v1.13.9/initramfs-amd64.xz': initrd,
    '/v1.13.9/sha256sum.txt': `${sha('sha256', kernel)}  vmlinuz-amd64\n${sha('sha256', initrd)}  initramfs-amd64.xz\n`,
    // v1.12.0 publishes none.
    '/v1.12.0/vmlinuz-amd64': kernel, '/v1.12.0/initramfs-amd64.xz': initrd,
    // v1.11.0's list is right, but its "arm64 kernel" is an amd64 one.
    '/v1.11.0/vmlinuz-arm64': kernel, '/v1.11.0/initramfs-arm64.xz': initrd,
    '/v1.11.0/sha512sum.txt': `${sha('sha512', kernel)}  vmlinuz-arm64\n${sha('sha512', initrd)}  initramfs-arm64.xz\n`,
    // v1.9.0's list does not match what is served.
    '/v1.9.0/vmlinuz-amd64': kernel, '/v1.9.0/initramfs-amd64.xz': initrd,
    '/v1.9.0/sha512sum.txt': `${sha('sha512', initrd)}  vmlinuz-amd64\n${sha('sha512', initrd)}  initramfs-amd64.xz\n`,
    // v1.10.0 lists only the kernel.
    '/v1.10.0/vmlinuz-arm64': arm, '/v1.10.0/initramfs-arm64.xz': initrd,
    '/v1.10.0/sha512sum.txt': `${sha('sha512', arm)}  vmlinuz-arm64\n`,
  })
  t.after(() => m.server.close())
  const dir = tmp()
  const notices: string[] = []
  const store = createAssetStore({ dir: join(dir, 'assets'), progress: quiet, notice: (l) => notices.push(l) })
  const fetchTalos = (version: string, arch: 'amd64' | 'arm64', schematic: string | null = null) => store.fetchTalos({ version, arch, schematic, releasesUrl: m.url, factoryUrl: m.url })

  const a = await fetchTalos('v1.13.9', 'amd64')
  assert.deepEqual(a.map((e) => e.verified), ['sha256sum.txt', 'sha256sum.txt'])
  assert.deepEqual(a.map((e) => e.format), ['x86_64 bzImage (boot protocol 2.15, Linux 6.12.40-talos)', 'gzip-compressed cpio archive (newc)'])
  assert.deepEqual(notices, [])

  const b = await fetchTalos('v1.12.0', 'amd64')
  assert.deepEqual(b.map((e) => e.verified), [null, null])
  assert.deepEqual(notices, ['Talos v1.12.0 publishes no checksum list here (sha512sum.txt: HTTP 404; sha256sum.txt: HTTP 404): vmlinuz-amd64 and initramfs-amd64.xz are checked for format only; their sha256 is recorded in manifest.json'])
  notices.length = 0

  await assert.rejects(fetchTalos('v1.11.0', 'arm64'), {
    code: 'RB_ERR_INTERNAL',
    message: `vmlinuz-arm64: x86_64 bzImage (boot protocol 2.15, Linux 6.12.40-talos), expected arm64 (downloaded from ${m.url}/v1.11.0/vmlinuz-arm64); file discarded`,
  })
  assert.deepEqual(readdirSync(join(dir, 'assets', 'talos', 'v1.11.0', 'arm64')), [], 'the download is removed')

  await assert.rejects(fetchTalos('v1.9.0', 'amd64'), {
    code: 'RB_ERR_INTERNAL',
    message: `vmlinuz-amd64: sha512 mismatch against the release's sha512sum.txt (expected ${sha('sha512', initrd).slice(0, 16)}…, got ${sha('sha512', kernel).slice(0, 16)}…); file discarded`,
  })
  assert.deepEqual(readdirSync(join(dir, 'assets', 'talos', 'v1.9.0', 'amd64')), [], 'the download is removed')

  const d = await fetchTalos('v1.10.0', 'arm64')
  assert.deepEqual(d.map((e) => e.verified), ['sha512sum.txt', null])
  assert.deepEqual(notices, ["initramfs-arm64.xz: the release's sha512sum.txt do not list it: checked for format only; its sha256 is recorded in manifest.json"])
  notices.length = 0

  // The Image Factory publishes no checksum for community users: said once, up front.
  const schematic = '376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba'
  const f = await mirror({ [`/image/${schematic}/v1.13.9/kernel-arm64`]: arm, [`/image/${schematic}/v1.13.9/initramfs-arm64.xz`]: noise(10_000) })
  t.after(() => f.server.close())
  await assert.rejects(store.fetchTalos({ version: 'v1.13.9', arch: 'arm64', schematic, releasesUrl: f.url, factoryUrl: f.url }), /initramfs-arm64\.xz: random data, not an initramfs .*; file discarded$/)
  assert.match(notices[0]!, /^Image Factory files come with no public checksum/)
})
