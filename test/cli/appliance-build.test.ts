import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { distState, readStamp, sourceFingerprint } from '../../bin/freshness.mjs'
import { REPO } from '../support/cli.js'

// Compiled JavaScript: scripts/build.mjs (run by `npm ci` through `prepare`) writes dist/, and bin/rackboot.mjs runs
// it when it matches src/, else the sources through tsx. These tests build into temporary trees, never the
// checkout's dist/ (other tests may be running from it).

function node(args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }) {
  const r = spawnSync(process.execPath, args, { cwd: options.cwd, env: { ...process.env, RACKBOOT_RUN: '', ...options.env }, encoding: 'utf8', timeout: 120_000 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

function walk(dir: string): string[] {
  return (readdirSync(dir, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[])
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort()
}

/** A tree laid out as the image's /opt/rackboot: package.json, node_modules, talos-schemas, bin/, dist/, no src/. */
function imageTree(): string {
  const root = join(mkdtempSync(join(tmpdir(), 'rb-image-')), 'opt', 'rackboot')
  mkdirSync(root, { recursive: true })
  cpSync(join(REPO, 'package.json'), join(root, 'package.json'))
  cpSync(join(REPO, 'bin'), join(root, 'bin'), { recursive: true })
  symlinkSync(join(REPO, 'node_modules'), join(root, 'node_modules'))
  symlinkSync(join(REPO, 'talos-schemas'), join(root, 'talos-schemas'))
  const built = node([join(REPO, 'scripts', 'build.mjs'), '--out', join(root, 'dist')], { cwd: REPO })
  assert.equal(built.code, 0, built.stderr)
  assert.match(built.stdout, /rackboot build: \d+ files compiled, \d+ copied, \d+ packages bundled to .*\/dist in \d+ ms/)
  return root
}

test('the build compiles every source to dist/ (ESM + source map) and carries the files read at run time', () => {
  const root = imageTree()
  const dist = join(root, 'dist')
  const sources = walk(join(REPO, 'src'))
  const out = new Set(walk(dist))
  for (const rel of sources) {
    if (rel.endsWith('.ts')) {
      const js = rel.replace(/\.ts$/, '.js')
      assert.ok(out.has(js) && out.has(`${js}.map`), `${js} and its map`)
    } else assert.ok(out.has(rel), `${rel} copied`)
  }
  // Found through import.meta.url / import.meta.dirname from dist/ as from src/.
  for (const rel of ['http/ui/static/index.html', 'agent/sh/collect.sh', 'agent/sh/agent-init.sh', 'agent/sh/talos-url.awk']) assert.ok(out.has(rel), rel)
  assert.ok([...out].some((f) => f.startsWith('talos/receivers/proto/') && f.endsWith('.proto')), 'the Talos .proto files')
  // The map names the real source, so stack traces point at src/.
  const map = JSON.parse(readFileSync(join(dist, 'cli', 'serve.js.map'), 'utf8')) as { sources: string[] }
  assert.equal(resolve(join(dist, 'cli'), map.sources[0]!), join(REPO, 'src', 'cli', 'serve.ts'))
  assert.match(readFileSync(join(dist, 'cli', 'serve.js'), 'utf8'), /\/\/# sourceMappingURL=serve\.js\.map\n$/)
  // The stamp says which sources it was built from.
  const stamp = readStamp(dist)!
  assert.equal(stamp.sources.files, sources.length)
  // kysely and typebox (hundreds of ESM files each) are bundled into dist/vendor/: no compiled file imports them.
  assert.deepEqual(stamp.vendored, ['kysely', 'typebox', 'typebox/value'])
  for (const spec of stamp.vendored) assert.ok(out.has(`vendor/${spec.replace(/[^A-Za-z0-9]+/g, '_')}.js`), spec)
  for (const f of out) {
    if (f.endsWith('.js') && !f.startsWith('vendor/')) assert.doesNotMatch(readFileSync(join(dist, f), 'utf8'), /(from|import)\s*\(?\s*["'](kysely|typebox)(\/[^"']*)?["']/, f)
  }

  // Without src/ (the image), the command runs dist/: tsx would have nothing to run.
  const version = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).version as string
  const v = node([join(root, 'bin', 'rackboot.mjs'), 'version'], { cwd: root })
  assert.equal(v.code, 0, v.stderr)
  assert.equal(v.stdout.trim(), version)
  const help = node([join(root, 'bin', 'rackboot.mjs'), '--help'], { cwd: root })
  assert.equal(help.code, 0, help.stderr)
  assert.match(help.stdout, /serve/)
  // The bundled packages work: the settings (typebox) and the database (kysely's migrations and queries).
  const health = node([join(root, 'bin', 'rackboot.mjs'), 'healthcheck', '--set', 'http.port=1', '--set', 'http.listen=127.0.0.1'], { cwd: root })
  assert.equal(health.code, 1)
  assert.match(health.stderr, /unhealthy: http:\/\/127\.0\.0\.1:1\/healthz: ECONNREFUSED/)
  const badSettings = node([join(root, 'bin', 'rackboot.mjs'), 'healthcheck', '--set', 'http.port=70000'], { cwd: root })
  assert.match(badSettings.stderr, /cannot read the settings: .*'http\.port' must be <= 65535/)
  const db = node(['--input-type=module', '-e', `
    const { openSqliteInventory } = await import(${JSON.stringify(join(dist, 'inventory', 'index.js'))})
    const inv = await openSqliteInventory({ file: 'x.db', secretKeyFile: 'secret.key' })
    console.log(await inv.machines.count({}))
    await inv.close()`], { cwd: mkdtempSync(join(tmpdir(), 'rb-db-')) })
  assert.equal(db.stdout.trim(), '0', db.stderr)
  // A file a command reads from beside its module (the agent's scripts) is found from dist/.
  const script = node(['--input-type=module', '-e', `import { collectScript } from ${JSON.stringify(join(dist, 'agent', 'index.js'))}; console.log(collectScript().length > 100)`], { cwd: root })
  assert.equal(script.stdout.trim(), 'true', script.stderr)
})

test('bin/rackboot.mjs runs dist/ while it matches src/, the sources through tsx once they change', () => {
  const root = mkdtempSync(join(tmpdir(), 'rb-fresh-'))
  cpSync(join(REPO, 'bin'), join(root, 'bin'), { recursive: true })
  mkdirSync(join(root, 'scripts'))
  cpSync(join(REPO, 'scripts', 'build.mjs'), join(root, 'scripts', 'build.mjs'))
  symlinkSync(join(REPO, 'node_modules'), join(root, 'node_modules'))
  writeFileSync(join(root, 'package.json'), '{"type":"module"}\n')
  mkdirSync(join(root, 'src', 'lib'), { recursive: true })
  writeFileSync(join(root, 'src', 'lib', 'where.ts'), 'export const where = (url: string): string => url.slice(url.lastIndexOf("/", url.lastIndexOf("/") - 1) + 1)\n')
  writeFileSync(join(root, 'src', 'main.ts'), "import { where } from './lib/where.js'\nconsole.log(where(import.meta.url))\n")
  const ran = (env: NodeJS.ProcessEnv = {}) => {
    const r = node([join(root, 'bin', 'rackboot.mjs')], { cwd: root, env })
    assert.equal(r.code, 0, r.stderr)
    return r.stdout.trim()
  }
  const build = (...args: string[]) => {
    const r = node([join(root, 'scripts', 'build.mjs'), ...args], { cwd: root })
    assert.equal(r.code, 0, r.stderr)
    return r.stdout
  }

  assert.equal(distState(root), 'missing')
  assert.equal(ran(), 'src/main.ts', 'no build yet: the sources')
  build()
  assert.equal(distState(root), 'current')
  assert.equal(ran(), 'dist/main.js')
  assert.equal(ran({ RACKBOOT_RUN: 'src' }), 'src/main.ts', 'RACKBOOT_RUN=src forces the sources')

  appendFileSync(join(root, 'src', 'lib', 'where.ts'), '// edited\n')
  assert.equal(distState(root), 'stale')
  assert.equal(ran(), 'src/main.ts', 'an edited source: never the stale build')
  assert.equal(ran({ RACKBOOT_RUN: 'dist' }), 'dist/main.js', 'RACKBOOT_RUN=dist forces the build')

  // npm start's prestart: builds when stale, not when current.
  assert.equal(build('--if-stale', '--quiet'), '')
  assert.equal(ran(), 'dist/main.js')
  const stamp = readStamp(join(root, 'dist'))
  build('--if-stale')
  assert.deepEqual(readStamp(join(root, 'dist')), stamp, '--if-stale leaves a current build alone')

  writeFileSync(join(root, 'src', 'lib', 'new.ts'), 'export {}\n')
  assert.equal(distState(root), 'stale', 'a new file')
  build()
  renameSync(join(root, 'src', 'lib', 'new.ts'), join(root, 'src', 'lib', 'renamed.ts'))
  assert.equal(distState(root), 'stale', 'a renamed file')
  build()
  rmSync(join(root, 'src', 'lib', 'renamed.ts'))
  assert.equal(distState(root), 'stale', 'a deleted file')
  build()
  assert.equal(ran(), 'dist/main.js')
  assert.ok(!readdirSync(root).some((n) => n.startsWith('dist.')), 'no temporary build directories left')

  // The image: dist/ and no src/.
  rmSync(join(root, 'src'), { recursive: true })
  assert.equal(distState(root), 'current')
  assert.equal(ran(), 'dist/main.js')
})

test('a build that fails leaves the previous dist/ in place and says which file', () => {
  const root = mkdtempSync(join(tmpdir(), 'rb-fresh-'))
  cpSync(join(REPO, 'bin'), join(root, 'bin'), { recursive: true })
  mkdirSync(join(root, 'scripts'))
  cpSync(join(REPO, 'scripts', 'build.mjs'), join(root, 'scripts', 'build.mjs'))
  symlinkSync(join(REPO, 'node_modules'), join(root, 'node_modules'))
  mkdirSync(join(root, 'src'))
  writeFileSync(join(root, 'src', 'main.ts'), 'console.log(1)\n')
  assert.equal(node([join(root, 'scripts', 'build.mjs')], { cwd: root }).code, 0)
  writeFileSync(join(root, 'src', 'broken.ts'), 'export const x = (\n')
  const r = node([join(root, 'scripts', 'build.mjs')], { cwd: root })
  assert.equal(r.code, 1)
  assert.match(r.stderr, /rackboot build failed: src\/broken\.ts:\d+:\d+: /)
  assert.ok(existsSync(join(root, 'dist', 'main.js')), 'the old build stays')
  assert.ok(!readdirSync(root).some((n) => n.startsWith('dist.')), 'no temporary build directories left')
  // --if-stale (npm start) reports it and still succeeds: the sources run through tsx.
  const soft = node([join(root, 'scripts', 'build.mjs'), '--if-stale'], { cwd: root })
  assert.equal(soft.code, 0)
  assert.match(soft.stderr, /running the TypeScript sources instead/)
})

test('the freshness check on this checkout costs a few milliseconds (it runs at every start)', () => {
  const wall: number[] = []
  const cpu: number[] = []
  for (let i = 0; i < 15; i++) {
    const started = performance.now()
    const used = process.cpuUsage()
    sourceFingerprint(join(REPO, 'src'))
    const d = process.cpuUsage(used)
    wall.push(performance.now() - started)
    cpu.push((d.user + d.system) / 1000)
  }
  wall.sort((a, b) => a - b)
  cpu.sort((a, b) => a - b)
  console.error(`# freshness check over src/: wall min ${wall[0]!.toFixed(1)} ms, median ${wall[7]!.toFixed(1)} ms; cpu min ${cpu[0]!.toFixed(1)} ms, median ${cpu[7]!.toFixed(1)} ms`)
  // CPU time: on a busy machine the wall clock measures the other processes.
  assert.ok(cpu[7]! < 50, `cpu median ${cpu[7]!.toFixed(1)} ms`)
})

test('package.json: npm ci builds (prepare), npm start runs the command; the compiler is a production dependency', () => {
  const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8'))
  assert.equal(pkg.scripts.prepare, 'node scripts/build.mjs')
  assert.equal(pkg.scripts.start, 'node bin/rackboot.mjs serve')
  assert.match(pkg.scripts.prestart, /scripts\/build\.mjs --if-stale/)
  assert.match(pkg.scripts.test, /node scripts\/run-tests\.mjs/)
  assert.ok(pkg.dependencies.tsx, 'tsx runs the sources when dist/ is stale')
  // esbuild comes with tsx: `npm ci --omit=dev` (the image) can build without the dev dependencies.
  const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8'))
  assert.ok(lock.packages['node_modules/esbuild'], 'esbuild is in the lock file')
  assert.notEqual(lock.packages['node_modules/esbuild'].dev, true, 'esbuild is not dev-only')
  assert.ok(!pkg.devDependencies?.esbuild, 'and not a devDependency')
  assert.match(readFileSync(join(REPO, '.gitignore'), 'utf8'), /^dist\/$/m, 'dist/ is not committed')
})
