// The install line in the web UI (issue 14): with provisioning.maxConcurrent=1, a second provisioning machine is
// told to wait by its boot script, and the inventory page shows it waiting, in order, in chromium.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import type { Browser } from 'playwright-core'
import { api, bootScript, CHROMIUM, discover, hardware, signIn, startRackboot, WAIT } from './support.js'

test('web UI: machines waiting for an install slot are shown in order on the inventory page', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`no chromium at ${CHROMIUM}: apt-get install chromium (the web UI tests need it)`)
    return
  }
  const { chromium } = await import('playwright-core')
  const rb = await startRackboot({ set: ['provisioning.maxConcurrent=1'] })
  t.after(() => rb.stop())
  const hw = [hardware(0x31), hardware(0x32), hardware(0x33)]
  const ids = []
  for (const x of hw) {
    const id = await discover(rb, x)
    assert.equal((await api(rb, rb.tokens.tech, 'POST', `/machines/${id}/accept`)).status, 200)
    ids.push(id)
  }
  const alloc = await api(rb, rb.tokens.tech, 'POST', '/allocations', { selector: `id in [${ids.join(', ')}]`, count: 3, profile: 'worker' })
  assert.equal(alloc.status, 201, JSON.stringify(alloc.body))
  // The first to ask installs; the next two wait, told so by their boot scripts.
  assert.match(await bootScript(rb, hw[0]!.nics[0]!.mac, hw[0]!.serial), /talos\.config=/)
  const second = await bootScript(rb, hw[1]!.nics[0]!.mac, hw[1]!.serial)
  assert.match(second, /waiting for an install slot, number 1 of 1 in line: 1 machines installing \(provisioning\.maxConcurrent 1\)/)
  assert.doesNotMatch(second, /talos\.config=/)
  assert.match(await bootScript(rb, hw[2]!.nics[0]!.mac, hw[2]!.serial), /number 2 of 2 in line/)
  const queue = await api(rb, rb.tokens.viewer, 'GET', '/overview/queue')
  assert.deepEqual(queue.body.items.map((q: { machineId: string; position: number }) => [q.machineId, q.position]), [[ids[1], 1], [ids[2], 2]])

  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  t.after(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } })
  await page.goto(`${rb.base}/ui/`)
  await signIn(page, rb.tokens.viewer)
  const line = page.locator('.inventory .queue')
  await line.getByText('2 waiting for an install slot').waitFor(WAIT)
  // Each by what a tech knows it by (these have no name: their serials), the id in the tooltip.
  await line.getByText(`1. ${hw[1]!.serial}`).waitFor(WAIT)
  await page.waitForFunction((want) => (globalThis as any).document.querySelector('.inventory .queue')?.textContent === want,
    `2 waiting for an install slot: 1. ${hw[1]!.serial}, 2. ${hw[2]!.serial}`, WAIT)
  assert.equal(await line.locator('a').first().getAttribute('title'), ids[1])
  assert.equal(await line.locator('a').first().getAttribute('href'), `#/machines/${ids[1]}`)
})
