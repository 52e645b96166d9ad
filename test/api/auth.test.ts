import assert from 'node:assert/strict'
import { apiSetup, eachBackend, type Scope } from './support/app.js'

const RANK: Record<string, number> = { read: 1, provision: 2, admin: 3 }

/** A concrete request for an operation of the document: path parameters filled, a body where one is required. */
function requestFor(path: string, method: string) {
  const url = path.replace('{id}', path.startsWith('/api/v1/allocations') ? 'a-000000000' : 'm-nosuchmachine').replace('{name}', 'nosuch')
  const payload = method === 'post' || method === 'put' || method === 'patch' ? {} : undefined
  return { method: method.toUpperCase() as 'GET', url, ...(payload ? { payload } : {}) }
}

eachBackend('every API route: 401 without a valid token, 403 with too small a scope, through with enough (scopes nest)', async (t, backend) => {
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  const doc = (await s.app.inject({ url: '/api/v1/openapi.json' })).json()
  let checked = 0
  for (const [path, item] of Object.entries<any>(doc.paths)) {
    for (const [method, op] of Object.entries<any>(item)) {
      const needed: string = op.security?.[0]?.bearer?.[0] ?? 'public'
      const req = requestFor(path, method)
      const label = `${method.toUpperCase()} ${path}`
      if (needed === 'public') {
        assert.equal((await s.app.inject(req)).statusCode, 200, label)
        continue
      }
      const none = await s.app.inject(req)
      assert.equal(none.statusCode, 401, label)
      assert.equal(none.json().error, 'RB_ERR_UNAUTHORIZED', label)
      assert.match(String(none.headers['www-authenticate']), /^Bearer realm="rackboot"/, label)
      for (const bad of ['Bearer rbk_not-a-real-token', 'Basic dXNlcjpwYXNz', 'Bearer']) {
        const r = await s.app.inject({ ...req, headers: { authorization: bad } })
        assert.equal(r.statusCode, 401, `${label} with '${bad}'`)
      }
      for (const scope of ['read', 'provision', 'admin'] as Scope[]) {
        if (path === '/api/v1/events' && RANK[scope]! >= RANK[needed]!) continue // a stream: tested over sockets
        const r = await s.app.inject({ ...req, headers: s.auth(scope) })
        if (RANK[scope]! < RANK[needed]!) {
          assert.equal(r.statusCode, 403, `${label} as ${scope}: ${r.body}`)
          assert.deepEqual(r.json().details, { required: needed, granted: [scope] })
          assert.match(String(r.headers['www-authenticate']), new RegExp(`insufficient_scope", scope="${needed}"`))
        } else {
          assert.ok(![401, 403].includes(r.statusCode), `${label} as ${scope}: ${r.statusCode} ${r.body}`)
          assert.ok(r.statusCode < 500, `${label} as ${scope}: ${r.statusCode} ${r.body}`)
        }
      }
      checked++
    }
  }
  assert.ok(checked >= 25, `checked ${checked} operations`)
})

eachBackend('revoked and expired tokens are refused; use is recorded; refusals are counted', async (t, backend) => {
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  const now = Date.now()
  const { secret } = await s.inventory.tokens.create({ name: 'short', scopes: ['read'], expiresAt: now + 60_000 }, now)
  const auth = { authorization: `Bearer ${secret}` }
  const who = await s.app.inject({ url: '/api/v1/whoami', headers: auth })
  assert.equal(who.statusCode, 200)
  assert.equal(who.json().name, 'short')
  assert.deepEqual(who.json().scopes, ['read'])
  assert.equal(who.json().expiresAt, new Date(now + 60_000).toISOString())
  assert.ok((await s.inventory.tokens.list()).find((t) => t.name === 'short')?.lastUsedAt, 'use is recorded')
  await s.inventory.tokens.revoke('short', Date.now())
  assert.equal((await s.app.inject({ url: '/api/v1/whoami', headers: auth })).statusCode, 401)

  const old = await s.inventory.tokens.create({ name: 'old', scopes: ['admin'], expiresAt: now - 1 }, now - 10)
  assert.equal((await s.app.inject({ url: '/api/v1/whoami', headers: { authorization: `Bearer ${old.secret}` } })).statusCode, 401)

  // Metrics count the refusals.
  const metrics = await s.registry.getSingleMetricAsString('rackboot_api_auth_denied_total')
  assert.match(metrics, /reason="invalid"} [1-9]/)
})

eachBackend('with the verification cache, a revoked token keeps working at most the cache time', async (t, backend) => {
  const s = await apiSetup({ backend, tokenCacheMs: 60_000 })
  t.after(() => s.close())
  const now = Date.now()
  const { secret } = await s.inventory.tokens.create({ name: 'cached', scopes: ['read'] }, now)
  const auth = { authorization: `Bearer ${secret}` }
  assert.equal((await s.app.inject({ url: '/api/v1/whoami', headers: auth })).statusCode, 200)
  const used = (await s.inventory.tokens.list()).find((t) => t.name === 'cached')!.lastUsedAt
  await s.inventory.tokens.revoke('cached', Date.now())
  // Within the cache time: still accepted, and no database write per request.
  assert.equal((await s.app.inject({ url: '/api/v1/whoami', headers: auth })).statusCode, 200)
  assert.equal((await s.inventory.tokens.list()).find((t) => t.name === 'cached')!.lastUsedAt, used)
})
