import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { buildApp } from '../../src/http/index.js'
import { assetRelativePath } from '../../src/http/plugins/assets.js'
import { createDownloadGate } from '../../src/http/download-gate.js'
import type { Inventory } from '../../src/inventory/index.js'
import type { BootService, Lifecycle } from '../../src/lifecycle/index.js'
import { createMetricsRegistry } from '../../src/metrics.js'

// Issue 13: /assets must serve nothing outside the assets directory, as TFTP does: a symlink that leads out (or a
// `..` or an encoded slash) gets 404; links that stay inside still work.

async function setup(t: { after(fn: () => Promise<void> | void): void }) {
  const base = mkdtempSync(join(tmpdir(), 'rb-assets-root-'))
  t.after(() => rmSync(base, { recursive: true, force: true }))
  const assetsDir = join(base, 'assets')
  mkdirSync(join(assetsDir, 'agent'), { recursive: true })
  writeFileSync(join(assetsDir, 'agent', 'vmlinuz'), 'agent kernel')
  mkdirSync(join(base, 'outside'))
  writeFileSync(join(base, 'outside', 'secret.txt'), 'SECRET')
  // Out of the root: a file link, a directory link, an absolute link.
  symlinkSync('../outside/secret.txt', join(assetsDir, 'escape'))
  symlinkSync('../outside', join(assetsDir, 'escdir'))
  symlinkSync(join(base, 'outside', 'secret.txt'), join(assetsDir, 'abs'))
  // Inside the root: a versioned directory and a file alias, as an operator would make them.
  symlinkSync('agent', join(assetsDir, 'current'))
  symlinkSync('agent/vmlinuz', join(assetsDir, 'kernel'))

  const lines: { level: number; msg: string; path?: string }[] = []
  const log = pino({ level: 'warn' }, { write: (s: string) => void lines.push(JSON.parse(s)) })
  const registry = createMetricsRegistry()
  const app = await buildApp({
    inventory: {} as Inventory, lifecycle: { record() {} } as unknown as Lifecycle, registry, log, version: 'test',
    boot: {
      service: {} as BootService, gate: createDownloadGate({ limit: 10, holdMs: 60_000 }), assetsDir, publicUrl: '',
      hold: { seconds: 30, maxSeconds: 300 }, agent: { after: 'reboot', kernelArgs: { amd64: [], arm64: [] } },
    },
  })
  t.after(() => app.close())
  const refused = async (reason: string) =>
    Number(new RegExp(`reason="${reason}"} (\\d+)`).exec(await registry.getSingleMetricAsString('rackboot_http_assets_refused_total'))?.[1] ?? 0)
  return { app, base, assetsDir, lines, refused }
}

test('a symlink out of the assets directory gives 404 (counted, warned once); links that stay inside are served', async (t) => {
  const s = await setup(t)
  const ok = await s.app.inject({ url: '/assets/agent/vmlinuz' })
  assert.equal(ok.statusCode, 200)
  assert.equal(ok.body, 'agent kernel')
  for (const url of ['/assets/current/vmlinuz', '/assets/kernel']) {
    const res = await s.app.inject({ url })
    assert.equal(res.statusCode, 200, url)
    assert.equal(res.body, 'agent kernel', url)
  }
  assert.equal((await s.app.inject({ method: 'HEAD', url: '/assets/kernel' })).headers['content-length'], '12')

  const out = ['/assets/escape', '/assets/escdir/secret.txt', '/assets/abs', '/assets/escape?m=m-000000000001']
  for (const url of out) {
    const res = await s.app.inject({ url })
    assert.equal(res.statusCode, 404, url)
    assert.doesNotMatch(res.body, /SECRET/, url)
  }
  assert.equal(await s.refused('outside-root'), out.length)
  // One warning per path, however often it is asked for.
  const warnings = s.lines.filter((l) => l.level === 40 && /out of the assets directory/.test(l.msg))
  assert.deepEqual(warnings.map((l) => l.path).sort(), ['abs', 'escape', 'escdir/secret.txt'])
})

/** A request with exactly this path on the wire (inject, like browsers, would resolve the dots first). */
function raw(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`))
    let got = ''
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => (got += d))
    socket.on('error', reject)
    socket.on('close', () => {
      const status = Number(/^HTTP\/1\.1 (\d+)/.exec(got)?.[1] ?? 0)
      resolve({ status, body: got.slice(got.indexOf('\r\n\r\n') + 4) })
    })
  })
}

test('`..`, encoded dots and slashes, backslashes and dot files never reach a file', async (t) => {
  const s = await setup(t)
  await s.app.listen({ host: '127.0.0.1', port: 0 })
  const port = (s.app.server.address() as { port: number }).port
  const urls = [
    '/assets/../outside/secret.txt', '/assets/%2e%2e/outside/secret.txt', '/assets/agent/%2e%2e/%2e%2e/outside/secret.txt',
    '/assets/..%2foutside%2fsecret.txt', '/assets/agent%2f..%2f..%2foutside%2fsecret.txt', '/assets/agent%2fvmlinuz',
    '/assets/..%5coutside%5csecret.txt', '/assets/.hidden', '/assets/agent/%00', '/assets/', '/assets/agent',
  ]
  writeFileSync(join(s.assetsDir, '.hidden'), 'HIDDEN-CONTENT')
  for (const url of urls) {
    const res = await raw(port, url)
    assert.equal(res.status, 404, `${url} -> ${res.status}`)
    assert.doesNotMatch(res.body, /SECRET|HIDDEN-CONTENT/, url)
  }
  assert.equal(await s.refused('bad-path'), urls.length - 1) // /assets/agent is a directory: found, not served
  // fastify answers a malformed escape 400 before routing; the route refuses it too.
  assert.equal(assetRelativePath('%E0%A4%A'), null)
  assert.equal(assetRelativePath('agent//./vmlinuz'), 'agent/vmlinuz')
  assert.equal(assetRelativePath('agent/vmlinuz%20x'), 'agent/vmlinuz x')
})

test('a link re-pointed out of the root is never followed: the checked file until the cache expires, then 404', async (t) => {
  const s = await setup(t)
  assert.equal((await s.app.inject({ url: '/assets/kernel' })).body, 'agent kernel')
  unlinkSync(join(s.assetsDir, 'kernel'))
  symlinkSync('../outside/secret.txt', join(s.assetsDir, 'kernel'))
  const cached = await s.app.inject({ url: '/assets/kernel' })
  assert.doesNotMatch(cached.body, /SECRET/)
  await new Promise((r) => setTimeout(r, 1_100))
  const after = await s.app.inject({ url: '/assets/kernel' })
  assert.equal(after.statusCode, 404)
  assert.doesNotMatch(after.body, /SECRET/)
})
