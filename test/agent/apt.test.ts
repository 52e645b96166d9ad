// The private apt for another architecture (src/agent/apt.ts): its configuration, and when it runs apt-get update.
// A fake apt-get on PATH stands in for the archive: it records each call and its APT_CONFIG, and writes (or fails to
// write) a Packages list into the private lists directory, as the real one would.
import assert from 'node:assert/strict'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { aptFor, hostApt, privateAptConfig } from '../../src/agent/apt.js'
import { isRackbootError } from '../../src/errors.js'
import { silentLogger } from '../../src/log.js'

test('the private apt.conf names only the architecture and keeps all state under its root', () => {
  const conf = privateAptConfig('arm64', '/var/cache/rb/apt/arm64')
  assert.match(conf, /^APT::Architecture "arm64";$/m)
  assert.match(conf, /^APT::Architectures \{ "arm64"; \};$/m, 'no amd64: apt must not mix in the host architecture')
  for (const [key, path] of [
    ['Dir::State::Lists', 'lists'],
    ['Dir::State::status', 'status'],
    ['Dir::State::extended_states', 'extended_states'],
    ['Dir::Cache', 'cache'],
    ['Dir::Cache::archives', 'cache/archives'],
  ]) {
    assert.ok(conf.includes(`${key} "/var/cache/rb/apt/arm64/${path}";`), `${key} inside the root:\n${conf}`)
  }
  assert.ok(!/add-architecture|\/var\/lib\/dpkg/.test(conf), 'never the host dpkg state')
  for (const bad of ['relative/dir', '/with"quote', '/with\nnewline', '/back\\slash']) {
    assert.throws(() => privateAptConfig('arm64', bad), (e: unknown) => isRackbootError(e) && e.code === 'RB_ERR_VALIDATION', bad)
  }
  assert.throws(() => privateAptConfig('mips' as never, '/x'), /unknown architecture 'mips'/)
})

interface FakeApt {
  cacheDir: string
  calls: () => Array<{ args: string; config: string }>
  /** ok: writes a Packages list; fail: network error without writing; empty: exits 0 but writes nothing. */
  mode: (m: 'ok' | 'fail' | 'empty') => void
}

function fakeApt(t: TestContext): FakeApt {
  const dir = mkdtempSync(join(tmpdir(), 'rb-apt-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const bin = join(dir, 'bin')
  mkdirSync(bin)
  const log = join(dir, 'calls.log')
  const modeFile = join(dir, 'mode')
  writeFileSync(modeFile, 'ok')
  // Reads Dir::State::Lists from the file APT_CONFIG names, as apt does.
  writeFileSync(
    join(bin, 'apt-get'),
    `#!/bin/sh
echo "$* | $APT_CONFIG" >> ${log}
lists=$(sed -n 's/^Dir::State::Lists "\\(.*\\)";$/\\1/p' "$APT_CONFIG")
case $(cat ${modeFile}) in
  fail) echo "E: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Temporary failure resolving 'deb.debian.org'" >&2; exit 100 ;;
  empty) echo "W: Some index files failed to download. They have been ignored, or old ones used instead."; exit 0 ;;
esac
echo "Package: busybox-static" > "$lists/deb.debian.org_debian_dists_bookworm_main_binary-arm64_Packages"
`,
  )
  chmodSync(join(bin, 'apt-get'), 0o755)
  const oldPath = process.env.PATH
  process.env.PATH = `${bin}:${oldPath}`
  t.after(() => (process.env.PATH = oldPath))
  return {
    cacheDir: join(dir, 'cache'),
    calls: () => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').filter(Boolean).map((l) => ({ args: l.split(' | ')[0]!, config: l.split(' | ')[1]! })) : []),
    mode: (m) => writeFileSync(modeFile, m),
  }
}

test('the host architecture uses the host apt; another gets private lists, updated once and again when stale', async (t) => {
  const apt = fakeApt(t)
  const log = silentLogger()
  const host = await aptFor({ arch: 'amd64', cacheDir: apt.cacheDir, log, hostArch: 'amd64' })
  assert.deepEqual([host.root, host.env.APT_CONFIG], [null, hostApt('amd64').env.APT_CONFIG])
  assert.equal(apt.calls().length, 0, 'nothing run for the host architecture')

  const arm = await aptFor({ arch: 'arm64', cacheDir: apt.cacheDir, log, hostArch: 'amd64' })
  const root = join(apt.cacheDir, 'apt', 'arm64')
  assert.equal(arm.root, root)
  assert.equal(arm.env.APT_CONFIG, join(root, 'apt.conf'))
  assert.equal(readFileSync(join(root, 'apt.conf'), 'utf8'), privateAptConfig('arm64', root))
  assert.equal(readFileSync(join(root, 'status'), 'utf8'), '', 'an empty dpkg status: no host packages')
  assert.ok(existsSync(join(root, 'lists', 'partial')) && existsSync(join(root, 'cache', 'archives', 'partial')))
  assert.deepEqual(apt.calls(), [{ args: 'update -q', config: join(root, 'apt.conf') }])

  await aptFor({ arch: 'arm64', cacheDir: apt.cacheDir, log, hostArch: 'amd64' })
  assert.equal(apt.calls().length, 1, 'fresh lists: no second update')

  const old = new Date(Date.now() - 2 * 24 * 3600_000)
  utimesSync(join(root, 'lists', 'deb.debian.org_debian_dists_bookworm_main_binary-arm64_Packages'), old, old)
  await aptFor({ arch: 'arm64', cacheDir: apt.cacheDir, log, hostArch: 'amd64' })
  assert.equal(apt.calls().length, 2, 'lists older than a day are updated')
})

test('offline: stale lists are used with a warning; no lists at all is an error that says the archive is out of reach', async (t) => {
  const apt = fakeApt(t)
  const warnings: string[] = []
  const log = silentLogger()
  log.warn = ((_o: unknown, msg: string) => void warnings.push(msg)) as typeof log.warn

  apt.mode('fail')
  await assert.rejects(aptFor({ arch: 'arm64', cacheDir: apt.cacheDir, log, hostArch: 'amd64' }), (e: unknown) => {
    assert.ok(isRackbootError(e))
    assert.match(e.message, /cannot reach the Debian archive for the arm64 package lists/)
    assert.match(e.message, /Temporary failure resolving/)
    return true
  })
  apt.mode('empty')
  await assert.rejects(aptFor({ arch: 'arm64', cacheDir: apt.cacheDir, log, hostArch: 'amd64' }), /fetched no arm64 package lists/, 'exit 0 without lists is still a failure')

  apt.mode('ok')
  await aptFor({ arch: 'arm64', cacheDir: apt.cacheDir, log, hostArch: 'amd64' })
  apt.mode('fail')
  const ctx = await aptFor({ arch: 'arm64', cacheDir: apt.cacheDir, log, hostArch: 'amd64', maxListAgeMs: 0 })
  assert.equal(ctx.root, join(apt.cacheDir, 'apt', 'arm64'))
  assert.equal(warnings.length, 1)
  assert.match(warnings[0]!, /cannot update the arm64 package lists: using those from/)
})
