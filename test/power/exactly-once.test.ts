// One command, one action at the BMC, through the whole power path (manager + real driver + a real simulator):
// with every Chassis Control answer lost, one `power cycle` is one power cycle at ipmi_sim (issue 18 counted 27),
// and the outcome is settled by reading the BMC back or reported unknown, never by sending again.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { silentLogger } from '../../src/log.js'
import { createPowerManager, isPowerError, type PowerResult } from '../../src/power/index.js'
import { bmcRecord } from '../support/bmc.js'
import { missing, startIpmiSim } from './fixtures/bmc-sims.js'
import { startLossProxy } from './fixtures/udp-loss-proxy.js'
import { startRedfishServer, type RedfishQuirks } from './fixtures/redfish-server.js'

const simSkip = missing('ipmi_sim')
if (simSkip) console.warn(`SKIPPED exactly-once ipmi_sim tests: ${simSkip}`)

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms))

test('ipmi_sim, every Chassis Control answer lost: one command is one action, settled by the read-back', { skip: simSkip ?? false, timeout: 120_000 }, async (t) => {
  const sim = await startIpmiSim(t)
  const proxy = await startLossProxy({ port: sim.port })
  t.after(() => proxy.close())
  const results: PowerResult[] = []
  const power = createPowerManager({
    bmcs: {
      get: async (id) => bmcRecord({ machineId: id, type: 'ipmi', address: '127.0.0.1', port: proxy.port }),
      credentials: async () => ({ username: 'admin', password: 'password' }),
    },
    log: silentLogger(),
    observer: { result: (r) => results.push(r) },
    driverOptions: { ipmi: { retransmitMs: 500, bootVerify: 'device' } },
    settings: { timeoutMs: 8_000, attempts: 3, backoffBaseMs: 100, minRebootIntervalMs: 0, verifyTimeoutMs: 8_000, verifyIntervalMs: 500, sessionIdleMs: 0 },
  })
  t.after(() => power.stop())
  const count = (call: string) => sim.calls().filter((c) => c === call).length
  // Each driver call is its own session; its in-session datagram 2 is the command. Losing that answer loses every
  // Chassis Control answer, and the first answer of every read (which the read's retransmission then gets).
  proxy.setRule((d) => (d.inSession === 2 ? { dropAnswer: true } : undefined))

  const on = await power.power('m1', 'on')
  assert.equal(count('0x20 set power 1'), 1, sim.calls().join('\n'))
  assert.deepEqual([on.verified, on.state], [true, 'on'])
  assert.match(on.note ?? '', /no answer that says whether the BMC did it .*now reports on: not re-sent/)

  const offs = count('0x20 set power 0')
  const ons = count('0x20 set power 1')
  const cycle = await power.power('m1', 'cycle').then(() => null, (err: unknown) => err)
  await settle(3_000) // ipmi_sim powers back on ~1 s after a cycle's off; a second cycle would show by now
  assert.equal(count('0x20 set power 0') - offs, 1, `one power cycle at the BMC:\n${sim.calls().join('\n')}`)
  assert.equal(count('0x20 set power 1') - ons, 1)
  // On before and after: whether it rebooted cannot be read back, and that is what the command says.
  assert.ok(isPowerError(cycle, 'unknown-outcome'), String(cycle))
  assert.match((cycle as Error).message, /whether it rebooted is unknown; not re-sent/)
  const attempts = results.filter((r) => r.action === 'cycle')
  assert.deepEqual(attempts.map((r) => [r.attempt, r.sent, r.ambiguous, r.final]), [[1, true, true, true]])
})

/** A manager driving the Redfish stub through the real Redfish driver. */
async function redfishRig(t: { after(fn: () => unknown): void }, quirks: RedfishQuirks, settings: Record<string, number> = {}) {
  const server = await startRedfishServer({ quirks })
  t.after(() => server.close())
  const results: PowerResult[] = []
  const power = createPowerManager({
    bmcs: {
      get: async (id) => bmcRecord({ machineId: id, type: 'redfish', address: server.url }),
      credentials: async () => ({ username: 'admin', password: 'password' }),
    },
    log: silentLogger(),
    observer: { result: (r) => results.push(r) },
    settings: { timeoutMs: 3_000, attempts: 3, backoffBaseMs: 100, minRebootIntervalMs: 0, verifyTimeoutMs: 6_000, verifyIntervalMs: 250, sessionIdleMs: 0, ...settings },
  })
  t.after(() => power.stop())
  return { server, power, results }
}

test('Redfish: a reset carried out and never answered is sent once; the read-back or "unknown" answers for it', async (t) => {
  for (const lose of ['destroy', 'hang'] as const) {
    const { server, power, results } = await redfishRig(t, { loseResetAnswer: lose })
    const on = await power.power('m1', 'on')
    assert.equal(server.state.resetsCarriedOut, 1, `${lose}: one On at the BMC`)
    assert.deepEqual([on.verified, on.state], [true, 'on'])
    const cycle = await power.power('m1', 'cycle').then(() => null, (err: unknown) => err)
    assert.equal(server.state.resetsCarriedOut, 2, `${lose}: one PowerCycle at the BMC`)
    assert.ok(isPowerError(cycle, 'unknown-outcome'), String(cycle))
    assert.ok(results.filter((r) => r.action === 'cycle').every((r) => r.attempt === 1))
  }
})

test('Redfish: HTTP 500 after the reset ran is one PowerCycle (it was three); a 503 before it ran is retried', async (t) => {
  const { server, power } = await redfishRig(t, { resetErrorAfterApply: 500 })
  server.state.power = 'On'
  const cycle = await power.power('m1', 'cycle').then(() => null, (err: unknown) => err)
  assert.equal(server.state.resetsCarriedOut, 1)
  assert.ok(isPowerError(cycle, 'unknown-outcome'), String(cycle))
  assert.match((cycle as Error).message, /HTTP 500/)

  const busy = await redfishRig(t, { temporaryError: { times: 2, status: 503, messageId: 'Base.1.8.ServiceTemporarilyUnavailable', messageArgs: ['1'], on: 'reset' } })
  busy.server.state.power = 'On'
  const done = await busy.power.power('m1', 'reset')
  assert.equal(busy.server.state.resetsCarriedOut, 1)
  assert.deepEqual([done.verified, done.state], [true, 'on'])
  assert.deepEqual(busy.results.filter((r) => r.action === 'reset').map((r) => [r.attempt, r.ok, r.ambiguous ?? false]),
    [[1, false, false], [2, false, false], [3, true, false]])
})

test('Redfish: a BMC that applies power seconds late: off is reported done only once it reads off, and on waits behind it', async (t) => {
  const { server, power } = await redfishRig(t, { powerDelayMs: 1_500 })
  server.state.power = 'On'
  const started = Date.now()
  const [off, on] = await Promise.all([power.power('m1', 'off'), power.power('m1', 'on')])
  assert.ok(Date.now() - started >= 3_000, 'each waited for the BMC to apply it')
  assert.deepEqual([off.state, off.verified, on.state, on.verified], ['off', true, 'on', true])
  assert.equal(server.state.power, 'On', 'the machine ends in the state asked last')
  assert.equal(server.state.resetsCarriedOut, 2)
})

test('Redfish: soft-off the OS ignores falls back to one ForceOff; a BMC that hangs costs one attempt, named', async (t) => {
  const { server, power } = await redfishRig(t, { gracefulShutdownIgnored: true }, { softOffTimeoutMs: 2_000 })
  server.state.power = 'On'
  const soft = await power.power('m1', 'soft-off')
  assert.equal(server.state.power, 'Off')
  assert.match(soft.note ?? '', /powered off hard/)
  assert.deepEqual(server.requests.filter((r) => /Reset$/.test(r.path)).map((r) => (r.body as { ResetType: string }).ResetType), ['GracefulShutdown', 'ForceOff'])

  const dead = await redfishRig(t, { hang: true }, { timeoutMs: 1_500 })
  const started = Date.now()
  const err = await dead.power.status('m1').then(() => null, (e: unknown) => e)
  assert.ok(isPowerError(err, 'timeout'), String(err))
  assert.ok(Date.now() - started < 4_000, `a dead BMC cost ${Date.now() - started} ms`)
  // The driver's own deadline fires and names the request (a timer lost with AbortSignal.any on Node 20 once left
  // only the manager's generic timeout).
  assert.match((err as Error).message, new RegExp(`BMC 127\\.0\\.0\\.1:${dead.server.port} did not answer GET /redfish/v1/`))
})
