// Shared pieces of the TFTP tests: a server on loopback over a temporary root, checksums, program checks.
import { createHash, randomBytes } from 'node:crypto'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createTftpServer, createFileSource, type TftpServerSettings, type TftpSource, type TftpTransferInfo } from '../../src/tftp/index.js'
import { createMetricsRegistry, type Registry } from '../../src/metrics.js'
import { silentLogger } from '../../src/log.js'
import { which } from '../../src/processes.js'

export const DEFAULT_SETTINGS: TftpServerSettings = {
  listen: '127.0.0.1',
  port: 0,
  maxBlockSize: 1468,
  mtu: 1500,
  maxWindowSize: 64,
  maxTransfers: 500,
  retransmitMs: 1000,
  maxRetries: 5,
}

export { which as findProgram }

export async function tempDir(t: { after(fn: () => Promise<void>): void }, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** Writes random files of the given sizes into `dir`; returns name -> sha256. */
export async function makeFiles(dir: string, sizes: Record<string, number>): Promise<Record<string, string>> {
  const sums: Record<string, string> = {}
  for (const [name, size] of Object.entries(sizes)) {
    const data = randomBytes(size)
    await writeFile(join(dir, name), data)
    sums[name] = createHash('sha256').update(data).digest('hex')
  }
  return sums
}

export async function sha256File(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex')
}

export interface RunningServer {
  port: number
  address: string
  metrics: Registry
  finished: TftpTransferInfo[]
  server: ReturnType<typeof createTftpServer>
}

export async function startServer(
  t: { after(fn: () => Promise<void>): void },
  opts: { root?: string; source?: TftpSource; settings?: Partial<TftpServerSettings> },
): Promise<RunningServer> {
  const metrics = createMetricsRegistry()
  const finished: TftpTransferInfo[] = []
  const source = opts.source ?? createFileSource({ root: opts.root! })
  const server = createTftpServer({
    settings: { ...DEFAULT_SETTINGS, ...opts.settings },
    source,
    log: silentLogger(),
    metrics,
    observer: { transferFinished: (info) => finished.push(info) },
  })
  const { address, port } = await server.start()
  t.after(() => server.stop())
  return { port, address, metrics, finished, server }
}

export interface RunResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs a program, never rejecting: the caller asserts on the exit code and output. */
export function run(file: string, args: string[], timeoutMs = 120_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null) : 0
      resolve({ code, stdout: String(stdout), stderr: String(stderr) })
    })
  })
}

/** Polls until `cond` holds (transfers finish a moment after the client exits). */
export async function waitFor(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached in time')
    await new Promise((r) => setTimeout(r, 20))
  }
}

export async function metricValue(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = registry.getSingleMetric(name)
  if (!m) return 0
  const { values } = await m.get()
  let sum = 0
  for (const v of values) {
    if (Object.entries(labels).every(([k, x]) => String((v.labels as Record<string, unknown>)[k]) === x)) sum += v.value
  }
  return sum
}
