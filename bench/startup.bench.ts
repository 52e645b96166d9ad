// `npm run bench -- startup [--rounds=5]`: how long `rackboot serve` takes to answer /healthz with 200, on a new data
// directory (database created, migrations run) and on an existing one, and how long CLI commands take from start to
// exit, against the goals (serve healthy < 1.5 s, a CLI command < 0.5 s). Everything runs as a user runs it: the
// compiled dist/ through bin/rackboot.mjs (built first if stale), a fresh process each time. Node's own start
// (`node -e 0`) is timed in the same rounds as the yardstick: on a shared machine only that ratio travels.
// --bin=PATH (repeatable) times other trees' bin/rackboot.mjs instead, in turns within each round (the order
// alternating): e.g. a build of the last commit beside the work tree's, for a before/after in one run.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { flag, median } from './stats.js'

const REPO = resolve(import.meta.dirname, '..')
const BIN = join(REPO, 'bin', 'rackboot.mjs')
const YARDSTICK = 'node -e 0 (yardstick)'
const LIMIT_MS = 180_000
const GOAL_SERVE_S = 1.5
const GOAL_CLI_S = 0.5
const TICKS = 100 // USER_HZ: /proc/PID/stat counts CPU in 1/100 s on Linux

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => res(port))
    })
    s.on('error', rej)
  })
}

function env(cwd: string): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, RACKBOOT_RUN: 'dist', RACKBOOT_CLI_CONFIG: join(cwd, '.cli.yaml') }
  for (const k of ['RACKBOOT_URL', 'RACKBOOT_SERVER', 'RACKBOOT_TOKEN', 'RACKBOOT_CONFIG']) delete e[k]
  return e
}

/** CPU seconds a live process has used (user + system), from /proc. */
function cpuOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / TICKS
}

interface Started {
  seconds: number
  cpu: number
  stop(): Promise<void>
}

/** Starts serve in `cwd` and polls /healthz every 10 ms: seconds from spawn to the first 200. */
async function serveUntilHealthy(bin: string, cwd: string, port: number): Promise<Started> {
  const args = [bin, 'serve', '--set', `http.port=${port}`, '--set', 'http.listen=127.0.0.1', '--set', 'tftp.port=0', '--set', 'tftp.listen=127.0.0.1', '--set', 'talos.eventsSinkPort=0', '--set', 'talos.kernelLogPort=0']
  const t0 = performance.now()
  const child = spawn(process.execPath, args, { cwd, env: env(cwd), stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr.on('data', (d) => (err += d))
  const exited = new Promise<void>((res) => child.once('exit', () => res()))
  let done = false
  void exited.then(() => { done = true })
  for (;;) {
    if (done) throw new Error(`serve exited before it was healthy: ${err.slice(-2000)}`)
    // Generous: on a machine shared with a load of 25, a start that takes ~2 CPU-seconds has taken 45 s.
    if (performance.now() - t0 > LIMIT_MS) {
      child.kill('SIGKILL')
      throw new Error(`serve was not healthy within ${LIMIT_MS / 1000} s`)
    }
    const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.status === 200, () => false)
    if (ok) break
    await new Promise((r) => setTimeout(r, 10))
  }
  const seconds = (performance.now() - t0) / 1000
  const cpu = cpuOf(child.pid!)
  return {
    seconds, cpu,
    async stop() {
      child.kill('SIGTERM')
      await exited
    },
  }
}

// GNU time, when installed, reports a command's CPU seconds (user + system, its children included) into a file.
const GNU_TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : null

interface Ran {
  seconds: number
  /** CPU seconds, or NaN without GNU time. */
  cpu: number
  stdout: string
}

/** One command from spawn to exit, wall and CPU; a failure stops the bench (a timing of an error is no timing). */
function timed(cwd: string, argv: string[]): Ran {
  const cpuFile = join(cwd, '.cpu')
  const wrapped = GNU_TIME ? [GNU_TIME, '-f', '%U %S', '-o', cpuFile, ...argv] : argv
  const t0 = performance.now()
  const r = spawnSync(wrapped[0]!, wrapped.slice(1), { cwd, env: env(cwd), encoding: 'utf8', timeout: LIMIT_MS })
  const seconds = (performance.now() - t0) / 1000
  if (r.status !== 0) throw new Error(`${argv.slice(1).join(' ')} exited ${r.status}: ${(r.stderr || r.stdout).slice(-1000)}`)
  const cpu = GNU_TIME ? readFileSync(cpuFile, 'utf8').trim().split(/\s+/).slice(-2).reduce((a, b) => a + Number(b), 0) : NaN
  return { seconds, cpu, stdout: r.stdout }
}

/** One tree's rounds: serve on a new and on an existing data dir, then the CLI commands against the second. */
async function timeTree(bin: string, cwd: string, round: number, add: (name: string, v: number, cpu?: number) => void): Promise<void> {
  const first = await serveUntilHealthy(bin, cwd, await freePort())
  add('serve → healthy, new data dir', first.seconds, first.cpu)
  await first.stop()
  const port = await freePort()
  const again = await serveUntilHealthy(bin, cwd, port)
  add('serve → healthy, existing data', again.seconds, again.cpu)
  try {
    const cli = (name: string, argv: string[]): string => {
      const r = timed(cwd, [process.execPath, bin, ...argv])
      add(name, r.seconds, r.cpu)
      return r.stdout
    }
    cli('rackboot --version', ['--version'])
    const made = cli('tokens create (on the database)', ['tokens', 'create', `bench${round}`, '--scope', 'read', '--data-dir', join(cwd, 'data'), '--json'])
    const token = (JSON.parse(made) as { secret: string }).secret
    const remote = ['--server', `http://127.0.0.1:${port}`, '--token', token]
    cli('machines list (over the API)', [...remote, 'machines', 'list'])
    cli('classes list (over the API)', [...remote, 'classes', 'list'])
  } finally {
    await again.stop()
  }
}

export async function run(args: string[]): Promise<void> {
  const rounds = flag(args, 'rounds', 5, { integer: true })
  const given = args.filter((a) => a.startsWith('--bin=')).map((a) => resolve(a.slice('--bin='.length)))
  const bins = given.length ? given : [BIN]
  // Each tree's dist/ is brought up to date by its own build script (the work tree's as `npm run build` would).
  for (const bin of bins) {
    const root = resolve(bin, '..', '..')
    const build = spawnSync(process.execPath, [join(root, 'scripts', 'build.mjs'), '--if-stale', '--quiet'], { cwd: root, stdio: 'inherit' })
    if (build.status !== 0) throw new Error(`the build in ${root} failed`)
  }
  const label = (i: number) => (bins.length > 1 ? `[${i + 1}] ` : '')
  console.log(`startup: ${rounds} rounds, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}, node ${process.version}, dist/ through ${bins.map((b, i) => `${label(i)}${b}`).join(', ')}`)

  const rows = new Map<string, number[]>()
  const cpu = new Map<string, number[]>()
  const push = (m: Map<string, number[]>, name: string, v: number) => m.set(name, [...(m.get(name) ?? []), v])

  for (let round = 0; round < rounds; round++) {
    const cwd = mkdtempSync(join(tmpdir(), 'rb-bench-startup-'))
    try {
      const yardstick = timed(cwd, [process.execPath, '-e', '0'])
      push(rows, YARDSTICK, yardstick.seconds)
      if (!Number.isNaN(yardstick.cpu)) push(cpu, YARDSTICK, yardstick.cpu)
      // Turns alternate between rounds, so neither tree always runs first (the machine's load drifts).
      const order = bins.map((_b, i) => i)
      if (round % 2) order.reverse()
      for (const i of order) {
        const dir = join(cwd, `tree${i}`)
        mkdirSync(dir)
        await timeTree(bins[i]!, dir, round, (name, v, c) => {
          push(rows, `${label(i)}${name}`, v)
          if (c !== undefined && !Number.isNaN(c)) push(cpu, `${label(i)}${name}`, c)
        })
      }
    } finally {
      rmSync(cwd, { recursive: true, force: true })
    }
  }

  const yard = median(rows.get(YARDSTICK)!)
  console.log(`\n  ${'what'.padEnd(38)} ${'median s'.padStart(9)} ${'min'.padStart(6)} ${'max'.padStart(6)} ${'× node'.padStart(7)} ${'CPU s'.padStart(6)}  goal`)
  const names = [YARDSTICK, ...[...rows.keys()].filter((n) => n !== YARDSTICK).sort((a, b) => a.replace(/^\[\d+\] /, '').localeCompare(b.replace(/^\[\d+\] /, '')) || a.localeCompare(b))]
  for (const name of names) {
    const xs = rows.get(name)!
    const m = median(xs)
    const what = name.replace(/^\[\d+\] /, '')
    const goal = what.startsWith('serve') ? GOAL_SERVE_S : name === YARDSTICK ? null : GOAL_CLI_S
    const c = cpu.get(name)
    console.log(`  ${name.padEnd(38)} ${m.toFixed(3).padStart(9)} ${Math.min(...xs).toFixed(3).padStart(6)} ${Math.max(...xs).toFixed(3).padStart(6)} ${(m / yard).toFixed(1).padStart(7)} ${(c ? median(c).toFixed(2) : '-').padStart(6)}  ${goal === null ? '' : `< ${goal} s: ${m < goal ? 'met' : 'NOT met'}`}`)
  }
  console.log(`  load after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`)
}
