import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { buildApp } from '../../src/http/index.js'
import { canonicalHeaderName } from '../../src/http/canonical-headers.js'
import { createDownloadGate } from '../../src/http/download-gate.js'
import type { Inventory } from '../../src/inventory/index.js'
import type { BootService, Lifecycle } from '../../src/lifecycle/index.js'
import { createMetricsRegistry } from '../../src/metrics.js'

// Issue 19: GRUB 2.06 (grub-core/net/http.c) only understands "Content-Length: " spelled so; Fastify wrote
// "content-length:" and GRUB failed every kernel load with "out of memory". The bytes on the wire are what counts.

/** The response head exactly as sent. */
function head(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(request))
    let got = ''
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => {
      got += d
      const end = got.indexOf('\r\n\r\n')
      if (end >= 0) {
        socket.destroy()
        resolve(got.slice(0, end))
      }
    })
    socket.on('error', reject)
    socket.on('close', () => resolve(got))
  })
}

test('header names go out in their canonical case on assets (GET, HEAD, Range), health and 404 answers', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'rb-hdr-'))
  t.after(() => rmSync(base, { recursive: true, force: true }))
  mkdirSync(join(base, 'agent'), { recursive: true })
  writeFileSync(join(base, 'agent', 'vmlinuz'), Buffer.alloc(4096, 7))
  const app = await buildApp({
    inventory: {} as Inventory, lifecycle: { record() {} } as unknown as Lifecycle, registry: createMetricsRegistry(),
    log: pino({ level: 'silent' }), version: 'test',
    boot: {
      service: {} as BootService, gate: createDownloadGate({ limit: 10, holdMs: 60_000 }), assetsDir: base, publicUrl: '',
      hold: { seconds: 30, maxSeconds: 300 }, agent: { after: 'reboot', kernelArgs: { amd64: [], arm64: [] } },
    },
  })
  t.after(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const ask = (method: string, path: string, extra = '') => head(port, `${method} ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${extra}\r\n`)

  const get = await ask('GET', '/assets/agent/vmlinuz')
  assert.match(get, /^HTTP\/1\.1 200/)
  assert.match(get, /\r\nContent-Length: 4096\r\n/)
  assert.match(get, /\r\nContent-Type: /)
  assert.match(get, /\r\nETag: /)
  assert.doesNotMatch(get, /\r\n[a-z][a-z-]*:/, 'no lowercase header name left')

  const headOnly = await ask('HEAD', '/assets/agent/vmlinuz')
  assert.match(headOnly, /\r\nContent-Length: 4096\r\n/)

  const range = await ask('GET', '/assets/agent/vmlinuz', 'Range: bytes=0-99\r\n')
  assert.match(range, /^HTTP\/1\.1 206/)
  assert.match(range, /\r\nContent-Length: 100\r\n/)
  assert.match(range, /\r\nContent-Range: bytes 0-99\/4096\r\n/)

  for (const path of ['/healthz', '/no-such-route']) {
    const h = await ask('GET', path)
    assert.match(h, /\r\nContent-Length: \d+\r\n/, path)
    assert.doesNotMatch(h, /\r\n[a-z][a-z-]*:/, path)
  }
})

test('canonical names: each word capitalised, the irregular ones as the RFCs spell them', () => {
  assert.equal(canonicalHeaderName('content-length'), 'Content-Length')
  assert.equal(canonicalHeaderName('CONTENT-TYPE'), 'Content-Type')
  assert.equal(canonicalHeaderName('etag'), 'ETag')
  assert.equal(canonicalHeaderName('www-authenticate'), 'WWW-Authenticate')
  assert.equal(canonicalHeaderName('x-request-id'), 'X-Request-Id')
})
