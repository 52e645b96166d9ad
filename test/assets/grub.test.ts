// GRUB netboot images (src/assets/grub.ts, `rackboot assets fetch grub`, `assets import grubnetaa64.efi`) and the
// manifest records they and built files get. The fetch test runs the real CLI against Debian's archive through
// apt (a private arm64 configuration in the shared test cache) and grub-mkimage; it skips, saying why, when that
// cannot work here.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { createHash } from 'node:crypto'
import { fetchGrub, grubAssetName, GRUB_IMAGES } from '../../src/assets/grub.js'
import { silentLogger } from '../../src/log.js'
import { expectationFor } from '../../src/assets/formats.js'
import { createAssetStore, type ManifestEntry } from '../../src/assets/store.js'
import { testCacheDir } from '../e2e/support/assets.js'
import { rackboot, rackbootAsync, tempCwd } from '../support/cli.js'
import { arm64Image, cpio, gzip, pe } from './synthetic.js'

test('GRUB images go to grub/ under their plain name, checked as EFI applications for the arch the name says', () => {
  // Built by grub-mkimage from the unsigned modules: Debian's signed images have no http (src/assets/grub.ts).
  assert.deepEqual(GRUB_IMAGES.map((g) => [g.arch, g.package, g.format, g.name]), [
    ['arm64', 'grub-efi-arm64-bin', 'arm64-efi', 'grubnetaa64.efi'],
    ['amd64', 'grub-efi-amd64-bin', 'x86_64-efi', 'grubnetx64.efi'],
  ])
  assert.equal(grubAssetName('grubnetaa64.efi.signed'), 'grubnetaa64.efi')
  assert.equal(grubAssetName('grubnetx64.efi'), 'grubnetx64.efi')
  assert.equal(grubAssetName('grubx64.efi'), null, 'the disk (not netboot) image is not one of them')
  assert.deepEqual(expectationFor('grub/grubnetaa64.efi'), { kind: 'ipxe-efi', arch: 'arm64' })
  assert.deepEqual(expectationFor('grub/grubnetx64.efi'), { kind: 'ipxe-efi', arch: 'x86_64' })
  assert.deepEqual(expectationFor('agent/arm64/vmlinuz'), { kind: 'kernel', arch: 'arm64' })
  assert.deepEqual(expectationFor('agent/arm64/agent.img'), { kind: 'initramfs' })
  assert.deepEqual(expectationFor('agent/vmlinuz'), { kind: 'kernel', arch: null }, 'amd64 agent/ as before')
})

test('assets import grubnetaa64.efi(.signed) lands in grub/; an x86 image under the arm64 name is refused', () => {
  const cwd = tempCwd()
  writeFileSync(join(cwd, 'grubnetaa64.efi.signed'), pe({ machine: 0xaa64 }))
  writeFileSync(join(cwd, 'grubnetx64.efi'), pe({ machine: 0x8664 }))
  const res = rackboot(['assets', 'import', join(cwd, 'grubnetaa64.efi.signed'), join(cwd, 'grubnetx64.efi'), '--json'], { cwd })
  assert.equal(res.code, 0, res.stderr)
  assert.deepEqual((JSON.parse(res.stdout) as ManifestEntry[]).map((e) => e.path), ['grub/grubnetaa64.efi', 'grub/grubnetx64.efi'])
  assert.ok(existsSync(join(cwd, 'assets', 'grub', 'grubnetaa64.efi')))
  const list = rackboot(['assets', 'list', '--local', '--json'], { cwd })
  assert.deepEqual((JSON.parse(list.stdout) as Array<{ path: string; ok: boolean }>).map((f) => [f.path, f.ok]), [['grub/grubnetaa64.efi', true], ['grub/grubnetx64.efi', true]])

  writeFileSync(join(cwd, 'grubnetaa64.efi'), pe({ machine: 0x8664 }))
  const wrong = rackboot(['assets', 'import', join(cwd, 'grubnetaa64.efi')], { cwd })
  assert.equal(wrong.code, 2, 'a wrong file is a user error: ' + wrong.stdout + wrong.stderr)
  assert.match(wrong.stderr, /x86_64 EFI application, expected arm64/)
  assert.ok(!wrong.stderr.includes('    at '), 'a user error is one line, not a stack trace')
})

test('recordFile: a file written into the store by something else is recorded (format-checked) and then listed ok', async () => {
  const dir = join(tempCwd(), 'assets')
  const store = createAssetStore({ dir })
  mkdirSync(join(dir, 'agent', 'arm64'), { recursive: true })
  writeFileSync(join(dir, 'agent', 'arm64', 'vmlinuz'), arm64Image({ efiStub: true }))
  writeFileSync(join(dir, 'agent', 'arm64', 'agent.img'), gzip(cpio()))
  assert.deepEqual((await store.list()).map((f) => f.ok), [null, null], 'not in manifest before')
  const source = 'built from linux-image-6.1.0-57-arm64 6.1.192-3 + busybox 1.35.0 (Debian 1:1.35.0-4+deb12u1+b1)'
  for (const f of ['agent.img', 'vmlinuz']) await store.recordFile(`agent/arm64/${f}`, { source })
  const manifest = store.manifest()
  assert.equal(manifest['agent/arm64/vmlinuz']?.source, source)
  assert.equal(manifest['agent/arm64/vmlinuz']?.format, 'arm64 Image (EFI stub)')
  assert.equal(manifest['agent/arm64/vmlinuz']?.verified, null)
  assert.deepEqual((await store.list()).map((f) => [f.path, f.ok, f.source]), [['agent/arm64/agent.img', true, source], ['agent/arm64/vmlinuz', true, source]])
  // An x86 kernel where the arm64 agent's goes is refused, and a path outside the store too.
  writeFileSync(join(dir, 'agent', 'arm64', 'vmlinuz'), pe({ machine: 0x8664 }))
  await assert.rejects(store.recordFile('agent/arm64/vmlinuz', { source }), /expected arm64/)
  await assert.rejects(store.recordFile('../x', { source }), /inside the assets directory/)
  await assert.rejects(store.recordFile('agent/none', { source }), /no such file/)
})

/** Why the real fetch cannot run here, or null when it can. */
async function archiveUnreachable(): Promise<string | null> {
  if (process.getuid?.() !== 0) return 'SKIPPED: apt-get download into a private apt state is run as root here (not root)'
  let url: string
  try {
    const out = execFileSync('apt-get', ['download', '--print-uris', 'grub-efi-amd64-bin'], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' }, stdio: ['ignore', 'pipe', 'pipe'] })
    url = /^'([^']+)'/.exec(out.trim())?.[1] ?? ''
    if (!url) return `SKIPPED: apt knows no grub-efi-amd64-bin here (${out.trim().slice(0, 200)})`
  } catch (err) {
    return `SKIPPED: apt-get cannot resolve grub-efi-amd64-bin (not a Debian host with apt lists?): ${(err as Error).message.split('\n')[0]}`
  }
  // A few tries: this network drops an occasional connection, which apt itself would retry.
  let why = ''
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const res = await fetch(url, { method: 'HEAD', signal: AbortSignal.timeout(15_000) })
      if (res.ok) return null
      why = `HTTP ${res.status}`
    } catch (err) {
      why = (err as Error).message
    }
  }
  return `SKIPPED: Debian's archive is out of reach (${url}): ${why}`
}

/** The PE machine field of an EFI image (after "MZ", e_lfanew at 0x3c, "PE\0\0"). */
function peMachine(file: string): number {
  const b = readFileSync(file)
  assert.equal(b.toString('latin1', 0, 2), 'MZ', `${file} starts with MZ`)
  const at = b.readUInt32LE(0x3c)
  assert.equal(b.toString('latin1', at, at + 4), 'PE\0\0', `${file} has a PE header`)
  return b.readUInt16LE(at + 4)
}

const unreachable = await archiveUnreachable()
if (unreachable) console.error(`# grub fetch test: ${unreachable}`)

test('assets fetch grub: netboot images built by grub-mkimage (http built in) from .debs through apt, recorded in the manifest; reproducible; offline from the cache', { skip: unreachable ?? false, timeout: 300_000 }, async () => {
  const cwd = tempCwd()
  const cacheDir = testCacheDir()
  const res = await rackbootAsync(['assets', 'fetch', 'grub', '--cache-dir', cacheDir, '--json'], { cwd, timeoutMs: 280_000 })
  assert.equal(res.code, 0, res.stderr)
  const entries = JSON.parse(res.stdout) as ManifestEntry[]
  assert.deepEqual(entries.map((e) => e.path), ['grub/grubnetaa64.efi', 'grub/grubnetx64.efi'])
  const arm = join(cwd, 'assets', 'grub', 'grubnetaa64.efi')
  assert.equal(peMachine(arm), 0xaa64, 'arm64 PE machine type')
  assert.equal(peMachine(join(cwd, 'assets', 'grub', 'grubnetx64.efi')), 0x8664)
  assert.ok(readFileSync(arm).length > 500_000, 'the monolithic netboot image (~0.8 MB with its modules), not a stub')
  // The http module is built in (its request line; Debian's signed grubnetaa64.efi has no such string), for PXE and
  // UEFI HTTP boot alike; x86 too.
  for (const f of ['grubnetaa64.efi', 'grubnetx64.efi']) assert.ok(readFileSync(join(cwd, 'assets', 'grub', f)).includes('HTTP/1.1'), `${f} has http built in`)

  const manifest = JSON.parse(readFileSync(join(cwd, 'assets', 'manifest.json'), 'utf8')) as Record<string, ManifestEntry>
  const built = (pkg: string) => new RegExp(`^built by grub-mkimage (\\d\\S+) from ${pkg} \\1 \\(modules: [^)]*\\befinet\\b[^)]*\\btftp\\b[^)]*\\bhttp\\b[^)]*\\)$`)
  assert.match(manifest['grub/grubnetaa64.efi']!.source, built('grub-efi-arm64-bin'))
  assert.match(manifest['grub/grubnetx64.efi']!.source, built('grub-efi-amd64-bin'))
  assert.match(manifest['grub/grubnetaa64.efi']!.verified ?? '', /Debian archive SHA256/)
  assert.equal(manifest['grub/grubnetaa64.efi']!.format, 'arm64 EFI application')
  const list = rackboot(['assets', 'list', '--local', '--json'], { cwd })
  assert.deepEqual((JSON.parse(list.stdout) as Array<{ path: string; ok: boolean }>).map((f) => [f.path, f.ok]), [['grub/grubnetaa64.efi', true], ['grub/grubnetx64.efi', true]])
  // The private apt never touched the host's dpkg architectures.
  assert.equal(execFileSync('dpkg', ['--print-foreign-architectures'], { encoding: 'utf8' }).includes('arm64'), false)
  assert.ok(existsSync(join(cacheDir, 'apt', 'arm64', 'apt.conf')))

  // Reproducible, whichever grub-mkimage builds it: the host's (above) or, when the host's is of another version
  // (a stand-in that says 2.04 and fails if run), grub-common's of the modules' version, unpacked in the cache.
  const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex')
  const other = tempCwd()
  const fakeMkimage = join(other, 'grub-mkimage')
  writeFileSync(fakeMkimage, '#!/bin/sh\n[ "$1" = --version ] && echo "grub-mkimage (GRUB) 2.04-20" && exit 0\necho "built by the wrong grub-mkimage" >&2\nexit 1\n')
  chmodSync(fakeMkimage, 0o755)
  const quiet = () => ({ update: () => undefined, finish: () => undefined })
  const rebuilt = await fetchGrub({ store: createAssetStore({ dir: join(other, 'assets') }), cacheDir, log: silentLogger(), hostMkimage: fakeMkimage, progress: quiet })
  assert.deepEqual(rebuilt.map((e) => e.path), ['grub/grubnetaa64.efi', 'grub/grubnetx64.efi'])
  for (const f of ['grubnetaa64.efi', 'grubnetx64.efi']) {
    assert.equal(sha(join(other, 'assets', 'grub', f)), sha(join(cwd, 'assets', 'grub', f)), `${f}: the same bytes from grub-common's grub-mkimage`)
  }
  assert.ok(readdirSync(join(cacheDir, 'debs')).some((f) => /^grub-common_[^_]+_\w+\.deb$/.test(f)), 'the grub-common .deb is in the cache')

  // Offline: apt cannot reach the archive; the cached packages still give the same files.
  const offline = tempCwd()
  const bin = join(offline, 'bin')
  mkdirSync(bin)
  writeFileSync(join(bin, 'apt-get'), "#!/bin/sh\necho \"E: Failed to fetch http://deb.debian.org/x  Temporary failure resolving 'deb.debian.org'\" >&2\nexit 100\n")
  chmodSync(join(bin, 'apt-get'), 0o755)
  const again = await rackbootAsync(['assets', 'fetch', 'grub', '--cache-dir', cacheDir, '--json'], { cwd: offline, env: { PATH: `${bin}:${process.env.PATH}` }, timeoutMs: 120_000 })
  assert.equal(again.code, 0, again.stderr)
  assert.match(again.stderr, /using the cached package/)
  const offManifest = JSON.parse(readFileSync(join(offline, 'assets', 'manifest.json'), 'utf8')) as Record<string, ManifestEntry>
  assert.equal(offManifest['grub/grubnetaa64.efi']!.sha256, manifest['grub/grubnetaa64.efi']!.sha256)
  assert.equal(offManifest['grub/grubnetx64.efi']!.sha256, manifest['grub/grubnetx64.efi']!.sha256)
  assert.match(offManifest['grub/grubnetaa64.efi']!.verified ?? '', /checked when they were cached/)
})
