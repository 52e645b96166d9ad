import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { healthcheckCommand, healthcheckUrl } from '../../src/cli/healthcheck.js'
import { rackbootAsync, tempCwd } from '../support/cli.js'

// `rackboot healthcheck`: the container health check, with the address and port from the settings.

async function listen(t: TestContext, handler: (reply: (status: number, body: unknown) => void) => void): Promise<number> {
  const server: Server = createServer((req, res) => {
    assert.equal(req.url, '/healthz')
    handler((status, body) => {
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(JSON.stringify(body))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return (server.address() as AddressInfo).port
}

function settingsFile(http: { port: number; listen?: string }): string {
  const dir = mkdtempSync(join(tmpdir(), 'rb-health-'))
  const file = join(dir, 'rackboot.yaml')
  writeFileSync(file, `http:\n  port: ${http.port}\n  listen: "${http.listen ?? '0.0.0.0'}"\n`)
  return file
}

/** Runs the command with console output captured. */
async function check(t: TestContext, options: Parameters<typeof healthcheckCommand>[0]): Promise<{ code: number; out: string; err: string }> {
  let out = ''
  let err = ''
  t.mock.method(console, 'log', (...a: unknown[]) => void (out += `${a.join(' ')}\n`))
  t.mock.method(console, 'error', (...a: unknown[]) => void (err += `${a.join(' ')}\n`))
  try {
    return { code: await healthcheckCommand(options), out, err }
  } finally {
    t.mock.restoreAll()
  }
}

test('the URL follows http.listen: loopback for a wildcard, the address itself otherwise, IPv6 in brackets', () => {
  assert.equal(healthcheckUrl('0.0.0.0', 8080), 'http://127.0.0.1:8080/healthz')
  assert.equal(healthcheckUrl('', 9000), 'http://127.0.0.1:9000/healthz')
  assert.equal(healthcheckUrl('::', 8080), 'http://[::1]:8080/healthz')
  assert.equal(healthcheckUrl('10.20.0.5', 8081), 'http://10.20.0.5:8081/healthz')
  assert.equal(healthcheckUrl('fd00::5', 8080), 'http://[fd00::5]:8080/healthz')
  assert.equal(healthcheckUrl('localhost', 8080), 'http://localhost:8080/healthz')
})

test('healthy (0) on 200, ok or degraded (the warnings are printed); the port comes from the settings file', async (t) => {
  let body: unknown = { status: 'ok', checks: { database: 'ok', tftp: 'ok' } }
  const port = await listen(t, (reply) => reply(200, body))
  const file = settingsFile({ port })
  const ok = await check(t, { config: file })
  assert.equal(ok.code, 0, ok.err)
  assert.match(ok.out, new RegExp(`healthy: http://127\\.0\\.0\\.1:${port}/healthz says ok`))
  body = { status: 'degraded', checks: { database: 'ok' }, warnings: ['iPXE loaders missing (ipxe/undionly.kpxe): run rackboot assets fetch ipxe'] }
  const degraded = await check(t, { config: file })
  assert.equal(degraded.code, 0)
  assert.match(degraded.out, /says degraded\n {2}iPXE loaders missing/)
})

test('--set wins over the file, as for serve', async (t) => {
  const port = await listen(t, (reply) => reply(200, { status: 'ok', checks: {} }))
  const r = await check(t, { config: settingsFile({ port: 1 }), set: [`http.port=${port}`, 'http.listen=127.0.0.1'] })
  assert.equal(r.code, 0, r.err)
})

test('unhealthy (1) on 503, with the failing checks named', async (t) => {
  const port = await listen(t, (reply) => reply(503, { status: 'degraded', checks: { database: 'failing: SQLITE_BUSY', tftp: 'down', dhcp: 'ok' } }))
  const r = await check(t, { config: settingsFile({ port, listen: '127.0.0.1' }) })
  assert.equal(r.code, 1)
  assert.match(r.err, /unhealthy: http:\/\/127\.0\.0\.1:\d+\/healthz answered HTTP 503: database: failing: SQLITE_BUSY; tftp: down/)
})

test('unhealthy (1) when nothing listens, or nothing answers in time', async (t) => {
  const closed = createServer()
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
  const freePort = (closed.address() as AddressInfo).port
  await new Promise<void>((resolve) => closed.close(() => resolve()))
  const refused = await check(t, { config: settingsFile({ port: freePort }) })
  assert.equal(refused.code, 1)
  assert.match(refused.err, /unhealthy: http:\/\/127\.0\.0\.1:\d+\/healthz: ECONNREFUSED/)

  const port = await listen(t, () => {}) // never answers
  const started = Date.now()
  const slow = await check(t, { config: settingsFile({ port }), timeoutMs: 300 })
  assert.equal(slow.code, 1)
  assert.match(slow.err, /no answer within 300 ms/)
  assert.ok(Date.now() - started < 5000)
})

test('bad settings and port 0 are unhealthy (1), never 2 (which Docker reserves)', async (t) => {
  const bad = await check(t, { config: settingsFile({ port: 70000 }) })
  assert.equal(bad.code, 1)
  assert.match(bad.err, /unhealthy: cannot read the settings: .*http\.port/)
  const missing = await check(t, { config: '/nonexistent/rackboot.yaml' })
  assert.equal(missing.code, 1)
  const zero = await check(t, { config: settingsFile({ port: 0 }) })
  assert.equal(zero.code, 1)
  assert.match(zero.err, /http\.port is 0/)
})

test('`rackboot healthcheck` is a command of the CLI, reading RACKBOOT_HTTP_PORT as serve does', async (t) => {
  const port = await listen(t, (reply) => reply(200, { status: 'ok', checks: {} }))
  const cwd = tempCwd()
  const up = await rackbootAsync(['healthcheck'], { cwd, env: { RACKBOOT_HTTP_PORT: String(port), RACKBOOT_HTTP_LISTEN: '127.0.0.1' } })
  assert.equal(up.code, 0, up.stderr)
  assert.match(up.stdout, /healthy/)
  const down = await rackbootAsync(['healthcheck'], { cwd, env: { RACKBOOT_HTTP_PORT: '1', RACKBOOT_HTTP_LISTEN: '127.0.0.1' } })
  assert.equal(down.code, 1)
  assert.match(down.stderr, /unhealthy: .*:1\/healthz: ECONNREFUSED/)
})
