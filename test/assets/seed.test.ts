import { test } from 'node:test'
import assert from 'node:assert/strict'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { ASSETS_SEED_ENV, seedAssets } from '../../src/assets/seed.js'

// First-start seeding of the assets directory from the boot files baked into the image (src/assets/seed.ts).

interface Line {
  level: 'info' | 'warn'
  obj: object
  msg: string
}

function recorder() {
  const lines: Line[] = []
  return {
    lines,
    log: {
      info: (obj: object, msg: string) => void lines.push({ level: 'info', obj, msg }),
      warn: (obj: object, msg: string) => void lines.push({ level: 'warn', obj, msg }),
    },
  }
}

function put(root: string, rel: string, data: string, mode = 0o644): void {
  mkdirSync(dirname(join(root, rel)), { recursive: true })
  writeFileSync(join(root, rel), data)
  chmodSync(join(root, rel), mode)
}

/** A seed laid out as the image's: iPXE loaders with manifest entries, the agent with its build record. */
function makeSeed(): string {
  const seed = mkdtempSync(join(tmpdir(), 'rb-seed-'))
  put(seed, 'ipxe/undionly.kpxe', 'BIOS loader')
  put(seed, 'ipxe/ipxe.efi', 'UEFI loader')
  put(seed, 'ipxe/snponly.efi', 'SNP loader')
  put(seed, 'agent/vmlinuz', 'kernel', 0o644)
  put(seed, 'agent/agent.img', 'initramfs')
  put(seed, 'agent/agent.img.manifest.json', '{"inputs":"x"}')
  put(seed, 'agent/.agent.img.lock', '')
  put(seed, 'ipxe/ipxe.efi.tmp', 'half written')
  put(seed, 'README.md', 'notes')
  put(seed, 'manifest.json', JSON.stringify({
    'ipxe/undionly.kpxe': { path: 'ipxe/undionly.kpxe', bytes: 11, sha256: 'a'.repeat(64), source: 'debian:/usr/lib/ipxe/undionly.kpxe', verified: null, addedAt: '2026-01-01T00:00:00.000Z' },
    'ipxe/ipxe.efi': { path: 'ipxe/ipxe.efi', bytes: 11, sha256: 'b'.repeat(64), source: 'debian:/usr/lib/ipxe/ipxe.efi', verified: null, addedAt: '2026-01-01T00:00:00.000Z' },
    'ipxe/snponly.efi': { path: 'ipxe/snponly.efi', bytes: 10, sha256: 'c'.repeat(64), source: 'debian:/usr/lib/ipxe/snponly.efi', verified: null, addedAt: '2026-01-01T00:00:00.000Z' },
  }))
  return seed
}

function files(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).filter((f) => statSync(join(dir, f)).isFile()).sort()
}

test('an empty assets directory gets every boot file of the seed, with the manifest entries, and the log says what', async () => {
  const seed = makeSeed()
  const assets = mkdtempSync(join(tmpdir(), 'rb-assets-'))
  const { log, lines } = recorder()
  const r = await seedAssets({ assetsDir: assets, seedDir: seed, log })
  assert.equal(r.error, undefined)
  assert.deepEqual(r.copied.sort(), ['agent/agent.img', 'agent/agent.img.manifest.json', 'agent/vmlinuz', 'ipxe/ipxe.efi', 'ipxe/snponly.efi', 'ipxe/undionly.kpxe'])
  // Locks, leftovers and notes stay behind; nothing temporary is left in the assets directory.
  assert.deepEqual(files(assets), ['agent/agent.img', 'agent/agent.img.manifest.json', 'agent/vmlinuz', 'ipxe/ipxe.efi', 'ipxe/snponly.efi', 'ipxe/undionly.kpxe', 'manifest.json'])
  assert.equal(readFileSync(join(assets, 'ipxe/undionly.kpxe'), 'utf8'), 'BIOS loader')
  assert.equal(readFileSync(join(assets, 'agent/agent.img'), 'utf8'), 'initramfs')
  assert.equal(statSync(join(assets, 'agent/vmlinuz')).mode & 0o777, 0o644)
  const manifest = JSON.parse(readFileSync(join(assets, 'manifest.json'), 'utf8'))
  assert.deepEqual(Object.keys(manifest).sort(), ['ipxe/ipxe.efi', 'ipxe/snponly.efi', 'ipxe/undionly.kpxe'])
  assert.equal(manifest['ipxe/undionly.kpxe'].source, 'debian:/usr/lib/ipxe/undionly.kpxe')
  const info = lines.filter((l) => l.level === 'info')
  assert.equal(info.length, 1)
  assert.match(info[0]!.msg, /seeded the assets directory with 6 boot files from the image: .*ipxe\/undionly\.kpxe/)

  // A second start finds everything in place: nothing copied, nothing logged.
  const again = recorder()
  const r2 = await seedAssets({ assetsDir: assets, seedDir: seed, log: again.log })
  assert.deepEqual(r2.copied, [])
  assert.equal(r2.kept.length, 6)
  assert.deepEqual(again.lines, [])
})

test('a file already in the assets directory is never overwritten, nor its manifest entry', async () => {
  const seed = makeSeed()
  const assets = mkdtempSync(join(tmpdir(), 'rb-assets-'))
  put(assets, 'ipxe/undionly.kpxe', 'my own build')
  put(assets, 'manifest.json', JSON.stringify({ 'ipxe/undionly.kpxe': { path: 'ipxe/undionly.kpxe', source: 'file:/home/me/undionly.kpxe' } }))
  const r = await seedAssets({ assetsDir: assets, seedDir: seed, log: recorder().log })
  assert.ok(r.kept.includes('ipxe/undionly.kpxe'))
  assert.ok(r.copied.includes('ipxe/ipxe.efi'))
  assert.equal(readFileSync(join(assets, 'ipxe/undionly.kpxe'), 'utf8'), 'my own build')
  const manifest = JSON.parse(readFileSync(join(assets, 'manifest.json'), 'utf8'))
  assert.equal(manifest['ipxe/undionly.kpxe'].source, 'file:/home/me/undionly.kpxe')
  assert.equal(manifest['ipxe/ipxe.efi'].source, 'debian:/usr/lib/ipxe/ipxe.efi')
})

test('the agent is one unit: with any of its files present, none of the seed\'s is copied (no kernel/initramfs mix)', async () => {
  const seed = makeSeed()
  const assets = mkdtempSync(join(tmpdir(), 'rb-assets-'))
  put(assets, 'agent/vmlinuz', 'a kernel built here')
  const r = await seedAssets({ assetsDir: assets, seedDir: seed, log: recorder().log })
  assert.ok(!r.copied.some((f) => f.startsWith('agent/')), `copied ${r.copied.join(', ')}`)
  assert.ok(!existsSync(join(assets, 'agent/agent.img')))
  assert.equal(readFileSync(join(assets, 'agent/vmlinuz'), 'utf8'), 'a kernel built here')
  // An empty agent/ directory (made by someone else) is no reason to leave the agent out.
  const assets2 = mkdtempSync(join(tmpdir(), 'rb-assets-'))
  mkdirSync(join(assets2, 'agent'))
  const r2 = await seedAssets({ assetsDir: assets2, seedDir: seed, log: recorder().log })
  assert.ok(r2.copied.includes('agent/agent.img') && r2.copied.includes('agent/vmlinuz'))
  assert.deepEqual(readdirSync(assets2).sort(), ['agent', 'ipxe', 'manifest.json'])
})

test(`the seed directory comes from ${ASSETS_SEED_ENV}; unset means no seeding, a missing one is a warning`, async () => {
  const assets = mkdtempSync(join(tmpdir(), 'rb-assets-'))
  const saved = process.env[ASSETS_SEED_ENV]
  try {
    delete process.env[ASSETS_SEED_ENV]
    const none = recorder()
    assert.deepEqual(await seedAssets({ assetsDir: assets, log: none.log }), { seedDir: null, copied: [], kept: [] })
    assert.deepEqual(none.lines, [])

    process.env[ASSETS_SEED_ENV] = join(assets, 'no-such-seed')
    const missing = recorder()
    const r = await seedAssets({ assetsDir: assets, log: missing.log })
    assert.match(r.error ?? '', /no assets seed at .*no-such-seed/)
    assert.equal(missing.lines[0]?.level, 'warn')

    const seed = makeSeed()
    process.env[ASSETS_SEED_ENV] = seed
    const ok = await seedAssets({ assetsDir: assets, log: recorder().log })
    assert.equal(ok.seedDir, seed)
    assert.equal(ok.copied.length, 6)
  } finally {
    if (saved === undefined) delete process.env[ASSETS_SEED_ENV]
    else process.env[ASSETS_SEED_ENV] = saved
  }
})

test('an assets directory that cannot be written is reported, never thrown (serve goes on and /healthz says what is missing)', async () => {
  const seed = makeSeed()
  const parent = mkdtempSync(join(tmpdir(), 'rb-assets-'))
  const assets = join(parent, 'assets')
  writeFileSync(assets, 'a file where the directory should be')
  const { log, lines } = recorder()
  const r = await seedAssets({ assetsDir: assets, seedDir: seed, log })
  assert.ok(r.error, 'an error is reported')
  assert.equal(lines.at(-1)?.level, 'warn')
  assert.match(lines.at(-1)!.msg, /cannot seed the assets directory/)
})

test('a corrupt assets manifest is left alone (files still seeded)', async () => {
  const seed = makeSeed()
  const assets = mkdtempSync(join(tmpdir(), 'rb-assets-'))
  put(assets, 'manifest.json', '{ not json')
  const { log, lines } = recorder()
  const r = await seedAssets({ assetsDir: assets, seedDir: seed, log })
  assert.equal(r.copied.length, 6)
  assert.equal(readFileSync(join(assets, 'manifest.json'), 'utf8'), '{ not json')
  assert.ok(lines.some((l) => l.level === 'warn' && /manifest is not valid JSON/.test(l.msg)))
})
