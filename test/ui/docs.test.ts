// The API docs page (GET /docs, Swagger UI from @fastify/swagger-ui) in Debian's chromium: it renders the API's own
// OpenAPI document with no token and nothing from the internet (every request that is not to this server is
// blocked and fails the test), renders Markdown descriptions, and runs GET /api/v1/machines with a token pasted
// into "Authorize".
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { Browser } from 'playwright-core'
import { CHROMIUM, shot, startRackboot, WAIT, watch } from './support.js'

const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]'])

test('API docs: /docs renders the OpenAPI document offline, and "try it out" runs GET /api/v1/machines with a token', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`no chromium at ${CHROMIUM}: apt-get install chromium (the web UI tests need it)`)
    return
  }
  const { chromium } = await import('playwright-core')
  const rb = await startRackboot({
    async seed(inv) {
      await inv.machines.create({ name: 'docs-demo', serial: 'SN-DOCS-1' }, Date.now())
    },
  })
  t.after(() => rb.stop())

  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  t.after(() => browser.close())
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } })
  // Offline means offline: any request to another host is refused here and fails the test below.
  const outside: string[] = []
  await context.route('**/*', async (route) => {
    const url = new URL(route.request().url())
    if (LOCAL_HOSTS.has(url.hostname)) return route.continue()
    outside.push(route.request().url())
    return route.abort('blockedbyclient')
  })
  const page = await context.newPage()
  const w = watch(page)
  const cspViolations: string[] = []
  await page.exposeFunction('__cspViolation', (v: string) => cspViolations.push(v))
  await page.addInitScript({
    content: "document.addEventListener('securitypolicyviolation', (e) => window.__cspViolation(e.violatedDirective + ' ' + e.blockedURI))",
  })
  const apiCalls: Array<{ url: string; authorization: string | undefined }> = []
  page.on('request', (r) => {
    if (new URL(r.url()).pathname.startsWith('/api/v1/machines')) apiCalls.push({ url: r.url(), authorization: r.headers().authorization })
  })

  try {
    await run()
  } catch (err) {
    await shot(page, rb, 'docs-failed', t).catch(() => {})
    throw err
  } finally {
    // Said first when anything went wrong: a page that reached for the internet is the likeliest cause offline.
    assert.deepEqual(outside, [], 'nothing may be fetched from outside this server')
    assert.deepEqual(cspViolations, [], 'no Content-Security-Policy violations')
  }
  assert.deepEqual(w.pageErrors, [])
  assert.deepEqual(w.consoleErrors, [])
  assert.deepEqual(w.failedRequests, [])
  assert.deepEqual(w.badResponses, [])

  async function run(): Promise<void> {
    // No token needed to read the docs.
    // Swagger UI is a 1.5 MB bundle: on a loaded test machine its first load is slow.
    const res = await page.goto(`${rb.base}/docs`, { timeout: 90_000 })
    assert.equal(res?.status(), 200)
    const csp = res!.headers()['content-security-policy'] ?? ''
    assert.match(csp, /default-src 'self'/)
    assert.match(csp, /connect-src 'self'/)
    assert.doesNotMatch(csp, /https?:|\*/, `the CSP names no other origin: ${csp}`)

    // The operations, grouped by tag, from the API's own document.
    const machinesTag = page.locator('.opblock-tag-section h3.opblock-tag', { hasText: /^machines/ })
    // The first render parses the whole document: give a loaded test machine time.
    await machinesTag.first().waitFor({ timeout: 60_000 })
    const op = page.locator('#operations-machines-listMachines')
    await op.waitFor(WAIT)
    assert.equal(await op.locator('.opblock-summary-method').textContent(), 'GET')
    assert.equal(await op.locator('.opblock-summary-path').getAttribute('data-path'), '/api/v1/machines')
    // Markdown: the document's `code` spans are rendered as <code>, not shown as backticks.
    const info = page.locator('.information-container .info .description')
    await info.locator('code', { hasText: 'Authorization: Bearer <token>' }).waitFor(WAIT)
    assert.doesNotMatch((await info.textContent())!, /`/)

    // Authorize with a real token (the bearer scheme), kept in the page only.
    await page.click('.auth-wrapper button.authorize')
    const modal = page.locator('.dialog-ux .modal-ux')
    await modal.waitFor(WAIT)
    await modal.locator('input').first().fill(rb.tokens.viewer)
    await modal.locator('.auth-btn-wrapper button.authorize').click()
    await modal.locator('.auth-btn-wrapper button', { hasText: 'Logout' }).waitFor(WAIT)
    await modal.locator('button.btn-done, button.close-modal').first().click()
    await modal.waitFor({ state: 'hidden', ...WAIT })

    // "Try it out" is on already: open the operation, execute, read the answer in the page.
    await op.locator('.opblock-summary').first().click()
    // The operation's own description is Markdown too ("Scope: `read`.").
    await op.locator('.opblock-description-wrapper code', { hasText: 'read' }).first().waitFor(WAIT)
    const execute = op.locator('button.execute')
    await execute.waitFor(WAIT)
    await execute.click()
    const live = op.locator('.live-responses-table')
    await live.waitFor(WAIT)
    await live.locator('.response-col_status', { hasText: '200' }).first().waitFor(WAIT)
    const body = op.locator('.live-responses-table .response-col_description .highlight-code').first()
    await body.waitFor(WAIT)
    await body.getByText(/SN-DOCS-1/).first().waitFor(WAIT)
    assert.match((await body.textContent())!, /"docs-demo"/)

    // The request carried the token, to this server.
    const call = apiCalls.find((c) => new URL(c.url).pathname === '/api/v1/machines')
    assert.ok(call, `GET /api/v1/machines was sent: ${JSON.stringify(apiCalls)}`)
    assert.equal(new URL(call.url).origin, rb.base)
    assert.equal(call.authorization, `Bearer ${rb.tokens.viewer}`)
    // persistAuthorization is off: the token is not left in the browser's storage.
    const stored = `[localStorage, sessionStorage].some((s) => Object.values(s).some((v) => v.includes(${JSON.stringify(rb.tokens.viewer)})))`
    assert.equal(await page.evaluate(stored), false)

    await op.screenshot({ path: join(rb.cwd, 'docs-try-it-out.png') })
    t.diagnostic(`screenshot: ${join(rb.cwd, 'docs-try-it-out.png')}`)
    await shot(page, rb, 'docs-page', t)
  }
})
