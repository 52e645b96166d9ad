// The machine page's actions (the tracker issue: no Release, Maintenance or Identify; power "not asked yet" until
// clicked and not refreshed after Off), in chromium against a real `rackboot serve` and a Redfish stub BMC:
// - the power state is asked when the page opens; a machine without a BMC says so;
// - a power action shows its result line (or the server's refusal, inline) and the state is read again every few
//   seconds until the BMC shows where the action leads, and no longer once the page is left;
// - Identify blinks the BMC's light and turns it off; Release asks first and says the disks are wiped; Maintenance
//   on and off; Retry of a failed machine, its refusal shown with the server's message;
// - each button only where it is valid: for the machine's state, its BMC, and the token's scope.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import type { Browser, Page } from 'playwright-core'
import { startRedfishServer, type RedfishQuirks } from '../power/fixtures/redfish-server.js'
import { api, CHROMIUM, shot, signIn, startRackboot, WAIT, watch } from './support.js'

/** Answers the next confirm() with yes, and keeps its text. */
function confirmNext(page: Page, said: string[]): void {
  page.once('dialog', (d) => {
    said.push(d.message())
    void d.accept()
  })
}

test('web UI machine page: power asked on open and followed after an action, identify, release, maintenance, retry; buttons by state and scope', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`no chromium at ${CHROMIUM}: apt-get install chromium (the web UI tests need it)`)
    return
  }
  const { chromium } = await import('playwright-core')
  const started = Date.now()
  const lap = (what: string) => t.diagnostic(`${what}: ${((Date.now() - started) / 1000).toFixed(1)} s`)
  // The stub BMC reads its quirks live: powerDelayMs makes a power change show only that long after the Reset.
  const quirks: RedfishQuirks = {}
  const bmc = await startRedfishServer({ username: 'root', password: 'pw-Secret9', quirks })
  t.after(() => bmc.close())
  bmc.state.power = 'On'
  let rf = ''
  let plain = ''
  let failed = ''
  const rb = await startRackboot({
    set: [
      // The server's own poller stays out of the way (one read at start): what the page shows after an action is
      // what the page itself read.
      'power.pollIntervalMs=600000',
      // Power actions here follow each other within seconds.
      'power.minRebootIntervalMs=0',
      // An action whose result the BMC shows late answers 504 not-verified after 1.5 s (the page then follows it).
      'power.verifyTimeoutMs=1500',
    ],
    async seed(inv) {
      const now = Date.now()
      const m = await inv.machines.create({
        name: 'rf-node-1', serial: 'RF-SN-1', state: 'installed', rack: 'r12', rackUnit: 7, firmware: 'uefi',
        nics: [{ mac: '02:42:c6:13:00:01', name: 'eno1', boot: true }],
      }, now)
      await inv.bmcs.put(m.id, { type: 'redfish', address: bmc.url, username: 'root', password: 'pw-Secret9' })
      rf = m.id
      plain = (await inv.machines.create({ name: 'no-bmc-1', serial: 'NB-SN-1', state: 'ready' }, now)).id
      // Failed, and no longer allocated (it was replaced): the server refuses to retry it, with a reason.
      failed = (await inv.machines.create({ name: 'failed-1', serial: 'F-SN-1', state: 'failed' }, now)).id
    },
  })
  t.after(() => rb.stop())
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  t.after(() => browser.close())
  lap('server, BMC and browser up')

  // ---- A read-only token: the power state is there on open, no button it could not use. ----------------------------
  const viewer = await browser.newPage({ viewport: { width: 1400, height: 1000 } })
  const wv = watch(viewer)
  await viewer.goto(`${rb.base}/ui/#/machines/${rf}`)
  await signIn(viewer, rb.tokens.viewer)
  await viewer.locator('#power-state[data-power="on"]:not([data-asking])').waitFor(WAIT)
  const viewerPower = (await viewer.locator('#power-state').textContent())!
  assert.match(viewerPower, /^Power is on; next boot as the firmware says \(no override\) \(checked \d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d\)$/)
  assert.doesNotMatch((await viewer.locator('main').textContent())!, /not asked/)
  await viewer.locator('.machine-head .readonly-note').getByText(/Read-only token/).waitFor(WAIT)
  for (const b of ['#power-on', '#power-off', '#power-soft-off', '#power-cycle', '#power-pxe', '#identify-on', '#identify-off', '#release', '#maintenance-on', '#accept']) {
    assert.equal(await viewer.locator(b).count(), 0, `${b}: not offered to a read-only token`)
  }
  assert.equal(await viewer.locator('#power-check').isVisible(), true, 'reading the power state is a read')
  await shot(viewer, rb, 'machine-actions-readonly', t)
  await viewer.close()
  assert.deepEqual(wv.badResponses, [])
  assert.deepEqual(wv.pageErrors, [])
  lap('read-only page')

  // ---- A provisioning token. --------------------------------------------------------------------------------------
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } })
  const w = watch(page)
  const powerReads: number[] = []
  page.on('request', (r) => {
    if (r.method() === 'GET' && new URL(r.url()).pathname === `/api/v1/machines/${rf}/power`) powerReads.push(Date.now())
  })
  const said: string[] = []
  await page.goto(`${rb.base}/ui/#/machines/${rf}`)
  await signIn(page, rb.tokens.tech)
  await page.locator('#power-state[data-power="on"]:not([data-asking])').waitFor(WAIT)
  assert.equal(powerReads.length, 1, 'asked once when the page opened, without a click')
  // Installed, with a BMC, powered on: release and maintenance; the power actions that make sense when on.
  for (const b of ['#release', '#maintenance-on', '#power-off', '#power-soft-off', '#power-cycle', '#power-pxe', '#identify-on', '#identify-off']) {
    assert.equal(await page.locator(b).isVisible(), true, `${b} offered`)
  }
  for (const b of ['#accept', '#maintenance-off', '#power-on']) assert.equal(await page.locator(b).count(), 0, `${b} not offered`)
  assert.equal(await page.locator('#retry').isVisible(), false, 'no Retry: it has not failed')

  // Power off, and the BMC shows it only 4 s later: the server answers 504 not-verified after 1.5 s (its message
  // inline), and the page reads the state every few seconds until it shows off.
  quirks.powerDelayMs = 4000
  const offAt = Date.now()
  confirmNext(page, said)
  await page.click('#power-off')
  assert.match(said.shift() ?? '', /^Power off rf-node-1 now\?/)
  await page.locator('#power-result.error[role=alert]').waitFor(WAIT)
  const refused = (await page.locator('#power-result').textContent())!
  assert.match(refused, /power off on rf-node-1: .*the BMC accepted it but/, refused)
  await page.locator('#power-watch[data-watch="waiting"]').getByText(/waiting for the BMC to show it off; checking every 3 s/).waitFor(WAIT)
  assert.equal(await page.locator('#power-state').getAttribute('data-power'), 'on', 'still on as far as the BMC says')
  await shot(page, rb, 'machine-power-following', t)
  await page.locator('#power-state[data-power="off"]').waitFor({ timeout: 15_000 })
  await page.locator('#power-watch[data-watch="done"]').getByText('Power off: the BMC shows it off.').waitFor(WAIT)
  const during = powerReads.filter((at) => at >= offAt)
  assert.ok(during.length >= 2, `read ${during.length} times while following the action`)
  assert.equal(bmc.state.power, 'Off')
  // Off: only On and PXE boot make sense now.
  assert.equal(await page.locator('#power-on').isVisible(), true)
  for (const b of ['#power-off', '#power-soft-off', '#power-cycle']) assert.equal(await page.locator(b).count(), 0, `${b} hidden while off`)
  await shot(page, rb, 'machine-power-off', t)
  lap('power off followed')

  // Power on, the BMC prompt: the result line is the server's, the state follows at once.
  quirks.powerDelayMs = 0
  await page.click('#power-on')
  await page.locator('#power-result.ok').getByText(/^Power on: on: done, on \(verified\)/).waitFor(WAIT)
  await page.locator('#power-state[data-power="on"]:not([data-asking])').waitFor(WAIT)
  await page.locator('#power-watch[data-watch="done"]').getByText('Power on: the BMC shows it on.').waitFor(WAIT)
  // PXE boot now: next boot from the network, verified, and power cycled.
  confirmNext(page, said)
  await page.click('#power-pxe')
  assert.match(said.shift() ?? '', /^PXE boot rf-node-1 now\? Its next boot is set to the network and it is power cycled\./)
  await page.locator('#power-result.ok').getByText(/^PXE boot now: next boot pxe.*verified.*power cycled/).waitFor(WAIT)
  await page.locator('#power-state[data-power="on"]:not([data-asking])').getByText(/next boot pxe/).waitFor(WAIT)
  assert.equal(bmc.state.boot.BootSourceOverrideTarget, 'Pxe')

  // Following stops when the page is left: a slow Off, then away to the inventory; no more reads of this BMC.
  quirks.powerDelayMs = 10_000
  confirmNext(page, said)
  await page.click('#power-off')
  said.shift()
  await page.locator('#power-watch[data-watch="waiting"]').waitFor(WAIT)
  await page.click('.crumbs a')
  await page.locator('table.machines tbody tr').first().waitFor(WAIT)
  const left = powerReads.length
  await page.waitForTimeout(7000)
  assert.equal(powerReads.length, left, 'no power reads after the page was left')
  // The stub carries the slow Off out 10 s after it: let it, then the machine is on again for what follows.
  for (let i = 0; i < 50 && bmc.state.power !== 'Off'; i++) await new Promise((r) => setTimeout(r, 200))
  assert.equal(bmc.state.power, 'Off')
  quirks.powerDelayMs = 0
  bmc.state.power = 'On'
  lap('pxe, leaving stops the polling')

  // Identify: blink for 30 s, then off; the stub BMC's LED follows.
  await page.goto(`${rb.base}/ui/#/machines/${rf}`)
  await page.locator('#power-state[data-power="on"]:not([data-asking])').waitFor(WAIT)
  await page.fill('#identify-seconds', '30')
  await page.click('#identify-on')
  await page.locator('#identify-result.ok').waitFor(WAIT)
  assert.equal(bmc.state.indicator, 'Blinking')
  const blinking = (await page.locator('#identify-result').textContent())!
  t.diagnostic(`identify: ${blinking}`)
  await shot(page, rb, 'machine-identify', t)
  await page.click('#identify-off')
  await page.waitForFunction(() => (globalThis as any).document.querySelector('#identify-result')?.textContent?.length > 0, null, WAIT)
  await page.locator('#identify-result.ok').waitFor(WAIT)
  assert.equal(bmc.state.indicator, 'Off')
  lap('identify')

  // Release asks first, saying the disks will be wiped; the machine is released.
  confirmNext(page, said)
  await page.click('#release')
  await page.locator('.machine-head .state[data-state=released]').waitFor(WAIT)
  assert.match(said.shift() ?? '', /^Release rf-node-1\? .*its disks will be WIPED: the discovery agent erases them at its next network boot \(rackboot PXE-boots it now through its BMC\).*Everything on it is lost\.$/)
  await page.locator('#action-outcome.ok').getByText(/^Released: rf-node-1 is released; its disks are wiped at its next network boot\./).waitFor(WAIT)
  assert.equal((await api(rb, rb.tokens.viewer, 'GET', `/machines/${rf}`)).body.state, 'released')
  assert.equal(await page.locator('#release').count(), 0, 'no Release once released')
  await shot(page, rb, 'machine-released', t)

  // Maintenance on (asked first), then off.
  confirmNext(page, said)
  await page.click('#maintenance-on')
  await page.locator('.machine-head .state[data-state=maintenance]').waitFor(WAIT)
  assert.match(said.shift() ?? '', /^Take rf-node-1 out of service \(maintenance\)\?/)
  await page.locator('#action-outcome.ok').getByText(/rf-node-1 is in maintenance: nothing boots it/).waitFor(WAIT)
  assert.equal(await page.locator('#maintenance-on').count(), 0)
  await page.click('#maintenance-off')
  await page.locator('.machine-head .state:not([data-state=maintenance])').waitFor(WAIT)
  await page.locator('#action-outcome.ok').getByText(/rf-node-1 is back in service/).waitFor(WAIT)
  assert.notEqual((await api(rb, rb.tokens.viewer, 'GET', `/machines/${rf}`)).body.state, 'maintenance')
  assert.equal(await page.locator('#maintenance-on').isVisible(), true)
  lap('release, maintenance')

  // A failed machine the server will not retry (it left its cluster): Retry is offered, the refusal shows inline
  // with the server's own message; no Release (the Failures card's Replace does that) and no header Maintenance.
  await page.goto(`${rb.base}/ui/#/machines/${failed}`)
  await page.locator('#retry').waitFor(WAIT)
  for (const b of ['#release', '#maintenance-on', '#accept']) assert.equal(await page.locator(b).count(), 0, `${b} not offered for a failed machine`)
  await page.click('#retry')
  const retryRefused = page.locator('#action-outcome.error[role=alert]')
  await retryRefused.waitFor(WAIT)
  assert.match((await retryRefused.textContent())!, new RegExp(`^machine ${failed} left its cluster \\(it was replaced\\): nothing to retry`))
  assert.equal(await page.locator('.machine-head .state').textContent(), 'failed')
  await shot(page, rb, 'machine-retry-refused', t)

  // No BMC: the page says so instead of power buttons; maintenance is there, Release (ready) is not.
  await page.goto(`${rb.base}/ui/#/machines/${plain}`)
  await page.locator('#no-bmc').getByText(/No BMC in the inventory for this machine/).waitFor(WAIT)
  for (const b of ['#power-state', '#power-on', '#power-off', '#identify-on', '#release']) assert.equal(await page.locator(b).count(), 0, `${b} without a BMC`)
  assert.equal(await page.locator('#maintenance-on').isVisible(), true)
  await shot(page, rb, 'machine-no-bmc', t)
  lap('failed and no-BMC machines')

  // Nothing went wrong but what the test asked for: the not-verified Off and the refused retry.
  const expected = [`POST /api/v1/machines/${rf}/power 504`, `POST /api/v1/machines/${failed}/retry 409`]
  assert.deepEqual(w.badResponses.filter((r) => !expected.includes(r)), [])
  assert.deepEqual(w.pageErrors, [])
  assert.deepEqual(w.failedRequests.filter((r) => !/^(GET \S+\/api\/v1\/events|POST \S+\/power): net::ERR_ABORTED$/.test(r)), [])
})
