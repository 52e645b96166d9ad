import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import type { Browser, Page } from 'playwright-core'
import type { Inventory } from '../../src/inventory/index.js'
import { api, CHROMIUM, discover, hardware, shot, signIn, startRackboot, TALOS, WAIT, watch } from './support.js'

// Failure as routine in the web UI (issue 14), in Debian's chromium against a real `rackboot serve`: two machines
// go up the real repair ladder (a 10 s boot deadline, no BMC: failure, wait, failure, quarantine), a third has a
// longer ladder written into its timeline before the server starts (Talos never finishes installing; repairs
// scheduled, one power cycle failing, one done; quarantined). The inventory shows and filters `failed` in red with
// where each failed; a machine's page shows the ladder and its boot progress as failed, and Retry, Maintenance and
// Replace work (a read-only token's Retry is refused with the reason).

// The pure reading of the ladder (phases.js, a browser module without types, loaded by URL).
const phases = () => import(new URL('../../src/http/ui/static/js/phases.js', import.meta.url).href)
const ev = (seq: number, type: string, data: Record<string, unknown> = {}, message = type) =>
  ({ seq, machineId: 'm-1', type, at: new Date(1_700_000_000_000 + seq * 1000).toISOString(), message, data })
const failure = (seq: number, phase: string, reason: string, attempt: number, kind = 'deadline', extra: Record<string, unknown> = {}) =>
  ev(seq, 'boot.failure', { phase, kind, reason, attempt, ...extra }, `boot failed in phase ${phase}: ${reason}`)
const steps = (p: { path: string[]; steps: Record<string, { status: string }> }) => p.path.map((k) => `${k}:${p.steps[k]?.status ?? '-'}`).join(' ')

test('phases: a boot.failure marks the step it waited for as failed, never done or in progress', async () => {
  const { bootProgress, classify } = await phases()
  const c = (e: ReturnType<typeof ev>) => {
    const r = classify(e)
    return `${r.phase}:${r.status}:${r.label} ${r.tag}`.trim()
  }
  assert.equal(c(failure(1, 'boot', 'no boot script', 1)), 'script:fail:iPXE script failed')
  assert.equal(c(failure(1, 'download', 'x', 1, 'download', { path: 'talos/v1/amd64/initramfs.xz', status: 404 })), 'initramfs:fail:Initramfs failed')
  assert.equal(c(failure(1, 'config', 'x', 1)), 'config:fail:Config fetch failed')
  assert.equal(c(failure(1, 'installing', 'x', 1)), 'talos:fail:Talos failed')
  assert.equal(c(failure(1, 'installed', 'x', 1)), 'install:fail:Install failed')
  assert.equal(c(ev(1, 'boot.repair', { action: 'scheduled', inMs: 30_000 })), 'null:warn:Repair scheduled')
  assert.equal(c(ev(1, 'boot.repair', { action: 'pxe-cycle', ok: true })), 'null:ok:Repaired')
  assert.equal(c(ev(1, 'boot.repair', { action: 'pxe-cycle', ok: false, error: 'timeout' })), 'null:fail:Repair failed')
  assert.equal(c(ev(1, 'boot.repair', { action: 'quarantine' })), 'null:fail:Quarantined')
  assert.equal(c(ev(1, 'machine.state', { from: 'provisioning', to: 'failed' })), 'null:fail:State')

  const boot = [
    ev(1, 'machine.state', { from: 'ready', to: 'provisioning' }),
    ev(2, 'boot.script', { decision: 'install' }), ev(3, 'boot.asset', { path: 'talos/v1/amd64/vmlinuz', status: 200, complete: true }),
    ev(4, 'boot.asset', { path: 'talos/v1/amd64/initramfs.xz', status: 200, complete: true }), ev(5, 'boot.config', { status: 200 }),
    ev(6, 'boot.talos', { hint: 'installing' }),
  ]
  assert.equal(steps(bootProgress(boot)), 'dhcp:- tftp:- script:ok kernel:ok initramfs:ok config:ok talos:- install:progress')
  // Talos never finishes: the install step failed, with the failure as where the boot stopped.
  const stuck = bootProgress([...boot, failure(7, 'installed', 'waited 1800 s for Talos to finish installing', 1)])
  assert.equal(steps(stuck), 'dhcp:- tftp:- script:ok kernel:ok initramfs:ok config:ok talos:- install:fail')
  assert.equal(stuck.failed.seq, 7)
  // Config fetched, Talos never starts installing: not "Config fetch: done" as the last word.
  const quiet = bootProgress([...boot.slice(0, 5), failure(6, 'installing', 'waited 900 s for Talos to start installing', 1)])
  assert.equal(quiet.last.phase, 'talos')
  assert.equal(quiet.last.status, 'fail')
  // Kernel there, initramfs never: the download failure is the initramfs's.
  const half = bootProgress([...boot.slice(0, 3), failure(4, 'download', 'waited 900 s for the kernel and initramfs downloads', 1)])
  assert.equal(half.steps.initramfs.status, 'fail')
  assert.equal(half.steps.kernel.status, 'ok')

  // A power cycle of the ladder starts a new attempt: waiting for the machine, then a boot failure there.
  const cycled = [...boot, failure(7, 'installed', 'x', 1), ev(8, 'boot.repair', { action: 'scheduled', inMs: 1000 }),
    ev(9, 'boot.repair', { action: 'pxe-cycle', ok: true }, 'next boot PXE and power cycle: done')]
  const waiting = bootProgress(cycled)
  assert.equal(waiting.start, 8)
  assert.equal(waiting.waiting.seq, 9)
  assert.equal(waiting.failed, null)
  assert.equal(steps(waiting), 'dhcp:- tftp:- script:- kernel:- initramfs:- config:- talos:- install:-')
  const again = bootProgress([...cycled, failure(10, 'boot', 'waited 600 s for a boot script (firmware, DHCP, iPXE)', 2)])
  assert.equal(again.steps.script.status, 'fail')
  assert.equal(again.failed.seq, 10)
  assert.equal(again.waiting, null)

  // A quarantined machine that boots again (its hold loop) still stopped at the failure that quarantined it.
  const held = [...boot, failure(7, 'installed', 'waited 1800 s for Talos to finish installing', 2),
    ev(8, 'machine.state', { from: 'provisioning', to: 'failed' }), ev(9, 'boot.repair', { action: 'quarantine' }),
    ev(10, 'boot.dhcp', { reply: 'ack', ipxe: false }), ev(11, 'boot.script', { decision: 'hold' })]
  assert.equal(bootProgress(held).failed, null, 'read alone, the newest boot went well')
  const f = bootProgress(held, { state: 'failed' })
  assert.equal(f.failed.seq, 7)
  assert.equal(f.steps.install.status, 'fail')
  assert.equal(f.last.phase, 'install')
})

test('repair ladder: the current provisioning attempt\'s failures and repairs in order; a retry starts it afresh', async () => {
  const { repairLadder, failureText, lastFailure } = await phases()
  const events = [
    ev(1, 'machine.state', { from: 'ready', to: 'provisioning' }),
    failure(2, 'installed', 'waited 1800 s for Talos to finish installing', 1),
    ev(3, 'boot.repair', { action: 'scheduled', inMs: 23_000, failures: 1 }, 'next boot PXE and a power cycle in 23 s (failure 1 of 3)'),
    ev(4, 'boot.repair', { action: 'pxe-cycle', ok: false, error: 'connection timed out' }),
    failure(5, 'boot', 'waited 600 s for a boot script (firmware, DHCP, iPXE)', 2),
    ev(6, 'boot.repair', { action: 'wait', failures: 2 }, 'no BMC to power-cycle it: waiting 600 s for the machine to boot again (failure 2 of 3)'),
    ev(7, 'boot.repair', { action: 'pxe-cycle', ok: true }, 'next boot PXE (uefi) and power cycle: done; boot attempt 3'),
    failure(8, 'config', 'config not served: no install disk', 3, 'config'),
    ev(9, 'machine.state', { from: 'provisioning', to: 'failed' }),
    ev(10, 'boot.repair', { action: 'quarantine', phase: 'config', failures: 3 }, 'quarantined: 3 failures in all'),
  ]
  const ladder = repairLadder(events)
  assert.deepEqual(ladder.map((s: { kind: string; status: string }) => `${s.kind}:${s.status}`),
    ['failure:fail', 'scheduled:warn', 'repair-failed:fail', 'failure:fail', 'waiting:warn', 'repaired:ok', 'failure:fail', 'quarantined:fail'])
  assert.equal(ladder[0].label, 'Failure 1')
  assert.equal(ladder[0].text, 'Failed in phase installed: waited 1800 s for Talos to finish installing')
  assert.equal(ladder[0].detail, 'missed its deadline')
  assert.equal(ladder[1].text, 'Next boot PXE and a power cycle in 23.0 s')
  assert.equal(ladder[2].text, 'Power cycle failed: connection timed out')
  assert.equal(ladder[6].detail, 'config not served')
  assert.equal(failureText(lastFailure(events)), 'Failed in phase config: config not served: no install disk')
  // Retried: a new attempt, nothing on its ladder yet; an earlier attempt's failures are not its own.
  const retried = [...events, ev(11, 'machine.state', { from: 'failed', to: 'provisioning' })]
  assert.deepEqual(repairLadder(retried), [])
  assert.equal(lastFailure(retried), null)
  assert.deepEqual(repairLadder(events.slice(0, 1)), [])
})

const LADDER_WAIT = { timeout: 60_000 }
const RED = 'rgb(180, 35, 24)'
const MIN = 60_000

/** A machine quarantined after three failures (installed, boot, installed), its timeline as the ladder writes it. */
async function seedQuarantined(inv: Inventory): Promise<string> {
  const t0 = Date.now() - 90 * MIN
  const m = await inv.machines.create({
    name: 'r7-node-09', serial: 'SN-UI-F9', manufacturer: 'Dell Inc.', product: 'PowerEdge R6625', arch: 'amd64', firmware: 'uefi',
    nics: [{ mac: '02:42:c6:12:00:f9', name: 'eno1', boot: true }], state: 'failed',
  }, t0)
  const installBoot = (at: number) => [
    [at, 'boot.script', 'boot script: install (provisioning)', { decision: 'install', reason: 'provisioning', clientIp: '10.20.0.109' }],
    [at + 2_000, 'boot.asset', `downloaded talos/${TALOS}/amd64/vmlinuz: 0.1 MiB in 0.01 s`, { path: `talos/${TALOS}/amd64/vmlinuz`, status: 200, complete: true, bytes: 65536 }],
    [at + 4_000, 'boot.asset', `downloaded talos/${TALOS}/amd64/initramfs.xz: 0.1 MiB in 0.01 s`, { path: `talos/${TALOS}/amd64/initramfs.xz`, status: 200, complete: true, bytes: 65536 }],
    [at + 40_000, 'boot.config', `config served (4096 bytes, Talos ${TALOS}, profile worker)`, { status: 200, bytes: 4096, clientIp: '10.20.0.109' }],
    [at + 70_000, 'boot.talos', 'Talos is installing (TaskEvent install)', { hint: 'installing' }],
  ] as const
  const events: (readonly [number, string, string, Record<string, unknown>])[] = [
    [t0 + 1_000, 'machine.state', 'ready → provisioning: allocated by token tech (a-seeded, profile worker)', { from: 'ready', to: 'provisioning', allocation: 'a-seeded', profile: 'worker' }],
    ...installBoot(t0 + 60_000),
    [t0 + 32 * MIN, 'boot.failure', 'boot failed in phase installed: waited 1800 s for Talos to finish installing', { phase: 'installed', kind: 'deadline', reason: 'waited 1800 s for Talos to finish installing', attempt: 1, deadlineSeconds: 1800 }],
    [t0 + 32 * MIN + 10, 'boot.repair', 'next boot PXE and a power cycle in 23 s (failure 1 of 3)', { action: 'scheduled', inMs: 23_000, failures: 1 }],
    [t0 + 32 * MIN + 23_000, 'boot.repair', 'power cycle failed: redfish 10.20.9.9: connection timed out; the deadline runs on', { action: 'pxe-cycle', ok: false, error: 'redfish 10.20.9.9: connection timed out' }],
    [t0 + 42 * MIN, 'boot.failure', 'boot failed in phase boot: waited 600 s for a boot script (firmware, DHCP, iPXE)', { phase: 'boot', kind: 'deadline', reason: 'waited 600 s for a boot script (firmware, DHCP, iPXE)', attempt: 2, deadlineSeconds: 600 }],
    [t0 + 42 * MIN + 10, 'boot.repair', 'next boot PXE and a power cycle in 51 s (failure 2 of 3)', { action: 'scheduled', inMs: 51_000, failures: 2 }],
    [t0 + 43 * MIN, 'boot.repair', 'next boot PXE (uefi) and power cycle: done; boot attempt 3', { action: 'pxe-cycle', ok: true, failures: 2 }],
    ...installBoot(t0 + 45 * MIN),
    [t0 + 77 * MIN, 'boot.failure', 'boot failed in phase installed: waited 1800 s for Talos to finish installing', { phase: 'installed', kind: 'deadline', reason: 'waited 1800 s for Talos to finish installing', attempt: 3, deadlineSeconds: 1800 }],
    [t0 + 77 * MIN + 5, 'machine.state', 'provisioning → failed: quarantined after 3 failures in all; last: waited 1800 s for Talos to finish installing', { from: 'provisioning', to: 'failed', cause: 'quarantined after 3 failures in all; last: waited 1800 s for Talos to finish installing' }],
    [t0 + 77 * MIN + 10, 'boot.repair', 'quarantined: 3 failures in all (last in phase installed: waited 1800 s for Talos to finish installing); retry or replace it', { action: 'quarantine', phase: 'installed', failures: 3 }],
  ]
  for (const [at, type, message, data] of events) await inv.events.append({ machineId: m.id, type, at, message, data: { ...data } })
  return m.id
}

test('web UI: failed machines in red, the repair ladder, failed boot progress, retry (not offered read-only), maintenance, replace', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`no chromium at ${CHROMIUM}: apt-get install chromium (the web UI tests need it)`)
    return
  }
  const { chromium } = await import('playwright-core')
  const started = Date.now()
  let nine = ''
  // The smallest boot deadline there is: a machine that never boots fails in 10-15 s (the ladder sweeps every 5 s).
  const rb = await startRackboot({ set: ['repair.deadlines.boot=10'], seed: async (inv) => { nine = await seedQuarantined(inv) } })
  t.after(() => rb.stop())

  // Two machines boot the discovery agent, are accepted and allocated, and then never boot again: each fails its
  // boot deadline, waits (no BMC to power-cycle it), fails again and is quarantined.
  const alpha = await discover(rb, hardware(0x21))
  const bravo = await discover(rb, hardware(0x22))
  for (const id of [alpha, bravo]) assert.equal((await api(rb, rb.tokens.tech, 'POST', `/machines/${id}/accept`)).status, 200)
  const alloc = await api(rb, rb.tokens.tech, 'POST', '/allocations', { selector: 'manufacturer == "Dell Inc."', count: 2, profile: 'worker' })
  assert.equal(alloc.status, 201, JSON.stringify(alloc.body))
  assert.deepEqual(alloc.body.machines.map((m: { id: string }) => m.id).sort(), [alpha, bravo].sort())
  // A ready machine like them, for Replace.
  const spare = await discover(rb, hardware(0x23))
  assert.equal((await api(rb, rb.tokens.tech, 'POST', `/machines/${spare}/accept`)).status, 200)

  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  t.after(() => browser.close())
  const page: Page = await browser.newPage({ viewport: { width: 1440, height: 900 } })
  const w = watch(page)
  await page.goto(`${rb.base}/ui/`)
  await signIn(page, rb.tokens.viewer)
  const row = (id: string) => page.locator(`table.machines tbody tr[data-id="${id}"]`)
  const count = (state: string) => page.locator(`.counts button[data-state="${state}"] .n`)

  // The seeded machine: failed, in red, and its row says where it failed (its last boot.failure, not its newest
  // event, which is the quarantine).
  await row(nine).waitFor(WAIT)
  assert.equal(await row(nine).locator('[data-col=state]').textContent(), 'failed')
  assert.equal(await row(nine).locator('[data-col=state] .state').evaluate((e: any) => (globalThis as any).getComputedStyle(e).backgroundColor), RED)
  await row(nine).locator('[data-col=last] .failure').getByText('Failed in phase installed').waitFor(WAIT)
  assert.match((await row(nine).locator('[data-col=last]').textContent())!, /^Failed in phase installed waited 1800 s for Talos to finish installing \d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d$/)
  assert.equal(await row(nine).locator('[data-col=last] .phase-fail').evaluate((e: any) => (globalThis as any).getComputedStyle(e).backgroundColor), RED)
  assert.ok(await page.locator('#f-state option[value="failed"]').count() === 1, 'failed is in the state filter')

  // The real ladder, live: both allocated machines turn failed on the open page, their rows say where, the count follows.
  for (const id of [alpha, bravo]) {
    await page.locator(`tr[data-id="${id}"] [data-col=state]`).getByText('failed', { exact: true }).waitFor(LADDER_WAIT)
    await page.locator(`tr[data-id="${id}"] [data-col=last]`).getByText(/^Failed in phase boot waited 10 s for a boot script \(firmware, DHCP, iPXE\)/).waitFor(WAIT)
  }
  await count('failed').getByText('3', { exact: true }).waitFor(WAIT)
  assert.equal(await page.locator('.counts button[data-state="failed"]').evaluate((e: any) => (globalThis as any).getComputedStyle(e).backgroundColor), RED)
  assert.equal(await count('ready').textContent(), '1')

  // Every count reads, with failed machines or without (the counts follow the text filter).
  const legible = async () => {
    for (const b of await page.locator('.counts button').all()) {
      const [fg, bg] = await b.evaluate((e: any) => { const s = (globalThis as any).getComputedStyle(e); return [s.color, s.backgroundColor] })
      assert.notEqual(fg, bg, `${await b.textContent()}: text and background differ`)
    }
  }
  await legible()
  await page.fill('#f-q', 'SN-UI-35')
  await count('failed').getByText('0', { exact: true }).waitFor(WAIT)
  await legible()
  assert.notEqual(await page.locator('.counts button[data-state="failed"]').evaluate((e: any) => (globalThis as any).getComputedStyle(e).backgroundColor), RED)
  await page.fill('#f-q', '')
  await count('failed').getByText('3', { exact: true }).waitFor(WAIT)

  // The failed count filters the list (on the server): exactly the three failed machines.
  await page.click('.counts button[data-state="failed"]')
  await page.waitForFunction((n) => (globalThis as any).document.querySelectorAll('table.machines tbody tr').length === n, 3, WAIT)
  const ids = await Promise.all((await page.locator('table.machines tbody tr').all()).map((r) => r.getAttribute('data-id')))
  assert.deepEqual(ids.sort(), [alpha, bravo, nine].sort())
  assert.match(page.url(), /#\/\?state=failed$/)
  assert.equal(await page.locator('.counts button[data-state="failed"]').getAttribute('aria-pressed'), 'true')
  await shot(page, rb, 'inventory-failed', t)

  // The seeded machine's page: the ladder in order, failures in red; the progress says where it failed, not "in progress".
  await page.click(`tr[data-id="${nine}"] [data-col=name] a`)
  await page.locator('#machine-title').getByText('r7-node-09').waitFor(WAIT)
  const failures = page.locator('#failures')
  await failures.locator('.ladder li').first().waitFor(WAIT)
  const kinds = await Promise.all((await failures.locator('.ladder li').all()).map((li) => li.getAttribute('data-kind')))
  assert.deepEqual(kinds, ['failure', 'scheduled', 'repair-failed', 'failure', 'scheduled', 'repaired', 'failure', 'quarantined'])
  const rungs = await failures.locator('.ladder li').allTextContents()
  assert.match(rungs[0]!, /Failure 1Failed in phase installed: waited 1800 s for Talos to finish installing \(missed its deadline\)$/)
  assert.match(rungs[1]!, /Repair scheduledNext boot PXE and a power cycle in 23\.0 s$/)
  assert.match(rungs[2]!, /Repair failedPower cycle failed: redfish 10\.20\.9\.9: connection timed out \(the deadline runs on\)$/)
  assert.match(rungs[3]!, /Failure 2Failed in phase boot: waited 600 s for a boot script \(firmware, DHCP, iPXE\)/)
  assert.match(rungs[5]!, /Repair donenext boot PXE \(uefi\) and power cycle: done; boot attempt 3$/)
  assert.match(rungs[6]!, /Failure 3Failed in phase installed/)
  assert.match(rungs[7]!, /Quarantinedquarantined: 3 failures in all/)
  for (const i of [0, 2, 3, 6, 7]) {
    assert.equal(await failures.locator('.ladder li').nth(i).evaluate((e: any) => (globalThis as any).getComputedStyle(e).color), RED, `rung ${i} in red`)
  }
  assert.match((await failures.locator('.failures-intro').textContent())!, /^Quarantined after 3 failures\./)
  // The page is read with a read-only token: what to do is said, the buttons are for a provisioning token.
  for (const b of ['#retry', '#maintenance', '#replace']) assert.equal(await failures.locator(b).isVisible(), false, b)
  assert.equal(await failures.locator('.readonly-note').isVisible(), true)
  const progress = async () => {
    const phases = await Promise.all((await page.locator('ol.progress li').all()).map((li) => li.getAttribute('data-phase')))
    const status = await page.locator('ol.progress li .step-status').allTextContents()
    return phases.map((p, i) => `${p}:${status[i]}`)
  }
  assert.deepEqual(await progress(), ['dhcp:not reached', 'tftp:not reached', 'script:done', 'kernel:done', 'initramfs:done', 'config:done', 'talos:not reached', 'install:failed'])
  assert.match((await page.locator('.boot-summary').textContent())!, /^Failed in phase installed: waited 1800 s for Talos to finish installing \(/)
  assert.equal(await page.locator('.boot-summary').evaluate((e: any) => (globalThis as any).getComputedStyle(e).color), RED)
  assert.equal(await page.locator('ol.progress').getByText('in progress').count(), 0, 'no step claims to be in progress')
  await shot(page, rb, 'machine-quarantined', t)

  // A machine of the real ladder: failure, wait (no BMC), failure, quarantined. A read-only token is offered no
  // Retry (the page says it needs the provision scope), and the machine stays failed.
  await page.goto(`${rb.base}/ui/#/machines/${alpha}`)
  await failures.locator('.ladder li').nth(3).waitFor(WAIT)
  assert.deepEqual(await Promise.all((await failures.locator('.ladder li').all()).map((li) => li.getAttribute('data-kind'))), ['failure', 'waiting', 'failure', 'quarantined'])
  assert.match((await failures.locator('.ladder li').first().textContent())!, /Failure 1Failed in phase boot: waited 10 s for a boot script \(firmware, DHCP, iPXE\) \(missed its deadline\)/)
  assert.match((await page.locator('.boot-summary').textContent())!, /^Failed in phase boot: waited 10 s for a boot script/)
  await failures.locator('.readonly-note').getByText(/read-only: retry, maintenance and replace need a token with the provision scope/).waitFor(WAIT)
  for (const b of ['#retry', '#maintenance', '#replace']) assert.equal(await page.locator(b).isVisible(), false, `${b} hidden from a read-only token`)
  assert.equal(await page.locator('.machine-head .state').textContent(), 'failed')
  assert.equal((await api(rb, rb.tokens.viewer, 'GET', `/machines/${alpha}`)).body.state, 'failed')
  await shot(page, rb, 'machine-retry-refused', t)

  // With a provisioning token, Retry takes it back to provisioning with its counts reset: the panel empties, and
  // when it misses its deadline again the ladder starts over at failure 1.
  await page.click('#signout')
  await signIn(page, rb.tokens.tech)
  await page.locator('#retry').waitFor(WAIT)
  for (const b of ['#retry', '#maintenance', '#replace']) assert.equal(await failures.locator(b).isVisible(), true, b)
  await page.click('#retry')
  await page.locator('.machine-head .state[data-state=provisioning]').waitFor(WAIT)
  await page.locator('.outcome.ok').getByText(/^Retried: .* is provisioning again with its failure counts reset\./).waitFor(WAIT)
  assert.equal((await api(rb, rb.tokens.viewer, 'GET', `/machines/${alpha}`)).body.state, 'provisioning')
  await failures.waitFor({ state: 'hidden', ...WAIT })
  assert.match((await page.locator('.boot-summary').textContent())!, /^Waiting for the machine to boot since .*: failed → provisioning: retry by/)
  await failures.locator('.ladder li[data-kind=failure]').waitFor({ state: 'visible', ...LADDER_WAIT })
  assert.match((await failures.locator('.ladder li').first().textContent())!, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\dFailure 1Failed in phase boot/)
  assert.match((await failures.locator('.failures-intro').textContent())!, /^1 failure in this provisioning attempt\./)
  assert.equal(await page.locator('#retry').isVisible(), false, 'no Retry while it provisions')
  await shot(page, rb, 'machine-retried', t)

  // Replace (confirmed): the spare takes its place; the page links to it; the failed machine stays quarantined.
  await page.goto(`${rb.base}/ui/#/machines/${bravo}`)
  await page.locator('#replace').waitFor(WAIT)
  const confirmed: string[] = []
  page.once('dialog', (d) => {
    confirmed.push(d.message())
    void d.accept()
  })
  await page.click('#replace')
  const replaced = page.locator('.outcome.ok a.replacement')
  await replaced.waitFor(WAIT)
  assert.match(confirmed[0] ?? '', /^Replace .*\? A ready machine of the same class and role takes its place/)
  assert.equal(await replaced.getAttribute('data-id'), spare)
  assert.match((await page.locator('.outcome.ok').textContent())!, /^Replaced: .* takes its place \(allocation a-\S+, profile worker\)\. .* left it and stays quarantined\.$/)
  assert.equal((await api(rb, rb.tokens.viewer, 'GET', `/machines/${spare}`)).body.state, 'provisioning')
  const after = (await api(rb, rb.tokens.viewer, 'GET', `/machines/${bravo}`)).body
  assert.equal(after.state, 'failed')
  assert.equal(after.allocation, null)
  await shot(page, rb, 'machine-replaced', t)
  await replaced.click()
  await page.locator('.machine-head .state[data-state=provisioning]').waitFor(WAIT)
  assert.match(page.url(), new RegExp(`#/machines/${spare}$`))

  // Maintenance takes the seeded machine out of service; its last attempt's ladder stays to read.
  await page.goto(`${rb.base}/ui/#/machines/${nine}`)
  await page.locator('#maintenance').waitFor(WAIT)
  await page.click('#maintenance')
  await page.locator('.machine-head .state[data-state=maintenance]').waitFor(WAIT)
  assert.equal((await api(rb, rb.tokens.viewer, 'GET', `/machines/${nine}`)).body.state, 'maintenance')
  assert.match((await failures.locator('.failures-intro').textContent())!, /^3 failures in its last provisioning attempt\./)
  assert.equal(await page.locator('#maintenance').isVisible(), false)

  // Nothing went wrong in the page.
  assert.deepEqual(w.badResponses, [])
  assert.deepEqual(w.pageErrors, [])
  assert.deepEqual(w.consoleErrors, [])
  assert.deepEqual(w.failedRequests.filter((r) => !/^GET \S+\/api\/v1\/events: net::ERR_ABORTED$/.test(r)), [])
  t.diagnostic(`failures UI test took ${((Date.now() - started) / 1000).toFixed(1)} s`)
})
