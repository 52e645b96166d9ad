// GET /api/v1/assets: the assets directory as `rackboot assets list` shows it: kind, path, size, the manifest's
// sha256 and source, and whether the file still matches (by size, or by hash with verify=true).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { apiSetup } from './support/app.js'

const SCHEMATIC = 'a'.repeat(64)
const sha = (text: string) => createHash('sha256').update(text).digest('hex')

test('kinds, sizes, manifest hashes and status; verify=true hashes; missing and unrecorded files; read scope', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  const put = (rel: string, content: string) => {
    mkdirSync(dirname(join(s.assetsDir, rel)), { recursive: true })
    writeFileSync(join(s.assetsDir, rel), content)
  }
  const entry = (path: string, content: string, extra: object = {}) => ({
    path, bytes: Buffer.byteLength(content), sha256: sha(content), source: `https://example.test/${path}`, verified: null, addedAt: '2026-01-02T03:04:05.000Z', ...extra,
  })
  put('ipxe/undionly.kpxe', 'ipxe bios')
  put('talos/v1.13.9/amd64/vmlinuz', 'kernel, longer than recorded')
  put(`talos/${SCHEMATIC}/v1.13.9/arm64/initramfs.xz`, 'initramfs B') // same size as recorded, other bytes
  put('agent/vmlinuz', 'agent kernel') // copied in by hand
  put('README.md', 'not an asset')
  put('ipxe/ipxe.efi.tmp', 'being written')
  put('manifest.json', JSON.stringify({
    'ipxe/undionly.kpxe': entry('ipxe/undionly.kpxe', 'ipxe bios', { format: 'PXE boot program' }),
    'talos/v1.13.9/amd64/vmlinuz': entry('talos/v1.13.9/amd64/vmlinuz', 'kernel', { verified: 'sha512sum.txt' }),
    [`talos/${SCHEMATIC}/v1.13.9/arm64/initramfs.xz`]: entry(`talos/${SCHEMATIC}/v1.13.9/arm64/initramfs.xz`, 'initramfs A'),
    'ipxe/snponly.efi': entry('ipxe/snponly.efi', 'gone'),
  }))

  const r = await s.app.inject({ url: '/api/v1/assets', headers: s.auth('read') })
  assert.equal(r.statusCode, 200, r.body)
  const body = r.json()
  assert.equal(body.dir, s.assetsDir)
  assert.equal(body.verified, false)
  const view = (p: string) => body.items.find((i: any) => i.path === p)
  assert.deepEqual(body.items.map((i: any) => [i.path, i.kind, i.status]), [
    ['agent/vmlinuz', 'agent-kernel', 'unrecorded'],
    ['ipxe/snponly.efi', 'ipxe', 'missing'],
    ['ipxe/undionly.kpxe', 'ipxe', 'recorded'],
    [`talos/${SCHEMATIC}/v1.13.9/arm64/initramfs.xz`, 'talos-initramfs', 'recorded'],
    ['talos/v1.13.9/amd64/vmlinuz', 'talos-kernel', 'changed'],
  ])
  assert.deepEqual(view('ipxe/undionly.kpxe'), {
    path: 'ipxe/undionly.kpxe', kind: 'ipxe', talos: null, bytes: 9, sha256: sha('ipxe bios'), source: 'https://example.test/ipxe/undionly.kpxe',
    verifiedBy: null, addedAt: '2026-01-02T03:04:05.000Z', format: 'PXE boot program', status: 'recorded',
  })
  assert.deepEqual(view(`talos/${SCHEMATIC}/v1.13.9/arm64/initramfs.xz`).talos, { version: 'v1.13.9', arch: 'arm64', schematic: SCHEMATIC })
  assert.deepEqual(view('talos/v1.13.9/amd64/vmlinuz').talos, { version: 'v1.13.9', arch: 'amd64', schematic: null })
  assert.equal(view('talos/v1.13.9/amd64/vmlinuz').verifiedBy, 'sha512sum.txt')
  assert.equal(view('ipxe/snponly.efi').bytes, null)
  assert.equal(view('agent/vmlinuz').sha256, null)
  assert.equal(body.problems, 2)

  // Hashed: the initramfs whose bytes changed at the same size is found out; the intact one is verified.
  const v = (await s.app.inject({ url: '/api/v1/assets?verify=true', headers: s.auth('read') })).json()
  assert.equal(v.verified, true)
  assert.equal(v.items.find((i: any) => i.path === 'ipxe/undionly.kpxe').status, 'verified')
  assert.equal(v.items.find((i: any) => i.path.endsWith('initramfs.xz')).status, 'changed')
  assert.equal(v.problems, 3)

  assert.equal((await s.app.inject({ url: '/api/v1/assets' })).statusCode, 401)
  assert.equal((await s.app.inject({ url: '/api/v1/assets?verify=maybe', headers: s.auth('read') })).statusCode, 400)
})

test('an empty assets directory lists nothing; an unreadable manifest is a 503 naming it', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  const empty = await s.app.inject({ url: '/api/v1/assets', headers: s.auth('read') })
  assert.equal(empty.statusCode, 200)
  assert.deepEqual(empty.json().items, [])
  writeFileSync(join(s.assetsDir, 'manifest.json'), '{ not json')
  const broken = await s.app.inject({ url: '/api/v1/assets', headers: s.auth('read') })
  assert.equal(broken.statusCode, 503)
  assert.match(broken.json().message, /manifest\.json is not valid JSON/)
})
