import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { setImmediate as tick } from 'node:timers/promises'
import { ApiClient } from '../../src/cli/client.js'

// The CLI's API client over node:http (not fetch, whose loading cost every command ~0.1 CPU-s): answers, refusals,
// a server that does not answer, the event stream; and every answer read to its end, so the keep-alive socket goes
// back to the pool (unref'd) instead of holding the process until main's two-second fallback exit.

async function fakeServer(handler: http.RequestListener) {
  const server = http.createServer(handler).listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  const port = (server.address() as { port: number }).port
  return {
    api: new ApiClient({ server: `http://127.0.0.1:${port}`, token: 'rbk_t', ca: null, via: 'test' }),
    close: () => {
      server.closeAllConnections()
      server.close()
    },
  }
}

const inUse = () => Object.values(http.globalAgent.sockets).flat().length

test('client: JSON, 204 and refusals are read to the end (the socket is free afterwards); a silent server times out in one line', async (t) => {
  const seen: { method: string; url: string; auth: string | undefined; body: string }[] = []
  const { api, close } = await fakeServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c)).on('end', () => {
      seen.push({ method: req.method!, url: req.url!, auth: req.headers.authorization, body })
      if (req.url!.startsWith('/api/v1/silent')) return
      if (req.method === 'DELETE') return void res.writeHead(204).end()
      if (req.url!.startsWith('/api/v1/missing')) {
        return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"RB_ERR_NOT_FOUND","message":"no machine x"}')
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: 'é'.repeat(50_000) }))
    })
  })
  t.after(close)

  const got = await api.post<{ ok: string }>('/things', { a: 1 }, { query: { label: ['x=1', 'y=2'], all: false } })
  assert.equal(got.ok.length, 50_000, 'multi-byte characters across chunks are decoded whole')
  assert.deepEqual(seen[0], { method: 'POST', url: '/api/v1/things?label=x%3D1&label=y%3D2', auth: 'Bearer rbk_t', body: '{"a":1}' })
  assert.equal(await api.json('DELETE', '/things/1'), null)
  await tick()
  assert.equal(inUse(), 0, 'the 204 was read: its socket is back in the pool')
  await assert.rejects(api.get('/missing'), (e: Error & { status?: number }) => e.status === 404 && e.message === 'no machine x')
  await tick()
  assert.equal(inUse(), 0, 'the refusal was read')

  const started = Date.now()
  await assert.rejects(api.get('/silent', { timeoutMs: 200 }), (e: Error) => /^rackboot at http:\/\/127\.0\.0\.1:\d+ did not answer GET \/silent within 0\.2 s$/.test(e.message))
  assert.ok(Date.now() - started < 5000)
})

test('client: the event stream delivers each event as it comes, until the signal aborts it', async (t) => {
  const { api, close } = await fakeServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write('data: {"type":"power","machineId":"m1","message":"one","data":{}}\n\n: comment\n\n')
    setTimeout(() => res.write('data: {"type":"power","machineId":"m2",'), 20)
    setTimeout(() => res.write('"message":"two","data":{}}\n\n'), 40)
  })
  t.after(close)
  const stop = new AbortController()
  const messages: string[] = []
  const done = api.events({ types: 'power' }, (e) => {
    messages.push(e.message)
    if (messages.length === 2) stop.abort()
  }, stop.signal)
  assert.equal(await done, true)
  assert.deepEqual(messages, ['one', 'two'])
})
