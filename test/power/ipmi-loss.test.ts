// One driver.power() call puts at most one Chassis Control on the wire, whatever is lost (issue 18: with the
// answers lost, one `rackboot power cycle` power-cycled a machine 27 times). A UDP proxy (fixtures/udp-loss-proxy)
// between the driver and a real BMC simulator loses chosen datagrams; what the BMC carried out is read from the
// simulator's own record: recording-bmc.py's counters and log (pyghmi), chassiscontrol.sh's log (ipmi_sim). The
// fake RMCP BMC covers what the simulators cannot be made to do: each completion code, and a BMC that never answers.
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { createIpmiDriver, isPowerError, type PowerError } from '../../src/power/index.js'
import type { IpmiDriverOptions } from '../../src/power/ipmi/index.js'
import { missing, pyghmiMissing, startIpmiSim, startPyghmi } from './fixtures/bmc-sims.js'
import { startFakeBmc } from './fixtures/fake-rmcp-bmc.js'
import { startLossProxy, type LossProxy, type LossRule } from './fixtures/udp-loss-proxy.js'

const pyghmiSkip = pyghmiMissing()
const simSkip = missing('ipmi_sim')
if (pyghmiSkip) console.warn(`SKIPPED ipmi-loss pyghmi tests: ${pyghmiSkip}`)
if (simSkip) console.warn(`SKIPPED ipmi-loss ipmi_sim tests: ${simSkip}`)

// In a one-command call the in-session datagrams are Set Session Privilege Level (1), the command (2), Close
// Session (3); a retransmitted copy takes the next number.
const COMMAND = 2
const loseAnswerTo = (k: number): LossRule => (d) => (d.inSession === k ? { dropAnswer: true } : undefined)
const loseRequest = (k: number): LossRule => (d) => (d.inSession === k ? { dropRequest: true } : undefined)
const loseAnswersFrom = (k: number): LossRule => (d) => (d.inSession >= k ? { dropAnswer: true } : undefined)

/** The in-session datagrams of the proxy's latest client (the last driver call): [position, answers dropped]. */
function lastSession(proxy: LossProxy): [number, number][] {
  const client = Math.max(...proxy.requests.map((d) => d.client))
  return proxy.requests.filter((d) => d.client === client && d.inSession > 0).map((d) => [d.inSession, d.droppedAnswers])
}

// Rules count positions, so a copy retransmitted only because a loaded simulator was slow (ipmi_sim runs a shell
// script per chassis command) would shift them: 500 ms keeps that unlikely, and the answer wait at its 2 s floor.
function driverVia(proxy: LossProxy, options: Partial<IpmiDriverOptions> = {}) {
  return createIpmiDriver({ host: '127.0.0.1', port: proxy.port, username: 'admin', password: 'password', timeoutMs: 5000,
    retransmitMs: 500, ...options })
}

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** The call's error (null when it succeeded), so that what the BMC did is asserted before what the call said. */
const outcome = (p: Promise<unknown>): Promise<unknown> => p.then(() => null, (err: unknown) => err)

/** A lost answer after the one copy left: a timeout naming BMC and step, that says it may have run. */
function assertMaybeRun(err: unknown, proxy: LossProxy, step: string): true {
  assert.ok(isPowerError(err, 'timeout'), String(err))
  assert.equal((err as PowerError).notRun, false)
  assert.match((err as PowerError).message, new RegExp(`^no answer from BMC 127\\.0\\.0\\.1:${proxy.port} to ` +
    `${step.replace(/[()]/g, '\\$&')} after \\d+ ms; it may have been carried out`))
  return true
}

async function pyghmiRig(t: TestContext) {
  const bmc = await startPyghmi(t)
  const proxy = await startLossProxy({ port: bmc.port })
  t.after(() => proxy.close())
  const counters = () => ({ ...bmc.state().counters })
  return { bmc, proxy, counters }
}

test('IPMI under loss, against the recording pyghmi BMC', { skip: pyghmiSkip ?? false, timeout: 90_000 }, async (t) => {
  const { bmc, proxy, counters } = await pyghmiRig(t)
  const driver = driverVia(proxy)
  await driver.power('on')

  await t.test('Chassis Control answer lost: exactly one cycle at the BMC, a timeout that may have run, onSend once', async () => {
    const before = counters()
    const logBefore = bmc.state().log.length
    proxy.setRule(loseAnswerTo(COMMAND))
    let sends = 0
    const started = Date.now()
    const err = await outcome(driver.power('cycle', { onSend: () => sends++ }))
    const ms = Date.now() - started
    proxy.setRule(null)
    await settle(300) // a late copy would show up in the record now
    const chassis = bmc.state().log.slice(logBefore).filter((e) => e.op === 'chassis').map((e) => e.directive)
    assert.deepEqual(chassis, ['cycle'])
    assert.deepEqual(counters(), { ...before, cycle: before.cycle! + 1 })
    // On the wire: privilege, the control (answered by the BMC, the answer lost), close. No second control.
    assert.deepEqual(lastSession(proxy), [[1, 0], [2, 1], [3, 0]])
    assert.equal(sends, 1)
    assertMaybeRun(err, proxy, 'Chassis Control (power cycle)')
    // The answer wait: max(2 s, 4 x 500 ms), within the 5 s budget.
    assert.ok(ms >= 1900 && ms < 3500, `took ${ms} ms`)
  })

  await t.test('Chassis Control request lost: nothing ran, nothing re-sent, and the outcome is still unknown', async () => {
    const before = counters()
    proxy.setRule(loseRequest(COMMAND))
    let sends = 0
    const err = await outcome(driver.power('off', { onSend: () => sends++ }))
    proxy.setRule(null)
    await settle(300)
    assert.deepEqual(counters(), before)
    assert.equal(bmc.state().power, 'on')
    assert.deepEqual(lastSession(proxy), [[1, 0], [2, 0], [3, 0]])
    assert.equal(sends, 1)
    assertMaybeRun(err, proxy, 'Chassis Control (power off)')
  })

  await t.test('reads and boot-option sets survive a lost answer: they are retransmitted', async () => {
    const stats: { retransmitted: number }[] = []
    const reader = driverVia(proxy, { onStats: (s) => stats.push(s) })
    proxy.setRule(loseAnswerTo(COMMAND))
    assert.equal(await reader.powerStatus(), 'on')
    assert.deepEqual(lastSession(proxy), [[1, 0], [2, 1], [3, 0], [4, 0]]) // status, its copy, close
    assert.equal(stats.at(-1)?.retransmitted, 1)
    assert.equal((await reader.getBootDevice()).device, 'disk')
    assert.deepEqual(lastSession(proxy), [[1, 0], [2, 1], [3, 0], [4, 0]])
    // Set System Boot Options is idempotent: the boot flags (in-session 4, after params 0 and 4) are re-sent.
    const logBefore = bmc.state().log.length
    proxy.setRule(loseAnswerTo(4))
    const readback = await reader.setBootDevice({ device: 'pxe', mode: 'uefi', persistent: false })
    proxy.setRule(null)
    assert.equal(readback.raw, 'a0 04 00 00 00')
    const flagSets = bmc.state().log.slice(logBefore).filter((e) => e.op === 'set-boot-option' && e.param === 5)
    assert.deepEqual(flagSets.map((e) => e.data), ['a0 04 00 00 00', 'a0 04 00 00 00'])
  })

  await t.test('session set-up: a lost answer is retried; no answer at all fails before sending, proven not run', async () => {
    const before = counters()
    // Open Session (the client's 2nd datagram) answered once and lost: the retransmitted copy carries on.
    let first = true
    proxy.setRule((d) => (d.position === 2 && first ? ((first = false), { dropAnswer: true }) : undefined))
    let sends = 0
    await driver.power('off', { onSend: () => sends++ })
    assert.equal(sends, 1)
    assert.deepEqual(counters(), { ...before, off: before.off! + 1 })

    proxy.setRule(() => ({ dropAnswer: true }))
    const silent = driverVia(proxy, { timeoutMs: 1500 })
    const started = Date.now()
    await assert.rejects(silent.power('on', { onSend: () => sends++ }), (err) => {
      assert.ok(isPowerError(err, 'timeout'), String(err))
      assert.equal(err.notRun, true)
      assert.match(err.message, new RegExp(`^no answer from BMC 127\\.0\\.0\\.1:${proxy.port} for Get Channel Authentication Capabilities after`))
      return true
    })
    proxy.setRule(null)
    assert.ok(Date.now() - started < 1800, `took ${Date.now() - started} ms`)
    assert.equal(sends, 1)
    assert.deepEqual(counters(), { ...before, off: before.off! + 1 })
  })

  await t.test('a BMC that falls silent mid-session: the call ends within its budget, naming the step', async () => {
    const before = counters()
    proxy.setRule(loseAnswersFrom(COMMAND))
    const short = driverVia(proxy, { timeoutMs: 1500 })
    let started = Date.now()
    await assert.rejects(short.powerStatus(), (err) => {
      assert.ok(isPowerError(err, 'timeout'), String(err))
      assert.match(err.message, new RegExp(`^no answer from BMC 127\\.0\\.0\\.1:${proxy.port} for Get Chassis Status after`))
      return true
    })
    // Close Session is not waited for past the deadline.
    assert.ok(Date.now() - started < 1800, `took ${Date.now() - started} ms`)
    started = Date.now()
    let sends = 0
    const err = await outcome(short.power('on', { onSend: () => sends++ }))
    const ms = Date.now() - started
    proxy.setRule(null)
    await settle(300)
    assert.deepEqual(counters(), { ...before, on: before.on! + 1 }) // it did run: only its answer was lost
    assert.equal(sends, 1)
    assertMaybeRun(err, proxy, 'Chassis Control (power on)')
    assert.ok(ms < 1800, `took ${ms} ms`)
  })
})

test('IPMI under loss, against ipmi_sim (no de-duplication by rqSeq)', { skip: simSkip ?? false, timeout: 60_000 }, async (t) => {
  const sim = await startIpmiSim(t)
  const proxy = await startLossProxy({ port: sim.port })
  t.after(() => proxy.close())
  const driver = driverVia(proxy)
  await driver.power('on')
  const count = (call: string) => sim.calls().filter((c) => c === call).length

  await t.test('Chassis Control answer lost: exactly one cycle (one off, one on) at the BMC', async () => {
    const offs = count('0x20 set power 0')
    const ons = count('0x20 set power 1')
    proxy.setRule(loseAnswerTo(COMMAND))
    let sends = 0
    const err = await outcome(driver.power('cycle', { onSend: () => sends++ }))
    proxy.setRule(null)
    // ipmi_sim powers back on about 1 s after the off of a cycle; wait for it, then count.
    const until = Date.now() + 5000
    while (count('0x20 set power 1') === ons && Date.now() < until) await settle(100)
    await settle(1500) // a second cycle would have had time to show
    assert.equal(count('0x20 set power 0') - offs, 1, sim.calls().join('\n'))
    assert.equal(count('0x20 set power 1') - ons, 1, sim.calls().join('\n'))
    assert.equal(sim.file('power'), '1')
    assert.deepEqual(lastSession(proxy), [[1, 0], [2, 1], [3, 0]])
    assert.equal(sends, 1)
    assertMaybeRun(err, proxy, 'Chassis Control (power cycle)')
  })

  await t.test('a read survives its lost answer', async () => {
    proxy.setRule(loseAnswerTo(COMMAND))
    assert.equal(await driver.powerStatus(), 'on')
    proxy.setRule(null)
    assert.deepEqual(lastSession(proxy), [[1, 0], [2, 1], [3, 0], [4, 0]])
  })
})

test('completion codes: a refusal is proven not run, an answer that proves nothing is not', async (t) => {
  const cases: [number, string, boolean][] = [
    [0xc0, 'busy', true], [0xc1, 'unsupported', true], [0xcc, 'rejected', true], [0xd4, 'auth', true],
    [0xd5, 'rejected', true], [0xd6, 'unsupported', true],
    [0xc3, 'timeout', false], [0xce, 'rejected', false], [0xcf, 'rejected', false], [0xff, 'rejected', false],
    [0x80, 'rejected', false],
  ]
  for (const [cc, kind, notRun] of cases) {
    const bmc = await startFakeBmc({ controlCode: cc })
    t.after(() => bmc.close())
    const d = createIpmiDriver({ host: '127.0.0.1', port: bmc.port, username: 'admin', password: 'password', timeoutMs: 3000 })
    let sends = 0
    await assert.rejects(d.power('reset', { onSend: () => sends++ }), (err) => {
      assert.ok(isPowerError(err), String(err))
      assert.equal(err.kind, kind, `0x${cc.toString(16)}`)
      assert.equal(err.notRun, notRun, `0x${cc.toString(16)}`)
      assert.match(err.message, new RegExp(`^BMC 127\\.0\\.0\\.1:${bmc.port} refused Chassis Control \\(power reset\\): .*\\(0x${cc.toString(16)}\\)`))
      if (!notRun) assert.match(err.message, /it may have been carried out$/)
      return true
    })
    assert.equal(sends, 1)
    assert.equal(bmc.controlDatagrams, 1)
  }
})

test('Chassis Control answer wait: max(2 s, 4 x retransmitMs), within the call budget; one copy', async (t) => {
  const bmc = await startFakeBmc({ silentChassisCommands: [0x02] })
  t.after(() => bmc.close())
  const target = { host: '127.0.0.1', port: bmc.port, username: 'admin', password: 'password' }
  let started = Date.now()
  await assert.rejects(createIpmiDriver({ ...target, timeoutMs: 10_000, retransmitMs: 750 }).power('cycle'),
    (err) => isPowerError(err, 'timeout') && !err.notRun)
  let ms = Date.now() - started
  assert.ok(ms >= 2900 && ms < 4000, `took ${ms} ms`) // 4 x 750 ms
  assert.equal(bmc.controlDatagrams, 1)
  started = Date.now()
  await assert.rejects(createIpmiDriver({ ...target, timeoutMs: 1200, retransmitMs: 750 }).power('cycle'),
    (err) => isPowerError(err, 'timeout') && !err.notRun && /it may have been carried out/.test(err.message))
  ms = Date.now() - started
  assert.ok(ms >= 1100 && ms < 1500, `took ${ms} ms`) // the deadline, not the 3 s wait
  assert.equal(bmc.controlDatagrams, 2)
  assert.deepEqual(bmc.controls, [])
})

test('an abort: before the Chassis Control left it is not run; after, it may have run', async (t) => {
  const bmc = await startFakeBmc({ silentChassisCommands: [0x02] })
  t.after(() => bmc.close())
  const d = createIpmiDriver({ host: '127.0.0.1', port: bmc.port, username: 'admin', password: 'password', timeoutMs: 5000 })
  let sends = 0
  await assert.rejects(d.power('off', { signal: AbortSignal.abort(), onSend: () => sends++ }), (err) => {
    assert.ok(isPowerError(err, 'timeout'), String(err))
    assert.equal(err.notRun, true)
    return true
  })
  assert.equal(sends, 0)
  assert.equal(bmc.controlDatagrams, 0)
  const started = Date.now()
  await assert.rejects(d.power('off', { signal: AbortSignal.timeout(500), onSend: () => sends++ }), (err) => {
    assert.ok(isPowerError(err, 'timeout'), String(err))
    assert.equal(err.notRun, false)
    assert.match(err.message, new RegExp(`^gave up waiting \\(aborted\\) for BMC 127\\.0\\.0\\.1:${bmc.port}'s answer to ` +
      'Chassis Control \\(power off\\) after \\d+ ms; it may have been carried out'))
    return true
  })
  assert.ok(Date.now() - started < 1000)
  assert.equal(sends, 1)
  assert.equal(bmc.controlDatagrams, 1)
})

test('an onSend that throws stops the Chassis Control from leaving: not run', async (t) => {
  const bmc = await startFakeBmc()
  t.after(() => bmc.close())
  const d = createIpmiDriver({ host: '127.0.0.1', port: bmc.port, username: 'admin', password: 'password', timeoutMs: 3000 })
  await assert.rejects(d.power('on', { onSend: () => { throw new Error('could not record the attempt') } }), (err) => {
    assert.ok(isPowerError(err), String(err))
    assert.equal(err.notRun, true)
    assert.match(err.message, /could not record the attempt/)
    return true
  })
  assert.equal(bmc.controlDatagrams, 0)
  assert.equal(bmc.power, 'off')
})
