// The inventory's bulk maintenance and release, and its IP, class and profile columns as the API gives them
// (ip from a DHCP reservation, class the machine matches, the profile it installs: its own or its class's), in
// chromium against a real `rackboot serve`.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import type { Browser, Page } from 'playwright-core'
import { api, CHROMIUM, shot, signIn, startRackboot, WAIT, watch } from './support.js'

async function states(page: Page, ids: string[], state: string): Promise<void> {
  await page.waitForFunction(([list, s]) => (list as string[]).every((id) => (globalThis as any).document.querySelector(`tr[data-id="${id}"] td[data-col=state]`)?.textContent === s),
    [ids, state] as const, WAIT)
}

test('web UI bulk actions: maintenance on (asked twice) and off, release (says it wipes); IP, class and profile columns', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`no chromium at ${CHROMIUM}: apt-get install chromium (the web UI tests need it)`)
    return
  }
  const { chromium } = await import('playwright-core')
  const ids: Record<string, string> = {}
  const rb = await startRackboot({
    async seed(inv) {
      const now = Date.now()
      await inv.classes.put({ name: 'small', description: null, selectors: ['labels.tier in [small]'], profile: 'worker', patches: [], managedBy: null }, now)
      for (const [key, state, labels] of [['r1', 'ready', { tier: 'small' }], ['r2', 'ready', {}], ['r3', 'ready', {}], ['i1', 'installed', {}], ['i2', 'installed', {}]] as const) {
        const nics = [{ mac: `02:42:c6:15:00:${key === 'r1' ? '01' : key === 'r2' ? '02' : key === 'r3' ? '03' : key === 'i1' ? '04' : '05'}`, name: 'eno1', boot: true }]
        ids[key] = (await inv.machines.create({ name: `bk-${key}`, serial: `SN-BK-${key}`, state, labels: { ...labels }, nics }, now)).id
      }
      await inv.reservations.put({ ip: '10.20.0.41', mac: '02:42:c6:15:00:01', clientId: null, hostname: null, machineId: ids.r1! })
    },
  })
  t.after(() => rb.stop())
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  t.after(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } })
  const w = watch(page)
  await page.goto(`${rb.base}/ui/`)
  await signIn(page, rb.tokens.tech)
  await page.locator(`tr[data-id="${ids.i2}"]`).waitFor(WAIT)

  // The API's address, class and effective profile in their columns.
  const cell = (key: string, col: string) => page.locator(`tr[data-id="${ids[key]}"] td[data-col=${col}]`)
  const listed = (await api(rb, rb.tokens.viewer, 'GET', '/machines')).body.items.find((m: { id: string }) => m.id === ids.r1)
  t.diagnostic(`API list item: ip ${listed.ip} (${listed.ipSource}), class ${listed.class}, profile ${listed.profile}, effective ${listed.effectiveProfile}`)
  assert.equal(await cell('r1', 'ip').textContent(), '10.20.0.41')
  assert.match((await cell('r1', 'ip').locator('span').getAttribute('title'))!, /10\.20\.0\.41 \(DHCP reservation\)/)
  assert.equal(await cell('r1', 'class').textContent(), 'small')
  assert.equal(await cell('r1', 'profile').textContent(), 'worker')
  assert.match((await cell('r1', 'profile').locator('span').getAttribute('title'))!, /worker: from class small/)
  assert.equal(await cell('r2', 'ip').textContent(), 'DHCP')
  assert.equal(await cell('r2', 'class').textContent(), '—')
  assert.equal(await cell('r2', 'profile').textContent(), '—')

  // Maintenance on for the three ready machines: asked twice, then done; the rows follow.
  const pick = async (keys: string[]) => {
    for (const k of keys) await page.locator(`tr[data-id="${ids[k]}"] input.pick`).check()
  }
  await pick(['r1', 'r2', 'r3'])
  await page.selectOption('#bulk-maintenance', 'on')
  await page.click('#bulk-maintenance-apply')
  assert.equal(await page.locator('#bulk-maintenance-apply').textContent(), 'Confirm: maintenance on for 3?')
  assert.equal((await api(rb, rb.tokens.viewer, 'GET', `/machines/${ids.r1}`)).body.state, 'ready', 'nothing sent before the confirmation')
  await page.click('#bulk-maintenance-apply')
  await page.locator('.bulk-progress .bulk-done[data-done="3"][data-failed="0"]').waitFor(WAIT)
  await states(page, [ids.r1!, ids.r2!, ids.r3!], 'maintenance')
  for (const k of ['r1', 'r2', 'r3']) assert.equal((await api(rb, rb.tokens.viewer, 'GET', `/machines/${ids[k]}`)).body.state, 'maintenance')
  await shot(page, rb, 'bulk-maintenance-on', t)
  // Off needs no confirmation: they are back in service (new: no hardware report yet).
  await page.selectOption('#bulk-maintenance', 'off')
  await page.click('#bulk-maintenance-apply')
  await page.locator('.bulk-progress').getByText(/^Maintenance off/).waitFor(WAIT)
  await page.locator('.bulk-progress .bulk-done[data-done="3"][data-failed="0"]').waitFor(WAIT)
  for (const k of ['r1', 'r2', 'r3']) assert.notEqual((await api(rb, rb.tokens.viewer, 'GET', `/machines/${ids[k]}`)).body.state, 'maintenance')

  // Release of the two installed machines: the confirmation says they are wiped.
  await page.click('.bulk button.link:has-text("Clear selection")')
  await pick(['i1', 'i2'])
  await page.click('#bulk-release')
  assert.equal(await page.locator('#bulk-release').textContent(), 'Confirm: release and wipe 2?')
  await shot(page, rb, 'bulk-release-confirm', t)
  await page.click('#bulk-release')
  await page.locator('.bulk-progress .bulk-done[data-done="2"][data-failed="0"]').waitFor(WAIT)
  await states(page, [ids.i1!, ids.i2!], 'released')
  for (const k of ['i1', 'i2']) assert.equal((await api(rb, rb.tokens.viewer, 'GET', `/machines/${ids[k]}`)).body.state, 'released')
  await shot(page, rb, 'bulk-released', t)

  assert.deepEqual(w.badResponses, [])
  assert.deepEqual(w.pageErrors, [])
})
