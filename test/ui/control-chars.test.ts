import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { api, discover, hardware, startRackboot } from './support.js'

// Control characters an unauthenticated hardware report puts in SMBIOS strings and disk models: the page shows
// them (ESC as ␛), never hands them on raw (copied into a terminal, ESC and BEL act).

const load = (name: string) => import(new URL(`../../src/http/ui/static/js/${name}.js`, import.meta.url).href)
const CHROMIUM = '/usr/bin/chromium'
const WAIT = { timeout: 10_000 }
const EVIL = '\x1b]0;pwned\x07\x1b[2J'
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e]/

test('visible(): C0 as Control Pictures, DEL as ␡, C1 and bidi overrides as escapes; the rest unchanged', async () => {
  const { visible } = await load('format')
  assert.equal(visible(EVIL), '␛]0;pwned␇␛[2J')
  assert.equal(visible('a\nb\tc\u0000\u007f'), 'a␊b␉c␀␡')
  assert.equal(visible('csi\u009b31m rlo\u202eevil'), 'csi\\x9b31m rlo\\u202eevil')
  assert.equal(visible('Dell Inc. PowerEdge R6625 — ok <b>'), 'Dell Inc. PowerEdge R6625 — ok <b>')
  assert.equal(visible(42), '42')
})

test('web UI: a machine whose SMBIOS strings carry escape sequences shows them as symbols, in the list and its page', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`no chromium at ${CHROMIUM}: apt-get install chromium (the web UI tests need it)`)
    return
  }
  const { chromium } = await import('playwright-core')
  const rb = await startRackboot()
  t.after(() => rb.stop())
  const hw = hardware(7, { manufacturer: EVIL })
  const id = await discover(rb, { ...hw, disks: [{ ...hw.disks[0]!, model: `PM9A3${EVIL}` }] })
  const stored = await api(rb, rb.tokens.viewer, 'GET', `/machines/${id}`)
  assert.equal(stored.body.manufacturer, EVIL, 'the API keeps the exact value (JSON escapes it)')

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  t.after(() => browser.close())
  const page = await browser.newPage()
  await page.goto(`${rb.base}/ui/#/machines/${id}`)
  await page.locator('dialog#signin').waitFor({ state: 'visible', ...WAIT })
  await page.fill('#token', rb.tokens.viewer)
  await page.click('dialog#signin button[type=submit]')
  await page.locator('.card-hardware').getByText('PM9A3', { exact: false }).waitFor(WAIT)
  const text = (await page.locator('main').textContent())!
  assert.doesNotMatch(text, RAW_CONTROL, 'no raw control character on the machine page')
  assert.ok(text.includes('PM9A3␛]0;pwned␇␛[2J'), 'the disk model, shown')
  assert.ok(text.includes('␛]0;pwned␇␛[2J'), 'the manufacturer, shown')

  await page.goto(`${rb.base}/ui/#/`)
  const row = page.locator(`table.machines tbody tr[data-id="${id}"]`)
  await row.waitFor(WAIT)
  assert.equal(await row.locator('[data-col=model]').textContent(), '␛]0;pwned␇␛[2J PowerEdge R6625')
  assert.doesNotMatch((await page.locator('main').textContent())!, RAW_CONTROL, 'no raw control character in the inventory')
})
