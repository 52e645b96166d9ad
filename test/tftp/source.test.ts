import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, mkdir, writeFile, symlink, rm } from 'node:fs/promises'
import { execFileSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { bufferContent, createFileSource, createRoutingSource, isDenied, normalizeRequestPath, type TftpContent, type TftpOpenResult } from '../../src/tftp/source.js'

const client = { address: '198.18.0.2', port: 2000 }

async function tree(t: { after(fn: () => Promise<void>): void }) {
  const base = await mkdtemp(join(tmpdir(), 'rb-tftp-src-'))
  t.after(() => rm(base, { recursive: true, force: true }))
  const root = join(base, 'root')
  await mkdir(join(root, 'sub'), { recursive: true })
  await writeFile(join(root, 'ipxe.efi'), 'EFI')
  await writeFile(join(root, 'sub', 'file.txt'), 'nested')
  await writeFile(join(base, 'secret'), 'outside')
  await symlink(join(base, 'secret'), join(root, 'link-out'))
  await symlink('../secret', join(root, 'sub-rel-out'))
  await symlink('sub/file.txt', join(root, 'link-in'))
  await symlink(base, join(root, 'dir-out'))
  await mkdir(join(base, 'root-sibling'))
  await writeFile(join(base, 'root-sibling', 'x'), 'sibling')
  return { base, root }
}

async function text(r: TftpOpenResult): Promise<string> {
  assert.ok(r !== null && !isDenied(r), `expected content, got ${JSON.stringify(r)}`)
  const c = r as TftpContent
  const b = await c.read(0, 1 << 20)
  await c.close()
  return b.toString()
}

test('path normalisation refuses escapes and keeps root-relative names', () => {
  assert.deepEqual(normalizeRequestPath('/ipxe.efi'), { ok: true, path: 'ipxe.efi' })
  assert.deepEqual(normalizeRequestPath('//a/./b'), { ok: true, path: 'a/b' })
  assert.deepEqual(normalizeRequestPath('boot\\x64\\wdsnbp.com'), { ok: true, path: 'boot/x64/wdsnbp.com' })
  for (const bad of ['../etc/passwd', 'a/../../b', '..', 'a\\..\\b', 'a\0b', 'a\nb', '', '/', 'x'.repeat(2000)]) {
    assert.equal(normalizeRequestPath(bad).ok, false, JSON.stringify(bad))
  }
})

test('file source serves files inside the root, absolute names mean the root', async (t) => {
  const { root } = await tree(t)
  const src = createFileSource({ root })
  assert.equal(await text(await src.open('ipxe.efi', client)), 'EFI')
  assert.equal(await text(await src.open('/ipxe.efi', client)), 'EFI')
  assert.equal(await text(await src.open('sub/file.txt', client)), 'nested')
  assert.equal(await text(await src.open('link-in', client)), 'nested', 'a symlink that stays inside is fine')
  const c = await src.open('ipxe.efi', client)
  assert.equal((c as TftpContent).size, 3)
  await (c as TftpContent).close()
})

test('file source: missing is null, escapes are denied', async (t) => {
  const { root } = await tree(t)
  const src = createFileSource({ root })
  assert.equal(await src.open('nope.bin', client), null)
  assert.equal(await src.open('/etc/passwd', client), null, 'an absolute path is looked up under the root')
  assert.equal(await src.open('ipxe.efi/x', client), null)
  for (const name of ['../secret', 'sub/../../secret', 'link-out', 'sub-rel-out', 'dir-out/secret', '../root-sibling/x', 'a\0b', 'sub']) {
    const r = await src.open(name, client)
    assert.ok(r !== null && isDenied(r), `${JSON.stringify(name)} must be denied, got ${JSON.stringify(r)}`)
  }
})

test('file source refuses a FIFO without blocking', async (t) => {
  const { root } = await tree(t)
  try {
    execFileSync('mkfifo', [join(root, 'fifo')])
  } catch {
    t.skip('mkfifo not available')
    return
  }
  const r = await createFileSource({ root }).open('fifo', client)
  assert.ok(r !== null && isDenied(r))
})

test('file source reads at offsets and returns short reads only at the end', async (t) => {
  const { root } = await tree(t)
  const data = Buffer.alloc(100000)
  for (let i = 0; i < data.length; i++) data[i] = i & 0xff
  await writeFile(join(root, 'big'), data)
  const c = (await createFileSource({ root }).open('big', client)) as TftpContent
  t.after(() => c.close())
  assert.ok((await c.read(1000, 5000)).equals(data.subarray(1000, 6000)))
  assert.ok((await c.read(99000, 5000)).equals(data.subarray(99000)))
  assert.equal((await c.read(100000, 10)).length, 0)
})

test('routing source: handlers by path first, then the fallback; unsafe names never reach handlers', async (t) => {
  const { root } = await tree(t)
  const seen: string[] = []
  const src = createRoutingSource({ fallback: createFileSource({ root }) })
  src.register('boot.ipxe', (path, c) => {
    seen.push(`${path}@${c.address}`)
    return bufferContent(`#!ipxe\necho ${c.address}\n`)
  })
  src.register(/^pxelinux\.cfg\//, async () => null) // declines: falls through
  const off = src.register((p) => p.startsWith('gen/'), async (p) => bufferContent(p.toUpperCase()))
  assert.equal(await text(await src.open('/boot.ipxe', client)), '#!ipxe\necho 198.18.0.2\n')
  assert.deepEqual(seen, ['boot.ipxe@198.18.0.2'])
  assert.equal(await text(await src.open('gen/abc', client)), 'GEN/ABC')
  assert.equal(await text(await src.open('ipxe.efi', client)), 'EFI')
  assert.equal(await src.open('pxelinux.cfg/default', client), null)
  off()
  assert.equal(await src.open('gen/abc', client), null)
  const denied = await src.open('../boot.ipxe', client)
  assert.ok(denied !== null && isDenied(denied))
  assert.equal(seen.length, 1)
})

test('readPackets: a file is read straight into DATA packets, the same bytes packetize() cuts', async (t) => {
  const { readPackets } = await import('../../src/tftp/source.js')
  const { packetize } = await import('../../src/tftp/packet.js')
  const { root } = await tree(t)
  // 3000 blocks of 8: more iovecs than one preadv takes; a multiple of blksize, so an empty block ends it.
  const data = Buffer.from(Array.from({ length: 24_000 }, (_, i) => (i * 7) & 0xff))
  await writeFile(join(root, 'blocks.bin'), data)
  const c = (await createFileSource({ root }).open('blocks.bin', client)) as TftpContent
  t.after(() => c.close())
  assert.ok(c.readInto, 'files read into buffers')
  const whole = await readPackets(c, 0, data.length, 8)
  assert.deepEqual(whole, packetize(data, 8))
  // A window into the middle, as BlockStore reads chunks: blocks 101..150 at offset 800.
  assert.deepEqual(await readPackets(c, 800, 400, 8, 101, 50), packetize(data.subarray(800, 1200), 8, 101, 50))
  // The end: 16 bytes left, then the empty block.
  assert.deepEqual(await readPackets(c, 23_984, 16, 8, 2999, 3), packetize(data.subarray(23_984), 8, 2999, 3))
  // A file shorter than its size said (changed under us) is an error, not a short packet.
  await assert.rejects(readPackets(c, 23_990, 16, 8), /short read at offset 23990: 10 of 16/)
  // Content without readInto is read and cut.
  assert.deepEqual(await readPackets(bufferContent(data), 800, 400, 8, 101, 50), packetize(data.subarray(800, 1200), 8, 101, 50))
})
