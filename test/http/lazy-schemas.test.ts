import { test } from 'node:test'
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import { lazySchemaController, pendingSchemas, trackPendingSchemas } from '../../src/http/lazy-schemas.js'
import { apiSetup } from '../api/support/app.js'

// Route schemas are compiled at their route's first use, not at start-up (src/http/lazy-schemas.ts); what a request
// gets is unchanged, and every schema still compiles.

test('the full app compiles no schema at ready, a request compiles its own, and every schema still compiles', async (t) => {
  const s = await apiSetup({ boot: true })
  t.after(() => s.close())
  await s.app.ready()
  const pending = pendingSchemas(s.app)
  const atReady = pending.size
  assert.ok(atReady > 50, `route schemas wait for their first use (${atReady} pending at ready)`)

  const me = await s.app.inject({ url: '/api/v1/whoami', headers: s.auth('read') })
  assert.equal(me.statusCode, 200)
  assert.deepEqual(Object.keys(me.json()).sort(), ['expiresAt', 'id', 'name', 'scopes'], 'the response went through its serializer')
  assert.ok(pending.size < atReady, 'the request compiled its route\'s schemas')

  // Validation errors read as before: Ajv's `errors` of the compiled validator, through the stand-in.
  const bad = await s.app.inject({ method: 'POST', url: '/api/v1/tokens', headers: s.auth('admin'), payload: { name: 5, scopes: 'read' } })
  assert.equal(bad.statusCode, 400)
  assert.match(bad.body, /must be/)

  pending.compileAll()
  assert.equal(pending.size, 0, 'every schema compiled')
})

test('a lazy validator coerces and fills in the root value as an eager one does, and reports its errors', async (t) => {
  const lazy = lazySchemaController()
  const app = Fastify({ schemaController: lazy.schemaController })
  trackPendingSchemas(app, lazy)
  t.after(() => app.close())
  // A root value is replaced (a single item coerced to a list) only when fastify passes Ajv the parent: it does so
  // when the validator has `schemaEnv`, which the stand-in reads through to the compiled validator.
  app.post('/list', { schema: { body: { type: 'array', items: { type: 'integer' } } } }, async (request) => ({ body: request.body }))
  app.get('/q', {
    schema: {
      querystring: { type: 'object', properties: { n: { type: 'integer', default: 7 } } },
      response: { 200: { type: 'object', properties: { n: { type: 'integer' } } } },
    },
  }, async (request) => ({ ...(request.query as object), hidden: 'not in the schema' }))
  await app.ready()
  // The body validator; the query validator and the serializer of GET /q and of the HEAD route fastify adds.
  assert.equal(pendingSchemas(app).size, 5)

  const list = await app.inject({ method: 'POST', url: '/list', headers: { 'content-type': 'application/json' }, payload: '5' })
  assert.equal(list.statusCode, 200)
  assert.deepEqual(list.json(), { body: [5] })
  assert.deepEqual((await app.inject({ url: '/q?n=3' })).json(), { n: 3 }, 'coerced, and serialized by the schema (extra field dropped)')
  assert.deepEqual((await app.inject({ url: '/q' })).json(), { n: 7 }, 'the default filled in')
  const wrong = await app.inject({ url: '/q?n=x' })
  assert.equal(wrong.statusCode, 400)
  assert.equal(wrong.json().message, 'querystring/n must be integer')
  assert.equal(pendingSchemas(app).size, 2, 'HEAD /q was never asked for')
})

test('a broken schema still fails: at its first use, and in compileAll', async (t) => {
  const lazy = lazySchemaController()
  const app = Fastify({ schemaController: lazy.schemaController })
  trackPendingSchemas(app, lazy)
  t.after(() => app.close())
  app.get('/broken', { schema: { response: { 200: { type: 'object', properties: { a: { $ref: '#/nowhere' } } } } } }, async () => ({ a: 1 }))
  await app.ready()
  assert.equal((await app.inject({ url: '/broken' })).statusCode, 500)
  assert.throws(() => pendingSchemas(app).compileAll())
})

test('in the background the pending schemas compile one per turn of the event loop, skipping a broken one, until stopped', async (t) => {
  const s = await apiSetup({ boot: true })
  t.after(() => s.close())
  await s.app.ready()
  const pending = pendingSchemas(s.app)
  const atReady = pending.size
  const warming = pending.compileInBackground()
  await new Promise((r) => setImmediate(r))
  await new Promise((r) => setImmediate(r))
  assert.ok(pending.size > 0 && pending.size < atReady, `a few per turn, not all at once (${atReady} → ${pending.size})`)
  for (let i = 0; i < 5_000 && pending.size > 0; i++) await new Promise((r) => setImmediate(r))
  assert.equal(pending.size, 0, 'all compiled in the background')

  const lazy = lazySchemaController()
  const app = Fastify({ schemaController: lazy.schemaController })
  trackPendingSchemas(app, lazy)
  t.after(() => app.close())
  app.get('/broken', { schema: { querystring: { type: 'object', properties: { n: { type: 'nonsense' } } } } }, async () => 'x')
  app.get('/fine', { schema: { response: { 200: { type: 'object', properties: { ok: { type: 'boolean' } } } } } }, async () => ({ ok: true }))
  await app.ready()
  const before = pendingSchemas(app).size
  const stop = pendingSchemas(app).compileInBackground()
  for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r))
  const left = pendingSchemas(app).size
  assert.equal(before - left, 2, "/fine's two compiled (its serializer and its default validator)")
  assert.ok(left > 0, 'the broken ones stay pending for their route to fail on')
  stop.stop()
  warming.stop()
  assert.equal((await app.inject({ url: '/broken' })).statusCode, 500)
})
