// Issue 15, "assets at line rate": /assets is rackboot's own sender (src/http/asset-sender.ts), not @fastify/static.
// What boot loaders and people's tools rely on is checked on the wire: single ranges and their edge cases, HEAD,
// conditional requests, a client that goes away or stops reading, a file that shrinks under a download, and many
// clients on one large file at once, each getting exactly the file's bytes.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, truncateSync, utimesSync, writeFileSync } from 'node:fs'
import { createServer, get, type IncomingMessage } from 'node:http'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { buildApp } from '../../src/http/index.js'
import { answerFor, openAsset, parseByteRange, sendAsset, type OpenAsset, type TransferResult } from '../../src/http/asset-sender.js'
import { createDownloadGate } from '../../src/http/download-gate.js'
import type { Inventory } from '../../src/inventory/index.js'
import type { BootService, Lifecycle } from '../../src/lifecycle/index.js'
import { createMetricsRegistry } from '../../src/metrics.js'

const MACHINE = 'm-0123456789ab'
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

interface Recorded { machineId: string; type: string; message: string; data: Record<string, unknown> }

async function setup(t: { after(fn: () => Promise<void> | void): void }, options: { bigMiB?: number; stallMs?: number } = {}) {
  const base = mkdtempSync(join(tmpdir(), 'rb-sender-'))
  t.after(() => rmSync(base, { recursive: true, force: true }))
  mkdirSync(join(base, 'agent'))
  mkdirSync(join(base, 'talos', 'v1.13.9', 'amd64'), { recursive: true })
  const small = randomBytes(10_000)
  writeFileSync(join(base, 'agent', 'vmlinuz'), small)
  // A fixed modification time, so Last-Modified and If-Modified-Since are exact.
  utimesSync(join(base, 'agent', 'vmlinuz'), new Date('2025-01-02T03:04:05Z'), new Date('2025-01-02T03:04:05Z'))
  const big = randomBytes((options.bigMiB ?? 8) * 1024 * 1024 + 12_345) // not a whole number of chunks
  writeFileSync(join(base, 'talos', 'v1.13.9', 'amd64', 'initramfs.xz'), big)
  writeFileSync(join(base, 'agent', 'empty'), '')

  const records: Recorded[] = []
  const released: string[] = []
  const gate = createDownloadGate({ limit: 10, holdMs: 60_000 })
  const gateSpy = { ...gate, limit: gate.limit, release: (id: string) => { released.push(id); gate.release(id) } }
  const lines: { level: number; msg: string }[] = []
  const registry = createMetricsRegistry()
  const app = await buildApp({
    inventory: {} as Inventory, registry, version: 'test',
    lifecycle: { record: (machineId: string, type: string, message: string, data: Record<string, unknown>) => void records.push({ machineId, type, message, data }) } as unknown as Lifecycle,
    log: pino({ level: 'warn' }, { write: (s: string) => void lines.push(JSON.parse(s)) }),
    boot: {
      service: {} as BootService, gate: gateSpy, assetsDir: base, publicUrl: '',
      hold: { seconds: 30, maxSeconds: 300 }, agent: { after: 'reboot', kernelArgs: { amd64: [], arm64: [] } },
    },
  })
  // The stall limit is the plugin's option; the app passes the default, so a short one is set on a second app.
  let stallApp: Awaited<ReturnType<typeof buildApp>> | null = null
  const stallRegistry = createMetricsRegistry()
  if (options.stallMs) {
    const { assetRoutes } = await import('../../src/http/plugins/assets.js')
    const { default: Fastify } = await import('fastify')
    stallApp = Fastify()
    await stallApp.register(assetRoutes, {
      assetsDir: base, gate: gateSpy, registry: stallRegistry,
      lifecycle: { record: (machineId: string, type: string, message: string, data: Record<string, unknown>) => void records.push({ machineId, type, message, data }) } as unknown as Lifecycle,
      stallMs: options.stallMs,
    })
    await stallApp.listen({ host: '127.0.0.1', port: 0 })
    t.after(() => {
      stallApp!.server.closeAllConnections()
      return stallApp!.close()
    })
  }
  await app.listen({ host: '127.0.0.1', port: 0 })
  // Whatever a failed test left open goes, so a failure cannot hang the run.
  t.after(() => {
    app.server.closeAllConnections()
    return app.close()
  })
  const port = (app.server.address() as { port: number }).port
  const transfers = async (result: string, from = registry) =>
    Number(new RegExp(`result="${result}"} (\\d+)`).exec(await from.getSingleMetricAsString('rackboot_http_assets_transfers_total'))?.[1] ?? 0)
  return { app, stallApp, stallRegistry, base, port, small, big, records, released, lines, transfers }
}

interface Answer { status: number; head: string; headers: Record<string, string>; body: Buffer }

/** One request with these exact headers, read to the connection's close. */
function raw(port: number, method: string, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () =>
      socket.write(`${method} ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`))
    const chunks: Buffer[] = []
    socket.on('data', (d: Buffer) => chunks.push(d))
    socket.on('error', reject)
    socket.on('close', () => {
      const all = Buffer.concat(chunks)
      const end = all.indexOf('\r\n\r\n')
      const head = all.subarray(0, end).toString('latin1')
      const out: Record<string, string> = {}
      for (const line of head.split('\r\n').slice(1)) out[line.slice(0, line.indexOf(':')).toLowerCase()] = line.slice(line.indexOf(':') + 1).trim()
      resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? 0), head, headers: out, body: all.subarray(end + 4) })
    })
  })
}

test('single ranges: first byte, suffixes, open ends, past the end (416), and ranges ignored as RFC 9110 allows', async (t) => {
  const s = await setup(t)
  const url = '/assets/agent/vmlinuz'
  const n = s.small.length
  const range = (r: string) => raw(s.port, 'GET', url, { Range: r })

  const first = await range('bytes=0-0')
  assert.equal(first.status, 206)
  assert.equal(first.headers['content-range'], `bytes 0-0/${n}`)
  assert.equal(first.headers['content-length'], '1')
  assert.deepEqual(first.body, s.small.subarray(0, 1))

  const suffix = await range('bytes=-100')
  assert.equal(suffix.status, 206)
  assert.equal(suffix.headers['content-range'], `bytes ${n - 100}-${n - 1}/${n}`)
  assert.deepEqual(suffix.body, s.small.subarray(n - 100))
  // A suffix longer than the file is the whole file, still as a range.
  const longSuffix = await range(`bytes=-${n * 10}`)
  assert.equal(longSuffix.status, 206)
  assert.equal(longSuffix.headers['content-range'], `bytes 0-${n - 1}/${n}`)
  assert.deepEqual(longSuffix.body, s.small)

  const open = await range(`bytes=${n - 7}-`)
  assert.equal(open.headers['content-range'], `bytes ${n - 7}-${n - 1}/${n}`)
  assert.deepEqual(open.body, s.small.subarray(n - 7))
  const clamped = await range(`bytes=100-${n + 5000}`)
  assert.equal(clamped.headers['content-range'], `bytes 100-${n - 1}/${n}`)
  assert.deepEqual(clamped.body, s.small.subarray(100))
  const last = await range(`bytes=${n - 1}-${n - 1}`)
  assert.deepEqual(last.body, s.small.subarray(n - 1))

  for (const r of [`bytes=${n}-`, `bytes=${n}-${n + 10}`, 'bytes=99999999999-', 'bytes=-0']) {
    const past = await range(r)
    assert.equal(past.status, 416, r)
    assert.equal(past.headers['content-range'], `bytes */${n}`, r)
    assert.equal(past.body.length, 0, r)
  }
  // Several ranges, another unit, a reversed or malformed range: the whole file, 200.
  for (const r of ['bytes=0-1,5-6', 'items=0-1', 'bytes=5-2', 'bytes=x-y', 'bytes=-']) {
    const whole = await range(r)
    assert.equal(whole.status, 200, r)
    assert.equal(whole.body.length, n, r)
    assert.equal(whole.headers['content-range'], undefined, r)
  }
  // An empty file has no byte to give.
  assert.equal((await raw(s.port, 'GET', '/assets/agent/empty', { Range: 'bytes=0-0' })).status, 416)
  const empty = await raw(s.port, 'GET', '/assets/agent/empty')
  assert.equal(empty.status, 200)
  assert.equal(empty.headers['content-length'], '0')
})

test('a range across chunk boundaries of a large file is exactly those bytes', async (t) => {
  const s = await setup(t)
  const url = '/assets/talos/v1.13.9/amd64/initramfs.xz'
  for (const [a, b] of [[524_287, 524_288], [100_000, 3 * 524_288 + 17], [s.big.length - 600_000, s.big.length - 1]] as const) {
    const r = await raw(s.port, 'GET', url, { Range: `bytes=${a}-${b}` })
    assert.equal(r.status, 206)
    assert.equal(r.headers['content-length'], String(b - a + 1))
    assert.equal(sha(r.body), sha(s.big.subarray(a, b + 1)), `${a}-${b}`)
  }
})

test('HEAD: the head GET would have, no body', async (t) => {
  const s = await setup(t)
  const getAnswer = await raw(s.port, 'GET', '/assets/agent/vmlinuz')
  const head = await raw(s.port, 'HEAD', '/assets/agent/vmlinuz')
  assert.equal(head.status, 200)
  assert.equal(head.body.length, 0)
  for (const h of ['content-length', 'content-type', 'etag', 'last-modified', 'accept-ranges']) assert.equal(head.headers[h], getAnswer.headers[h], h)
  assert.equal(head.headers['content-length'], String(s.small.length))
  assert.equal(head.headers['accept-ranges'], 'bytes')
  assert.equal(head.headers['last-modified'], 'Thu, 02 Jan 2025 03:04:05 GMT')
  assert.equal(head.headers['content-type'], 'application/octet-stream')
  assert.match(head.head, /\r\nContent-Length: 10000\r\n/)
  const big = await raw(s.port, 'HEAD', '/assets/talos/v1.13.9/amd64/initramfs.xz', { Range: 'bytes=0-99' })
  assert.equal(big.status, 206)
  assert.equal(big.headers['content-length'], '100')
  assert.equal(big.headers['content-type'], 'application/x-xz')
  assert.equal(big.body.length, 0)
  assert.equal((await raw(s.port, 'HEAD', '/assets/agent/missing')).status, 404)
})

test('conditional requests: If-None-Match and If-Modified-Since give 304, If-Match 412, If-Range a stale range the whole file', async (t) => {
  const s = await setup(t)
  const url = '/assets/agent/vmlinuz'
  const full = await raw(s.port, 'GET', url)
  const etag = full.headers.etag!
  assert.match(etag, /^"[0-9a-f]+-[0-9a-f]+"$/)
  const ask = (headers: Record<string, string>) => raw(s.port, 'GET', url, headers)

  const same = await ask({ 'If-None-Match': etag })
  assert.equal(same.status, 304)
  assert.equal(same.body.length, 0)
  assert.equal(same.headers.etag, etag)
  assert.equal(same.headers['content-length'], undefined)
  // Weak comparison: the tag @fastify/static gave (W/ and the same value) is still this version.
  assert.equal((await ask({ 'If-None-Match': `W/${etag}` })).status, 304)
  assert.equal((await ask({ 'If-None-Match': `"nope", ${etag}` })).status, 304)
  assert.equal((await ask({ 'If-None-Match': '*' })).status, 304)
  assert.equal((await ask({ 'If-None-Match': '"other"' })).status, 200)
  assert.equal((await ask({ 'If-Modified-Since': 'Thu, 02 Jan 2025 03:04:05 GMT' })).status, 304)
  assert.equal((await ask({ 'If-Modified-Since': 'Thu, 02 Jan 2025 03:04:04 GMT' })).status, 200)
  // If-None-Match wins over If-Modified-Since.
  assert.equal((await ask({ 'If-None-Match': '"other"', 'If-Modified-Since': 'Thu, 02 Jan 2099 00:00:00 GMT' })).status, 200)

  assert.equal((await ask({ 'If-Match': '"other"' })).status, 412)
  assert.equal((await ask({ 'If-Match': etag })).status, 200)
  assert.equal((await ask({ 'If-Unmodified-Since': 'Wed, 01 Jan 2025 00:00:00 GMT' })).status, 412)

  // If-Range: this version gets its range; another (tag or date), or a weak tag, gets the whole current file.
  const ranged = await ask({ Range: 'bytes=10-19', 'If-Range': etag })
  assert.equal(ranged.status, 206)
  assert.deepEqual(ranged.body, s.small.subarray(10, 20))
  for (const ifRange of ['"5-5"', `W/${etag}`, 'Thu, 02 Jan 2025 03:04:04 GMT', 'not a date']) {
    const whole = await ask({ Range: 'bytes=10-19', 'If-Range': ifRange })
    assert.equal(whole.status, 200, ifRange)
    assert.deepEqual(whole.body, s.small, ifRange)
  }
  assert.equal((await ask({ Range: 'bytes=10-19', 'If-Range': 'Thu, 02 Jan 2025 03:04:05 GMT' })).status, 206)
  assert.equal((await ask({ Range: `bytes=${s.small.length}-`, 'If-Range': '"old"' })).status, 200, 'a stale range past the end is the whole file, not 416')
})

test('parseByteRange and answerFor agree with the wire tests on their own', () => {
  assert.deepEqual(parseByteRange('bytes=0-0', 10), { start: 0, end: 0 })
  assert.deepEqual(parseByteRange('Bytes = 2 - ', 10), { start: 2, end: 9 })
  assert.deepEqual(parseByteRange('bytes=-3', 10), { start: 7, end: 9 })
  assert.equal(parseByteRange('bytes=10-', 10), 'unsatisfiable')
  assert.equal(parseByteRange('bytes=-5', 0), 'unsatisfiable')
  assert.equal(parseByteRange('bytes=1-2, 4-5', 10), null)
  const file: OpenAsset = { fd: -1, size: 10, mtimeMs: 1_735_787_045_000, etag: '"a-194253a3088"', lastModified: 'Thu, 02 Jan 2025 03:04:05 GMT', contentType: 'application/octet-stream' }
  assert.equal(answerFor('GET', {}, file).status, 200)
  assert.equal(answerFor('HEAD', {}, file).body, false)
  assert.equal(answerFor('GET', { 'if-none-match': file.etag }, file).status, 304)
})

/** Open descriptors of this process on files under `dir`. */
function openUnder(dir: string): number {
  let n = 0
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir)) n++
    } catch {
      // closed meanwhile
    }
  }
  return n
}

function download(port: number, path: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path, agent: false }, (res: IncomingMessage) => {
      const chunks: Buffer[] = []
      res.on('data', (d: Buffer) => chunks.push(d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    }).on('error', reject)
  })
}

test('a client gone mid-download: the others are served, nothing is thrown, the timeline says how far it got', async (t) => {
  const s = await setup(t, { bigMiB: 24 })
  const unexpected: unknown[] = []
  const onError = (err: unknown) => unexpected.push(err)
  process.on('uncaughtException', onError)
  process.on('unhandledRejection', onError)
  t.after(() => {
    process.off('uncaughtException', onError)
    process.off('unhandledRejection', onError)
  })
  const url = `/assets/talos/v1.13.9/amd64/initramfs.xz?m=${MACHINE}`
  // Two clients that leave after 1 MiB (one by closing, one by reset), while a third downloads the whole file.
  const leave = (reset: boolean) => new Promise<number>((resolve) => {
    let got = 0
    const socket = connect(s.port, '127.0.0.1', () => socket.write(`GET ${url} HTTP/1.1\r\nHost: x\r\n\r\n`))
    socket.on('data', (d: Buffer) => {
      got += d.length
      if (got > 1024 * 1024 && !socket.destroyed) {
        if (reset) socket.resetAndDestroy()
        else socket.destroy()
        resolve(got)
      }
    })
    socket.on('error', () => undefined)
  })
  const [, , whole] = await Promise.all([leave(false), leave(true), download(s.port, url)])
  assert.equal(whole.status, 200)
  assert.equal(sha(whole.body), sha(s.big))
  // The server notices both departures.
  for (let i = 0; i < 100 && s.records.length < 3; i++) await new Promise((r) => setTimeout(r, 20))
  assert.equal(s.records.length, 3, JSON.stringify(s.records.map((r) => r.message)))
  const cut = s.records.filter((r) => r.data.complete === false)
  assert.equal(cut.length, 2)
  for (const r of cut) {
    assert.equal(r.type, 'boot.asset')
    assert.match(r.message, /^download of talos\/v1\.13\.9\/amd64\/initramfs\.xz cut short after \d+\.\d of 24\.0 MiB in [\d.]+ s: the client went away$/)
    assert.equal(r.data.status, 200)
    assert.equal(r.data.bytes, s.big.length)
    assert.ok(Number(r.data.sent) >= 512 * 1024 && Number(r.data.sent) < s.big.length, String(r.data.sent))
  }
  const done = s.records.find((r) => r.data.complete === true)!
  assert.match(done.message, /^downloaded talos\/v1\.13\.9\/amd64\/initramfs\.xz: 24\.0 MiB in/)
  // Only the whole download frees the machine's slot.
  assert.deepEqual(s.released, [MACHINE])
  assert.equal(await s.transfers('aborted'), 2)
  assert.equal(await s.transfers('complete'), 1)
  assert.deepEqual(unexpected, [])
  assert.deepEqual(s.lines.filter((l) => l.level >= 40), [], 'a client going away is not worth a warning')
  // Every descriptor the transfers opened is closed.
  for (let i = 0; i < 50 && openUnder(s.base) > 0; i++) await new Promise((r) => setTimeout(r, 20))
  assert.equal(openUnder(s.base), 0)
  // And the server still answers.
  assert.equal((await raw(s.port, 'GET', '/assets/agent/vmlinuz')).body.length, s.small.length)
})

test('many clients on one large file at once: every one finishes with exactly its bytes', async (t) => {
  const s = await setup(t, { bigMiB: 16 })
  const want = sha(s.big)
  const started = Date.now()
  const times: number[] = []
  const results = await Promise.all(Array.from({ length: 24 }, async (_, i) => {
    const r = await download(s.port, `/assets/talos/v1.13.9/amd64/initramfs.xz?m=m-0000000000${String(i).padStart(2, '0')}`)
    times.push(Date.now() - started)
    return r
  }))
  for (const r of results) {
    assert.equal(r.status, 200)
    assert.equal(r.body.length, s.big.length)
    assert.equal(sha(r.body), want)
  }
  assert.equal(s.records.filter((r) => r.data.complete === true).length, 24)
  assert.equal(s.released.length, 24)
  assert.equal(await s.transfers('complete'), 24)
  for (let i = 0; i < 50 && openUnder(s.base) > 0; i++) await new Promise((r) => setTimeout(r, 20))
  assert.equal(openUnder(s.base), 0)
})

test('a client that stops reading is cut after the stall limit; a file that shrinks mid-download ends the connection', async (t) => {
  const s = await setup(t, { bigMiB: 64, stallMs: 300 })
  const port = (s.stallApp!.server.address() as { port: number }).port
  const url = `/assets/talos/v1.13.9/amd64/initramfs.xz?m=${MACHINE}`
  let got = 0
  const start = Date.now()
  const socket = connect(port, '127.0.0.1', () => socket.write(`GET ${url} HTTP/1.1\r\nHost: x\r\n\r\n`))
  socket.once('data', () => socket.pause()) // reads nothing more: the kernel's buffers fill, the server's writes stall
  socket.on('data', (d: Buffer) => (got += d.length))
  socket.on('error', () => undefined)
  const closed = new Promise<void>((resolve) => socket.on('close', resolve))
  // The server gives up on its own (a paused client would never notice; it is let go on below).
  for (let i = 0; i < 500 && s.records.length < 1; i++) await new Promise((r) => setTimeout(r, 20))
  const ms = Date.now() - start
  assert.ok(s.records.length === 1 && ms < 5_000, `cut after ${ms} ms`)
  assert.match(s.records[0]!.message, /cut short after [\d.]+ of 64\.0 MiB .*: the client took nothing for 0\.3 s$/)
  socket.resume()
  await closed
  assert.ok(got < s.big.length, `${got} bytes of ${s.big.length}`)
  assert.equal(await s.transfers('stalled', s.stallRegistry), 1)

  // The file is truncated while a download waits on a paused client: the server cannot keep its Content-Length.
  const shrunk = await new Promise<{ got: number; complete: boolean }>((resolve) => {
    let got = 0
    let total = -1
    const socket = connect(s.port, '127.0.0.1', () => socket.write(`GET ${url} HTTP/1.1\r\nHost: x\r\n\r\n`))
    socket.once('data', () => {
      socket.pause()
      truncateSync(join(s.base, 'talos', 'v1.13.9', 'amd64', 'initramfs.xz'), 2 * 1024 * 1024)
      setTimeout(() => socket.resume(), 100)
    })
    socket.on('data', (d: Buffer) => {
      got += d.length
      const m = /Content-Length: (\d+)/.exec(d.toString('latin1'))
      if (m && total < 0) total = Number(m[1])
    })
    socket.on('error', () => undefined)
    socket.on('close', () => resolve({ got, complete: got >= total }))
    setTimeout(() => socket.destroy(), 15_000).unref()
  })
  assert.equal(shrunk.complete, false)
  for (let i = 0; i < 50 && s.records.length < 2; i++) await new Promise((r) => setTimeout(r, 20))
  assert.match(s.records[1]!.message, /cut short after .*: read error: the file ended at byte \d+ \(shorter than when opened\)$/)
  assert.equal(await s.transfers('failed'), 1)
  assert.ok(s.lines.some((l) => l.level === 40 && /could not be read/.test(l.msg)))
  assert.deepEqual(s.released, [])
})

test('a client gone before the answer starts (while the file was found and opened): done once, the descriptor closed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rb-sender-early-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'f'), randomBytes(4 * 1024 * 1024))
  const results: TransferResult[] = []
  const server = createServer((req, res) => {
    // As the route does: the answer starts after awaits, by which time this client has left.
    req.socket.once('close', async () => {
      const file = (await openAsset(join(dir, 'f')))!
      sendAsset(req, res, file, (r) => results.push(r))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const socket = connect((server.address() as { port: number }).port, '127.0.0.1', () => socket.end('GET /f HTTP/1.1\r\nHost: x\r\n\r\n', () => socket.destroy()))
  socket.on('error', () => undefined)
  for (let i = 0; i < 100 && results.length === 0; i++) await new Promise((r) => setTimeout(r, 20))
  await new Promise((r) => setTimeout(r, 100))
  assert.equal(results.length, 1)
  assert.equal(results[0]!.complete, false)
  assert.equal(results[0]!.failure, 'aborted')
  for (let i = 0; i < 50 && openUnder(dir) > 0; i++) await new Promise((r) => setTimeout(r, 20))
  assert.equal(openUnder(dir), 0)
})
