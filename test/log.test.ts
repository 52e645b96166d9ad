import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { RackbootError, NotFoundError } from '../src/errors.js'
import { buildApp } from '../src/http/index.js'
import type { Inventory } from '../src/inventory/index.js'
import type { Lifecycle } from '../src/lifecycle/index.js'
import { chooseLogFormat, createLogger, prettyStream, type Logger } from '../src/log.js'
import { createMetricsRegistry } from '../src/metrics.js'
import { startServe, tempCwd } from './support/cli.js'

// Issue 17, "Logs": readable lines on a terminal, JSON anywhere else; an access log at debug only; a user's mistake
// at warn without a stack, our own failures at error with one.

/** A destination that keeps what it is given; `isTTY` makes it look like a terminal to createLogger. */
function sink(isTTY?: boolean) {
  const chunks: string[] = []
  const stream = new Writable({ write(chunk, _enc, cb) { chunks.push(String(chunk)); cb() } })
  if (isTTY !== undefined) Object.assign(stream, { isTTY })
  return { stream, text: () => chunks.join(''), lines: () => chunks.join('').split('\n').filter(Boolean) }
}

test('log format: auto is pretty on a terminal and JSON elsewhere; json and pretty are kept as asked', () => {
  assert.equal(chooseLogFormat('auto', true), 'pretty')
  assert.equal(chooseLogFormat(undefined, true), 'pretty')
  assert.equal(chooseLogFormat('auto', false), 'json')
  assert.equal(chooseLogFormat('auto', undefined), 'json')
  assert.equal(chooseLogFormat('json', true), 'json')
  assert.equal(chooseLogFormat('pretty', false), 'pretty')
})

test('the pretty stream writes one human line: time, level, service and message, the rest inline, secrets redacted', () => {
  const out = sink()
  const log = createLogger({ format: 'pretty', destination: out.stream })
  // prettyStream itself, without colours, for an exact line.
  const plain = sink()
  const direct = prettyStream(plain.stream, { colorize: false })
  direct.write(JSON.stringify({ level: 30, time: Date.UTC(2026, 0, 2, 3, 4, 5, 6), pid: 1, hostname: 'h', svc: 'lifecycle', machineId: 'm-1', msg: 'machine state changed' }) + '\n')
  assert.match(plain.text(), /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: lifecycle: machine state changed \{"machineId":"m-1"\}\n$/)

  log.child({ svc: 'http' }).warn({ token: 'rbk_secret', code: 'RB_ERR_NOT_FOUND' }, 'machine not found: r12-u02')
  const text = out.text().replace(/\x1b\[[0-9;]*m/g, '')
  assert.equal(out.lines().length, 1, text)
  assert.match(text, /^\[\d\d:\d\d:\d\d\.\d{3}\] WARN: http: machine not found: r12-u02 \{.*"code":"RB_ERR_NOT_FOUND".*\}\n$/)
  assert.doesNotMatch(text, /rbk_secret|"pid"|hostname|^\{/)
})

test('createLogger: pretty on a terminal destination, JSON on anything else or when json is asked for', () => {
  const tty = sink(true)
  createLogger({ destination: tty.stream }).info('on a terminal')
  assert.doesNotMatch(tty.text(), /^\{/)
  assert.match(tty.text(), /INFO.*on a terminal/)

  const pipe = sink(false)
  createLogger({ destination: pipe.stream }).info('in a pipe')
  assert.equal(JSON.parse(pipe.lines()[0]!).msg, 'in a pipe')

  const forced = sink(true)
  createLogger({ destination: forced.stream, format: 'json' }).info('json asked for')
  assert.equal(JSON.parse(forced.lines()[0]!).msg, 'json asked for')
})

/** The real app on a logger writing JSON lines we can read; a few extra routes that fail the ways handlers do. */
async function appWithLog(level: string) {
  const out = sink()
  const log: Logger = createLogger({ level, destination: out.stream })
  const inventory = { machines: { count: async () => 0 } } as unknown as Inventory
  const app = await buildApp({ inventory, lifecycle: { record() {} } as unknown as Lifecycle, registry: createMetricsRegistry(), log, version: 'test' })
  app.get('/t/unknown-machine', async () => { throw new NotFoundError('machine', 'r12-u02') })
  app.get('/t/conflict', async () => { throw new RackbootError('RB_ERR_INVALID_TRANSITION', 'machine m-1 cannot go from new to deployed') })
  app.get('/t/no-token', async () => { throw new RackbootError('RB_ERR_UNAUTHORIZED', 'the API token is unknown, revoked or expired') })
  app.get('/t/bmc', async () => { throw new RackbootError('RB_ERR_BMC', 'BMC 192.0.2.10 did not answer') })
  app.get('/t/storage', async () => { throw new RackbootError('RB_ERR_STORAGE', 'database is locked') })
  app.get('/t/bug', async () => { throw new TypeError("cannot read properties of undefined (reading 'id')") })
  app.get('/t/validated', { schema: { querystring: { type: 'object', properties: { n: { type: 'integer' } } } } }, async () => 'ok')
  return { app, entries: () => out.lines().map((l) => JSON.parse(l) as Record<string, unknown>) }
}

test('errors: a user mistake is one warn line with code and message, no stack; our failures are errors with the stack', async (t) => {
  const { app, entries } = await appWithLog('info')
  t.after(() => app.close())
  const status = async (url: string) => (await app.inject({ method: 'GET', url })).statusCode
  assert.equal(await status('/t/unknown-machine?t=config-secret'), 404)
  assert.equal(await status('/t/conflict'), 409)
  assert.equal(await status('/t/validated?n=many'), 400)
  assert.equal(await status('/t/bmc'), 502)
  assert.equal(await status('/t/no-token'), 401)
  assert.equal(await status('/t/storage'), 500)
  assert.equal(await status('/t/bug'), 500)

  const by = (url: string) => entries().filter((e) => e.url === url)
  const warned = (url: string, code: string) => {
    const lines = by(url)
    assert.equal(lines.length, 1, `${url}: ${JSON.stringify(entries())}`)
    assert.equal(lines[0]!.level, 40, url)
    assert.equal(lines[0]!.code, code)
    assert.equal(lines[0]!.err, undefined, `${url} logged a stack`)
    assert.doesNotMatch(JSON.stringify(lines[0]), /stack|\n\s+at /)
    return lines[0]!
  }
  assert.equal(warned('/t/unknown-machine', 'RB_ERR_MACHINE_NOT_FOUND').msg, 'machine not found: r12-u02')
  assert.equal(warned('/t/conflict', 'RB_ERR_INVALID_TRANSITION').status, 409)
  assert.match(String(warned('/t/validated', 'RB_ERR_VALIDATION').msg), /querystring\/n must be integer/)
  warned('/t/bmc', 'RB_ERR_BMC')
  // Refused credentials are below info (anyone can send them, and they are counted instead).
  assert.equal(by('/t/no-token').length, 0)
  for (const [url, text] of [['/t/storage', 'database is locked'], ['/t/bug', 'cannot read properties']] as const) {
    const lines = by(url)
    assert.equal(lines.length, 1, url)
    assert.equal(lines[0]!.level, 50, url)
    const err = lines[0]!.err as { stack?: string }
    assert.match(err.stack ?? '', new RegExp(`${text}[^]*\\n\\s+at `), `${url} without its stack`)
  }
  assert.doesNotMatch(JSON.stringify(entries()), /config-secret/)
})

test('access log: one debug line per request with method, redacted url, status, ms and address; none at info', async (t) => {
  const debug = await appWithLog('debug')
  t.after(() => debug.app.close())
  await debug.app.inject({ method: 'GET', url: '/metrics?t=config-secret-1&x=1&api_token=rbk_abc&rackboot.token=agent-secret' })
  await debug.app.inject({ method: 'GET', url: '/t/no-token' })
  const access = debug.entries().filter((e) => e.level === 20 && typeof e.ms === 'number')
  assert.equal(access.length, 2, JSON.stringify(debug.entries()))
  const [metrics, denied] = access
  assert.equal(metrics!.method, 'GET')
  assert.equal(metrics!.url, '/metrics?t=[redacted]&x=1&api_token=[redacted]&rackboot.token=[redacted]')
  assert.equal(metrics!.status, 200)
  assert.equal(metrics!.remote, '127.0.0.1')
  assert.equal(metrics!.svc, 'http')
  assert.match(String(metrics!.msg), /^GET \/metrics 200 [\d.]+ ms$/)
  assert.equal(denied!.status, 401)
  assert.doesNotMatch(JSON.stringify(debug.entries()), /config-secret|rbk_abc|agent-secret/)

  const info = await appWithLog('info')
  t.after(() => info.app.close())
  await info.app.inject({ method: 'GET', url: '/metrics' })
  assert.deepEqual(info.entries(), [])
})

test('serve: log.format=pretty gives readable lines even in a pipe (auto, the default, gives JSON there)', async (t) => {
  const cwd = tempCwd()
  const port = 20000 + Math.floor(Math.random() * 20000)
  const server = await startServe(['--set', 'log.format=pretty', '--set', `http.port=${port}`, '--set', 'http.listen=127.0.0.1', '--set', 'tftp.port=0', '--set', 'tftp.listen=127.0.0.1', '--set', 'talos.eventsSinkPort=0', '--set', 'talos.kernelLogPort=0'], { cwd })
  t.after(() => server.stop())
  const line = server.output().split('\n').find((l) => l.includes('rackboot is serving'))!
  assert.match(line.replace(/\x1b\[[0-9;]*m/g, ''), /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: rackboot is serving \{"address":"http:\/\/127\.0\.0\.1:\d+"/)
})
