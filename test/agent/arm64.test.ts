// `rackboot assets build agent --arch arm64` for real: Debian's arm64 kernel and busybox-static:arm64 through a
// private apt configuration (the host's dpkg is not changed), packed into agent/arm64/ beside the untouched amd64
// agent/, both recorded in the manifest; and the Talos stand-in for arm64. The ~60 MB kernel .deb is cached in the
// shared test cache (test/e2e/support/assets.ts testCacheDir), so only the first run downloads it.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { gunzipSync } from 'node:zlib'
import { buildFakeTalosAssets } from '../../src/agent/index.js'
import { isStaticElfHeader } from '../../src/agent/busybox.js'
import type { ManifestEntry } from '../../src/assets/store.js'
import { testCacheDir } from '../e2e/support/assets.js'
import { rackbootAsync, tempCwd } from '../support/cli.js'
import { which } from '../support/netns.js'

/** The entries of a newc cpio archive: name → { mode, data } (symlink targets are their data). */
function readCpio(buf: Buffer): Map<string, { mode: number; data: Buffer }> {
  const out = new Map<string, { mode: number; data: Buffer }>()
  let at = 0
  const align = (n: number) => (n + 3) & ~3
  while (at + 110 <= buf.length) {
    assert.equal(buf.toString('latin1', at, at + 6), '070701', `cpio header at ${at}`)
    const field = (i: number) => parseInt(buf.toString('latin1', at + 6 + i * 8, at + 14 + i * 8), 16)
    const mode = field(1)
    const size = field(6)
    const nameSize = field(11)
    const name = buf.toString('latin1', at + 110, at + 110 + nameSize - 1)
    if (name === 'TRAILER!!!') break
    const dataAt = align(at + 110 + nameSize)
    out.set(name, { mode, data: buf.subarray(dataAt, dataAt + size) })
    at = align(dataAt + size)
  }
  return out
}

const cacheDir = testCacheDir()
const cachedKernel = () => readdirSync(join(cacheDir, 'debs'), { withFileTypes: true }).some((e) => /^linux-image-\d\S*-arm64_.*_arm64\.deb$/.test(e.name))

/** Why the build cannot run here, or null. Offline is fine when the arm64 kernel .deb is already cached. */
async function cannotBuild(): Promise<string | null> {
  if (process.getuid?.() !== 0) return 'SKIPPED: apt-get download into a private apt state is run as root here (not root)'
  for (const program of ['apt-get', 'dpkg']) if (!which(program)) return `SKIPPED: needs ${program} (a Debian host)`
  if (!['modinfo', '/usr/sbin/modinfo', '/sbin/modinfo'].some((p) => (p.startsWith('/') ? existsSync(p) : which(p)))) return 'SKIPPED: needs modinfo (Debian package kmod)'
  if (existsSync(join(cacheDir, 'debs')) && cachedKernel()) return null
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      if ((await fetch('http://deb.debian.org/debian/dists/bookworm/InRelease', { method: 'HEAD', signal: AbortSignal.timeout(15_000) })).ok) return null
    } catch {
      // another try: this network drops an occasional connection
    }
  }
  return "SKIPPED: Debian's archive (deb.debian.org) is out of reach and no arm64 kernel .deb is cached in " + cacheDir
}

const why = await cannotBuild()
if (why) console.error(`# arm64 agent test: ${why}`)

test('assets build agent --arch arm64: agent/arm64/ from arm64 packages, recorded in the manifest beside amd64 agent/', { skip: why ?? false, timeout: 900_000 }, async () => {
  const cwd = tempCwd()
  const started = Date.now()
  const res = await rackbootAsync(['assets', 'build', 'agent', '--arch', 'arm64', '--cache-dir', cacheDir, '--json'], { cwd, timeoutMs: 840_000 })
  assert.equal(res.code, 0, res.stderr)
  console.error(`# arm64 agent built in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  const built = JSON.parse(res.stdout) as { arch: string; kernelVersion: string; source: { kernelPackage: string } }
  assert.equal(built.arch, 'arm64')
  assert.match(built.kernelVersion, /-arm64$/)
  const dir = join(cwd, 'assets', 'agent', 'arm64')
  assert.ok(!existsSync(join(cwd, 'assets', 'agent', 'vmlinuz')), 'amd64 agent/ untouched')

  // The uncompressed arm64 Image with its EFI stub (what GRUB's linux command loads).
  const kernel = readFileSync(join(dir, 'vmlinuz'))
  assert.equal(kernel.toString('latin1', 0x38, 0x3c), 'ARM\x64', 'arm64 Image magic at 0x38')
  assert.equal(kernel.toString('latin1', 0, 2), 'MZ')
  assert.ok(kernel.length > 20 * 1024 * 1024, `uncompressed Image (${kernel.length} bytes)`)

  const files = readCpio(gunzipSync(readFileSync(join(dir, 'agent.img'))))
  const busybox = files.get('bin/busybox')!.data
  assert.ok(isStaticElfHeader(busybox, 'arm64'), 'bin/busybox is a static aarch64 ELF')
  assert.equal(files.get('bin/sh')?.data.toString(), '/bin/busybox')
  for (const applet of ['bin/sh', 'bin/wget', 'sbin/udhcpc', 'bin/awk', 'sbin/poweroff', 'sbin/insmod']) {
    assert.ok([...files.keys()].some((k) => k.endsWith(`/${applet.split('/')[1]}`) && (files.get(k)!.mode & 0o170000) === 0o120000), `applet ${applet}`)
  }
  assert.ok(files.has('init') && files.has('bin/rackboot-collect'))
  const dep = files.get('etc/rackboot/modules.dep')!.data.toString()
  for (const m of ['virtio_pci', 'virtio_net', 'virtio_blk', 'nvme']) assert.match(dep, new RegExp(`^${m} kernel/\\S+\\.ko`, 'm'), `${m} in the image`)
  const ko = [...files.entries()].find(([k]) => k.endsWith('/virtio_net.ko'))!
  assert.equal(ko[1].data.readUInt16LE(18), 0xb7, 'modules are aarch64')
  assert.ok(ko[0].startsWith(`lib/modules/${built.kernelVersion}/`))

  // Recorded: `assets list` says ok, with the packages it came from.
  const manifest = JSON.parse(readFileSync(join(cwd, 'assets', 'manifest.json'), 'utf8')) as Record<string, ManifestEntry>
  for (const f of ['agent/arm64/vmlinuz', 'agent/arm64/agent.img']) {
    assert.match(manifest[f]?.source ?? '', /^built from linux-image-\S+-arm64 \S+ \+ busybox 1\.\d+\.\d+ \(Debian /, f)
  }
  assert.equal(manifest['agent/arm64/vmlinuz']!.format, 'arm64 Image (EFI stub)')

  // amd64, the default, where it always was, recorded too (files built by `assets build agent` used to show
  // "not in manifest").
  const amd = await rackbootAsync(['assets', 'build', 'agent', '--cache-dir', cacheDir], { cwd, timeoutMs: 600_000 })
  assert.equal(amd.code, 0, amd.stderr)
  assert.match(amd.stdout, /agent \(amd64\) (built|up to date) in \S+\/assets\/agent:/)
  const list = await rackbootAsync(['assets', 'list', '--local', '--json'], { cwd })
  assert.deepEqual((JSON.parse(list.stdout) as Array<{ path: string; ok: boolean | null }>).map((f) => [f.path, f.ok]), [
    ['agent/agent.img', true], ['agent/agent.img.manifest.json', true], ['agent/arm64/agent.img', true],
    ['agent/arm64/agent.img.manifest.json', true], ['agent/arm64/vmlinuz', true], ['agent/vmlinuz', true],
  ])
  assert.equal(execFileSync('dpkg', ['--print-foreign-architectures'], { encoding: 'utf8' }).includes('arm64'), false, 'host dpkg unchanged')

  // Again: reused, still recorded.
  const again = await rackbootAsync(['assets', 'build', 'agent', '--arch', 'arm64', '--cache-dir', cacheDir], { cwd, timeoutMs: 300_000 })
  assert.equal(again.code, 0, again.stderr)
  assert.match(again.stdout, /agent \(arm64\) up to date/)
})

test('the Talos stand-in builds for arm64: aarch64 busybox, mirrors its markers to ttyAMA0', { skip: why ?? false, timeout: 600_000 }, async () => {
  const outDir = join(tempCwd(), 'fake-talos-arm64')
  const built = await buildFakeTalosAssets({ arch: 'arm64', outDir, cacheDir })
  assert.equal(built.arch, 'arm64')
  assert.equal(built.kernel, join(outDir, 'vmlinuz'))
  assert.equal(built.initramfs, join(outDir, 'fake-talos.img'))
  const files = readCpio(gunzipSync(readFileSync(built.initramfs)))
  assert.ok(isStaticElfHeader(files.get('bin/busybox')!.data, 'arm64'))
  assert.match(files.get('init')!.data.toString(), /ttyAMA0/)
  assert.match(files.get('etc/rackboot/modules.dep')!.data.toString(), /^virtio_net /m)
  assert.equal(readFileSync(built.kernel).toString('latin1', 0x38, 0x3c), 'ARM\x64')
})
