// `npm run bench -- tftp [--size=MiB] [--runs=N] [--blksize=N] [--window=N]`
// rackboot's TFTP server against tftpd-hpa (in.tftpd -L -s DIR -a 127.0.0.1:PORT) on loopback, same file, same
// client (atftp), same blksize; then rackboot with a window (RFC 7440). tftp-hpa's own client (512-byte lock-step)
// is a second pairing. Runs are interleaved and the median is reported, because the machines are shared and noisy.
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes, randomInt } from 'node:crypto'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
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


export async function run(args: string[]): Promise<void> {
  const sizeMiB = flag(args, 'size', 32)
  const runs = flag(args, 'runs', 5)
  const blksize = flag(args, 'blksize', 1468)
  const window = flag(args, 'window', 16)
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
  const data = randomBytes(sizeMiB * 1024 * 1024)
  await writeFile(join(dir, 'bench.bin'), data)
  // in.tftpd drops root for its own user, which must be able to read the file (mkdtemp makes 0700 directories).
  await chmod(dir, 0o755)
  await chmod(join(dir, 'bench.bin'), 0o644)
  const sum = createHash('sha256').update(data).digest('hex')

  const makeServer = (extra: { cacheMiB?: number; busyPollMicros?: number } = {}) =>
    createTftpServer({
      settings: {
        listen: '127.0.0.1',
        port: 0,
        maxBlockSize: 65464,
        mtu: Math.max(1500, blksize + 32),
        maxWindowSize: Math.max(64, window),
        maxTransfers: 100,
        retransmitMs: 1000,
        maxRetries: 5,
        ...extra,
      },
      source: createFileSource({ root: dir }),
      log: silentLogger(),
      metrics: createMetricsRegistry(),
    })
  // The defaults (packet cache, busy polling while a core is idle), and both off: what each is worth.
  const server = makeServer()
  const plain = makeServer({ cacheMiB: 0, busyPollMicros: 0 })
  const rbPlain = await plain.start()
  const rb = await server.start()
  const hpa = await startTftpdHpa(tftpd, dir)

  const out = join(outBase, 'out.bin')
  const atftpArgs = (port: number, options: string[]) => [...options.flatMap((o) => ['--option', o]), '-g', '-r', 'bench.bin', '-l', out, '127.0.0.1', String(port)]
  interface Scenario {
    key: string
    label: string
    program: string
    args: string[]
    times: number[]
    /** Server CPU seconds per run: rackboot's process, or in.tftpd with its children. */
    cpu: number[]
  }
  const hpaPid = hpa.child.pid!
  const ownCpu = () => {
    const u = process.cpuUsage()
    return (u.user + u.system) / 1e6
  }
  const scenarios: Scenario[] = [
    { key: 'hpa', label: `tftpd-hpa  atftp blksize ${blksize}`, program: atftp, args: atftpArgs(hpa.port, [`blksize ${blksize}`]), times: [], cpu: [] },
    { key: 'rb', label: `rackboot   atftp blksize ${blksize}`, program: atftp, args: atftpArgs(rb.port, [`blksize ${blksize}`]), times: [], cpu: [] },
    { key: 'rb0', label: `rackboot   atftp blksize ${blksize} (no cache/busy poll)`, program: atftp, args: atftpArgs(rbPlain.port, [`blksize ${blksize}`]), times: [], cpu: [] },
    { key: 'rbw', label: `rackboot   atftp blksize ${blksize} windowsize ${window}`, program: atftp, args: atftpArgs(rb.port, [`blksize ${blksize}`, `windowsize ${window}`]), times: [], cpu: [] },
  ]
  if (tftpHpa) {
    const hpaArgs = (port: number) => ['127.0.0.1', String(port), '-m', 'binary', '-c', 'get', 'bench.bin', out]
    scenarios.push(
      { key: 'hpa512', label: 'tftpd-hpa  tftp-hpa (512, no options)', program: tftpHpa, args: hpaArgs(hpa.port), times: [], cpu: [] },
      { key: 'rb512', label: 'rackboot   tftp-hpa (512, no options)', program: tftpHpa, args: hpaArgs(rb.port), times: [], cpu: [] },
    )
  }

  const load = async () => (await readFile('/proc/loadavg', 'utf8').catch(() => '?')).split(' ').slice(0, 3).join(' ')
  console.log(`file ${sizeMiB} MiB, ${runs} runs per row (median), loopback, load average ${await load()}`)
  try {
    // Warm-up: one unmeasured run each (JIT, page cache), with the checksum checked.
    for (const s of scenarios) {
      await runClient(s.program, s.args)
      const got = createHash('sha256').update(await readFile(out)).digest('hex')
      if (got !== sum) throw new Error(`${s.label}: checksum mismatch`)
      await rm(out, { force: true })
    }
    for (let r = 0; r < runs; r++) {
      // Rotate the order each round so no row always runs first after a pause.
      for (let i = 0; i < scenarios.length; i++) {
        const s = scenarios[(i + r) % scenarios.length]!
        if (s.key.startsWith('hpa')) {
          const sampler = sampleChildrenCpu(hpaPid)
          s.times.push(await runClient(s.program, s.args))
          s.cpu.push(await sampler.stop())
        } else {
          const before = ownCpu()
          s.times.push(await runClient(s.program, s.args))
          s.cpu.push(ownCpu() - before)
        }
        await rm(out, { force: true })
      }
    }
  } finally {
    hpa.child.kill('SIGTERM')
    await server.stop()
    await plain.stop()
    await rm(dir, { recursive: true, force: true })
    await rm(outBase, { recursive: true, force: true })
  }

  const mibps = (s: Scenario) => sizeMiB / median(s.times)
  const by = Object.fromEntries(scenarios.map((s) => [s.key, s]))
  const best = (s: Scenario) => sizeMiB / Math.min(...s.times)
  console.log(`${'server, client'.padEnd(52)} ${'median'.padStart(7)}  ${'best'.padStart(7)}  server CPU s/run (median)`)
  for (const s of scenarios) {
    console.log(`${s.label.padEnd(52)} ${mibps(s).toFixed(1).padStart(7)}  ${best(s).toFixed(1).padStart(7)}  ${median(s.cpu).toFixed(2).padStart(6)}   MiB/s`)
  }
  const ratio = (a: string, b: string, f: (s: Scenario) => number) => (by[a] && by[b] ? (f(by[a]!) / f(by[b]!)).toFixed(2) + 'x' : 'n/a')
  const both = (a: string, b: string) => `${ratio(a, b, mibps)} median, ${ratio(a, b, best)} best`
  console.log(`ratio rackboot/tftpd-hpa, blksize ${blksize} lock-step:        ${both('rb', 'hpa')}   (goal >= 1.0x)`)
  console.log(`ratio rackboot without cache and busy polling, lock-step:  ${both('rb0', 'hpa')}`)
  console.log(`ratio rackboot windowsize ${window}/tftpd-hpa, blksize ${blksize}: ${both('rbw', 'hpa')}   (goal >= 3x)`)
  if (by.hpa512) console.log(`ratio rackboot/tftpd-hpa, 512 lock-step (tftp-hpa client): ${both('rb512', 'hpa512')}`)
  console.log(`load average after: ${await load()}`)
}
