// The power column (issue 18): `serve` polls each BMC (here the Redfish stub), keeps the state with the BMC record,
// and the inventory page shows it and follows a change live, in chromium.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import type { Browser } from 'playwright-core'
import { startRedfishServer } from '../power/fixtures/redfish-server.js'
import { api, CHROMIUM, signIn, startRackboot, WAIT } from './support.js'

test('web UI: the inventory shows each machine\'s power state as polled from its BMC, and follows a change', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`no chromium at ${CHROMIUM}: apt-get install chromium (the web UI tests need it)`)
    return
  }
  const { chromium } = await import('playwright-core')
  const bmc = await startRedfishServer({ username: 'root', password: 'pw-Secret9' })
  t.after(() => bmc.close())
  bmc.state.power = 'On'
  let withBmc = ''
  const rb = await startRackboot({
    set: ['power.pollIntervalMs=1000', 'power.pollJitter=0'],
    async seed(inv) {
      const now = Date.now()
      const m = await inv.machines.create({ name: 'rf-power', serial: 'RFP1' }, now)
      await inv.machines.create({ name: 'no-bmc', serial: 'NOBMC1' }, now)
      await inv.bmcs.put(m.id, { type: 'redfish', address: bmc.url, username: 'root', password: 'pw-Secret9' })
      withBmc = m.id
    },
  })
  t.after(() => rb.stop())
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  t.after(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1400, height: 800 } })
  await page.goto(`${rb.base}/ui/`)
  await signIn(page, rb.tokens.viewer)
  const cell = (name: string) => page.locator('tr', { hasText: name }).locator('td.col-power')
  await cell('rf-power').getByText('on', { exact: true }).waitFor(WAIT)
  assert.equal(await cell('no-bmc').textContent(), '—')
  // The machine is turned off behind rackboot's back: the next poll sees it, the row follows without a reload.
  bmc.state.power = 'Off'
  await cell('rf-power').getByText('off', { exact: true }).waitFor(WAIT)
  const view = await api(rb, rb.tokens.viewer, 'GET', `/machines/${withBmc}`)
  assert.equal(view.body.power.state, 'off')
  assert.ok(!JSON.stringify(view.body).includes('pw-Secret9'))
})
