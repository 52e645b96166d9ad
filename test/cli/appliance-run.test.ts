import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync, type ChildProcess } from 'node:child_process'
import { chmodSync, chownSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createNetLab, skipUnlessNetns, which, type Netns } from '../support/netns.js'
import { REPO } from '../support/cli.js'
import { composeFile, dockerfileStages, fileCapabilities, runtimeIds, stage, stageEnv } from './appliance-files.js'

// The appliance without Docker: the image's layout in a temporary directory (dist/ and no src/, the seed built by
// the Dockerfile's own commands, a copy of node with the image's file capability), run as the image's non-root user
// with the bounding set compose gives (cap_drop ALL + cap_add), the image's and compose's environment and command,
// in a network namespace of its own (loopback only). Then: it serves TFTP on 69 and /healthz, `rackboot
// healthcheck` agrees, and the empty assets volume holds the seeded boot files. What Docker itself adds (layers,
// named-volume ownership, the HEALTHCHECK runner) is not covered; the discovery agent is a stand-in (building the
// real one downloads Debian's kernel).

const IPXE_DIR = '/usr/lib/ipxe'
const stages = dockerfileStages()
const runtime = stages.at(-1)!

function sh(argv: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 120_000, ...options })
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed (${r.status}): ${r.stderr || r.stdout}`)
  return r.stdout
}

/** Why this cannot run here, or null. */
function missing(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (setcap, setpriv, network namespaces)'
  for (const p of ['setpriv', 'setcap', 'getcap', 'tftp', 'curl']) if (!which(p)) return `needs ${p}`
  if (!existsSync(join(IPXE_DIR, 'undionly.kpxe'))) return `needs Debian's ipxe package (${IPXE_DIR})`
  return null
}

test('the appliance, run as the image runs it: non-root, file capabilities, seeded assets, TFTP on 69, healthy', { timeout: 240_000 }, async (t) => {
  const reason = missing()
  if (reason) {
    console.error(`# SKIP appliance simulation: ${reason}`)
    t.skip(reason)
    return
  }
  if (skipUnlessNetns(t)) return
  const svc = composeFile().services.rackboot!
  const { uid, gid } = runtimeIds(runtime)
  const imageEnv = stageEnv(runtime)

  // The image's file system, under `base`.
  const base = mkdtempSync(join(tmpdir(), 'rb-appliance-'))
  chmodSync(base, 0o755)
  const at = (p: string) => join(base, p)
  const app = at('/opt/rackboot')
  mkdirSync(app, { recursive: true })
  copyFileSync(join(REPO, 'package.json'), join(app, 'package.json'))
  cpSync(join(REPO, 'bin'), join(app, 'bin'), { recursive: true })
  symlinkSync(join(REPO, 'node_modules'), join(app, 'node_modules'))
  symlinkSync(join(REPO, 'talos-schemas'), join(app, 'talos-schemas'))
  const built = spawnSync(process.execPath, [join(REPO, 'scripts', 'build.mjs'), '--out', join(app, 'dist')], { encoding: 'utf8' })
  assert.equal(built.status, 0, built.stderr)

  // node with the image's file capability (setcap as in the Dockerfile).
  const nodeBin = at('/usr/local/bin/node')
  mkdirSync(dirname(nodeBin), { recursive: true })
  copyFileSync(process.execPath, nodeBin)
  const caps = fileCapabilities(runtime).get('/usr/local/bin/node')!
  sh(['setcap', `${caps.map((c) => c.toLowerCase()).join(',')}+ep`, nodeBin])
  assert.match(sh(['getcap', nodeBin]), /cap_net_bind_service[=+]ep/)

  // The seed, made by the seed stage's own command for iPXE (as root, as in the build); a stand-in agent.
  const seedEnv = stageEnv(stage(stages, 'seed'))
  const seedDir = at(seedEnv.RACKBOOT_ASSETS_DIR!)
  assert.equal(seedEnv.RACKBOOT_ASSETS_DIR, imageEnv.RACKBOOT_ASSETS_SEED)
  sh([process.execPath, join(app, 'bin', 'rackboot.mjs'), 'assets', 'fetch', 'ipxe'], {
    cwd: app, env: { PATH: process.env.PATH, HOME: base, RACKBOOT_ASSETS_DIR: seedDir, RACKBOOT_RUN: '' },
  })
  mkdirSync(join(seedDir, 'agent'))
  writeFileSync(join(seedDir, 'agent', 'vmlinuz'), 'stand-in kernel')
  writeFileSync(join(seedDir, 'agent', 'agent.img'), 'stand-in initramfs')
  // arm64 (the seed stage runs assets fetch grub and assets build agent --arch arm64 from Debian's archive): stand-ins.
  mkdirSync(join(seedDir, 'agent', 'arm64'))
  writeFileSync(join(seedDir, 'agent', 'arm64', 'vmlinuz'), 'stand-in arm64 kernel')
  writeFileSync(join(seedDir, 'agent', 'arm64', 'agent.img'), 'stand-in arm64 initramfs')
  mkdirSync(join(seedDir, 'grub'))
  writeFileSync(join(seedDir, 'grub', 'grubnetaa64.efi'), 'stand-in GRUB')
  const seeded = (readdirSync(seedDir, { recursive: true }) as string[]).filter((f) => statSync(join(seedDir, f)).isFile() && f !== 'manifest.json').sort()
  assert.ok(seeded.includes('ipxe/undionly.kpxe') && seeded.includes('ipxe/ipxe.efi'), seeded.join(', '))

  // Volumes: empty, owned by the image's user (as Docker initialises a named volume from the image's directory).
  for (const v of svc.volumes) {
    const [source, target] = v.split(':') as [string, string]
    if (source.startsWith('.')) {
      mkdirSync(dirname(at(target)), { recursive: true })
      symlinkSync(join(REPO, source), at(target))
    } else {
      mkdirSync(at(target), { recursive: true })
      chownSync(at(target), uid, gid)
      if (target === svc.environment.RACKBOOT_DATA_DIR) chmodSync(at(target), 0o700)
    }
  }
  for (const d of ['/var', '/var/lib', '/etc', '/srv', '/srv/rackboot']) if (existsSync(at(d))) chmodSync(at(d), 0o755)
  const assetsDir = at(svc.environment.RACKBOOT_ASSETS_DIR ?? imageEnv.RACKBOOT_ASSETS_DIR!)
  assert.deepEqual(readdirSync(assetsDir), [], 'the assets volume starts empty')
  const home = at('/home/rackboot')
  mkdirSync(home, { recursive: true })
  chownSync(home, uid, gid)

  // The environment the container has: the image's ENV, then compose's; every path under `base`.
  const rebase = (env: Record<string, string>) => Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v.startsWith('/') ? at(v) : v]))
  const env: NodeJS.ProcessEnv = { PATH: `${dirname(nodeBin)}:/usr/sbin:/usr/bin:/sbin:/bin`, HOME: home, ...rebase(imageEnv), ...rebase(svc.environment) }
  const command = svc.command.map((a) => a.replace(/=(\/\S+)$/, (_m, p: string) => `=${at(p)}`))
  // Loopback only (the namespace has nothing else anyway).
  const loopback = ['--set', 'http.listen=127.0.0.1', '--set', 'tftp.listen=127.0.0.1']

  // As the image's user, with the bounding set compose leaves (cap_drop ALL, cap_add ...), nothing inherited.
  const bounding = `-all,${svc.cap_add!.map((c) => `+${c.toLowerCase()}`).join(',')}`
  const asUser = ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', `--bounding-set=${bounding}`, '--inh-caps=-all']

  const lab = await createNetLab(t)
  const ns: Netns = await lab.ns('appliance')
  const started = Date.now()
  const server: ChildProcess = ns.spawn([...asUser, nodeBin, join(app, 'bin', 'rackboot.mjs'), ...command, ...loopback], { cwd: app, env })
  let out = ''
  server.stdout!.on('data', (d) => (out += d))
  server.stderr!.on('data', (d) => (out += d))
  const exited = new Promise<number | null>((resolve) => server.once('exit', (code) => resolve(code)))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start:\n${out}`)), 60_000)
    const check = () => {
      if (!out.includes('rackboot is serving')) return
      clearTimeout(timer)
      resolve()
    }
    server.stdout!.on('data', check)
    server.stderr!.on('data', check)
    void exited.then((code) => {
      clearTimeout(timer)
      reject(new Error(`serve exited with ${code}:\n${out}`))
    })
  })
  console.error(`# appliance serving ${Date.now() - started} ms after spawn`)

  // The server process: the image's user, only CAP_NET_BIND_SERVICE effective.
  const pid = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).find((p) => {
    try {
      return readlinkSync(`/proc/${p}/exe`) === nodeBin && readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(join(app, 'bin'))
    } catch {
      return false
    }
  })
  assert.ok(pid, 'the server process is found')
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  assert.match(status, new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, 'm'))
  const capEff = BigInt(`0x${/^CapEff:\s+([0-9a-f]+)$/m.exec(status)![1]}`)
  assert.equal(capEff, 1n << 10n, 'CapEff is CAP_NET_BIND_SERVICE alone')

  // The empty assets volume now holds the seed, owned by the user; the seed is unchanged.
  for (const rel of seeded) {
    const file = join(assetsDir, rel)
    assert.ok(existsSync(file), `${rel} seeded (serve seeds the assets directory through seedAssets, src/assets/seed.ts)`)
    assert.deepEqual(readFileSync(file), readFileSync(join(seedDir, rel)))
    assert.equal(statSync(file).uid, uid)
  }
  assert.match(out, /seeded the assets directory with \d+ boot files from the image/)

  // TFTP on 69 serves the seeded loader, byte for byte.
  const got = join(base, 'got-undionly.kpxe')
  const tftp = await ns.exec(['tftp', '-m', 'binary', '127.0.0.1', '69', '-c', 'get', 'undionly.kpxe', got], { check: false })
  assert.equal(tftp.code, 0, `${tftp.stderr}${tftp.stdout}`)
  assert.deepEqual(readFileSync(got), readFileSync(join(IPXE_DIR, 'undionly.kpxe')))

  // /healthz: up, and no boot file missing (the seed supplied the iPXE and GRUB loaders and both agents).
  const port = /"address":"http:\/\/127\.0\.0\.1:(\d+)"/.exec(out)?.[1] ?? '8080'
  const health = await ns.exec(['curl', '-s', `http://127.0.0.1:${port}/healthz`])
  const body = JSON.parse(health.stdout) as { status: string; checks: Record<string, string>; warnings?: string[] }
  assert.equal(body.checks.tftp, 'ok')
  assert.ok(!(body.warnings ?? []).some((w) => /loaders missing|discovery agent missing/.test(w)), JSON.stringify(body.warnings))

  // The container's health check, as the user, with the container's environment.
  const hc = await ns.exec([...asUser, nodeBin, join(app, 'bin', 'rackboot.mjs'), 'healthcheck'], { env, cwd: app, check: false })
  assert.equal(hc.code, 0, hc.stderr)
  assert.match(hc.stdout, new RegExp(`healthy: http://127\\.0\\.0\\.1:${port}/healthz says`))

  server.kill('SIGTERM')
  assert.equal(await exited, 0, out)
  const down = await ns.exec([...asUser, nodeBin, join(app, 'bin', 'rackboot.mjs'), 'healthcheck'], { env, cwd: app, check: false })
  assert.equal(down.code, 1)
  assert.match(down.stderr, /unhealthy: .*ECONNREFUSED/)
})
