// The inventory table for the floor (issue 17), in chromium against a real `rackboot serve` holding 500 discovered
// machines: one line a machine (~25 rows on a 1280x800 screen), sorting by a header (aria-sort, kept in the
// address), the column chooser (kept in localStorage), binary units, and the bulk actions: accept all 500 with
// progress, label a shift-click range, a power action the API refuses per machine, and a read-only token's 403.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { Browser, Page } from 'playwright-core'
import type { SqliteInventory } from '../../src/inventory/index.js'
import { seedMachines } from '../api/support/seed.js'
import { api, CHROMIUM, shot, signIn, startRackboot, WAIT, watch } from './support.js'

const MACHINES = 500
const natural = new Intl.Collator('en', { numeric: true, sensitivity: 'base' })

/** The text of one column, row by row, as the page shows it. */
function column(page: Page, key: string): Promise<string[]> {
  return page.$$eval(`table.machines tbody td[data-col="${key}"]`, (tds) => tds.map((td) => td.textContent ?? ''))
}

/** What a 1280x800 screen shows, as an artefact (a full-page shot of 500 rows is 11,000 px tall and slow). */
async function screen(page: Page, rb: { cwd: string }, name: string, t: { diagnostic(msg: string): void }): Promise<void> {
  const path = join(rb.cwd, `${name}.png`)
  await page.screenshot({ path })
  t.diagnostic(`screenshot: ${path}`)
}

async function rowsLoaded(page: Page, n: number): Promise<void> {
  await page.waitForFunction((count) => (globalThis as any).document.querySelectorAll('table.machines tbody tr').length === count, n, { timeout: 20_000 })
}

const BINARY: Record<string, number> = { B: 1, KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30, TiB: 2 ** 40 }
function parseBinary(text: string): number {
  const m = /^([\d.]+) (B|KiB|MiB|GiB|TiB)$/.exec(text)
  assert.ok(m, `binary size: ${text}`)
  return Number(m[1]) * BINARY[m[2]!]!
}

test('web UI inventory table: 500 discovered machines, dense rows, sort, column chooser, bulk accept/label/power, 403 shown', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`no chromium at ${CHROMIUM}: apt-get install chromium (the web UI tests need it)`)
    return
  }
  const { chromium } = await import('playwright-core')
  const started = Date.now()
  const lap = (what: string) => t.diagnostic(`${what}: ${((Date.now() - started) / 1000).toFixed(1)} s`)
  const rb = await startRackboot({
    // Straight into the database: 500 discovery boots through HTTP would take most of the time budget.
    seed: async (inv) => void (await seedMachines(inv as SqliteInventory, { count: MACHINES, state: 'discovered' })),
  })
  t.after(() => rb.stop())
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  t.after(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } })
  const w = watch(page)
  lap('server and browser up')

  // A page of 500 (the largest the page offers; latest-events takes 200 at a time, so the page asks in batches).
  await page.goto(`${rb.base}/ui/#/?state=discovered&limit=500`)
  await signIn(page, rb.tokens.tech)
  await rowsLoaded(page, MACHINES)
  lap('500 rows shown')

  // Dense: every row one line, at least 25 of them on the screen, no cell wrapping.
  const layout = await page.evaluate(() => {
    const g = globalThis as any
    const trs = [...g.document.querySelectorAll('table.machines tbody tr')] as any[]
    const heights = trs.map((tr) => tr.getBoundingClientRect().height)
    const inView = trs.filter((tr) => { const r = tr.getBoundingClientRect(); return r.top >= 0 && r.bottom <= g.innerHeight }).length
    const cells = trs.slice(0, 50).flatMap((tr) => [...tr.querySelectorAll('td')]).filter((td: any) => !td.hidden)
    const wrapping = cells.filter((td: any) => g.getComputedStyle(td).whiteSpace !== 'nowrap').length
    const noTip = cells.filter((td: any) => !['select', 'state', 'power'].includes(td.dataset.col ?? 'select') && td.title !== td.textContent.trim()).length
    return { max: Math.max(...heights), min: Math.min(...heights), inView, wrapping, noTip }
  })
  t.diagnostic(`rows: ${layout.min}-${layout.max} px high, ${layout.inView} fully on a 1280x800 screen`)
  assert.ok(layout.inView >= 25, `${layout.inView} rows visible at 1280x800`)
  // One line each: a wrapped cell would make its row ~17 px taller (border-collapse gives the first row half a border).
  assert.ok(layout.max <= 24 && layout.max - layout.min <= 1, `rows ${layout.min}-${layout.max} px: one line each`)
  assert.equal(layout.wrapping, 0, 'no cell wraps')
  assert.equal(layout.noTip, 0, 'a cut cell carries its whole text as a tooltip')

  // The new columns: rack/U from the inventory, IP (DHCP: no static address), memory in binary units.
  const first = page.locator('table.machines tbody tr').first()
  assert.equal(await first.locator('[data-col=rack]').textContent(), 'r1 U1')
  assert.equal(await first.locator('[data-col=ip]').textContent(), 'DHCP')
  const memory = await column(page, 'memory')
  assert.ok(memory.includes('1 TiB') && memory.includes('64 GiB'), `binary units: ${[...new Set(memory)].join(', ')}`)

  // Sorting by name: natural order, then the other way; the header says so, the address keeps it.
  const byId = await column(page, 'name')
  const nameHeader = page.locator('table.machines th.col-name')
  assert.equal(await nameHeader.getAttribute('aria-sort'), null)
  await nameHeader.locator('button.sort').click()
  assert.equal(await nameHeader.getAttribute('aria-sort'), 'ascending')
  const asc = await column(page, 'name')
  assert.deepEqual(asc, [...byId].sort(natural.compare))
  assert.match(page.url(), /[?&]sort=name(&|$)/)
  await nameHeader.locator('button.sort').click()
  assert.equal(await nameHeader.getAttribute('aria-sort'), 'descending')
  const desc = await column(page, 'name')
  assert.deepEqual(desc, [...asc].reverse())
  assert.notDeepEqual(desc, byId)
  assert.match(page.url(), /[?&]sort=-name(&|$)/)
  // A reload (or a shared link) opens the same order.
  await page.reload()
  await rowsLoaded(page, MACHINES)
  assert.equal(await page.locator('table.machines th.col-name').getAttribute('aria-sort'), 'descending')
  assert.deepEqual(await column(page, 'name'), desc)
  // Memory sorts by bytes (64 GiB before 1 TiB), not by text.
  await page.locator('table.machines th.col-memory button.sort').click()
  const bytes = (await column(page, 'memory')).map(parseBinary)
  assert.deepEqual(bytes, [...bytes].sort((a, b) => a - b))
  assert.equal(await page.locator('table.machines th.col-name').getAttribute('aria-sort'), null, 'one sorted column')
  lap('sorted')

  // Column chooser: hiding Serial hides its header and cells, and the choice outlives a reload.
  assert.equal(await page.locator('table.machines th.col-serial').isVisible(), true)
  await page.click('.column-chooser summary')
  await page.uncheck('.column-chooser input[value=serial]')
  assert.equal(await page.locator('table.machines th.col-serial').isVisible(), false)
  assert.equal(await first.locator('[data-col=serial]').isVisible(), false)
  // A hidden-by-default column comes in the same way.
  await page.check('.column-chooser input[value=bmc]')
  assert.equal(await page.locator('table.machines th.col-bmc').isVisible(), true)
  assert.deepEqual(JSON.parse((await page.evaluate(`localStorage.getItem('rackboot.inventory.columns')`)) as string), {
    state: true, power: true, rack: true, ip: true, bmc: true, class: true, profile: true, serial: false, model: false, cpus: true,
    memory: true, disks: true, macs: false, labels: true, since: false, last: true,
  })
  await page.reload()
  await rowsLoaded(page, MACHINES)
  assert.equal(await page.locator('table.machines th.col-serial').isVisible(), false)
  assert.equal(await page.locator('table.machines tbody tr').first().locator('[data-col=serial]').isVisible(), false)
  assert.equal(await page.locator('.column-chooser input[value=serial]').isChecked(), false)
  await screen(page, rb, 'inventory-table-500', t)

  // Bulk accept of all 500: select the page, one click, progress to 500/500 without failures.
  await page.check('#select-page')
  assert.equal(await page.locator('.bulk .sel-count').textContent(), '500 selected')
  const acceptStarted = Date.now()
  await page.click('#bulk-accept')
  // The page stays usable while it runs: the chooser still opens and closes.
  await page.click('.column-chooser summary')
  await page.click('.column-chooser summary')
  const done = page.locator('.bulk-progress .bulk-done')
  await page.locator(`.bulk-progress .bulk-done[data-done="${MACHINES}"]`).waitFor({ timeout: 60_000 })
  await page.locator('.bulk-progress').getByText(/Dismiss/).waitFor(WAIT)
  t.diagnostic(`bulk accept of ${MACHINES}: ${((Date.now() - acceptStarted) / 1000).toFixed(1)} s`)
  assert.equal(await done.getAttribute('data-failed'), '0')
  assert.match((await done.textContent())!, /^500\/500 done \(500 succeeded\)$/)
  const ready = await api(rb, rb.tokens.viewer, 'GET', '/machines?state=ready&limit=1000')
  assert.equal(ready.body.items.length, MACHINES, 'all 500 ready, as the API says')
  assert.equal((await api(rb, rb.tokens.viewer, 'GET', '/overview/counts')).body.states.discovered, 0)
  // The rows show it from the answers (and the stream), without a reload.
  await page.waitForFunction(() => [...(globalThis as any).document.querySelectorAll('table.machines tbody td[data-col=state]')].every((td: any) => td.textContent === 'ready'), null, { timeout: 20_000 })
  await screen(page, rb, 'inventory-table-accepted', t)
  lap('bulk accept done')

  // Label a shift-click range of 20 rows: exactly those machines get it.
  await page.click('.bulk button.link:has-text("Clear selection")')
  assert.equal(await page.locator('.bulk .sel-count').textContent(), 'None selected')
  const picks = page.locator('table.machines tbody input.pick')
  await picks.nth(0).click()
  await picks.nth(19).click({ modifiers: ['Shift'] })
  assert.equal(await page.locator('.bulk .sel-count').textContent(), '20 selected')
  assert.equal(await page.locator('#select-page').evaluate((e: any) => e.indeterminate), true)
  const picked = await page.$$eval('table.machines tbody tr.selected', (trs) => trs.map((tr: any) => tr.dataset.id as string))
  await page.fill('#bulk-label', 'batch=b1')
  await page.click('#bulk-label-apply')
  await page.locator('.bulk-progress .bulk-done[data-done="20"][data-failed="0"]').waitFor(WAIT)
  const labelled = await api(rb, rb.tokens.viewer, 'GET', '/machines?label=batch%3Db1&limit=1000')
  assert.deepEqual(labelled.body.items.map((m: { id: string }) => m.id).sort(), [...picked].sort())

  // Power on (no confirmation for "on") for machines without a BMC: each refusal listed with the API's message.
  await page.selectOption('#bulk-power', 'on')
  await page.click('#bulk-power-apply')
  await page.locator('.bulk-progress .bulk-done[data-done="20"][data-failed="20"]').waitFor(WAIT)
  const powerFailure = (await page.locator('.bulk-failures li').first().textContent())!
  assert.match(powerFailure, /^r\d+-u\d+-\d+: 4\d\d RB_ERR_\w+: .*BMC/, powerFailure)
  lap('label and power')

  // A read-only token: Accept answers 403, shown as such, and the rest are not sent (the scope is the token's).
  const viewer = await browser.newPage({ viewport: { width: 1280, height: 800 } })
  const wv = watch(viewer)
  let acceptPosts = 0
  viewer.on('request', (r) => { if (r.method() === 'POST' && r.url().endsWith('/accept')) acceptPosts++ })
  await viewer.goto(`${rb.base}/ui/#/?limit=50`)
  await signIn(viewer, rb.tokens.viewer)
  await rowsLoaded(viewer, 50)
  await viewer.check('#select-page')
  await viewer.click('#bulk-accept')
  const refusal = viewer.locator('.bulk-progress .error[role=alert]')
  await refusal.waitFor(WAIT)
  assert.match((await refusal.textContent())!, /Not allowed: token 'viewer' lacks the 'provision' scope.*The other machines were not sent/)
  await viewer.locator('.bulk-progress').getByText(/Dismiss/).waitFor(WAIT)
  const viewerDone = viewer.locator('.bulk-progress .bulk-done')
  const sent = Number(await viewerDone.getAttribute('data-done'))
  assert.ok(sent >= 1 && sent <= 8, `${sent} sent: at most one round of 8 before the 403 stops it`)
  assert.equal(acceptPosts, sent)
  assert.match((await viewerDone.textContent())!, new RegExp(`^${sent}/50 done, ${sent} failed, ${50 - sent} not sent`))
  assert.match((await viewer.locator('.bulk-failures li').first().textContent())!, /: 403 not allowed: token 'viewer' lacks the 'provision' scope/)
  await shot(viewer, rb, 'inventory-table-403', t)

  // Nothing else went wrong: the only 4xx are the refusals the test asked for.
  assert.deepEqual(w.pageErrors, [])
  assert.deepEqual(wv.pageErrors, [])
  assert.deepEqual(w.badResponses.filter((r) => !/^POST \/api\/v1\/machines\/[^/]+\/power 4\d\d$/.test(r)), [])
  assert.deepEqual(wv.badResponses.filter((r) => !/^POST \/api\/v1\/machines\/[^/]+\/accept 403$/.test(r)), [])
  lap('done')
})
