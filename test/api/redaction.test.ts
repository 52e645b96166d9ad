import { test } from 'node:test'
import assert from 'node:assert/strict'
import { runInNewContext } from 'node:vm'
import { createEventBus } from '../../src/events/bus.js'
import { createApiAuth } from '../../src/http/auth.js'
import { buildApp } from '../../src/http/index.js'
import { REDACTED, redactBootTokens, redactBootTokensDeep, seesBootTokens } from '../../src/http/redact.js'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { attachTimeline, createAllocator, createLifecycle } from '../../src/lifecycle/index.js'
import { silentLogger } from '../../src/log.js'
import { createMetricsRegistry } from '../../src/metrics.js'
import { createKernelLogStore } from '../../src/talos/receivers/index.js'

// Boot tokens are as good as a Talos config while they last. Read-only API users see kernel log lines and timeline
// events that quote them (the kernel command line, Talos's errors about the config fetch) with "[redacted]" in their
// place; provision and admin tokens, which can start installs anyway, see them as they are.

const CONFIG_TOKEN = 'Q7mZk2xR9bVw4nT8pL1sYc6dHf3gJa5e'
const AGENT_TOKEN = 'u8Kx2PqLw9Zr4Tb7Nm1Vc5Yd3Hs6Fg0j'
const CMDLINE = `Kernel command line: console=ttyS0 talos.platform=metal talos.config=http://10.0.0.1:8080/talos/config?t=${CONFIG_TOKEN} `
  + `rackboot.token=${AGENT_TOKEN} rackboot.machine=m-0123456789ab`

test('redactBootTokens: config URLs (plain, &t=, percent-encoded) and rackboot.token=, nothing else', () => {
  assert.equal(redactBootTokens(CMDLINE),
    `Kernel command line: console=ttyS0 talos.platform=metal talos.config=http://10.0.0.1:8080/talos/config?t=${REDACTED} `
    + `rackboot.token=${REDACTED} rackboot.machine=m-0123456789ab`)
  assert.equal(redactBootTokens('GET "http://h/talos/config?m=m-1&t=abc_DEF-123": connection refused'), `GET "http://h/talos/config?m=m-1&t=${REDACTED}": connection refused`)
  assert.equal(redactBootTokens('url=http%3A%2F%2Fh%2Ftalos%2Fconfig%3Ft%3Dabc123%26x%3D1'), `url=http%3A%2F%2Fh%2Ftalos%2Fconfig%3Ft%3D${REDACTED}%26x%3D1`)
  // Lines without a token come back unchanged, including look-alikes.
  for (const line of ['[talos] task startAndWait (1/1): done', 'at=12 set=3', 'xrackboot.token=abc', '?t= empty', 'rackboot.machine=m-1']) {
    assert.equal(redactBootTokens(line), line)
  }
})

test('redactBootTokens runs in linear time on hostile input', () => {
  // Near-misses by the hundred thousand: a backtracking pattern would take minutes; this one a few ms. Run under a
  // vm timeout, which interrupts a regular expression, so a slow pattern fails the test instead of hanging it.
  for (const hostile of ['?t'.repeat(200_000), 'rackboot.token'.repeat(30_000) + '=', '%3Ft%3'.repeat(60_000), '?t=' + 'a'.repeat(400_000) + '!']) {
    assert.doesNotThrow(() => runInNewContext('redact(text)', { redact: redactBootTokens, text: hostile }, { timeout: 500 }), hostile.slice(0, 20))
  }
})

test('redactBootTokensDeep: every string, and fields named for a token, in nested event data', () => {
  const data = { clientIp: '10.0.0.7', token: 'anything-at-all', nested: [{ error: `fetch http://h/talos/config?t=${CONFIG_TOKEN}: 403` }], n: 3, ok: true, none: null }
  assert.deepEqual(redactBootTokensDeep(data), { clientIp: '10.0.0.7', token: REDACTED, nested: [{ error: `fetch http://h/talos/config?t=${REDACTED}: 403` }], n: 3, ok: true, none: null })
  assert.equal(seesBootTokens({ scopes: ['read'] }), false)
  assert.equal(seesBootTokens({ scopes: ['provision'] }), true)
  assert.equal(seesBootTokens({ scopes: ['admin'] }), true)
  assert.equal(seesBootTokens(undefined), false)
})

test('kernel log and timeline: a read token sees [redacted], a provision token the tokens', async (t) => {
  const inventory = await openSqliteInventory({ file: ':memory:' })
  const log = silentLogger()
  const bus = createEventBus()
  const timeline = attachTimeline({ inventory, bus, log })
  const lifecycle = createLifecycle({ inventory, bus, log })
  const registry = createMetricsRegistry()
  const allocator = createAllocator({ inventory, lifecycle, log, registry, power: null, powerWaitMs: 2_000 })
  const auth = createApiAuth({ tokens: inventory.tokens, cacheMs: 0, registry })
  const store = createKernelLogStore()
  const app = await buildApp({
    inventory, lifecycle, registry, log, version: 'test',
    api: { allocator, auth, bus, flushTimeline: timeline.flush, kernelLogs: { store, peersOf: async () => ['10.0.0.7'] } },
  })
  t.after(async () => {
    await app.close()
    await timeline.flush()
    timeline.detach()
    await inventory.close()
  })
  const now = Date.now()
  const bearer = async (scope: 'read' | 'provision' | 'admin') =>
    ({ authorization: `Bearer ${(await inventory.tokens.create({ name: scope, scopes: [scope] }, now)).secret}` })
  const read = await bearer('read')
  const provision = await bearer('provision')
  const admin = await bearer('admin')

  const m = await inventory.machines.create({ name: 'n1' }, now)
  store.append('10.0.0.7', { receivedAt: now, msg: CMDLINE }, 'tcp')
  store.append('10.0.0.7', { receivedAt: now, msg: '[talos] installing Talos' }, 'tcp')
  lifecycle.record(m.id, 'boot.talos', `Talos ConfigLoadErrorEvent: {"error":"GET http://10.0.0.1:8080/talos/config?t=${CONFIG_TOKEN}: 403"}`, {
    type: 'machine.ConfigLoadErrorEvent', data: { error: `GET http://10.0.0.1:8080/talos/config?t=${CONFIG_TOKEN}: 403` },
  })
  await timeline.flush()

  const logs = async (headers: Record<string, string>) => {
    const r = await app.inject({ url: `/api/v1/machines/${m.id}/logs`, headers })
    assert.equal(r.statusCode, 200, r.body)
    return r.body
  }
  const detail = async (headers: Record<string, string>) => {
    const r = await app.inject({ url: `/api/v1/machines/${m.id}`, headers })
    assert.equal(r.statusCode, 200, r.body)
    return r.body
  }

  const readLogs = await logs(read)
  assert.ok(!readLogs.includes(CONFIG_TOKEN) && !readLogs.includes(AGENT_TOKEN), readLogs)
  const lines = (JSON.parse(readLogs) as { lines: { msg: string }[] }).lines.map((l) => l.msg)
  assert.deepEqual(lines, [redactBootTokens(CMDLINE), '[talos] installing Talos'])
  const readDetail = await detail(read)
  assert.ok(!readDetail.includes(CONFIG_TOKEN), readDetail)
  assert.match(readDetail, /config\?t=\[redacted\]: 403/)

  for (const headers of [provision, admin]) {
    const body = await logs(headers)
    assert.ok(body.includes(CONFIG_TOKEN) && body.includes(AGENT_TOKEN), body)
    assert.ok((await detail(headers)).includes(CONFIG_TOKEN))
  }
})
