import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join, posix } from 'node:path'
import { loadSettings } from '../../src/settings/index.js'
import { healthcheckUrl } from '../../src/cli/healthcheck.js'
import { REPO, rackboot, tempCwd } from '../support/cli.js'
import { composeFile, dockerfileStages, fileCapabilities, runtimeIds, stage, stageEnv } from './appliance-files.js'

// No Docker engine runs on these machines: keep the appliance files honest by reading them, and against each other
// (the image's file capabilities against compose's cap_add, EXPOSE against the settings' ports). The image is run
// without Docker in appliance-run.test.ts.

const stages = dockerfileStages()
const runtime = stages.at(-1)!
const imageEnv = stageEnv(runtime)
const svc = composeFile().services.rackboot!

test('docker-compose.yml: host networking, only the capabilities the image\'s file capabilities need, volumes, the health check command', () => {
  const compose = composeFile()
  assert.equal(svc.network_mode, 'host')
  assert.deepEqual(svc.cap_drop, ['ALL'])
  assert.deepEqual([...svc.cap_add!].sort(), ['NET_BIND_SERVICE', 'NET_RAW'])
  // A file capability outside the bounding set makes its program fail to start (EPERM at exec).
  for (const [file, caps] of fileCapabilities(runtime)) {
    for (const cap of caps) assert.ok(svc.cap_add!.includes(cap.replace(/^CAP_/, '')), `${file} has ${cap}: compose must add it`)
  }
  assert.ok(!(svc.security_opt ?? []).some((o) => /no-new-privileges/.test(o)), 'no-new-privileges voids the file capabilities')
  assert.ok(svc.user === undefined || !/^(0|root)(:|$)/.test(svc.user), 'not run as root')

  const target = (v: string) => v.split(':')[1]
  assert.ok(svc.volumes.some((v) => target(v) === svc.environment.RACKBOOT_DATA_DIR), 'the data directory is a volume')
  assert.ok(svc.volumes.some((v) => target(v) === svc.environment.RACKBOOT_ASSETS_DIR), 'the assets directory is a volume')
  for (const v of svc.volumes) {
    const source = v.split(':')[0]!
    if (source.startsWith('.')) assert.ok(existsSync(join(REPO, source)), `bind source ${source} exists in the repo`)
    else assert.ok(source in compose.volumes, `named volume ${source} is declared`)
  }
  assert.ok(svc.command.includes('serve'))

  // The health check is the CLI's, reading the settings serve reads; http settings are not hidden in `command`.
  assert.deepEqual(svc.healthcheck.test, ['CMD', 'rackboot', 'healthcheck'])
  assert.ok(!svc.command.some((a) => /^http\./.test(a)), 'http settings in the file, where the health check reads them too')
  const configMount = svc.volumes.find((v) => v.startsWith('./config:'))!
  const file = join(REPO, 'config', posix.relative(target(configMount)!, svc.environment.RACKBOOT_CONFIG!))
  assert.equal(file, join(REPO, 'config', 'rackboot.yaml'))
  const env = { ...imageEnv, ...svc.environment, RACKBOOT_CONFIG: file }
  const settings = loadSettings({ env, isRoot: false })
  assert.equal(healthcheckUrl(settings.http.listen, settings.http.port), `http://127.0.0.1:${settings.http.port}/healthz`)
})

test('Dockerfile: Node 22, compiled JavaScript built with production dependencies, no sources in the image', () => {
  for (const s of stages) assert.ok(s.from === 'node:22-bookworm-slim' || stages.some((o) => o.name === s.from), `FROM ${s.from}`)
  assert.equal(runtime.from, 'node:22-bookworm-slim')
  const build = stage(stages, 'build')
  const at = (re: RegExp) => build.instructions.findIndex((i) => re.test(`${i.op} ${i.args}`))
  const ci = at(/^RUN .*npm ci --omit=dev/)
  const compile = at(/^RUN .*npm run build/)
  assert.ok(ci >= 0 && compile > ci)
  // npm ci runs `prepare` before src/ is copied (so the dependency layer is cached): the build script is there and
  // finds nothing to do; the sources come after, then the build.
  assert.ok(at(/^COPY scripts\/build\.mjs /) < ci && at(/^COPY bin\/freshness\.mjs /) < ci)
  assert.ok(ci < at(/^COPY src /) && at(/^COPY src /) < compile)
  for (const { op, args } of stages.flatMap((s) => s.instructions)) {
    if (op !== 'COPY' || args.startsWith('--from')) continue
    for (const src of args.split(' ').slice(0, -1)) assert.ok(existsSync(join(REPO, src)), `COPY source ${src} exists`)
  }
  const rcopies = runtime.instructions.filter((i) => i.op === 'COPY').map((i) => i.args)
  assert.ok(rcopies.includes('--from=build /opt/rackboot/dist ./dist'))
  assert.ok(rcopies.includes('--from=build /opt/rackboot/node_modules ./node_modules'))
  assert.ok(!rcopies.some((c) => /^src\b/.test(c)), 'no TypeScript sources at run time')
  const ignore = readFileSync(join(REPO, '.dockerignore'), 'utf8').split('\n')
  for (const p of ['node_modules', 'dist']) assert.ok(ignore.includes(p), `.dockerignore: ${p} (the image builds its own)`)
  for (const p of ['src', 'bin', 'scripts', 'talos-schemas', 'inventory', 'package.json']) assert.ok(!ignore.includes(p), `.dockerignore keeps ${p}`)
  assert.equal(imageEnv.NODE_ENV, 'production')
})

test('Dockerfile: a non-root user with file capabilities for DHCP, TFTP and radvd; TFTP on 69 though not root', () => {
  const { user, uid } = runtimeIds(runtime)
  assert.notEqual(uid, 0)
  const users = runtime.instructions.filter((i) => i.op === 'USER')
  assert.deepEqual(users.map((u) => u.args), [user])
  const order = runtime.instructions.map((i) => i.op)
  assert.ok(order.indexOf('USER') < order.indexOf('ENTRYPOINT'))
  const caps = fileCapabilities(runtime)
  assert.deepEqual(caps.get('/usr/local/bin/node'), ['CAP_NET_BIND_SERVICE'])
  assert.deepEqual(caps.get('/usr/sbin/radvd'), ['CAP_NET_RAW'])
  // The volumes' directories belong to the user, so fresh named volumes do too; the data directory is private
  // (serve would make it so, with a warning).
  const run = runtime.instructions.filter((i) => i.op === 'RUN').map((i) => i.args).join(' ')
  assert.match(run, new RegExp(`install -d -o ${user} -g ${user} -m 0700 ${imageEnv.RACKBOOT_DATA_DIR} `))
  assert.match(run, new RegExp(`install -d -o ${user} -g ${user} -m 0755 ${imageEnv.RACKBOOT_ASSETS_DIR} `))
  assert.ok(imageEnv.RACKBOOT_ASSETS_DIR!.startsWith(`${imageEnv.RACKBOOT_DATA_DIR}/`))
  const volumes = JSON.parse(runtime.instructions.find((i) => i.op === 'VOLUME')!.args) as string[]
  assert.deepEqual(volumes.sort(), [imageEnv.RACKBOOT_DATA_DIR, imageEnv.RACKBOOT_ASSETS_DIR].sort())
  // Not root: TFTP's default would be 6969, which no firmware asks.
  assert.equal(loadSettings({ env: imageEnv, isRoot: false, cwd: tempCwd() }).tftp.port, 69)
  // The programs the image relies on at run time.
  for (const pkg of ['ipxe', 'radvd', 'iproute2', 'xorriso', 'mtools', 'isolinux', 'syslinux-common', 'libcap2-bin']) {
    assert.match(run, new RegExp(`apt-get install [^&]*\\b${pkg}\\b`), pkg)
  }
})

test('Dockerfile: EXPOSE lists every port the default settings open, with its protocol', () => {
  const s = loadSettings({ env: imageEnv, isRoot: false, cwd: tempCwd() })
  const want = [
    `${s.http.port}/tcp`, `${s.dhcp.port}/udp`, `${s.tftp.port}/udp`, `${s.dhcp.proxyPort}/udp`,
    `${s.talos.kernelLogPort}/tcp`, `${s.talos.kernelLogPort}/udp`, `${s.talos.eventsSinkPort}/tcp`,
  ]
  const exposed = runtime.instructions.filter((i) => i.op === 'EXPOSE').flatMap((i) => i.args.split(' '))
  assert.deepEqual([...exposed].sort(), [...want].sort())
})

test('Dockerfile: the health check and `docker compose exec ... rackboot` use the CLI on the PATH; ENTRYPOINT runs it', () => {
  const health = runtime.instructions.find((i) => i.op === 'HEALTHCHECK')!.args
  assert.match(health, /CMD \["rackboot", "healthcheck"\]$/)
  assert.doesNotMatch(health, /127\.0\.0\.1|8080/, 'no address or port hard-coded')
  const run = runtime.instructions.filter((i) => i.op === 'RUN').map((i) => i.args).join(' ')
  assert.match(run, /ln -s \/opt\/rackboot\/bin\/rackboot\.mjs \/usr\/local\/bin\/rackboot/)
  assert.match(readFileSync(join(REPO, 'bin', 'rackboot.mjs'), 'utf8'), /^#!\/usr\/bin\/env node\n/)
  assert.ok(statSync(join(REPO, 'bin', 'rackboot.mjs')).mode & 0o111, 'bin/rackboot.mjs is executable')
  assert.ok(runtime.instructions.some((i) => i.op === 'ENTRYPOINT' && i.args === '["node", "/opt/rackboot/bin/rackboot.mjs"]'))
  assert.ok(runtime.instructions.some((i) => i.op === 'CMD' && i.args === '["serve"]'))
  // The commands the image runs exist in this CLI.
  const cwd = tempCwd()
  for (const args of [['healthcheck', '--help'], ['assets', 'fetch', '--help'], ['assets', 'build', 'agent', '--help']]) {
    const r = rackboot(args, { cwd })
    assert.equal(r.code, 0, `rackboot ${args.join(' ')}: ${r.stderr}`)
  }
})

test('Dockerfile: the seed stage bakes Debian\'s iPXE and a prebuilt agent where the runtime seeds the assets volume from', () => {
  const seed = stage(stages, 'seed')
  assert.equal(seed.from, 'build')
  const seedDir = stageEnv(seed).RACKBOOT_ASSETS_DIR!
  const run = seed.instructions.filter((i) => i.op === 'RUN').map((i) => i.args).join(' ')
  assert.match(run, /apt-get install [^&]*\bipxe\b/)
  assert.match(run, /apt-get install [^&]*\bbusybox-static\b/)
  assert.match(run, /rackboot\.mjs assets fetch ipxe/)
  assert.match(run, /rackboot\.mjs assets build agent/)
  const workdir = runtime.instructions.find((i) => i.op === 'WORKDIR')!.args
  const copy = runtime.instructions.find((i) => i.op === 'COPY' && i.args.startsWith('--from=seed '))!.args.split(' ')
  assert.equal(copy[1], seedDir)
  assert.equal(posix.resolve(workdir, copy[2]!), imageEnv.RACKBOOT_ASSETS_SEED)
})
