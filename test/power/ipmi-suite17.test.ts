// The suite-17 session path (SHA256 RAKP, 16-byte AuthCodes) against a BMC that speaks only suite 17;
// retransmission on datagram loss (same request sequence, a fresh session sequence number per copy) for reads,
// never for Chassis Control; and the per-BMC settings (K_G, privilege, suites) honoured end to end.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createBmcDriver, createIpmiDriver, isPowerError } from '../../src/power/index.js'
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

test('lost datagrams: reads are retransmitted with fresh session sequence numbers, Chassis Control never', async (t) => {
  const bmc = await startFakeBmc({ dropFirstCopy: true })
  t.after(() => bmc.close())
  const stats: { sent: number; retransmitted: number; dropped: number }[] = []
  const driver = createIpmiDriver({ host: '127.0.0.1', port: bmc.port, username: 'admin', password: 'password',
    timeoutMs: 5000, retransmitMs: 100, onStats: (s) => stats.push(s) })
  assert.equal(await driver.powerStatus(), 'off')
  assert.equal(stats.length, 1)
  assert.equal(stats[0]!.retransmitted, 3) // privilege, status, close: each sent twice
  assert.equal(stats[0]!.sent, 4 + 6) // caps, open session, RAKP1, RAKP3, and the six in-session copies
  // Each in-session command arrived twice, each copy with its own sequence number.
  assert.equal(bmc.sequences.length, 6)
  assert.equal(new Set(bmc.sequences).size, 6)
  assert.deepEqual([...bmc.sequences].sort((a, b) => a - b), bmc.sequences)

  // The only copy of the Chassis Control is lost: no second copy, and an error that says it may have run.
  let sends = 0
  const started = Date.now()
  await assert.rejects(driver.power('cycle', { onSend: () => sends++ }), (err) => {
    assert.ok(isPowerError(err, 'timeout'), String(err))
    assert.equal(err.notRun, false)
    assert.match(err.message, /^no answer from BMC 127\.0\.0\.1:\d+ to Chassis Control \(power cycle\) after \d+ ms; it may have been carried out/)
    return true
  })
  const ms = Date.now() - started
  assert.ok(ms >= 1900 && ms < 3500, `took ${ms} ms`) // the 2 s floor of the answer wait (4 x 100 ms is less)
  assert.equal(sends, 1)
  assert.equal(bmc.controlDatagrams, 1)
  assert.deepEqual(bmc.controls, []) // the lost copy never ran
  assert.equal(stats[1]!.retransmitted, 2) // privilege and close only
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

test('K_G (two-key login): the session key is keyed with the BMC key; without it RAKP4 fails as auth', async (t) => {
  const kg = Buffer.from('0123456789abcdef0123', 'utf8')
  const bmc = await startFakeBmc({ kg })
  t.after(() => bmc.close())
  const withKg = createIpmiDriver({ host: '127.0.0.1', port: bmc.port, username: 'admin', password: 'password', kg, timeoutMs: 3000 })
  assert.equal(await withKg.powerStatus(), 'off')
  for (const wrong of [undefined, Buffer.from('not-the-bmc-key')]) {
    const d = createIpmiDriver({ host: '127.0.0.1', port: bmc.port, username: 'admin', password: 'password', kg: wrong, timeoutMs: 3000 })
    let sends = 0
    await assert.rejects(d.power('on', { onSend: () => sends++ }), (err) => {
      assert.ok(isPowerError(err, 'auth'), String(err))
      assert.match(err.message, /^BMC 127\.0\.0\.1:\d+ failed the RAKP4 integrity check \(wrong BMC key K_G\?\)/)
      assert.equal(err.notRun, true) // the session never opened: nothing was sent
      assert.ok(!err.message.includes(kg.toString()))
      return true
    })
    assert.equal(sends, 0)
  }
  assert.equal(bmc.controlDatagrams, 0)
})

test('privilege: the level asked for is the one in RAKP1 and Set Session Privilege Level', async (t) => {
  const bmc = await startFakeBmc()
  t.after(() => bmc.close())
  for (const [privilege, level] of [['user', 2], ['operator', 3], ['administrator', 4], [undefined, 4]] as const) {
    bmc.roles.length = 0
    bmc.privileges.length = 0
    const d = createIpmiDriver({ host: '127.0.0.1', port: bmc.port, username: 'admin', password: 'password', timeoutMs: 3000,
      ...(privilege ? { privilege } : {}) })
    await d.powerStatus()
    assert.deepEqual(bmc.roles, [0x10 | level], String(privilege)) // name-only lookup bit + the level
    assert.deepEqual(bmc.privileges, [level], String(privilege))
  }
})

test('per-BMC settings through createBmcDriver: suites, privilege, K_G and read-back strictness win over defaults', async (t) => {
  const kg = Buffer.from('per-bmc-key', 'utf8')
  const bmc = await startFakeBmc({ kg })
  t.after(() => bmc.close())
  const target = { type: 'ipmi' as const, address: '127.0.0.1', port: bmc.port, insecure: false, fingerprint: null }
  // The settings' defaults say suite 3 only and administrator; the BMC's own settings say 17 and operator.
  const defaults = { timeoutMs: 3000, ipmi: { suites: [3 as const], privilege: 'administrator' as const } }
  const d = createBmcDriver({ ...target, cipherSuites: [17], privilege: 'operator', bootVerify: 'device' },
    { username: 'admin', password: 'password', kg }, defaults)
  await d.power('on')
  assert.deepEqual(bmc.controls, [1])
  assert.deepEqual(bmc.roles, [0x13])
  assert.deepEqual(bmc.asked, [3]) // SHA256 only
  // Without the BMC's suites the default (3) applies and this suite-17-only BMC refuses it.
  const plain = createBmcDriver(target, { username: 'admin', password: 'password', kg }, defaults)
  await assert.rejects(plain.powerStatus(), (err) => isPowerError(err, 'unsupported') && err.notRun)
  // Without K_G in the credentials the login fails at RAKP4.
  const noKg = createBmcDriver({ ...target, cipherSuites: [17] }, { username: 'admin', password: 'password' }, defaults)
  await assert.rejects(noKg.powerStatus(), (err) => isPowerError(err, 'auth') && /K_G/.test(err.message))
})

test('capabilities: CD boot yes; UEFI HTTP boot and virtual media no, refused before anything is sent', async (t) => {
  const bmc = await startFakeBmc()
  t.after(() => bmc.close())
  const d = createIpmiDriver({ host: '127.0.0.1', port: bmc.port, username: 'admin', password: 'password', timeoutMs: 3000 })
  const caps = await d.capabilities()
  assert.ok(caps.includes('boot.cd'))
  assert.ok(!caps.includes('boot.http') && !caps.includes('media.virtual'))
  for (const call of [() => d.setBootDevice({ device: 'http' }), () => d.insertMedia('http://10.0.0.1/boot.iso'), () => d.ejectMedia()]) {
    await assert.rejects(call(), (err) => isPowerError(err, 'unsupported') && err.notRun && err.message.includes(`127.0.0.1:${bmc.port}`))
  }
  assert.deepEqual(bmc.asked, []) // no session was opened for any of them
})
