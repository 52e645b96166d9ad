// The busybox checks (src/agent/busybox.ts): a static ELF for the image's architecture, told from crafted headers
// (x86-64 0x3e, aarch64 0xb7, PT_INTERP for a dynamic one), and the applet names and version read from a binary
// that cannot run here, checked against the host's own busybox where one is installed.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { appletNamesFromBinary, busyboxVersionFromBinary, ELF_MACHINE, isStaticElf, isStaticElfHeader, isStaticX8664Elf } from '../../src/agent/busybox.js'
import { which } from '../support/netns.js'

const PT_LOAD = 1
const PT_INTERP = 3

/** A 64-bit ELF header with its program header table right after it (56-byte entries). */
function elf(o: { machine: number; cls?: number; endian?: number; type?: number; segments?: number[] }): Buffer {
  const segments = o.segments ?? [PT_LOAD, PT_LOAD]
  const buf = Buffer.alloc(64 + 56 * segments.length)
  buf.writeUInt32BE(0x7f454c46, 0)
  buf[4] = o.cls ?? 2
  buf[5] = o.endian ?? 1
  buf[6] = 1
  buf.writeUInt16LE(o.type ?? 2, 16)
  buf.writeUInt16LE(o.machine, 18)
  buf.writeBigUInt64LE(64n, 32) // e_phoff
  buf.writeUInt16LE(56, 54) // e_phentsize
  buf.writeUInt16LE(segments.length, 56) // e_phnum
  segments.forEach((type, i) => buf.writeUInt32LE(type, 64 + i * 56))
  return buf
}

test('a static ELF is told by its machine field: 0x3e for amd64, 0xb7 for arm64', () => {
  assert.deepEqual(ELF_MACHINE, { amd64: 0x3e, arm64: 0xb7 })
  const x86 = elf({ machine: 0x3e })
  const arm = elf({ machine: 0xb7 })
  assert.equal(isStaticElfHeader(x86, 'amd64'), true)
  assert.equal(isStaticElfHeader(x86, 'arm64'), false, 'an x86-64 busybox is no use in an arm64 image')
  assert.equal(isStaticElfHeader(arm, 'arm64'), true)
  assert.equal(isStaticElfHeader(arm, 'amd64'), false)
  assert.equal(isStaticElfHeader(elf({ machine: 0xb7, type: 3 }), 'arm64'), true, 'static-pie (ET_DYN without an interpreter)')
})

test('dynamic, 32-bit, big-endian, relocatable and truncated files are refused', () => {
  assert.equal(isStaticElfHeader(elf({ machine: 0xb7, segments: [PT_LOAD, PT_INTERP, PT_LOAD] }), 'arm64'), false, 'PT_INTERP: needs a libc')
  assert.equal(isStaticElfHeader(elf({ machine: 0xb7, cls: 1 }), 'arm64'), false, 'ELFCLASS32')
  assert.equal(isStaticElfHeader(elf({ machine: 0xb7, endian: 2 }), 'arm64'), false, 'big endian')
  assert.equal(isStaticElfHeader(elf({ machine: 0xb7, type: 1 }), 'arm64'), false, 'ET_REL: an object file')
  assert.equal(isStaticElfHeader(elf({ machine: 0xb7, segments: [] }), 'arm64'), false, 'no program headers')
  assert.equal(isStaticElfHeader(elf({ machine: 0xb7 }).subarray(0, 100), 'arm64'), false, 'table cut off')
  assert.equal(isStaticElfHeader(Buffer.from('#!/bin/sh\n'.padEnd(64)), 'arm64'), false)
})

test('isStaticElf reads files; isStaticX8664Elf keeps its old meaning', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rb-elf-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const files = { arm: elf({ machine: 0xb7 }), x86: elf({ machine: 0x3e }), dyn: elf({ machine: 0xb7, segments: [PT_INTERP] }), short: Buffer.from('\x7fELF') }
  for (const [name, data] of Object.entries(files)) writeFileSync(join(dir, name), data)
  assert.equal(await isStaticElf(join(dir, 'arm'), 'arm64'), true)
  assert.equal(await isStaticElf(join(dir, 'arm')), false, 'amd64 by default')
  assert.equal(await isStaticElf(join(dir, 'dyn'), 'arm64'), false)
  assert.equal(await isStaticElf(join(dir, 'short'), 'arm64'), false)
  assert.equal(await isStaticElf(join(dir, 'missing'), 'arm64'), false)
  assert.equal(await isStaticX8664Elf(join(dir, 'x86')), true)
  assert.equal(await isStaticX8664Elf(join(dir, 'arm')), false)
})

test('applet names and version come out of a busybox binary without running it', () => {
  const table = Buffer.from('junk\0[\0[[\0acpid\0ash\0cat\0sh\0zcat\0\0/var/log/wtmp\0-/bin/sh\0', 'latin1')
  const banner = Buffer.from('\0BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1) multi-call binary.\0', 'latin1')
  const bin = Buffer.concat([Buffer.alloc(100, 0xff), table, Buffer.alloc(50), banner])
  assert.deepEqual(appletNamesFromBinary(bin), ['[', '[[', 'acpid', 'ash', 'cat', 'sh', 'zcat'])
  assert.equal(busyboxVersionFromBinary(bin), '1.35.0 (Debian 1:1.35.0-4+deb12u1+b1)')
  // The table ends where the sort order breaks, even without an empty string.
  assert.deepEqual(appletNamesFromBinary(Buffer.from('\0[\0[[\0cat\0ash\0', 'latin1')), ['[', '[[', 'cat'])
  assert.equal(appletNamesFromBinary(Buffer.from('no table here')), null)
  assert.equal(busyboxVersionFromBinary(Buffer.from('\0BusyBox v1.36.1 multi-call\0')), '1.36.1')
  assert.equal(busyboxVersionFromBinary(Buffer.from('nothing')), 'unknown')
})

const hostBusybox = which('busybox')
test('the names read from the host busybox are exactly what it lists itself', { skip: hostBusybox ? false : 'SKIPPED: needs a busybox on PATH (Debian busybox-static) to compare with' }, () => {
  const listed = execFileSync(hostBusybox!, ['--list'], { encoding: 'utf8' }).trim().split('\n')
  assert.deepEqual(appletNamesFromBinary(readFileSync(hostBusybox!)), listed)
  const banner = execFileSync(hostBusybox!, ['--help'], { encoding: 'utf8' }).split('\n')[0]!
  assert.equal(`BusyBox v${busyboxVersionFromBinary(readFileSync(hostBusybox!))}`, banner.replace(/ multi-call binary\.$/, ''))
})
