// The Redfish driver against rackboot's own DMTF-shaped test server, quirks included.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createBmcDriver, createRedfishDriver, isPowerError, type RedfishDriverOptions } from '../../src/power/index.js'
import { startRedfishServer, type RedfishServer, type RedfishServerOptions } from './fixtures/redfish-server.js'

async function server(t: { after: (fn: () => Promise<void>) => void }, opts: RedfishServerOptions = {}): Promise<RedfishServer> {
  const s = await startRedfishServer(opts)
  t.after(() => s.close())
  return s
}

function driverFor(s: RedfishServer, extra: Partial<RedfishDriverOptions> = {}) {
  return createRedfishDriver({ address: s.url, username: 'admin', password: 'password', timeoutMs: 5000, taskPollMs: 10,
    verifyIntervalMs: 10, ...extra })
}

const calls = (s: RedfishServer): string[] => s.requests.map((r) => `${r.method} ${r.path.replace(/\/$/, '')} ${r.status}`)

test('power and boot through one session, logged out at close', async (t) => {
  const s = await server(t)
  const d = driverFor(s)
  assert.equal(await d.powerStatus(), 'off')
  await d.power('on')
  assert.equal(await d.powerStatus(), 'on')
  await d.power('cycle')
  await d.power('reset')
  await d.power('soft-off')
  await d.power('off')
  assert.deepEqual(s.state.resets, ['On', 'PowerCycle', 'ForceRestart', 'GracefulShutdown', 'ForceOff'])
  const readback = await d.setBootDevice({ device: 'pxe', mode: 'uefi' })
  assert.deepEqual(readback, { device: 'pxe', mode: 'uefi', persistent: false, enabled: true, raw: 'Pxe/Once/UEFI',
    verified: { device: true, mode: true, persistent: true } })
  assert.deepEqual(s.state.boot, { BootSourceOverrideTarget: 'Pxe', BootSourceOverrideEnabled: 'Once', BootSourceOverrideMode: 'UEFI' })
  const persistent = await d.setBootDevice({ device: 'disk', mode: 'bios', persistent: true })
  assert.equal(persistent.raw, 'Hdd/Continuous/Legacy')
  const cleared = await d.setBootDevice({ device: 'none' })
  assert.equal(cleared.enabled, false)
  const patches = s.requests.filter((r) => r.method === 'PATCH').map((r) => r.body)
  assert.deepEqual(patches.at(-1), { Boot: { BootSourceOverrideEnabled: 'Disabled' } })
  assert.equal(s.state.sessionsCreated, 1) // one login for the whole driver
  assert.equal(s.state.sessions.size, 1)
  assert.ok(s.requests.every((r) => r.path.startsWith('/redfish/v1/SessionService/Sessions') || r.path.startsWith('/redfish/v1/') && (r.headers['x-auth-token'] || r.path === '/redfish/v1/')))
  await d.close()
  assert.equal(s.state.sessions.size, 0)
  assert.equal(s.state.sessionsDeleted, 1)
  await assert.rejects(d.powerStatus(), (err) => isPowerError(err, 'invalid'))
})

test('capabilities come from what the BMC advertises', async (t) => {
  const s = await server(t, { quirks: { resetTypes: ['On', 'ForceOff', 'ForceRestart'] } })
  const d = driverFor(s)
  const caps = await d.capabilities()
  assert.ok(caps.includes('power.on') && caps.includes('power.off') && caps.includes('power.reset'))
  assert.ok(!caps.includes('power.soft-off'))
  assert.ok(caps.includes('power.cycle')) // via ForceRestart
  assert.ok(caps.includes('boot.pxe') && caps.includes('boot.uefi') && caps.includes('boot.readback'))
  await d.close()
})

test('reset types are chosen from @Redfish.AllowableValues, in order of preference', async (t) => {
  await t.test('cycle falls back to ForceRestart when PowerCycle is not offered', async (t) => {
    const s = await server(t, { quirks: { resetTypes: ['On', 'ForceOff', 'ForceRestart'] } })
    const d = driverFor(s)
    await d.power('cycle')
    assert.deepEqual(s.state.resets, ['ForceRestart'])
    await assert.rejects(d.power('soft-off'), (err) => {
      assert.ok(isPowerError(err, 'unsupported'), String(err))
      assert.match(err.message, /offers no reset type for soft-off \(it allows On, ForceOff, ForceRestart\)/)
      return true
    })
    await d.close()
  })

  await t.test('cycle without any cycle type is ForceOff then On', async (t) => {
    const s = await server(t, { quirks: { resetTypes: ['On', 'ForceOff'] } })
    const d = driverFor(s)
    await d.power('cycle')
    assert.deepEqual(s.state.resets, ['ForceOff', 'On'])
    await d.close()
  })

  await t.test('an advertised type the BMC then refuses (501) moves on to the next one', async (t) => {
    const s = await server(t, { quirks: { refusedResetTypes: ['PowerCycle'] } })
    const d = driverFor(s)
    await d.power('cycle')
    assert.deepEqual(s.state.resets, ['ForceRestart'])
    assert.ok(calls(s).includes('POST /redfish/v1/Systems/1/Actions/ComputerSystem.Reset 501'))
    await d.close()
  })
})

test('a reset answered 202 is followed through its task monitor', async (t) => {
  const s = await server(t, { quirks: { resetTaskPolls: 3 } })
  const d = driverFor(s)
  await d.power('on')
  assert.deepEqual(s.state.resets, ['On'])
  const monitor = calls(s).filter((c) => c.startsWith('GET /redfish/v1/TaskService/TaskMonitors/1'))
  assert.deepEqual(monitor, [...Array(3).fill('GET /redfish/v1/TaskService/TaskMonitors/1 202'), 'GET /redfish/v1/TaskService/TaskMonitors/1 200'])
  await d.close()
})

test('a BMC that accepts a boot override and silently drops it: not-applied, not success', async (t) => {
  const s = await server(t, { quirks: { dropsBootOverride: true } })
  const d = driverFor(s)
  await assert.rejects(d.setBootDevice({ device: 'pxe', mode: 'uefi' }), (err) => {
    assert.ok(isPowerError(err, 'not-applied'), String(err))
    assert.match(err.message, /did not stick \(read None\/Disabled\/UEFI\): target asked Pxe, read None; enabled asked Once, read Disabled$/)
    return true
  })
  // It was read back several times before giving up (BMCs that apply a moment later get the chance).
  assert.equal(calls(s).filter((c) => c === 'GET /redfish/v1/Systems/1 200').length, 1 + 3)
  await d.close()
})

test('a BMC that needs If-Match gets the ETag it handed out, as it gave it, in the first PATCH', async (t) => {
  const s = await server(t, { quirks: { requiresIfMatch: true } })
  const d = driverFor(s)
  await d.setBootDevice({ device: 'pxe', mode: 'uefi' })
  const patches = s.requests.filter((r) => r.method === 'PATCH')
  assert.deepEqual(patches.map((p) => p.status), [204])
  assert.match(String(patches[0]!.headers['if-match']), /^W\/"\d+"$/)
  assert.equal(s.state.boot.BootSourceOverrideTarget, 'Pxe')
  await d.identify(true)
  assert.equal(s.state.indicator, 'Blinking')
  await d.close()
})

test('quirks tolerated with the readback deciding', async (t) => {
  await t.test('Once read back as Continuous is the documented fallback: flagged, persistence not verified', async (t) => {
    const s = await server(t, { quirks: { alwaysContinuous: true } })
    const d = driverFor(s)
    const r = await d.setBootDevice({ device: 'pxe', mode: 'uefi' })
    assert.equal(r.persistent, true)
    assert.equal(r.fallback, 'continuous')
    assert.deepEqual(r.verified, { device: true, mode: true, persistent: false })
    await d.close()
  })

  await t.test('a BMC refusing BootSourceOverrideMode gets the PATCH without it; the mode is then checked', async (t) => {
    const s = await server(t, { quirks: { rejectsMode: true } })
    const d = driverFor(s)
    const ok = await d.setBootDevice({ device: 'pxe', mode: 'uefi' }) // already UEFI on this BMC
    assert.equal(ok.mode, 'uefi')
    assert.deepEqual(s.requests.filter((r) => r.method === 'PATCH').map((r) => r.status), [400, 204])
    await assert.rejects(d.setBootDevice({ device: 'pxe', mode: 'bios' }), (err) => {
      assert.ok(isPowerError(err, 'not-applied'), String(err))
      assert.match(err.message, /: mode asked Legacy, read UEFI$/)
      return true
    })
    await d.close()
  })

  await t.test('no ETag and no SessionService: HTTP Basic, plain PATCH', async (t) => {
    const s = await server(t, { quirks: { noSessionService: true, noEtag: true } })
    const d = driverFor(s)
    await d.power('on')
    await d.setBootDevice({ device: 'pxe' })
    assert.ok(s.requests.filter((r) => r.path !== '/redfish/v1/').every((r) => String(r.headers.authorization).startsWith('Basic ')))
    assert.equal(s.state.sessionsCreated, 0)
    await d.close()
  })
})

test('Boot read-only on the system (iDRAC10): the override goes to @Redfish.Settings and is read back there', async (t) => {
  const s = await server(t, { quirks: { bootInSettings: true } })
  const d = driverFor(s)
  const r = await d.setBootDevice({ device: 'pxe', mode: 'uefi' })
  assert.equal(r.raw, 'Pxe/Once/UEFI')
  assert.equal(s.state.boot.BootSourceOverrideTarget, 'None') // pending until the next reset
  assert.ok(calls(s).includes('PATCH /redfish/v1/Systems/1/Settings 202'))
  await d.power('on')
  assert.equal(s.state.boot.BootSourceOverrideTarget, 'Pxe')
  await d.close()
})

test('few sessions (max 2): a third client gets a clear session-limit error; closing frees one', async (t) => {
  const s = await server(t, { maxSessions: 2 })
  const a = driverFor(s)
  const b = driverFor(s)
  const c = driverFor(s)
  await a.powerStatus()
  await b.powerStatus()
  await assert.rejects(c.powerStatus(), (err) => {
    assert.ok(isPowerError(err, 'session-limit'), String(err))
    assert.match(err.message, /no free Redfish session/)
    assert.match(err.message, /SessionLimitExceeded|exceeding the limit/)
    assert.equal(err.retryable, true)
    return true
  })
  await a.close()
  assert.equal(await c.powerStatus(), 'off')
  await b.close()
  await c.close()
  assert.equal(s.state.sessions.size, 0)
})

test('an expired session is replaced once, transparently', async (t) => {
  const s = await server(t)
  const d = driverFor(s)
  await d.powerStatus()
  s.state.sessions.clear() // the BMC forgot the session (timeout, reboot)
  assert.equal(await d.powerStatus(), 'off')
  assert.equal(s.state.sessionsCreated, 2)
  await d.close()
})

test('wrong password: auth error, password nowhere in it', async (t) => {
  const s = await server(t)
  const secret = 'hunter2-Secret'
  const d = createRedfishDriver({ address: s.url, username: 'admin', password: secret, timeoutMs: 5000 })
  await assert.rejects(d.powerStatus(), (err) => {
    assert.ok(isPowerError(err, 'auth'), String(err))
    assert.match(err.message, /HTTP 401/)
    assert.ok(!err.message.includes(secret) && !JSON.stringify(err.details).includes(secret))
    assert.equal(err.retryable, false)
    return true
  })
  await d.close()
})

test('unreachable and slow BMCs give clear errors within the timeout', async (t) => {
  await t.test('connection refused', async () => {
    const s = await startRedfishServer()
    const url = s.url
    await s.close()
    const d = createRedfishDriver({ address: url, username: 'admin', password: 'password', timeoutMs: 2000 })
    await assert.rejects(d.powerStatus(), (err) => isPowerError(err, 'unreachable') && /ECONNREFUSED/.test(err.message))
    await d.close()
  })

  await t.test('a BMC that never answers', async (t) => {
    const { createServer } = await import('node:net')
    const sockets = new Set<import('node:net').Socket>()
    const silent = createServer((sock) => sockets.add(sock))
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
    t.after(() => new Promise<void>((r) => {
      for (const sock of sockets) sock.destroy()
      silent.close(() => r())
    }))
    const port = (silent.address() as import('node:net').AddressInfo).port
    const d = createRedfishDriver({ address: `http://127.0.0.1:${port}`, username: 'admin', password: 'password', timeoutMs: 800 })
    const started = Date.now()
    await assert.rejects(d.powerStatus(), (err) => isPowerError(err, 'timeout'))
    assert.ok(Date.now() - started < 1800)
    await d.close()
  })
})

test('createBmcDriver builds a Redfish driver from an inventory BMC', async (t) => {
  const s = await server(t)
  const d = createBmcDriver({ type: 'redfish', address: s.url, port: null, insecure: false, fingerprint: null },
    { username: 'admin', password: 'password' }, { timeoutMs: 5000 })
  assert.equal(d.type, 'redfish')
  assert.equal(await d.powerStatus(), 'off')
  await d.close()
  assert.throws(() => createBmcDriver({ type: 'redfish', address: s.url, port: null, insecure: false, fingerprint: null },
    { username: null, password: null }), (err) => isPowerError(err, 'no-bmc'))
})
