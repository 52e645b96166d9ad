// `npm run bench -- assets [--size=MiB] [--rounds=N] [--duration=s] [--clients=N] [--before]`
// Boot assets over HTTP (issue 15): one file (100 MiB, a Talos initramfs's size) from rackboot's /assets (the real app,
// in a process of its own), nginx (sendfile on, tcp_nopush on, worker_processes auto: Debian's defaults, from a
// config in a temporary directory on a loopback port, no root needed), and a plain Node server piping
// fs.createReadStream (Node's defaults). `--before` adds @fastify/static, what /assets used until issue 15.
// Each round runs, for every server in turn (the order rotates): wrk at 50 and 200 connections for a fixed time,
// then 200 curl clients downloading the whole file at once (time of the median and the last client). Figures are
// the medians over the rounds; CPU is the server's own (utime + stime from /proc, nginx's workers included) per GiB
// it sent. Goals: rackboot >= 1.5x plain Node and >= 0.6x nginx at 200 clients, the last client within 1.5x the
// median's time, <= 1 s CPU per GiB.
import { nginxConfig } from './nginx-config.js'
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { which as findProgram } from '../src/processes.js'
import { flag, median } from './stats.js'

const here = dirname(fileURLToPath(import.meta.url))


/** CPU seconds (utime + stime, all threads) of a process and its children that are alive now (nginx's workers). */
async function treeCpu(pid: number): Promise<number> {
  const one = async (p: number): Promise<number> => {
    try {
      const stat = await readFile(`/proc/${p}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      return (Number(fields[11]) + Number(fields[12])) / 100 // USER_HZ is 100 on Linux
    } catch {
      return 0
    }
  }
  const children = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')).split(' ').filter(Boolean).map(Number)
  let sum = await one(pid)
  for (const c of children) sum += await one(c)
  return sum
}

const loadavg = async () => (await readFile('/proc/loadavg', 'utf8').catch(() => '?')).split(' ').slice(0, 3).join(' ')

interface Server {
  key: string
  label: string
  url: string
  pid: number
  stop(): Promise<void>
}

function waitExit(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once('exit', () => resolve())
  })
}

async function startNodeServer(kind: string, label: string, dir: string): Promise<Server> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'assets-server.ts'), kind, dir], { stdio: ['ignore', 'pipe', 'inherit'], cwd: join(here, '..') })
  const port = await new Promise<number>((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      const line = out.split('\n')[0]
      if (out.includes('\n')) resolve((JSON.parse(line!) as { port: number }).port)
    })
    child.once('exit', (code) => reject(new Error(`${kind} server exited (${code}) before listening`)))
  })
  return {
    key: kind, label, url: `http://127.0.0.1:${port}/assets/bench.bin`, pid: child.pid!,
    async stop() {
      child.kill('SIGTERM')
      await waitExit(child)
    },
  }
}

async function startNginx(program: string, dir: string, www: string): Promise<Server> {
  const conf = join(dir, 'nginx.conf')
  for (let attempt = 0; attempt < 10; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 40000)
    await writeFile(conf, nginxConfig({
      dir, workers: 'auto', workerConnections: 4096, accessLog: 'off',
      listen: `127.0.0.1:${port}`, server: [`location /assets/ { alias ${www}/; }`],
    }))
    const child = spawn(program, ['-e', join(dir, 'error.log'), '-p', dir, '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
    const exited = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 500)
      child.once('exit', () => {
        clearTimeout(timer)
        resolve(true)
      })
    })
    if (!exited) {
      return {
        key: 'nginx', label: 'nginx (sendfile)', url: `http://127.0.0.1:${port}/assets/bench.bin`, pid: child.pid!,
        async stop() {
          child.kill('SIGQUIT')
          await waitExit(child)
        },
      }
    }
    const log = await readFile(join(dir, 'error.log'), 'utf8').catch(() => '')
    if (!/in use/i.test(stderr + log)) throw new Error(`nginx failed: ${stderr}${log}`)
  }
  throw new Error('nginx: no free port found')
}

function runProgram(file: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('exit', (code) => {
      clearTimeout(timer)
      if (code !== 0) reject(new Error(`${file} ${args.join(' ')}: exit ${code}: ${err.slice(0, 500)}`))
      else resolve(out)
    })
  })
}

const UNITS: Record<string, number> = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 }

/** wrk for `seconds` at `connections`: bytes read (whole and partial responses) and the time taken. */
async function wrk(program: string, url: string, connections: number, seconds: number): Promise<{ bytes: number; seconds: number; errors: string | null }> {
  const out = await runProgram(program, ['-t2', `-c${connections}`, `-d${seconds}s`, '--timeout', '600s', url], (seconds + 60) * 1000)
  const m = /(\d+) requests in ([\d.]+)(m?s), ([\d.]+)([KMGT]?B) read/.exec(out)
  if (!m) throw new Error(`cannot read wrk's output: ${out}`)
  const took = Number(m[2]) * (m[3] === 'ms' ? 0.001 : 1)
  const errors = /Socket errors: .*|Non-2xx or 3xx responses: \d+/.exec(out)?.[0] ?? null
  return { bytes: Number(m[4]) * UNITS[m[5]!]!, seconds: took, errors }
}

/** `clients` whole-file downloads started at once (curl, spread over a few processes): each client's time. */
async function curlClients(program: string, url: string, clients: number, size: number, dir: string): Promise<{ times: number[]; bytes: number; seconds: number }> {
  const procs = Math.min(4, clients)
  const start = performance.now()
  const outs = await Promise.all(Array.from({ length: procs }, async (_, p) => {
    const n = Math.floor(clients / procs) + (p < clients % procs ? 1 : 0)
    const config = join(dir, `curl-${p}.conf`)
    await writeFile(config, Array.from({ length: n }, () => `url = "${url}"\noutput = "/dev/null"\n`).join(''))
    return runProgram(program, ['--parallel', '--parallel-immediate', '--parallel-max', String(n), '-s', '-w', '%{http_code} %{size_download} %{time_total}\\n', '-K', config], 900_000)
  }))
  const seconds = (performance.now() - start) / 1000
  const times: number[] = []
  let bytes = 0
  for (const line of outs.join('').split('\n').filter(Boolean)) {
    const [code, got, time] = line.split(' ')
    if (code !== '200' || Number(got) !== size) throw new Error(`curl: a client got HTTP ${code} and ${got} of ${size} bytes`)
    bytes += Number(got)
    times.push(Number(time))
  }
  if (times.length !== clients) throw new Error(`curl: ${times.length} of ${clients} clients reported`)
  return { times, bytes, seconds }
}

interface Row {
  wrk50: number[]
  wrk200: number[]
  curlMiBs: number[]
  curlMedian: number[]
  curlLast: number[]
  cpuPerGiB: number[]
  errors: string[]
}

export async function run(args: string[]): Promise<void> {
  const sizeMiB = flag(args, 'size', 100)
  const rounds = flag(args, 'rounds', 3)
  const duration = flag(args, 'duration', 5)
  const clients = flag(args, 'clients', 200)
  const before = args.includes('--before')
  const nginx = findProgram('nginx')
  const wrkBin = findProgram('wrk')
  const curl = findProgram('curl')
  if (!nginx || !wrkBin || !curl) {
    console.log(`skipped: needs nginx, wrk and curl (apt-get install nginx wrk curl); found nginx=${nginx ?? 'no'} wrk=${wrkBin ?? 'no'} curl=${curl ?? 'no'}`)
    return
  }

  const dir = await mkdtemp(join(tmpdir(), 'rb-assets-bench-'))
  const www = join(dir, 'www')
  await mkdir(www)
  // nginx run as root hands its workers to nobody, who must read the file (mkdtemp makes 0700 directories).
  await chmod(dir, 0o755)
  const data = randomBytes(sizeMiB * 1024 * 1024)
  const size = data.length
  await writeFile(join(www, 'bench.bin'), data, { mode: 0o644 })
  const sum = createHash('sha256').update(data).digest('hex')

  const servers: Server[] = []
  try {
    servers.push(await startNodeServer('rackboot', 'rackboot /assets', www))
    servers.push(await startNginx(nginx, dir, www))
    servers.push(await startNodeServer('node', 'plain Node createReadStream', www))
    if (before) servers.push(await startNodeServer('static', '@fastify/static (before)', www))

    // Every server gives the file's exact bytes (and warms the page cache).
    for (const s of servers) {
      const res = await fetch(s.url)
      const got = createHash('sha256').update(Buffer.from(await res.arrayBuffer())).digest('hex')
      if (res.status !== 200 || got !== sum) throw new Error(`${s.label}: HTTP ${res.status}, checksum ${got === sum ? 'ok' : 'MISMATCH'}`)
    }
    console.log(`file ${sizeMiB} MiB, ${rounds} rounds (medians), wrk -t2 ${duration} s at 50 and 200 connections, ${clients} curl clients; 127.0.0.1, ${(await readFile('/proc/cpuinfo', 'utf8').catch(() => '')).split('\nprocessor').length} CPUs`)
    console.log(`load average before: ${await loadavg()}`)

    const rows = new Map<string, Row>(servers.map((s) => [s.key, { wrk50: [], wrk200: [], curlMiBs: [], curlMedian: [], curlLast: [], cpuPerGiB: [], errors: [] }]))
    const started = performance.now()
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < servers.length; i++) {
        const s = servers[(i + r) % servers.length]!
        const row = rows.get(s.key)!
        let cpu = await treeCpu(s.pid)
        let bytes = 0
        for (const c of [50, 200]) {
          const w = await wrk(wrkBin, s.url, c, duration)
          bytes += w.bytes
          ;(c === 50 ? row.wrk50 : row.wrk200).push(w.bytes / 1048576 / w.seconds)
          if (w.errors) row.errors.push(`wrk -c${c}: ${w.errors}`)
        }
        const cl = await curlClients(curl, s.url, clients, size, dir)
        bytes += cl.bytes
        cpu = (await treeCpu(s.pid)) - cpu
        row.curlMiBs.push(cl.bytes / 1048576 / cl.seconds)
        row.curlMedian.push(median(cl.times))
        row.curlLast.push(Math.max(...cl.times))
        row.cpuPerGiB.push(cpu / (bytes / 1024 ** 3))
      }
      console.log(`  round ${r + 1}/${rounds} done at ${((performance.now() - started) / 1000).toFixed(0)} s, load average ${await loadavg()}`)
    }

    const f = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : 'n/a')
    console.log(`\n${'server'.padEnd(30)} ${'wrk c50'.padStart(9)} ${'wrk c200'.padStart(9)} ${`curl ${clients}`.padStart(9)} ${'median'.padStart(7)} ${'last'.padStart(7)} ${'last/med'.padStart(8)} ${'CPU s/GiB'.padStart(9)}`)
    console.log(`${''.padEnd(30)} ${'MiB/s'.padStart(9)} ${'MiB/s'.padStart(9)} ${'MiB/s'.padStart(9)} ${'client s'.padStart(7)} ${'client s'.padStart(7)}`)
    for (const s of servers) {
      const row = rows.get(s.key)!
      console.log(`${s.label.padEnd(30)} ${f(median(row.wrk50)).padStart(9)} ${f(median(row.wrk200)).padStart(9)} ${f(median(row.curlMiBs)).padStart(9)} ${f(median(row.curlMedian), 1).padStart(7)} ${f(median(row.curlLast), 1).padStart(7)} ${f(median(row.curlLast.map((l, i) => l / row.curlMedian[i]!)), 2).padStart(8)} ${f(median(row.cpuPerGiB), 2).padStart(9)}`)
      for (const e of new Set(row.errors)) console.log(`  (${s.label}: ${e})`)
    }
    const rb = rows.get('rackboot')!
    const ratio = (key: string, pick: (r: Row) => number[]) => f(median(pick(rb)) / median(pick(rows.get(key)!)), 2) + 'x'
    for (const [key, name] of [['node', 'plain Node'], ['nginx', 'nginx'], ...(before ? [['static', '@fastify/static']] : [])] as const) {
      console.log(`rackboot / ${name.padEnd(16)} wrk c50 ${ratio(key, (r) => r.wrk50)}, wrk c200 ${ratio(key, (r) => r.wrk200)}, curl ${clients} clients ${ratio(key, (r) => r.curlMiBs)}`)
    }
    const lastOverMedian = median(rb.curlLast.map((l, i) => l / rb.curlMedian[i]!))
    console.log(`goals: >= 1.5x plain Node and >= 0.6x nginx at 200 clients (wrk c200 and curl above); last client <= 1.5x the median: ${f(lastOverMedian, 2)}x ${lastOverMedian <= 1.5 ? 'met' : 'NOT met'}; CPU <= 1 s/GiB: ${f(median(rb.cpuPerGiB), 2)} ${median(rb.cpuPerGiB) <= 1 ? 'met' : 'NOT met'}`)
    console.log(`load average after: ${await loadavg()} (a shared machine: figures are noisy; the clients run on the same cores)`)
  } finally {
    for (const s of servers) await s.stop().catch(() => undefined)
    await rm(dir, { recursive: true, force: true })
  }
}
