// Finding a machine the way a tech knows it, in chromium against a real `rackboot serve` (the tracker issue:
// unnamed machines shown as m-<hex>; /ui/#/machines/<serial> said "No machine"; the filter example rack=r12 missed
// machines whose rack field is r12; sizes in TB beside the CLI's TiB; dates in mixed formats):
// - a machine without a name shows by its serial, else its first MAC, else a short id marked unnamed;
// - #/machines/<serial | MAC | UUID | name> opens the machine (the API resolves the reference);
// - the search box opens the machine when exactly one matches (or one equals what was typed);
// - rack=r12 in the filter box is the rack field (the API's rack parameter); other keys are labels;
// - sizes in binary units, every time in one format (local, with the zone's offset), in a browser set to +05:30.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import type { Browser, Page } from 'playwright-core'
import { api, CHROMIUM, discover, hardware, shot, signIn, startRackboot, WAIT, watch } from './support.js'

const TIME = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+05:30$/

/** The ids of the rows shown, sorted. */
function shownIds(page: Page): Promise<string[]> {
  return page.$$eval('table.machines tbody tr', (trs) => trs.map((tr: any) => tr.dataset.id as string).sort())
}

async function waitRows(page: Page, ids: string[]): Promise<void> {
  const want = [...ids].sort().join()
  await page.waitForFunction((w) => [...(globalThis as any).document.querySelectorAll('table.machines tbody tr')].map((tr: any) => tr.dataset.id).sort().join() === w, want, WAIT)
}

test('web UI lookup: by serial, MAC, UUID or name in the address and the search box; unnamed machines by serial or MAC; rack filter; units and dates', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`no chromium at ${CHROMIUM}: apt-get install chromium (the web UI tests need it)`)
    return
  }
  const { chromium } = await import('playwright-core')
  const ids: Record<string, string> = {}
  const nic = (n: number) => [{ mac: `02:42:c6:14:00:${n.toString(16).padStart(2, '0')}`, name: 'eno1', boot: true }]
  const rb = await startRackboot({
    async seed(inv) {
      const now = Date.now()
      const make = async (key: string, input: Parameters<typeof inv.machines.create>[0]) => { ids[key] = (await inv.machines.create(input, now)).id }
      await make('db01', { name: 'db-01', serial: 'SN-LK-1', uuid: '4c4c4544-0000-1000-8000-00000000ab01', rack: 'r12', rackUnit: 3, labels: { role: 'db' }, nics: nic(1) })
      await make('bySerial', { serial: 'SN-LK-2', rack: 'r12', rackUnit: 4, nics: nic(2) })
      // Its rack field is r7; a label also called rack says r12: rack=r12 is the field, so it is not a match.
      await make('byMac', { rack: 'r7', labels: { rack: 'r12' }, nics: nic(3) })
      await make('bare', { rack: 'r7' })
      await make('web10', { name: 'web-10', serial: 'SN-LK-10', rack: 'r13', nics: nic(0x10) })
      await make('web11', { name: 'web-11', serial: 'SN-LK-11', rack: 'r13', labels: { role: 'db' }, nics: nic(0x11) })
    },
  })
  t.after(() => rb.stop())
  // A machine through the real boot path: no name, a serial, disks and a timeline.
  ids.booted = await discover(rb, hardware(5))
  const uuid = '4c4c4544-0000-1000-8000-00000000ab01'

  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  t.after(() => browser.close())
  // A zone with a half-hour offset: a time that is not converted, or converted without saying so, shows.
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, timezoneId: 'Asia/Kolkata' })
  const page = await context.newPage()
  const w = watch(page)
  const lists: URL[] = []
  page.on('request', (r) => {
    const u = new URL(r.url())
    if (u.pathname === '/api/v1/machines') lists.push(u)
  })
  await page.goto(`${rb.base}/ui/`)
  await signIn(page, rb.tokens.viewer)
  await waitRows(page, Object.values(ids))

  // ---- Names a tech recognises. -----------------------------------------------------------------------------------
  const nameCell = (key: string) => page.locator(`tr[data-id="${ids[key]}"] [data-col=name] a`)
  const expectName = async (key: string, text: RegExp | string, by: string) => {
    const a = nameCell(key)
    const shown = (await a.textContent())!
    if (typeof text === 'string') assert.equal(shown, text, key)
    else assert.match(shown, text, key)
    assert.equal(await a.getAttribute('data-by'), by, key)
    assert.match((await a.getAttribute('title'))!, new RegExp(ids[key]!), `${key}: the id in the tooltip`)
  }
  await expectName('db01', 'db-01', 'name')
  await expectName('bySerial', 'SN-LK-2', 'serial')
  await expectName('byMac', '02:42:c6:14:00:03', 'MAC')
  await expectName('bare', new RegExp(`^unnamed ${ids.bare!.slice(0, 8)}$`), 'id')
  await expectName('booted', 'SN-UI-5', 'serial')
  const names = await page.$$eval('table.machines tbody td[data-col=name]', (tds) => tds.map((td: any) => td.textContent as string))
  for (const n of names) assert.doesNotMatch(n, /^m-[0-9a-f]+$/, 'never a bare m-<hex>')
  assert.equal(await nameCell('bySerial').evaluate((a: any) => (globalThis as any).getComputedStyle(a).fontStyle), 'italic', 'marked as not a name')
  await shot(page, rb, 'lookup-unnamed', t)

  // ---- rack=r12 is the rack field; other keys are labels. ---------------------------------------------------------
  const filter = async (text: string, expected: string[]) => {
    lists.length = 0
    await page.fill('#f-label', text)
    await waitRows(page, expected.map((k) => ids[k]!))
    return lists.at(-1)!
  }
  let asked = await filter('rack=r12', ['db01', 'bySerial'])
  assert.equal(asked.searchParams.get('rack'), 'r12')
  assert.deepEqual(asked.searchParams.getAll('label'), [], 'rack= is not sent as a label')
  await page.locator('.counts button[data-state=""] .n').getByText('2', { exact: true }).waitFor(WAIT)
  assert.match(page.url(), /label=rack%3Dr12/, 'kept in the address')
  await shot(page, rb, 'lookup-rack-filter', t)
  asked = await filter('rack=r12 role=db', ['db01'])
  assert.equal(asked.searchParams.get('rack'), 'r12')
  assert.deepEqual(asked.searchParams.getAll('label'), ['role=db'])
  await filter('role=db', ['db01', 'web11'])
  await filter('rack=r7', ['byMac', 'bare'])
  await filter('', Object.keys(ids))

  // ---- The search box: Enter opens the machine when one matches. --------------------------------------------------
  const title = page.locator('#machine-title')
  await page.fill('#f-q', 'SN-LK-2')
  await page.press('#f-q', 'Enter')
  await title.getByText('SN-LK-2', { exact: true }).waitFor(WAIT)
  assert.match(page.url(), new RegExp(`#/machines/${ids.bySerial}$`))
  // SN-LK-1 is in SN-LK-10 and SN-LK-11 too; the one whose serial it is opens.
  await page.goto(`${rb.base}/ui/#/`)
  await page.locator('table.machines tbody tr').first().waitFor(WAIT)
  await page.fill('#f-q', 'SN-LK-1')
  await page.press('#f-q', 'Enter')
  await title.getByText('db-01', { exact: true }).waitFor(WAIT)
  assert.match(page.url(), new RegExp(`#/machines/${ids.db01}$`))
  // Several, none exactly: the list shows them, the page stays.
  await page.goto(`${rb.base}/ui/#/`)
  await page.locator('table.machines tbody tr').first().waitFor(WAIT)
  await page.fill('#f-q', 'SN-LK')
  await page.press('#f-q', 'Enter')
  await waitRows(page, [ids.db01!, ids.bySerial!, ids.web10!, ids.web11!])
  assert.match(page.url(), /#\/\?q=SN-LK$/)
  lap(t, 'names, rack filter, search box')

  // ---- The address names the machine as the tech knows it. -------------------------------------------------------
  const open = async (ref: string, shown: string, key: string) => {
    await page.goto(`${rb.base}/ui/#/machines/${encodeURIComponent(ref)}`)
    await title.getByText(shown, { exact: true }).waitFor(WAIT)
    assert.equal(await page.locator('[data-fact=id]').textContent(), ids[key], `${ref} is ${key}`)
  }
  await open('SN-LK-2', 'SN-LK-2', 'bySerial')
  await shot(page, rb, 'lookup-by-serial', t)
  await open('SN-UI-5', 'SN-UI-5', 'booted')
  await open('02:42:c6:14:00:03', '02:42:c6:14:00:03', 'byMac')
  await open(uuid, 'db-01', 'db01')
  await open('web-10', 'web-10', 'web10')
  assert.equal((await api(rb, rb.tokens.viewer, 'GET', '/machines/SN-LK-2')).body.id, ids.bySerial, 'the API resolves a serial too')

  // ---- One unit system and one date format. ---------------------------------------------------------------------
  await page.goto(`${rb.base}/ui/#/machines/SN-UI-5`)
  await page.locator('table.timeline tbody tr').nth(3).waitFor(WAIT)
  const hw = (await page.locator('.card-hardware').textContent())!
  for (const s of ['894 GiB', '1.7 TiB', '256 GiB']) assert.ok(hw.includes(s), `hardware shows ${s}`)
  const text = (await page.locator('main').textContent())!
  assert.doesNotMatch(text, /\d (kB|MB|GB|TB|PB)\b/, 'no decimal units')
  assert.doesNotMatch(text, /\bago\b|just now/, 'no relative times')
  const times = await page.$$eval('main time', (els) => els.map((e: any) => e.textContent as string))
  assert.ok(times.length >= 8, `${times.length} times on the machine page`)
  for (const s of times) assert.match(s, TIME)
  await shot(page, rb, 'lookup-units-dates', t)
  await page.goto(`${rb.base}/ui/#/`)
  await page.click('.column-chooser summary')
  await page.check('.column-chooser input[value=since]')
  await page.click('.column-chooser summary')
  await page.locator('table.machines td[data-col=since] time').first().waitFor(WAIT)
  const listTimes = await page.$$eval('table.machines time', (els) => els.map((e: any) => e.textContent as string))
  assert.ok(listTimes.length >= 7, `${listTimes.length} times in the list`)
  for (const s of listTimes) assert.match(s, TIME)
  assert.equal(await page.locator(`tr[data-id="${ids.booted}"] [data-col=memory]`).textContent(), '256 GiB')
  assert.doesNotMatch((await page.locator('main').textContent())!, /\bago\b|just now|\d (kB|MB|GB|TB)\b/)

  assert.deepEqual(w.badResponses, [])
  assert.deepEqual(w.pageErrors, [])
})

function lap(t: { diagnostic(msg: string): void }, what: string): void {
  t.diagnostic(`${what}: done at ${new Date().toISOString()}`)
}
