// `npm run bench -- tftp [--size=MiB] [--runs=N] [--blksizes=512,1468,8192,65464] [--window=N] [--modes=warm,fresh]
//   [--window-blksizes=LIST]`
// rackboot's TFTP server against tftpd-hpa run as Debian runs it (in.tftpd -L -s DIR, here -a 127.0.0.1:PORT) on
// loopback: same file, same client (atftp), same blksize, lock-step; then rackboot with a window (RFC 7440; tftpd-hpa
// has none, so the window is compared with its lock-step). tftp-hpa's own client (512, no options) is a second
// pairing. rackboot runs two ways: warm (one server for the whole run, its packet cache primed, JIT warm) and fresh
// (a new node process per transfer, started and listening before the clock starts: cold cache, cold JIT, as after
// a restart; in.tftpd forks per transfer, so it is always that). Rounds are interleaved and rotated and medians
// reported, because the machines are shared and noisy; server CPU per MiB counts rackboot's process (or the fresh
// child) and in.tftpd's forked children.
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes, randomInt } from 'node:crypto'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { createTftpServer, createFileSource } from '../src/tftp/index.js'
import { createMetricsRegistry } from '../src/metrics.js'
import { silentLogger } from '../src/log.js'
import { which as findProgram } from '../src/processes.js'
import { flag, median } from './stats.js'

/** CPU seconds (utime + stime) of a process, or null once it is gone. */
async function procCpu(pid: number): Promise<number | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100 // USER_HZ is 100 on Linux
  } catch {
    return null
  }
}

/**
 * in.tftpd forks a child per transfer and does not wait for it, so its CPU never shows in the parent's counters:
 * sample the children every few ms while the client runs and keep each one's last reading (a slight undercount).
 */
function sampleChildrenCpu(parent: number): { stop(): Promise<number> } {
  const seen = new Map<number, number>()
  let running = true
  const loop = (async () => {
    while (running) {
      const list = await readFile(`/proc/${parent}/task/${parent}/children`, 'utf8').catch(() => '')
      for (const pid of list.split(' ').filter(Boolean).map(Number)) {
        const cpu = await procCpu(pid)
        if (cpu !== null) seen.set(pid, Math.max(seen.get(pid) ?? 0, cpu))
      }
      await new Promise((r) => setTimeout(r, 5))
    }
  })()
  return {
    async stop() {
      running = false
      await loop
      return [...seen.values()].reduce((a, b) => a + b, 0)
    },
  }
}

function runClient(file: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint()
    execFile(file, args, { timeout: 300_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${file} ${args.join(' ')}: ${err.message} ${stderr}${stdout}`))
      resolve(Number(process.hrtime.bigint() - start) / 1e9)
    })
  })
}

async function startTftpdHpa(program: string, dir: string): Promise<{ port: number; child: ChildProcess }> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const port = randomInt(20000, 60000)
    const child = spawn(program, ['-L', '-s', dir, '-a', `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
    const exited = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 300)
      child.once('exit', () => {
        clearTimeout(timer)
        resolve(true)
      })
    })
    if (!exited) return { port, child }
    if (!/in use/i.test(stderr)) throw new Error(`in.tftpd failed: ${stderr}`)
  }
  throw new Error('in.tftpd: no free port found')
}


function serverSettings(dir: string, extra: { cacheMiB?: number; busyPollMicros?: number } = {}) {
  return createTftpServer({
    settings: {
      listen: '127.0.0.1',
      port: 0,
      maxBlockSize: 65464,
      mtu: 65535,
      maxWindowSize: 64,
      maxTransfers: 100,
      retransmitMs: 1000,
      maxRetries: 5,
      ...extra,
    },
    source: createFileSource({ root: dir }),
    log: silentLogger(),
    metrics: createMetricsRegistry(),
  })
}

const SERVE_FLAG = '--tftp-bench-serve='

/** A fresh rackboot TFTP server in a process of its own; resolves once it listens. */
function startFreshServer(dir: string): Promise<{ port: number; child: ChildProcess }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), SERVE_FLAG + dir], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /^port (\d+)$/m.exec(out)
      if (m) resolve({ port: Number(m[1]), child })
    })
    child.once('exit', (code) => reject(new Error(`fresh server exited (${code}) before listening: ${out}`)))
  })
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once('exit', () => resolve())
    child.kill('SIGTERM')
  })
}

function listFlag(args: string[], name: string, fallback: string): string[] {
  const hit = args.find((a) => a.startsWith(`--${name}=`))
  return (hit ? hit.slice(name.length + 3) : fallback).split(',').filter(Boolean)
}

export async function run(args: string[]): Promise<void> {
  const sizeMiB = flag(args, 'size', 16)
  const runs = flag(args, 'runs', 3, { integer: true })
  const window = flag(args, 'window', 16, { integer: true })
  const blksizes = listFlag(args, 'blksizes', '512,1468,8192,65464').map(Number)
  const modes = listFlag(args, 'modes', 'warm,fresh')
  // Window rows only at these block sizes (all by default): an old tree that stalls a second per window needs this.
  const windowBlksizes = listFlag(args, 'window-blksizes', blksizes.join(',')).map(Number)
  const tftpd = findProgram('in.tftpd')
  const atftp = findProgram('atftp')
  const tftpHpa = findProgram('tftp')
  if (!tftpd || !atftp) {
    console.log(`skipped: needs in.tftpd (tftpd-hpa) and atftp; found in.tftpd=${tftpd ?? 'no'} atftp=${atftp ?? 'no'}`)
    return
  }

  const dir = await mkdtemp(join(tmpdir(), 'rb-tftp-bench-'))
  // Downloads go to memory where possible, so the disk does not blur the comparison.
  const outBase = await mkdtemp(join(process.platform === 'linux' ? '/dev/shm' : tmpdir(), 'rb-tftp-bench-out-')).catch(() => mkdtemp(join(tmpdir(), 'rb-tftp-bench-out-')))
  const data = randomBytes(Math.round(sizeMiB * 1024 * 1024))
  await writeFile(join(dir, 'bench.bin'), data)
  // in.tftpd drops root for its own user, which must be able to read the file (mkdtemp makes 0700 directories).
  await chmod(dir, 0o755)
  await chmod(join(dir, 'bench.bin'), 0o644)
  const sum = createHash('sha256').update(data).digest('hex')

  const server = serverSettings(dir)
  const rb = await server.start()
  const hpa = await startTftpdHpa(tftpd, dir)
  const hpaPid = hpa.child.pid!

  const out = join(outBase, 'out.bin')
  type Server = 'hpa' | 'warm' | 'fresh'
  interface Scenario {
    key: string
    label: string
    server: Server
    program: string
    /** The client's arguments for a server port. */
    args: (port: number) => string[]
    times: number[]
    /** Server CPU seconds per run: rackboot's process, the fresh child, or in.tftpd's children. */
    cpu: number[]
  }
  const atftpArgs = (options: string[]) => (port: number) => [...options.flatMap((o) => ['--option', o]), '-g', '-r', 'bench.bin', '-l', out, '127.0.0.1', String(port)]
  const scenarios: Scenario[] = []
  const add = (key: string, label: string, server: Server, program: string, args: (port: number) => string[]) =>
    scenarios.push({ key, label, server, program, args, times: [], cpu: [] })
  const rbModes = (['warm', 'fresh'] as const).filter((m) => modes.includes(m))
  for (const b of blksizes) {
    add(`hpa:${b}`, `tftpd-hpa      atftp ${b}`, 'hpa', atftp, atftpArgs([`blksize ${b}`]))
    for (const m of rbModes) {
      add(`${m}:${b}`, `rackboot ${m.padEnd(5)} atftp ${b}`, m, atftp, atftpArgs([`blksize ${b}`]))
      if (windowBlksizes.includes(b)) add(`${m}:${b}:w`, `rackboot ${m.padEnd(5)} atftp ${b} w${window}`, m, atftp, atftpArgs([`blksize ${b}`, `windowsize ${window}`]))
    }
  }
  if (tftpHpa) {
    const hpaArgs = (port: number) => ['127.0.0.1', String(port), '-m', 'binary', '-c', 'get', 'bench.bin', out]
    add('hpa:plain', 'tftpd-hpa      tftp-hpa (no options)', 'hpa', tftpHpa, hpaArgs)
    for (const m of rbModes) add(`${m}:plain`, `rackboot ${m.padEnd(5)} tftp-hpa (no options)`, m, tftpHpa, hpaArgs)
  }

  const load = async () => (await readFile('/proc/loadavg', 'utf8').catch(() => '?')).split(' ').slice(0, 3).join(' ')
  const ownCpu = () => {
    const u = process.cpuUsage()
    return (u.user + u.system) / 1e6
  }
  /** One transfer: its seconds and the server's CPU seconds. */
  const once = async (s: Scenario): Promise<{ t: number; cpu: number }> => {
    if (s.server === 'hpa') {
      const sampler = sampleChildrenCpu(hpaPid)
      const t = await runClient(s.program, s.args(hpa.port))
      return { t, cpu: await sampler.stop() }
    }
    if (s.server === 'warm') {
      const before = ownCpu()
      const t = await runClient(s.program, s.args(rb.port))
      return { t, cpu: ownCpu() - before }
    }
    const fresh = await startFreshServer(dir)
    try {
      const before = (await procCpu(fresh.child.pid!)) ?? 0
      const t = await runClient(s.program, s.args(fresh.port))
      return { t, cpu: ((await procCpu(fresh.child.pid!)) ?? before) - before }
    } finally {
      await stopChild(fresh.child)
    }
  }
  console.log(`file ${sizeMiB} MiB, ${runs} rounds (median), loopback, ${scenarios.length} rows, load average ${await load()}`)
  try {
    // Warm-up: one unmeasured run each (primes the warm server's cache for every blksize), checksum checked.
    for (const s of scenarios) {
      await once(s)
      const got = createHash('sha256').update(await readFile(out)).digest('hex')
      if (got !== sum) throw new Error(`${s.label}: checksum mismatch`)
      await rm(out, { force: true })
    }
    for (let r = 0; r < runs; r++) {
      // Rotate the order each round so no row always runs first after a pause.
      for (let i = 0; i < scenarios.length; i++) {
        const s = scenarios[(i + r) % scenarios.length]!
        const { t, cpu } = await once(s)
        s.times.push(t)
        s.cpu.push(cpu)
        await rm(out, { force: true })
      }
    }
  } finally {
    hpa.child.kill('SIGTERM')
    await server.stop()
    await rm(dir, { recursive: true, force: true })
    await rm(outBase, { recursive: true, force: true })
  }

  const mibps = (s: Scenario) => sizeMiB / median(s.times)
  const cpuPerMiB = (s: Scenario) => (median(s.cpu) * 1000) / sizeMiB
  const by = new Map(scenarios.map((s) => [s.key, s]))
  console.log(`${'server, client, blksize'.padEnd(40)} ${'MiB/s'.padStart(7)} ${'min'.padStart(7)} ${'max'.padStart(7)}  ${'CPU ms/MiB'.padStart(10)}  vs tftpd-hpa lock-step`)
  for (const s of scenarios) {
    const peer = by.get(`hpa:${s.key.split(':')[1]}`)
    const ratio = peer && peer !== s ? `${(mibps(s) / mibps(peer)).toFixed(2)}x` : ''
    const lo = sizeMiB / Math.max(...s.times)
    const hi = sizeMiB / Math.min(...s.times)
    console.log(`${s.label.padEnd(40)} ${mibps(s).toFixed(1).padStart(7)} ${lo.toFixed(1).padStart(7)} ${hi.toFixed(1).padStart(7)}  ${cpuPerMiB(s).toFixed(1).padStart(10)}  ${ratio}`)
  }
  console.log(`goals: lock-step >= 1.0x at every blksize, windowsize ${window} >= 2x`)
  console.log(`load average after: ${await load()}`)
}

// The fresh-server child: `node --import tsx bench/tftp.bench.ts --tftp-bench-serve=DIR` listens and says on which port.
const serveArg = process.argv.find((a) => a.startsWith(SERVE_FLAG))
if (serveArg && process.argv[1] === fileURLToPath(import.meta.url)) {
  const server = serverSettings(serveArg.slice(SERVE_FLAG.length))
  const { port } = await server.start()
  process.stdout.write(`port ${port}\n`)
  process.once('SIGTERM', () => void server.stop().then(() => process.exit(0)))
}
