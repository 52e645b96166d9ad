// The page's error and disconnected states, in chromium against a real `rackboot serve` (the tracker issue: an
// unknown machine's page said "Loading..." forever; a lost server showed only a small "Reconnecting..."):
// - an unknown machine: "No machine named X", with a link back and a search, never Loading forever;
// - an API error is shown with the server's message;
// - the server lost: a banner across the page and the page greyed as stale, both gone when the event stream is back;
// - a token the server no longer accepts (401): the sign-in prompt, saying why.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { Browser } from 'playwright-core'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { CHROMIUM, shot, signIn, startRackboot, WAIT, watch } from './support.js'

test('web UI states: unknown machine, API error shown, server lost and back, refused token asks for a new one', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`no chromium at ${CHROMIUM}: apt-get install chromium (the web UI tests need it)`)
    return
  }
  const { chromium } = await import('playwright-core')
  let id = ''
  const rb = await startRackboot({
    async seed(inv) {
      id = (await inv.machines.create({ name: 'st-01', serial: 'SN-ST-1', rack: 'r3' }, Date.now())).id
    },
  })
  t.after(() => rb.stop())
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  t.after(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } })
  const w = watch(page)

  // ---- An unknown machine. ----------------------------------------------------------------------------------------
  await page.goto(`${rb.base}/ui/#/machines/NOPE-404`)
  await signIn(page, rb.tokens.viewer)
  const title = page.locator('#machine-title')
  await title.getByText('No machine named NOPE-404', { exact: true }).waitFor(WAIT)
  assert.equal(await page.locator('.machine .loading').isVisible(), false, 'not loading any more')
  assert.doesNotMatch(await page.locator('main').innerText(), /Loading/, 'nothing on the page is still loading')
  const box = (await page.locator('.not-found-box').textContent())!
  assert.match(box, /rackboot knows no machine by the id, name, serial, MAC or UUID “NOPE-404”/)
  assert.match(box, /The server said: machine 'NOPE-404' .*not found|The server said: .*NOPE-404/)
  assert.equal(await page.title(), 'No machine NOPE-404 · rackboot')
  await shot(page, rb, 'state-unknown-machine', t)
  // The search link looks for it in the inventory; the back link returns to it.
  assert.equal(await page.locator('.not-found-box a', { hasText: 'Search the inventory' }).getAttribute('href'), '#/?q=NOPE-404')
  await page.click('#back-to-inventory')
  await page.locator(`table.machines tbody tr[data-id="${id}"]`).waitFor(WAIT)
  // Markup in the address is text.
  await page.goto(`${rb.base}/ui/#/machines/${encodeURIComponent('<b>bold</b>')}`)
  await title.getByText('No machine named <b>bold</b>', { exact: true }).waitFor(WAIT)
  assert.equal(await page.locator('main b').count(), 0)

  // ---- An API error, with the server's message. ------------------------------------------------------------------
  await page.goto(`${rb.base}/ui/#/`)
  await page.locator(`table.machines tbody tr[data-id="${id}"]`).waitFor(WAIT)
  await page.fill('#f-q', 'x'.repeat(200))
  const apiError = page.locator('.inventory .error[role=alert]')
  await apiError.waitFor(WAIT)
  const said = (await apiError.textContent())!
  t.diagnostic(`API error shown: ${said}`)
  assert.match(said, /128/, 'the server\'s validation message (q is at most 128 characters)')
  await shot(page, rb, 'state-api-error', t)
  await page.fill('#f-q', '')
  await apiError.waitFor({ state: 'hidden', ...WAIT })

  // ---- The server lost, and back. ---------------------------------------------------------------------------------
  await page.goto(`${rb.base}/ui/#/machines/${id}`)
  await title.getByText('st-01', { exact: true }).waitFor(WAIT)
  const lost = page.locator('#lost[role=alert]')
  assert.equal(await lost.isVisible(), false)
  await page.evaluate('window.__sameDocument = true')
  await rb.restart(async () => {
    await lost.getByText(/Lost contact with the rackboot server/).waitFor(WAIT)
    const text = (await lost.textContent())!
    assert.match(text, /^Lost contact with the rackboot server since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d\. What this page shows may be out of date/)
    assert.equal(await page.evaluate(`document.body.classList.contains('stale')`), true, 'the page is marked stale')
    assert.ok(await page.locator('main[data-stale]').count() === 1)
    // Prominent: across the page at the top, in the alert colour, not a word in the corner.
    const rect = (await lost.boundingBox())!
    assert.ok(rect.width >= 1200 && rect.height >= 30, `banner ${rect.width}x${rect.height}`)
    assert.equal(await lost.evaluate((e: any) => (globalThis as any).getComputedStyle(e).backgroundColor), 'rgb(180, 35, 24)')
    await shot(page, rb, 'state-server-lost', t)
  })
  await page.locator('#live[data-state="live"]').waitFor({ timeout: 20_000 })
  await lost.waitFor({ state: 'hidden', ...WAIT })
  assert.equal(await page.evaluate(`document.body.classList.contains('stale')`), false)
  assert.equal(await page.locator('main[data-stale]').count(), 0)
  assert.equal(await page.evaluate('window.__sameDocument'), true, 'no reload')
  assert.equal(await title.textContent(), 'st-01')
  await shot(page, rb, 'state-server-back', t)

  // ---- A token the server stops accepting: revoked while the server is down, refused when the page reconnects. ---
  await rb.restart(async () => {
    const inv = await openSqliteInventory({ file: join(rb.cwd, 'data', 'rackboot.db'), secretKeyFile: join(rb.cwd, 'data', 'secret.key') })
    try {
      assert.ok(await inv.tokens.revoke('viewer', Date.now()))
    } finally {
      await inv.close()
    }
  })
  const dialog = page.locator('dialog#signin')
  await dialog.waitFor({ state: 'visible', timeout: 20_000 })
  await page.locator('#signin-error').getByText(/Your API token was refused/).waitFor(WAIT)
  assert.equal(await page.evaluate(`localStorage.getItem('rackboot.apiToken')`), null, 'the refused token is forgotten')
  assert.equal(await lost.isVisible(), false, 'no banner behind the prompt: the server is there, the token is not')
  await shot(page, rb, 'state-token-refused', t)
  // A good token takes the page back to where it was.
  await signIn(page, rb.tokens.tech)
  await title.getByText('st-01', { exact: true }).waitFor(WAIT)

  assert.deepEqual(w.pageErrors, [])
  const expected = (r: string) => r === 'GET /api/v1/machines/NOPE-404 404' || r === `GET /api/v1/machines/${encodeURIComponent('<b>bold</b>')} 404`
    || /^GET \/api\/v1\/(machines|overview\/counts) 400$/.test(r) || /^GET \/api\/v1\/\S+ 401$/.test(r)
  assert.deepEqual(w.badResponses.filter((r) => !expected(r)), [])
})
