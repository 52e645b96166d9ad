// The newc writer, checked with GNU cpio (Debian package cpio): listing, extraction byte for byte, modes, symlinks
// and device nodes.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { gunzipSync, gzipSync } from 'node:zlib'
import { CpioBuilder, encodeCpio } from '../../src/agent/index.js'
import { run, which } from '../support/netns.js'

function tmp(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'rb-cpio-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

const cpioMissing = which('cpio') ? false : 'needs GNU cpio (Debian package cpio)'

// Sizes around the 4-byte padding boundary, an empty file and a large binary one.
const files: Record<string, Buffer> = {
  'bin/tool': randomBytes(1_000_003),
  'etc/a': Buffer.from('a'),
  'etc/ab': Buffer.from('ab'),
  'etc/abc': Buffer.from('abc'),
  'etc/abcd': Buffer.from('abcd'),
  'etc/empty': Buffer.alloc(0),
  'etc/unicode-é.txt': Buffer.from('naïve\n'),
}

function sample(): CpioBuilder {
  const b = new CpioBuilder()
  for (const [path, data] of Object.entries(files)) b.file(path, data, path === 'bin/tool' ? 0o755 : 0o644)
  b.dir('tmp', 0o1777)
  b.symlink('bin/sh', '/bin/busybox')
  b.symlink('lib/rel', '../etc/abc')
  b.char('dev/console', 5, 1, 0o600)
  b.char('dev/null', 1, 3, 0o666)
  return b
}

test('GNU cpio lists every entry of the archive, parents before children', { skip: cpioMissing }, async (t) => {
  const dir = tmp(t)
  const archive = join(dir, 'a.cpio')
  writeFileSync(archive, sample().toBuffer())
  const r = await run(['cpio', '-t', '-F', archive])
  const names = r.stdout.trim().split('\n')
  const expected = ['bin', 'bin/tool', 'etc', ...Object.keys(files).filter((f) => f.startsWith('etc/')), 'tmp', 'bin/sh', 'lib', 'lib/rel', 'dev', 'dev/console', 'dev/null']
  assert.deepEqual([...names].sort(), [...expected].sort())
  for (const name of names) {
    const parent = name.split('/').slice(0, -1).join('/')
    if (parent) assert.ok(names.indexOf(parent) < names.indexOf(name), `${parent} before ${name}`)
  }
  assert.match(r.stderr, /\d+ blocks/)
})

test('GNU cpio extracts files byte for byte, with modes, symlinks and device nodes', { skip: cpioMissing }, async (t) => {
  const dir = tmp(t)
  const out = join(dir, 'x')
  const archive = join(dir, 'a.cpio.gz')
  // Gzipped, as the kernel gets it; gunzip here so cpio sees the same bytes the kernel unpacks.
  writeFileSync(archive, gzipSync(sample().toBuffer()))
  writeFileSync(join(dir, 'a.cpio'), gunzipSync(readFileSync(archive)))
  await run(['mkdir', '-p', out])
  await run(['cpio', '-i', '-d', '-m', '--no-absolute-filenames', '-F', join(dir, 'a.cpio')], { cwd: out })
  for (const [path, data] of Object.entries(files)) assert.ok(readFileSync(join(out, path)).equals(data), path)
  assert.equal(lstatSync(join(out, 'bin/tool')).mode & 0o7777, 0o755)
  assert.equal(lstatSync(join(out, 'etc/a')).mode & 0o7777, 0o644)
  assert.equal(lstatSync(join(out, 'tmp')).mode & 0o7777, 0o1777)
  assert.equal(readlinkSync(join(out, 'bin/sh')), '/bin/busybox')
  assert.equal(readlinkSync(join(out, 'lib/rel')), '../etc/abc')
  if (process.getuid?.() === 0) {
    const console = lstatSync(join(out, 'dev/console'))
    assert.ok(console.isCharacterDevice())
    assert.equal(console.rdev, (5 << 8) | 1)
    assert.equal(console.mode & 0o7777, 0o600)
    assert.equal(lstatSync(join(out, 'dev/null')).rdev, (1 << 8) | 3)
  }
  // The verbose listing shows the device numbers whether or not mknod was allowed.
  const v = await run(['cpio', '-t', '-v', '-F', join(dir, 'a.cpio')])
  assert.match(v.stdout, /^crw-------\s.*\s5,\s+1\s.*dev\/console$/m)
  assert.match(v.stdout, /^lrwxrwxrwx\s.*bin\/sh -> \/bin\/busybox$/m)
  assert.equal(lstatSync(join(out, 'bin/tool')).mtimeMs, 0, 'fixed mtime (epoch) keeps builds reproducible')
})

test('the encoding is newc: 070701 headers, 4-byte alignment, the trailer, and the same bytes every time', () => {
  const a = sample().toBuffer()
  assert.ok(a.equals(sample().toBuffer()), 'deterministic')
  assert.equal(a.subarray(0, 6).toString(), '070701')
  assert.equal(a.length % 4, 0)
  assert.ok(a.includes(Buffer.from('TRAILER!!!\0')))
  // Walk the headers: every name and every data block starts 4-aligned.
  let off = 0
  let count = 0
  for (;;) {
    assert.equal(off % 4, 0, `header ${count} aligned`)
    assert.equal(a.subarray(off, off + 6).toString(), '070701')
    const field = (i: number) => parseInt(a.subarray(off + 6 + i * 8, off + 14 + i * 8).toString(), 16)
    const size = field(6)
    const nameSize = field(11)
    const name = a.subarray(off + 110, off + 110 + nameSize - 1).toString()
    const dataAt = Math.ceil((off + 110 + nameSize) / 4) * 4
    off = Math.ceil((dataAt + size) / 4) * 4
    count++
    if (name === 'TRAILER!!!') break
  }
  assert.equal(off, a.length)
  assert.equal(count, sample().size + 1, 'every entry and the trailer')
})

test('the builder adds parents, replaces a path given twice, and refuses bad paths', () => {
  const b = new CpioBuilder().file('usr/bin/wget', 'x').symlink('usr/bin/wget', '/bin/busybox')
  assert.ok(b.has('usr') && b.has('usr/bin'))
  assert.equal(b.size, 3)
  assert.throws(() => new CpioBuilder().file('../etc/passwd', 'x'), /bad path/)
  assert.throws(() => new CpioBuilder().file('a', 'x').file('a/b', 'y'), /not a directory/)
  assert.throws(() => encodeCpio([{ type: 'file', path: 'a', data: 'x' }, { type: 'file', path: 'a', data: 'y' }]), /duplicate/)
  // Leading slashes and dots are dropped: the kernel unpacks relative to /.
  const one = encodeCpio([{ type: 'dir', path: '/./etc/' }])
  assert.ok(one.includes(Buffer.from('etc\0')))
  assert.ok(!one.includes(Buffer.from('/etc')))
})
