import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { rackboot, rackbootAsync, tempCwd } from '../support/cli.js'
import { arm64Image, bzImage, cpio, gzip, ipxePxe, pe } from './synthetic.js'

// A stand-in for the Talos release page and the Image Factory on loopback (the real ones are out of reach here,
// and an offline site's mirror looks just like this).
async function mirror(files: Record<string, Buffer | string>, redirects: Record<string, string> = {}): Promise<{ url: string; server: Server; hits: string[] }> {
  const hits: string[] = []
  const server = createServer((req, res) => {
    hits.push(req.url!)
    if (redirects[req.url!]) {
      res.writeHead(302, { location: redirects[req.url!] })
      return res.end()
    }
    const body = files[req.url!]
    if (body === undefined) {
      res.writeHead(404)
      return res.end('not found')
    }
    res.writeHead(200, { 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, hits }
}

const sha = (alg: string, b: Buffer) => createHash(alg).update(b).digest('hex')

test('fetch talos: kernel and initramfs from a release, verified against sha512sum.txt, recorded in the manifest', async (t) => {
  // Real formats (the content is checked, formats.test.ts), at the sizes the listing below shows.
  const kernel = bzImage({ size: 300_000 })
  const initrd = gzip(cpio(), 700_000)
  const m = await mirror({
    '/v1.13.9/vmlinuz-amd64': kernel,
    '/v1.13.9/initramfs-amd64.xz': initrd,
    '/v1.13.9/sha512sum.txt': `${sha('sha512', kernel)}  vmlinuz-amd64\n${sha('sha512', initrd)}  initramfs-amd64.xz\n`,
  })
  t.after(() => m.server.close())
  const cwd = tempCwd()
  const res = await rackbootAsync(['assets', 'fetch', 'talos', 'v1.13.9', '--set', `assetSources.talosReleases=${m.url}`], { cwd })
  assert.equal(res.code, 0, res.stderr)
  assert.match(res.stdout, /talos\/v1\.13\.9\/amd64\/vmlinuz\s+293 KiB\s+\w+…\s+sha512sum\.txt/)
  assert.match(res.stderr, /talos\/v1\.13\.9\/amd64\/initramfs\.xz/, 'progress is shown on stderr')
  assert.match(res.stderr, /^fetching Talos v1\.13\.9 \(amd64\) from http:\/\/127\.0\.0\.1:\d+\S* into /m, 'says where it goes before it goes')
  assert.ok(readFileSync(join(cwd, 'assets', 'talos', 'v1.13.9', 'amd64', 'vmlinuz')).equals(kernel))
  assert.ok(readFileSync(join(cwd, 'assets', 'talos', 'v1.13.9', 'amd64', 'initramfs.xz')).equals(initrd))
  const list = await rackbootAsync(['assets', 'list', '--local'], { cwd })
  assert.equal(list.code, 0)
  assert.match(list.stdout, /talos\/v1\.13\.9\/amd64\/initramfs\.xz\s+684 KiB\s+ok/)
  // A file changed on disk is caught by list.
  writeFileSync(join(cwd, 'assets', 'talos', 'v1.13.9', 'amd64', 'vmlinuz'), 'tampered')
  const again = await rackbootAsync(['assets', 'list', '--local'], { cwd })
  assert.equal(again.code, 1)
  assert.match(again.stdout, /vmlinuz\s+8 B\s+CHANGED/)
})

test('a checksum mismatch discards the file and fails; a missing release fails clearly', async (t) => {
  const kernel = randomBytes(1000)
  const m = await mirror({
    '/v1.13.9/vmlinuz-amd64': kernel,
    '/v1.13.9/initramfs-amd64.xz': 'x',
    '/v1.13.9/sha512sum.txt': `${'0'.repeat(128)}  vmlinuz-amd64\n`,
  })
  t.after(() => m.server.close())
  const cwd = tempCwd()
  const res = await rackbootAsync(['assets', 'fetch', 'talos', 'v1.13.9', '--set', `assetSources.talosReleases=${m.url}`], { cwd })
  assert.equal(res.code, 1)
  assert.match(res.stderr, /vmlinuz-amd64: sha512 mismatch .* file discarded/)
  assert.equal(existsSync(join(cwd, 'assets', 'talos', 'v1.13.9', 'amd64', 'vmlinuz')), false)
  const missing = await rackbootAsync(['assets', 'fetch', 'talos', 'v9.9.9', '--set', `assetSources.talosReleases=${m.url}`], { cwd })
  assert.equal(missing.code, 1)
  assert.match(missing.stderr, /download of .*v9\.9\.9\/vmlinuz-amd64 failed: HTTP 404/)
  assert.equal((await rackbootAsync(['assets', 'fetch', 'talos', '1.13'], { cwd })).code, 2)
})

test('fetch talos --schematic follows the Image Factory redirect and records the hash', async (t) => {
  const schematic = '376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba'
  const kernel = arm64Image({ size: 5000 })
  const m = await mirror(
    { '/cdn/kernel': kernel, [`/image/${schematic}/v1.13.9/initramfs-arm64.xz`]: gzip(cpio()) },
    { [`/image/${schematic}/v1.13.9/kernel-arm64`]: '/cdn/kernel' },
  )
  t.after(() => m.server.close())
  const cwd = tempCwd()
  const res = await rackbootAsync(['assets', 'fetch', 'talos', 'v1.13.9', '--arch', 'arm64', '--schematic', schematic, '--json', '--set', `assetSources.imageFactory=${m.url}`], { cwd })
  assert.equal(res.code, 0, res.stderr)
  const entries = JSON.parse(res.stdout)
  assert.equal(entries[0].path, `talos/${schematic}/v1.13.9/arm64/vmlinuz`)
  assert.equal(entries[0].sha256, sha('sha256', kernel))
  assert.equal(entries[0].verified, null)
  assert.ok(m.hits.includes('/cdn/kernel'))
})

test('offline: fetch ipxe from the Debian package directory, import local Talos files', () => {
  const cwd = tempCwd()
  const ipxe = join(cwd, 'debian-ipxe')
  mkdirSync(ipxe)
  writeFileSync(join(ipxe, 'undionly.kpxe'), ipxePxe())
  writeFileSync(join(ipxe, 'ipxe.efi'), pe())
  const res = rackboot(['assets', 'fetch', 'ipxe', '--set', `assetSources.ipxeDir=${ipxe}`], { cwd })
  assert.equal(res.code, 0, res.stderr)
  assert.ok(readFileSync(join(cwd, 'assets', 'ipxe', 'ipxe.efi')).equals(pe()))
  const none = rackboot(['assets', 'fetch', 'ipxe', '--set', `assetSources.ipxeDir=${join(cwd, 'nope')}`], { cwd })
  assert.equal(none.code, 1)
  assert.match(none.stderr, /apt-get install ipxe/)
  writeFileSync(join(cwd, 'vmlinuz-amd64'), bzImage())
  writeFileSync(join(cwd, 'initramfs-amd64.xz'), gzip(cpio()))
  const imp = rackboot(['assets', 'import', join(cwd, 'vmlinuz-amd64'), join(cwd, 'initramfs-amd64.xz'), '--talos', 'v1.12.11'], { cwd })
  assert.equal(imp.code, 0, imp.stderr)
  assert.ok(readFileSync(join(cwd, 'assets', 'talos', 'v1.12.11', 'amd64', 'initramfs.xz')).equals(gzip(cpio())))
  assert.equal(rackboot(['assets', 'import', join(cwd, 'vmlinuz-amd64')], { cwd }).code, 2, 'a Talos file needs --talos')
  assert.equal(rackboot(['assets', 'import', join(cwd, 'vmlinuz-amd64'), '--to', '../outside'], { cwd }).code, 2)
})

test('assets import --sha256: the published hash must match the bytes; one FILE only', async () => {
  const cwd = tempCwd()
  const kernel = bzImage()
  const file = join(cwd, 'vmlinuz-amd64')
  writeFileSync(file, kernel)
  const right = createHash('sha256').update(kernel).digest('hex')
  const wrong = await rackbootAsync(['assets', 'import', '--talos', 'v1.13.9', '--sha256', '0'.repeat(64), file], { cwd })
  assert.equal(wrong.code, 2, wrong.stderr)
  assert.match(wrong.stderr, /sha256|SHA-256/i)
  assert.equal(existsSync(join(cwd, 'assets', 'talos', 'v1.13.9', 'amd64', 'vmlinuz')), false, 'nothing copied in')
  const two = await rackbootAsync(['assets', 'import', '--talos', 'v1.13.9', '--sha256', right, file, file], { cwd })
  assert.equal(two.code, 2)
  assert.match(two.stderr, /one FILE/)
  const ok = await rackbootAsync(['assets', 'import', '--talos', 'v1.13.9', '--sha256', right, file], { cwd })
  assert.equal(ok.code, 0, ok.stderr)
  assert.ok(readFileSync(join(cwd, 'assets', 'talos', 'v1.13.9', 'amd64', 'vmlinuz')).equals(kernel))
})
