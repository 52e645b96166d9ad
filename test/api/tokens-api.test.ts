// API tokens through the API: list (never secrets or hashes), create (secret once), revoke by id or name, admin only.
import assert from 'node:assert/strict'
import { apiSetup, eachBackend } from './support/app.js'

eachBackend('create answers the secret once; it works at once with its scopes; the list never shows secrets or hashes', async (t, backend) => {
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  const r = await s.app.inject({ method: 'POST', url: '/api/v1/tokens', headers: s.auth('admin'), payload: { name: 'ci-bot', scopes: ['provision'], expiresIn: '30d' } })
  assert.equal(r.statusCode, 201, r.body)
  const made = r.json()
  assert.match(made.secret, /^rbk_[A-Za-z0-9_-]{40}$/)
  assert.match(made.id, /^t-[0-9a-f]+$/)
  assert.equal(r.headers.location, `/api/v1/tokens/${made.id}`)
  assert.deepEqual({ ...made, id: undefined, secret: undefined, createdAt: undefined, expiresAt: undefined }, {
    name: 'ci-bot', scopes: ['provision'], lastUsedAt: null, revokedAt: null, status: 'active', id: undefined, secret: undefined, createdAt: undefined, expiresAt: undefined,
  })
  const days = (Date.parse(made.expiresAt) - Date.parse(made.createdAt)) / 86_400_000
  assert.ok(Math.abs(days - 30) < 0.001, `expires in ${days} days`)

  // The secret works at once, with what its scopes allow.
  const bearer = { authorization: `Bearer ${made.secret}` }
  assert.equal((await s.app.inject({ url: '/api/v1/whoami', headers: bearer })).json().name, 'ci-bot')
  assert.equal((await s.app.inject({ url: '/api/v1/tokens', headers: bearer })).statusCode, 403)

  const list = await s.app.inject({ url: '/api/v1/tokens', headers: s.auth('admin') })
  assert.equal(list.statusCode, 200)
  const items = list.json().items as any[]
  assert.deepEqual(items.map((i) => i.name), ['reader', 'capi', 'root', 'ci-bot'])
  const bot = items.find((i) => i.name === 'ci-bot')
  assert.ok(bot.lastUsedAt, 'use is shown')
  assert.equal(bot.status, 'active')
  for (const i of items) assert.deepEqual(Object.keys(i).sort(), ['createdAt', 'expiresAt', 'id', 'lastUsedAt', 'name', 'revokedAt', 'scopes', 'status'])
  assert.ok(!list.body.includes(made.secret))
  assert.doesNotMatch(list.body, /rbk_|[0-9a-f]{64}/, 'no secret, no hash')

  // Seconds as a number too; no expiry when left out.
  const n = await s.app.inject({ method: 'POST', url: '/api/v1/tokens', headers: s.auth('admin'), payload: { name: 'hourly', scopes: ['read'], expiresIn: 3600 } })
  assert.equal(Date.parse(n.json().expiresAt) - Date.parse(n.json().createdAt), 3_600_000)
  const forever = await s.app.inject({ method: 'POST', url: '/api/v1/tokens', headers: s.auth('admin'), payload: { name: 'forever', scopes: ['read', 'admin'] } })
  assert.equal(forever.json().expiresAt, null)
  assert.deepEqual(forever.json().scopes, ['read', 'admin'])
})

eachBackend('create refuses bad requests: unknown scope, no scope, a taken name, a name like an id, too long a lifetime; only admin may', async (t, backend) => {
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  const post = (payload: object, scope: 'admin' | 'provision' | 'read' = 'admin') => s.app.inject({ method: 'POST', url: '/api/v1/tokens', headers: s.auth(scope), payload })
  for (const [payload, status] of [
    [{ name: 'x', scopes: ['root'] }, 400],
    [{ name: 'x', scopes: [] }, 400],
    [{ name: 'x' }, 400],
    [{ name: 'has space', scopes: ['read'] }, 400],
    [{ name: 'x', scopes: ['read'], expiresIn: 0 }, 400],
    [{ name: 'x', scopes: ['read'], expiresIn: '5y' }, 400],
    [{ name: 'x', scopes: ['read'], expiresIn: '9999d' }, 400],
    [{ name: 'x', scopes: ['read'], secret: 'rbk_mine' }, 400],
    [{ name: 't-0badc0de', scopes: ['read'] }, 400],
    [{ name: 'root', scopes: ['read'] }, 409],
  ] as const) {
    const r = await post(payload)
    assert.equal(r.statusCode, status, `${JSON.stringify(payload)}: ${r.body}`)
  }
  assert.match((await post({ name: 'root', scopes: ['read'] })).json().message, /a token named 'root' already exists/)
  for (const scope of ['read', 'provision'] as const) {
    const r = await post({ name: 'sneaky', scopes: ['admin'] }, scope)
    assert.equal(r.statusCode, 403, scope)
    assert.equal((await s.app.inject({ url: '/api/v1/tokens', headers: s.auth(scope) })).statusCode, 403)
    assert.equal((await s.app.inject({ method: 'DELETE', url: '/api/v1/tokens/root', headers: s.auth(scope) })).statusCode, 403)
  }
  assert.equal((await s.inventory.tokens.list()).length, 3, 'nothing was made')
})

eachBackend('revoke by id or name: refused at once, even with the verification cache; twice changes nothing; a token may revoke itself and is told so', async (t, backend) => {
  // The production cache (5 s): a revocation through the API must not leave the token working that long.
  const s = await apiSetup({ backend, tokenCacheMs: 5_000 })
  t.after(() => s.close())
  const make = async (name: string, scopes: string[]) => (await s.app.inject({ method: 'POST', url: '/api/v1/tokens', headers: s.auth('admin'), payload: { name, scopes } })).json() as { id: string; secret: string }
  const a = await make('alpha', ['read'])
  const b = await make('beta', ['admin'])
  const whoami = (secret: string) => s.app.inject({ url: '/api/v1/whoami', headers: { authorization: `Bearer ${secret}` } })
  assert.equal((await whoami(a.secret)).statusCode, 200) // now cached

  let r = await s.app.inject({ method: 'DELETE', url: '/api/v1/tokens/alpha', headers: s.auth('admin') })
  assert.equal(r.statusCode, 200, r.body)
  assert.deepEqual({ ...(r.json() as object), token: undefined }, { revoked: true, self: false, message: `token ${a.id} (alpha) revoked`, token: undefined })
  assert.equal(r.json().token.status, 'revoked')
  assert.equal((await whoami(a.secret)).statusCode, 401, 'refused at once')
  r = await s.app.inject({ method: 'DELETE', url: `/api/v1/tokens/${a.id}`, headers: s.auth('admin') })
  assert.equal(r.statusCode, 200)
  assert.equal(r.json().revoked, false)
  assert.match(r.json().message, /already revoked/)
  const missing = await s.app.inject({ method: 'DELETE', url: '/api/v1/tokens/nosuch', headers: s.auth('admin') })
  assert.equal(missing.statusCode, 404)
  assert.match(missing.json().message, /nosuch/)

  // beta revokes itself: allowed, said so, and that was its last request.
  r = await s.app.inject({ method: 'DELETE', url: `/api/v1/tokens/${b.id}`, headers: { authorization: `Bearer ${b.secret}` } })
  assert.equal(r.statusCode, 200, r.body)
  assert.equal(r.json().self, true)
  assert.match(r.json().message, /it is the token this request was made with, so later requests with it are refused/)
  assert.equal((await whoami(b.secret)).statusCode, 401)
  const listed = (await s.app.inject({ url: '/api/v1/tokens', headers: s.auth('admin') })).json().items as any[]
  assert.deepEqual(listed.filter((i) => i.status === 'revoked').map((i) => i.name).sort(), ['alpha', 'beta'])
})
