// The suite-17 session path (SHA256 RAKP, 16-byte AuthCodes) against a BMC that speaks only suite 17, and
// retransmission on datagram loss: same request sequence, a fresh session sequence number per copy.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createIpmiDriver, isPowerError } from '../../src/power/index.js'
import { startFakeBmc } from './fixtures/fake-rmcp-bmc.js'

test('cipher suite 17 end to end against a suite-17-only BMC', async (t) => {
  const bmc = await startFakeBmc()
  t.after(() => bmc.close())
  const driver = createIpmiDriver({ host: '127.0.0.1', port: bmc.port, username: 'admin', password: 'password', timeoutMs: 3000 })
  assert.equal(await driver.powerStatus(), 'off')
  await driver.power('on')
  assert.equal(await driver.powerStatus(), 'on')
  assert.deepEqual(bmc.controls, [1])
  assert.deepEqual(bmc.asked, [3, 3, 3]) // SHA256 asked first, every time, and accepted
  assert.equal(bmc.closedSessions, 3) // every session closed

  const wrong = createIpmiDriver({ host: '127.0.0.1', port: bmc.port, username: 'admin', password: 'nope', timeoutMs: 3000 })
  await assert.rejects(wrong.powerStatus(), (err) => isPowerError(err, 'auth') && /RAKP2/.test(err.message))
  await new Promise((r) => setTimeout(r, 50))
  assert.equal(bmc.rakp3Errors, 1) // the BMC is told (status 0x0F), so it can drop the half-open session

  // A client limited to suite 3 is refused by this BMC, clearly.
  const sha1Only = createIpmiDriver({ host: '127.0.0.1', port: bmc.port, username: 'admin', password: 'password',
    timeoutMs: 3000, suites: [3] })
  await assert.rejects(sha1Only.powerStatus(), (err) => {
    assert.ok(isPowerError(err, 'unsupported'), String(err))
    assert.match(err.message, /refused every cipher suite offered \(3: no cipher suite match/)
    return true
  })
})

test('lost datagrams are retransmitted with fresh session sequence numbers; a command runs once', async (t) => {
  const bmc = await startFakeBmc({ dropFirstCopy: true })
  t.after(() => bmc.close())
  const stats: { sent: number; retransmitted: number; dropped: number }[] = []
  const driver = createIpmiDriver({ host: '127.0.0.1', port: bmc.port, username: 'admin', password: 'password',
    timeoutMs: 5000, retransmitMs: 100, onStats: (s) => stats.push(s) })
  await driver.power('cycle')
  assert.equal(stats.length, 1)
  assert.equal(stats[0]!.retransmitted, 3) // privilege, control, close: each sent twice
  assert.equal(stats[0]!.sent, 4 + 6) // caps, open session, RAKP1, RAKP3, and the six in-session copies
  assert.deepEqual(bmc.controls, [2]) // executed once although the request arrived twice
  // Each in-session command (privilege, control, close) arrived twice, each copy with its own sequence number.
  assert.equal(bmc.sequences.length, 6)
  assert.equal(new Set(bmc.sequences).size, 6)
  assert.deepEqual([...bmc.sequences].sort((a, b) => a - b), bmc.sequences)
})

test('a call aborted mid-session still closes its session on the BMC', async (t) => {
  const bmc = await startFakeBmc({ silentChassisCommands: [0x01] }) // Get Chassis Status never answered
  t.after(() => bmc.close())
  const driver = createIpmiDriver({ host: '127.0.0.1', port: bmc.port, username: 'admin', password: 'password', timeoutMs: 5000 })
  const started = Date.now()
  await assert.rejects(driver.powerStatus({ signal: AbortSignal.timeout(400) }), (err) => isPowerError(err, 'timeout'))
  assert.ok(Date.now() - started < 1500)
  await new Promise((r) => setTimeout(r, 100))
  assert.equal(bmc.closedSessions, 1)
})
