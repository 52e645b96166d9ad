import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { UI_ROOT } from '../../src/http/ui/index.js'
import { apiSetup } from '../api/support/app.js'
import { seedMachines } from '../api/support/seed.js'

// The web UI's files as the server hands them out, and the two reads the UI added to the API (/overview/*).

test('UI files: / and /ui redirect to /ui/, files come with their types and a strict CSP, nothing outside the folder', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  const root = await s.app.inject({ url: '/' })
  assert.equal(root.statusCode, 302)
  assert.equal(root.headers.location, '/ui/')
  assert.equal((await s.app.inject({ url: '/ui' })).headers.location, '/ui/')
  const page = await s.app.inject({ url: '/ui/' })
  assert.equal(page.statusCode, 200)
  assert.match(String(page.headers['content-type']), /^text\/html/)
  assert.match(page.body, /<script type="module" src="js\/main\.js"><\/script>/)
  const csp = String(page.headers['content-security-policy'])
  assert.match(csp, /script-src 'self'/)
  assert.doesNotMatch(csp, /unsafe/)
  assert.equal(page.headers['x-content-type-options'], 'nosniff')
  assert.equal(page.headers['cache-control'], 'no-cache')
  const js = await s.app.inject({ url: '/ui/js/main.js' })
  assert.equal(js.statusCode, 200)
  assert.match(String(js.headers['content-type']), /javascript/)
  assert.match(String((await s.app.inject({ url: '/ui/app.css' })).headers['content-type']), /^text\/css/)
  assert.equal((await s.app.inject({ url: '/ui/nope.js' })).statusCode, 404)
  assert.equal((await s.app.inject({ url: '/ui/../app.ts' })).statusCode, 404)
  assert.equal((await s.app.inject({ url: '/ui/%2e%2e/index.ts' })).statusCode, 404)
  // The API's own routes are untouched by the UI's headers.
  assert.equal((await s.app.inject({ url: '/api/v1/openapi.json' })).headers['content-security-policy'], undefined)
})

test('UI sources: no HTML parsing of data (innerHTML and friends), no inline script, no remote URL', () => {
  const files = readdirSync(UI_ROOT, { recursive: true, encoding: 'utf8' }).filter((f) => /\.(js|html|css)$/.test(f))
  assert.ok(files.length >= 10, files.join(' '))
  for (const f of files) {
    const text = readFileSync(join(UI_ROOT, f), 'utf8')
    assert.doesNotMatch(text, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function/, f)
    assert.doesNotMatch(text, /https?:\/\/(?!www\.w3\.org\/2000\/svg)/, `${f} fetches nothing from elsewhere (edge sites have no internet)`)
    if (f.endsWith('.html')) assert.doesNotMatch(text, /<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+=/i, `${f}: no inline script or handler`)
  }
})

test('GET /overview/counts: machines per state with the list filters, every state present', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  const ready = await seedMachines(s.inventory, { count: 30, state: 'ready' })
  await seedMachines(s.inventory, { count: 12, state: 'discovered', offset: 30 })
  await seedMachines(s.inventory, { count: 5, state: 'installed', offset: 42 })
  const get = async (query: string, scope: 'read' | 'none' = 'read') => s.app.inject({ url: `/api/v1/overview/counts${query}`, headers: s.auth(scope) })
  const all = await get('')
  assert.equal(all.statusCode, 200)
  assert.deepEqual(all.json(), { total: 47, states: { new: 0, discovered: 12, ready: 30, provisioning: 0, installed: 5, released: 0, maintenance: 0, failed: 0 } })
  // Each count agrees with the machine list under the same filter (seed labels: tier = i % 3, rack = r1 for i < 40).
  for (const q of ['?label=tier=1', '?label=rack=r1&label=tier=0', '?q=sn0000004', `?q=${ready[3]}`]) {
    const counts = (await get(q)).json() as { total: number; states: Record<string, number> }
    const listed = (await s.app.inject({ url: `/api/v1/machines${q}&limit=1000`, headers: s.auth('read') })).json() as { items: { state: string }[] }
    assert.equal(counts.total, listed.items.length, q)
    for (const [state, n] of Object.entries(counts.states)) assert.equal(n, listed.items.filter((m) => m.state === state).length, `${q} ${state}`)
  }
  assert.equal((await get('?q=sn0000004')).json().total, 7, 'SN00000040 to SN00000046')
  assert.equal((await get('', 'none')).statusCode, 401)
  assert.equal((await get('?state=ready')).statusCode, 400, 'state is what it counts by, not a filter')
})

test('GET /overview/latest-events: the newest event of each machine asked for, null for one without', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  const [a, b, c] = await seedMachines(s.inventory, { count: 3 })
  for (let i = 0; i < 120; i++) s.lifecycle.record(i % 2 ? a! : b!, 'boot.dhcp', `dhcp ${i}`, { i })
  s.lifecycle.record(a!, 'boot.config', 'config refused', { status: 403 })
  await s.timeline.flush()
  const get = (query: string, scope: 'read' | 'none' = 'read') => s.app.inject({ url: `/api/v1/overview/latest-events${query}`, headers: s.auth(scope) })
  const r = await get(`?machine=${a},${b}&machine=${c}`)
  assert.equal(r.statusCode, 200)
  const items = r.json().items as { machineId: string; event: { type: string; message: string; data: { status?: number } } | null }[]
  assert.deepEqual(items.map((i) => [i.machineId, i.event?.message ?? null]), [[a, 'config refused'], [b, 'dhcp 118'], [c, null]])
  assert.equal(items[0]!.event!.data.status, 403)
  const many = Array.from({ length: 201 }, (_, i) => `m-${i}`).join(',')
  assert.equal((await get(`?machine=${many}`)).statusCode, 400, 'a page of machines at most')
  assert.equal((await get('')).statusCode, 400)
  assert.equal((await get(`?machine=${a}`, 'none')).statusCode, 401)
})
