import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createBusyPoller } from '../../src/tftp/busy-poll.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

test('busy polling turns the loop without sleeping, then stops by itself once the budget after the last send is spent', async () => {
  const p = createBusyPoller({ budgetMicros: 200_000, headroom: () => true })
  assert.equal(p.spinning, false, 'idle until something is sent')
  let turns = 0
  const count = () => {
    turns++
    if (p.spinning) setImmediate(count)
  }
  p.expectReply()
  setImmediate(count)
  // Up to 150 ms of the 200 ms budget, not a fixed 20 ms: on a loaded machine this process may not run at once.
  const started = Date.now()
  while (turns <= 10 && p.spinning && Date.now() - started < 150) await sleep(1)
  assert.equal(p.spinning, true)
  assert.ok(turns > 10, `the loop kept turning (${turns} turns in ${Date.now() - started} ms)`)
  // Each send extends the budget from that moment; without sends it runs out.
  p.expectReply()
  await sleep(500)
  assert.equal(p.spinning, false, 'stopped once the budget ran out')
  p.stop()
})

test('a zero budget never spins, and stop() ends a spin at once', async () => {
  const off = createBusyPoller({ budgetMicros: 0, headroom: () => true })
  off.expectReply()
  assert.equal(off.spinning, false)
  const p = createBusyPoller({ budgetMicros: 10_000_000, headroom: () => true })
  p.expectReply()
  await sleep(2)
  assert.equal(p.spinning, true)
  p.stop()
  await sleep(2)
  assert.equal(p.spinning, false)
  p.expectReply()
  assert.equal(p.spinning, false, 'a stopped poller stays off')
})

test('no spinning while the rest of the machine leaves no core free', async () => {
  let free = false
  const p = createBusyPoller({ budgetMicros: 10_000_000, headroom: () => free })
  p.expectReply()
  assert.equal(p.spinning, false)
  free = true
  p.expectReply()
  assert.equal(p.spinning, true)
  p.stop()
})

test('CPU headroom: other busy processes count against it', async (t) => {
  const { cpuHeadroom } = await import('../../src/tftp/busy-poll.js')
  const { spawn } = await import('node:child_process')
  const { existsSync } = await import('node:fs')
  if (!existsSync('/proc/stat')) return t.skip('no /proc/stat (not Linux)')
  // Pretend the machine has 2 cores; 3 busy children leave none free whatever else runs.
  const headroom = cpuHeadroom(100, 2)
  const burn = () => spawn(process.execPath, ['-e', 'const end = Date.now() + 4000; while (Date.now() < end);'], { stdio: 'ignore' })
  const kids = [burn(), burn(), burn()]
  t.after(() => kids.forEach((k) => k.kill('SIGKILL')))
  await sleep(150)
  headroom()
  await sleep(300)
  assert.equal(headroom(), false, 'three busy processes on two cores leave no headroom')
})

test('CPU headroom: before its first interval, the load average decides', async (t) => {
  const { cpuHeadroom } = await import('../../src/tftp/busy-poll.js')
  const { existsSync } = await import('node:fs')
  if (!existsSync('/proc/stat')) return t.skip('no /proc/stat (not Linux)')
  assert.equal(cpuHeadroom(60_000, 2, 0.1)(), true, 'an idle machine: spin from the first transfer')
  assert.equal(cpuHeadroom(60_000, 2, 5)(), false, 'a loaded one: not')
})
