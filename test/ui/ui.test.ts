import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { rackboot } from '../support/cli.js'
import { api, bootScript, CHROMIUM, discover, fetchBootFiles, getFrom, hardware, report, shot, signIn, startRackboot, WAIT, watch } from './support.js'

// The web UI in Debian's chromium, driven by playwright-core, against a real `rackboot serve`.

/** One attribute of every element a selector matches, in document order. */
async function attrs(page: Page, selector: string, name: string): Promise<string[]> {
  return Promise.all((await page.locator(selector).all()).map(async (el) => (await el.getAttribute(name)) ?? ''))
}

test('web UI: inventory, live updates, a failed boot on the timeline, accept with read and write tokens', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`no chromium at ${CHROMIUM}: apt-get install chromium (the web UI tests need it)`)
    return
  }
  const { chromium } = await import('playwright-core')
  const started = Date.now()
  const rb = await startRackboot()
  t.after(() => rb.stop())

  // Seed through the real paths: three machines boot the discovery agent and report their hardware.
  const alpha = await discover(rb, hardware(1))
  const bravo = await discover(rb, hardware(2))
  const charlie = await discover(rb, hardware(3))
  // A label a user typed, full of HTML: it must show as text, never run.
  const xss = '<img src=x onerror="window.__xss=1">'
  assert.equal((await api(rb, rb.tokens.tech, 'PATCH', `/machines/${charlie}`, { labels: { note: xss } })).status, 200)
  // Bravo is accepted and allocated, boots the installer, then fetches its config from the wrong address: 403.
  assert.equal((await api(rb, rb.tokens.tech, 'POST', `/machines/${bravo}/accept`)).status, 200)
  const alloc = await api(rb, rb.tokens.tech, 'POST', '/allocations', { selector: 'serial == "SN-UI-2"', count: 1, profile: 'worker' })
  assert.equal(alloc.status, 201, JSON.stringify(alloc.body))
  const install = await bootScript(rb, hardware(2).nics[0]!.mac, 'SN-UI-2')
  await fetchBootFiles(install)
  const configUrl = /talos\.config=(\S+)/.exec(install)?.[1]
  assert.ok(configUrl, install)
  const refused = await getFrom(configUrl, '127.0.0.2')
  assert.equal(refused.status, 403, refused.body)

  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  t.after(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } })
  const w = watch(page)

  // / redirects to the UI, which asks for a token once.
  await page.goto(`${rb.base}/`)
  assert.equal(new URL(page.url()).pathname, '/ui/')
  // A wrong token is refused with the server's reason, and the page keeps asking.
  await page.locator('dialog#signin').waitFor({ state: 'visible', ...WAIT })
  await page.fill('#token', 'rbk_this-is-not-a-token')
  await page.click('dialog#signin button[type=submit]')
  await page.locator('#signin-error').getByText(/Your API token was refused: the API token is unknown, revoked or expired/).waitFor(WAIT)
  assert.equal(await page.locator('dialog#signin').isVisible(), true)
  await signIn(page, rb.tokens.viewer)
  await page.locator('#who').getByText('read-only').waitFor(WAIT)

  // The inventory lists the three machines with their hardware, and counts per state.
  const rows = page.locator('table.machines tbody tr')
  await rows.nth(2).waitFor(WAIT)
  assert.equal(await rows.count(), 3)
  const row = (id: string) => page.locator(`table.machines tbody tr[data-id="${id}"]`)
  assert.equal(await row(alpha).locator('[data-col=state]').textContent(), 'discovered')
  assert.equal(await row(bravo).locator('[data-col=state]').textContent(), 'provisioning')
  assert.equal(await row(alpha).locator('[data-col=serial]').textContent(), 'SN-UI-1')
  assert.equal(await row(alpha).locator('[data-col=cpus]').textContent(), '32')
  assert.equal(await row(alpha).locator('[data-col=memory]').textContent(), '256 GiB')
  assert.match((await row(alpha).locator('[data-col=macs]').textContent())!, /02:42:c6:12:00:01/)
  assert.match((await row(bravo).locator('[data-col=last]').textContent())!, /Config fetch failed.*config refused/)
  assert.equal(await row(bravo).locator('[data-col=last] .phase-fail').count(), 1)
  const count = (state: string) => page.locator(`.counts button[data-state="${state}"] .n`)
  assert.equal(await count('discovered').textContent(), '2')
  assert.equal(await count('provisioning').textContent(), '1')
  assert.equal(await count('').textContent(), '3')
  // Escaped: the label reads as typed, and nothing it contains ran or became an element.
  assert.equal(await row(charlie).locator('[data-col=labels] .chip').textContent(), `note=${xss}`)
  assert.equal(await page.locator('table.machines img').count(), 0)
  assert.equal(await page.evaluate('window.__xss'), undefined)
  await shot(page, rb, 'inventory', t)

  // Live: a machine that network-boots now appears without a reload, then changes state in place.
  await page.evaluate('window.__sameDocument = true')
  const delta = await discover(rb, hardware(4), { report: false })
  await row(delta).waitFor(WAIT)
  await page.locator(`tr[data-id="${delta}"] [data-col=state]`).getByText('new', { exact: true }).waitFor(WAIT)
  await page.locator('.counts button[data-state="new"] .n').getByText('1', { exact: true }).waitFor(WAIT)
  const token = /rackboot\.token=(\S+)/.exec(await bootScript(rb, hardware(4).nics[0]!.mac, 'SN-UI-4'))![1]!
  await report(rb, token, delta, hardware(4))
  await page.locator(`tr[data-id="${delta}"] [data-col=state]`).getByText('discovered', { exact: true }).waitFor(WAIT)
  assert.ok(await page.locator(`tr[data-id="${delta}"] [data-col=state].flash`).count() === 1, 'the changed cell flashes')
  assert.equal(await row(delta).locator('[data-col=cpus]').textContent(), '32')
  await page.locator('.counts button[data-state="discovered"] .n').getByText('3', { exact: true }).waitFor(WAIT)
  assert.equal(await page.evaluate('window.__sameDocument'), true, 'no reload')

  // The server restarts; what changed while it was down arrives when the page reconnects (Last-Event-ID).
  const quiet = { bad: w.badResponses.length, failed: w.failedRequests.length, console: w.consoleErrors.length }
  await rb.restart(async () => {
    await page.locator('#live[data-state="reconnecting"]').waitFor(WAIT)
    // The server is down: the CLI writes the database itself (--data-dir), as a tech on the box would.
    const labelled = rackboot(['machines', 'label', alpha, 'rack=r7', '--data-dir', join(rb.cwd, 'data')], { cwd: rb.cwd })
    assert.equal(labelled.code, 0, labelled.stderr)
  })
  await page.locator('#live[data-state="live"]').waitFor({ timeout: 20_000 })
  await row(alpha).locator('[data-col=labels] .chip').getByText('rack=r7').waitFor(WAIT)
  assert.equal(await page.evaluate('window.__sameDocument'), true, 'no reload')
  // While it was down, only the stream's reconnection attempts failed.
  assert.deepEqual(w.badResponses.slice(quiet.bad), [])
  for (const f of w.failedRequests.splice(quiet.failed)) assert.match(f, /^GET .*\/api\/v1\/events: net::(ERR_CONNECTION_REFUSED|ERR_ABORTED)$/)
  for (const e of w.consoleErrors.splice(quiet.console)) assert.match(e, /ERR_CONNECTION_REFUSED @ .*\/api\/v1\/events$/)

  // Filters are server-side: text search and state. (Functions given to waitForFunction run in the page; this
  // project's TypeScript has no DOM types, hence globalThis.)
  await page.fill('#f-q', 'SN-UI-3')
  await page.locator('table.machines tbody tr').first().waitFor(WAIT)
  await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('table.machines tbody tr').length === 1, null, WAIT)
  assert.equal(await page.locator(`tr[data-id="${charlie}"]`).count(), 1)
  await page.fill('#f-q', '')
  await page.selectOption('#f-state', 'provisioning')
  await page.waitForFunction((id) => [...(globalThis as any).document.querySelectorAll('table.machines tbody tr')].map((tr: any) => tr.dataset.id).join() === id, bravo, WAIT)
  assert.match(page.url(), /#\/\?state=provisioning$/)

  // The failed boot: hardware facts, and the timeline in order with where it stopped in red.
  await page.click(`tr[data-id="${bravo}"] [data-col=name] a`)
  // Bravo has no name: the page shows it by its serial (what is on the sticker), its id beside it.
  await page.locator('#machine-title').getByText('SN-UI-2', { exact: true }).waitFor(WAIT)
  assert.match((await page.locator('.machine > .sub').textContent())!, new RegExp(`^no name: shown by its serial ${bravo}`))
  await page.locator('table.timeline tbody tr').first().waitFor(WAIT)
  assert.equal(await page.locator('[data-fact=serial]').textContent(), 'SN-UI-2')
  const hw = (await page.locator('.card-hardware').textContent())!
  // Sizes in binary units, as the CLI prints them: the 960 GB drive is 894 GiB, the 1.92 TB one 1.7 TiB.
  for (const s of ['Samsung PM9A3 960GB', '894 GiB', 'S5NZ02001', 'Micron 5400 MAX', '1.7 TiB', '256 GiB', 'AMD EPYC 9354P', '02:42:c6:12:01:02', 'bnxt_en', '25000 Mb/s']) {
    assert.ok(hw.includes(s), `hardware shows ${s}`)
  }
  const seqs = (await attrs(page, 'table.timeline tbody tr', 'data-seq')).map(Number)
  assert.ok(seqs.length >= 10, `timeline has ${seqs.length} events`)
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'oldest first')
  const types = await attrs(page, 'table.timeline tbody tr', 'data-type')
  for (const type of ['machine.created', 'boot.script', 'boot.asset', 'boot.agent', 'machine.state', 'boot.config']) assert.ok(types.includes(type), type)
  assert.equal(types.at(-1), 'boot.config')
  const stopped = page.locator('table.timeline tr.stopped')
  assert.equal(await stopped.count(), 1)
  assert.match((await stopped.textContent())!, /Config fetch failed.*Stopped here: config refused: token used from 127\.0\.0\.2, issued to 127\.0\.0\.1/)
  assert.equal(await stopped.locator('td').first().evaluate((td: any) => (globalThis as any).getComputedStyle(td).backgroundColor), 'rgb(180, 35, 24)', 'red')
  assert.match((await page.locator('.boot-summary').textContent())!, /^Boot stopped at Config fetch .*config refused/)
  const phases = await attrs(page, 'ol.progress li', 'data-phase')
  const steps = (await attrs(page, 'ol.progress li', 'class')).map((c, i) => `${phases[i]}:${c.replace(/^step step-/, '')}`)
  assert.deepEqual(steps, ['dhcp:pending', 'tftp:pending', 'script:ok', 'kernel:ok', 'initramfs:ok', 'config:fail current', 'talos:pending', 'install:pending'])
  assert.match((await page.locator('.card-log').textContent())!, /No kernel log received yet/)
  await shot(page, rb, 'machine-failed-boot', t)

  // New events append live, in order, without a reload.
  const before = seqs.length
  assert.equal((await api(rb, rb.tokens.tech, 'PATCH', `/machines/${bravo}`, { labels: { rack: 'r12' } })).status, 200)
  await page.waitForFunction((n) => (globalThis as any).document.querySelectorAll('table.timeline tbody tr').length === n, before + 1, WAIT)
  assert.equal(await page.locator('table.timeline tbody tr').last().getAttribute('data-type'), 'machine.updated')
  await page.locator('.card-labels .chip').getByText('rack=r12').waitFor(WAIT)
  assert.equal(await page.evaluate('window.__sameDocument'), true, 'no reload')

  // A read-only token is offered no action it cannot take: no Accept, no label editing; the page says why.
  await page.goto(`${rb.base}/ui/#/machines/${alpha}`)
  await page.locator('.machine-head .readonly-note').getByText(/Read-only token/).waitFor(WAIT)
  assert.equal(await page.locator('.machine-head .state').textContent(), 'discovered')
  assert.equal(await page.locator('#accept').count(), 0)
  assert.equal(await page.locator('#label-key').count(), 0)

  // Sign out, sign in with a provisioning token: accept moves it to ready, and labels can be edited.
  await page.click('#signout')
  assert.equal(await page.evaluate(`localStorage.getItem('rackboot.apiToken')`), null)
  await signIn(page, rb.tokens.tech)
  await page.locator('#accept').waitFor(WAIT)
  await page.click('#accept')
  await page.locator('.machine-head .state[data-state=ready]').waitFor(WAIT)
  await page.locator('.outcome.ok').getByText(/Accepted/).waitFor(WAIT)
  assert.equal((await api(rb, rb.tokens.viewer, 'GET', `/machines/${alpha}`)).body.state, 'ready')
  await page.locator('table.timeline tbody tr[data-type="machine.state"]').getByText(/discovered → ready: accepted by token tech/).waitFor(WAIT)
  await page.fill('#label-key', 'role')
  await page.fill('#label-value', 'db')
  await page.click('.label-form button[type=submit]')
  await page.locator('.card-labels .chip').getByText('role=db').waitFor(WAIT)
  assert.deepEqual((await api(rb, rb.tokens.viewer, 'GET', `/machines/${alpha}`)).body.labels, { rack: 'r7', role: 'db' })
  await page.click('.card-labels button[aria-label="Remove label role"]')
  await page.locator('.card-labels .chip').getByText('role=db').waitFor({ state: 'detached', ...WAIT })
  assert.deepEqual((await api(rb, rb.tokens.viewer, 'GET', `/machines/${alpha}`)).body.labels, { rack: 'r7' })
  await shot(page, rb, 'machine-accepted', t)

  // Nothing went wrong in the page but the refusal the test asked for. The event stream closed at sign-out
  // (and at the reload above) is the page's own doing.
  assert.deepEqual(w.badResponses, ['GET /api/v1/whoami 401'])
  assert.deepEqual(w.pageErrors, [])
  const asked = (e: string) => /status of 401/.test(e) && e.endsWith('/api/v1/whoami')
  assert.deepEqual(w.consoleErrors.filter((e) => !asked(e)), [])
  assert.deepEqual(w.failedRequests.filter((r) => !/^GET \S+\/api\/v1\/events: net::ERR_ABORTED$/.test(r)), [])
  t.diagnostic(`web UI test took ${((Date.now() - started) / 1000).toFixed(1)} s`)
})
