import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildApp, type HttpLimits } from '../../src/http/index.js'
import { createDownloadGate } from '../../src/http/download-gate.js'
import type { Inventory } from '../../src/inventory/index.js'
import type { BootService, Lifecycle } from '../../src/lifecycle/index.js'
import { silentLogger } from '../../src/log.js'
import { createMetricsRegistry } from '../../src/metrics.js'

// Issue 13: idle or trickling connections must not take every file descriptor. The app here is the real one
// (buildApp, listening on loopback); the routes used (/metrics, /assets) need no inventory.

async function listening(t: { after(fn: () => Promise<void>): void }, limits: HttpLimits, assetsDir?: string) {
  const registry = createMetricsRegistry()
  const lifecycle = { record() {} } as unknown as Lifecycle
  const app = await buildApp({
    inventory: {} as Inventory, lifecycle, registry, log: silentLogger(), version: 'test', limits,
    ...(assetsDir ? {
      boot: {
        service: {} as BootService, gate: createDownloadGate({ limit: 10, holdMs: 60_000 }), assetsDir, publicUrl: '',
        hold: { seconds: 30, maxSeconds: 300 }, agent: { after: 'reboot' as const, kernelArgs: { amd64: [], arm64: [] } },
      },
    } : {}),
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as { port: number }).port
  // Clients first: the server's close waits for connections that never sent a request.
  const sockets: Socket[] = []
  t.after(async () => {
    for (const s of sockets) s.destroy()
    await app.close()
  })
  const metric = async (name: string, labels = '') => {
    const text = await registry.getSingleMetricAsString(name)
    const m = new RegExp(`^${name}${labels.replace(/[{}]/g, '\\$&')} (\\d+)$`, 'm').exec(text)
    return m ? Number(m[1]) : 0
  }
  /** An idle TCP connection from `localAddress`; `closed` resolves when the server closes or resets it. */
  const idle = (localAddress: string) => idleConnection(port, localAddress, sockets)
  return { app, port, metric, idle, sockets }
}

function idleConnection(port: number, localAddress: string, sockets: Socket[]): Promise<{ socket: Socket; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1', localAddress })
    sockets.push(socket)
    const closed = new Promise<void>((r) => socket.once('close', () => r()))
    socket.on('error', () => {}) // ECONNRESET from a refused connection: seen through `closed`
    socket.once('connect', () => resolve({ socket, closed }))
    socket.once('error', reject)
  })
}

function get(port: number, path: string, localAddress: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, localAddress, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms))

test('one address holding 200 idle connections gets 64; the rest are reset at once and counted; other addresses are served', async (t) => {
  // headersTimeoutMs long enough that no idle connection is cut during the test.
  const { port, metric, idle } = await listening(t, { maxConnectionsPerAddress: 64, headersTimeoutMs: 60_000 })
  const conns = await Promise.all(Array.from({ length: 200 }, () => idle('127.0.0.1')))
  let closed = 0
  for (const c of conns) void c.closed.then(() => closed++)
  for (let waited = 0; closed < 136 && waited < 5_000; waited += 20) await settle(20)
  await settle(200)
  assert.equal(closed, 136, 'connections past the per-address cap are closed, the first 64 stay')
  assert.equal(await metric('rackboot_http_connections_refused_total', '{reason="per-address"}'), 136)
  assert.equal(await metric('rackboot_http_connections_open'), 64)

  // Another client is not affected...
  const other = await get(port, '/metrics', '127.0.0.2')
  assert.equal(other.status, 200)
  assert.match(other.body, /rackboot_http_connections_refused_total\{reason="per-address"\} 136/)
  // ...while the flooding address cannot get one more.
  await assert.rejects(get(port, '/metrics', '127.0.0.1'), /ECONNRESET|socket hang up/)

  // Its slots come back as its connections close.
  for (const c of conns) c.socket.destroy()
  for (let waited = 0; (await metric('rackboot_http_connections_open')) > 0 && waited < 5_000; waited += 20) await settle(20)
  assert.equal((await get(port, '/metrics', '127.0.0.1')).status, 200)
})

test('past the total cap a new connection from any address is dropped and counted', async (t) => {
  const { port, metric, idle } = await listening(t, { maxConnections: 10, headersTimeoutMs: 60_000 })
  const held = await Promise.all(Array.from({ length: 10 }, (_, i) => idle(`127.0.0.${10 + i}`)))
  const late = await idle('127.0.0.30')
  const dropped = await Promise.race([late.closed.then(() => true), settle(3_000).then(() => false)])
  assert.ok(dropped, 'the connection past the total cap was closed')
  assert.equal(await metric('rackboot_http_connections_refused_total', '{reason="total"}'), 1)
  held[0]!.socket.destroy()
  await held[0]!.closed
  for (let waited = 0; (await metric('rackboot_http_connections_open')) > 9 && waited < 5_000; waited += 20) await settle(20)
  assert.equal((await get(port, '/metrics', '127.0.0.31')).status, 200)
})

test('a client trickling its request head is cut off after headersTimeoutMs, and counted', async (t) => {
  const { port, metric, sockets } = await listening(t, { headersTimeoutMs: 300 })
  const socket = connect({ port, host: '127.0.0.1' })
  sockets.push(socket)
  let answer = ''
  socket.setEncoding('latin1')
  socket.on('data', (d: string) => (answer += d))
  socket.on('error', () => {})
  const closed = new Promise<void>((r) => socket.once('close', () => r()))
  await new Promise<void>((r) => socket.once('connect', () => r()))
  const started = Date.now()
  socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\n')
  // One header line every 100 ms: each byte is in time, the head never completes.
  const trickle = setInterval(() => socket.writable && socket.write(`X-Slow-${Date.now()}: 1\r\n`), 100)
  t.after(() => clearInterval(trickle))
  await Promise.race([closed, settle(5_000)])
  clearInterval(trickle)
  const took = Date.now() - started
  assert.ok(socket.destroyed, 'the server closed the connection')
  assert.ok(took >= 250 && took < 2_000, `cut off after ${took} ms`)
  assert.match(answer, /^HTTP\/1\.1 408 /)
  assert.equal(await metric('rackboot_http_request_timeouts_total'), 1)

  // A client that sends its request in time is served.
  const ok = await get(port, '/metrics', '127.0.0.1')
  assert.equal(ok.status, 200)
})

test('a slow download lasting well past the request timeout is not cut', async (t) => {
  const assetsDir = mkdtempSync(join(tmpdir(), 'rb-limits-assets-'))
  t.after(() => rmSync(assetsDir, { recursive: true, force: true }))
  const size = 24 * 1024 * 1024
  writeFileSync(join(assetsDir, 'initramfs.xz'), Buffer.alloc(size, 3))
  const { port } = await listening(t, { headersTimeoutMs: 200, requestTimeoutMs: 400 }, assetsDir)
  const started = Date.now()
  const got = await new Promise<number>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/assets/initramfs.xz', agent: false }, (res) => {
      assert.equal(res.statusCode, 200)
      let bytes = 0
      // About 64 KiB per 5 ms: a bit under two seconds for the file, five times the request timeout.
      res.on('data', (c: Buffer) => {
        bytes += c.length
        res.pause()
        setTimeout(() => res.resume(), 5)
      })
      res.on('end', () => resolve(bytes))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
  const took = Date.now() - started
  assert.equal(got, size)
  assert.ok(took > 1_000, `the download took ${took} ms: too fast to show anything`)
})

test('keep-alive and the reset on peer EOF (GRUB) still work under the caps, and a finished client\'s slot comes back', async (t) => {
  const { port, metric } = await listening(t, { maxConnectionsPerAddress: 1 })
  const socket = connect({ port, host: '127.0.0.1' })
  let got = Buffer.alloc(0)
  let reset = false
  socket.on('data', (d: Buffer) => (got = Buffer.concat([got, d])))
  socket.on('error', (err: NodeJS.ErrnoException) => (reset ||= err.code === 'ECONNRESET'))
  const closed = new Promise<void>((r) => socket.once('close', () => r()))
  await new Promise<void>((r) => socket.once('connect', () => r()))
  /** Sends one request on the connection and waits for its whole response. */
  const exchange = async () => {
    got = Buffer.alloc(0)
    socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n')
    for (let waited = 0; waited < 5_000; waited += 10) {
      const text = got.toString('latin1')
      const head = text.indexOf('\r\n\r\n')
      const len = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? -1)
      if (head >= 0 && got.length - head - 4 === len) return text
      await settle(10)
    }
    throw new Error('no complete response')
  }
  assert.match(await exchange(), /^HTTP\/1\.1 200 /)
  // The same connection serves a second request (the one connection this address may have).
  assert.match(await exchange(), /^HTTP\/1\.1 200 [\s\S]*keep-alive/i)
  socket.end()
  await closed
  assert.equal(reset, true, 'RST, not FIN')
  for (let waited = 0; (await metric('rackboot_http_connections_open')) > 0 && waited < 5_000; waited += 20) await settle(20)
  assert.equal(await metric('rackboot_http_connections_open'), 0)
  assert.equal((await get(port, '/metrics', '127.0.0.1')).status, 200)
})
