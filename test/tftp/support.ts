// Shared pieces of the TFTP tests: a server on loopback over a temporary root, a raw UDP client, checksums, program
// checks.
import { createHash, randomBytes } from 'node:crypto'
import assert from 'node:assert/strict'
import { createSocket, type Socket, type RemoteInfo } from 'node:dgram'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createTftpServer, createFileSource, type TftpServerSettings, type TftpSource, type TftpTransferInfo } from '../../src/tftp/index.js'
import { createMetricsRegistry, type Registry } from '../../src/metrics.js'
import { silentLogger } from '../../src/log.js'
import { which } from '../../src/processes.js'
import { Opcode, decode, encodeAck, encodeRequest, type Packet } from '../../src/tftp/packet.js'
import type { TransferClock } from '../../src/tftp/transfer.js'

export const DEFAULT_SETTINGS: TftpServerSettings = {
  listen: '127.0.0.1',
  port: 0,
  maxBlockSize: 1468,
  mtu: 1500,
  maxWindowSize: 64,
  maxTransfers: 500,
  maxTransfersPerClient: 4,
  unackedRetries: 1,
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
  opts: { root?: string; source?: TftpSource; settings?: Partial<TftpServerSettings>; clock?: TransferClock },
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
    ...(opts.clock ? { clock: opts.clock } : {}),
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

export interface Received {
  packet: Packet
  rinfo: RemoteInfo
}

/** A TFTP client made of one UDP socket, driven packet by packet. */
export class RawClient {
  private queue: Received[] = []
  private waiters: ((r: Received) => void)[] = []
  private constructor(readonly socket: Socket) {
    socket.on('message', (msg, rinfo) => {
      const d = decode(msg)
      if (!d.ok) return
      const r = { packet: d.packet, rinfo }
      const w = this.waiters.shift()
      if (w) w(r)
      else this.queue.push(r)
    })
  }
  /** `address`: the loopback address to send from (any of 127.0.0.0/8 binds on Linux without configuration). */
  static async open(t: { after(fn: () => Promise<void>): void }, address = '127.0.0.1'): Promise<RawClient> {
    const s = createSocket('udp4')
    await new Promise<void>((r) => s.bind(0, address, r))
    t.after(() => new Promise<void>((r) => s.close(() => r())))
    return new RawClient(s)
  }
  get port(): number {
    return this.socket.address().port
  }
  send(buf: Buffer, port: number, address = '127.0.0.1'): void {
    this.socket.send(buf, port, address)
  }
  next(timeoutMs = 15_000): Promise<Received> {
    const q = this.queue.shift()
    if (q) return Promise.resolve(q)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done)
        reject(new Error('no datagram received'))
      }, timeoutMs)
      const done = (r: Received) => {
        clearTimeout(timer)
        resolve(r)
      }
      this.waiters.push(done)
    })
  }
  /** Nothing arrives within `ms` (used only where the absence of a packet is the point). */
  async nothingWithin(ms: number): Promise<boolean> {
    try {
      await this.next(ms)
      return false
    } catch {
      return true
    }
  }
  /** Downloads with lock-step ACKs after an optional OACK; returns the bytes and the server's TID port. */
  async download(serverPort: number, file: string, options?: Record<string, string>): Promise<{ data: Buffer; tid: number; oack?: Map<string, string> }> {
    this.send(encodeRequest(Opcode.RRQ, file, 'octet', options), serverPort)
    const parts: Buffer[] = []
    let oack: Map<string, string> | undefined
    let tid = -1
    let blksize = Number(options?.blksize ?? 512)
    for (;;) {
      const { packet, rinfo } = await this.next()
      if (tid < 0) tid = rinfo.port
      assert.equal(rinfo.port, tid, 'every packet of a transfer comes from one TID')
      if (packet.op === Opcode.OACK) {
        oack = packet.options
        blksize = Number(oack.get('blksize') ?? 512)
        this.send(encodeAck(0), tid)
        continue
      }
      assert.equal(packet.op, Opcode.DATA, `unexpected ${JSON.stringify(packet)}`)
      if (packet.op !== Opcode.DATA) throw new Error('not data')
      parts.push(Buffer.from(packet.data))
      this.send(encodeAck(packet.block), tid)
      if (packet.data.length < blksize) break
    }
    return oack ? { data: Buffer.concat(parts), tid, oack } : { data: Buffer.concat(parts), tid }
  }
}

export function expectError(r: Received, code: number, pattern?: RegExp): void {
  assert.equal(r.packet.op, Opcode.ERROR, `expected ERROR ${code}, got ${JSON.stringify(r.packet)}`)
  if (r.packet.op !== Opcode.ERROR) return
  assert.equal(r.packet.code, code, r.packet.message)
  if (pattern) assert.match(r.packet.message, pattern)
}
