// The Redfish driver against BMCs that misbehave as real ones do: answers lost after a reset was carried out, 500 on
// reset, power applied late, vendor "try again" errors, ETag games, hangs, several systems, the wrong scheme. Each
// test says how many resets the BMC carried out, how often onSend ran, and what the caller is told (kind, notRun,
// retryAfterMs, message): the power manager builds "one command, one action" on exactly these answers.
import assert from 'node:assert/strict'
import { createServer as createTcpServer, type Socket } from 'node:net'
import { test } from 'node:test'
import { createRedfishDriver, isPowerError, type PowerError, type RedfishDriverOptions } from '../../src/power/index.js'
import { retryAfterMs } from '../../src/power/redfish/client.js'
import { baseUrlOf, strongEtag, systemOfAddress } from '../../src/power/redfish/driver.js'
import { checkBoot } from '../../src/power/redfish/mapping.js'
import { quirksFor, temporaryError, vendorFromRoot } from '../../src/power/redfish/quirks.js'
import { startRedfishServer, type RedfishServer, type RedfishServerOptions } from './fixtures/redfish-server.js'
import { startSushy, sushyMissing } from './fixtures/sushy.js'

type T = { after: (fn: () => Promise<void> | void) => void }

async function server(t: T, opts: RedfishServerOptions = {}): Promise<RedfishServer> {
  const s = await startRedfishServer(opts)
  t.after(() => s.close())
  return s
}

function driverFor(t: T, s: { url: string }, extra: Partial<RedfishDriverOptions> = {}) {
  const d = createRedfishDriver({ address: s.url, username: 'admin', password: 'password', timeoutMs: 3000, taskPollMs: 10,
    verifyIntervalMs: 10, ...extra })
  t.after(() => d.close())
  return d
}

/** onSend as the manager passes it, counting. */
function sends() {
  const call = { count: 0, onSend: () => { call.count++ } }
  return call
}

/** Runs p, which must fail, and hands back its PowerError. */
async function failure(p: Promise<unknown>): Promise<PowerError> {
  try {
    await p
  } catch (err) {
    assert.ok(isPowerError(err), `not a PowerError: ${String(err)}`)
    return err
  }
  assert.fail('expected a failure')
}

/** Every message a person reads: names the BMC, one line, bounded. */
function readable(err: PowerError, host: string): void {
  assert.ok(err.message.includes(host), `names ${host}: ${err.message}`)
  assert.ok(!/[\r\n]/.test(err.message), `one line: ${JSON.stringify(err.message)}`)
  assert.ok(err.message.length <= 400, `bounded: ${err.message.length}`)
}

const hostOf = (s: { port: number }): string => `127.0.0.1:${s.port}`
const resetPosts = (s: RedfishServer) => s.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/ComputerSystem.Reset'))

test('a reset carried out whose answer is lost: outcome left open, sent once', async (t) => {
  await t.test('the socket is destroyed after the reset', async (t) => {
    const s = await server(t, { quirks: { loseResetAnswer: 'destroy' } })
    const d = driverFor(t, s)
    const call = sends()
    const err = await failure(d.power('cycle', call))
    assert.equal(s.state.resetsCarriedOut, 1)
    assert.equal(call.count, 1)
    assert.equal(err.notRun, false)
    assert.equal(err.kind, 'unreachable')
    assert.match(err.message, /closed the connection during POST \/redfish\/v1\/Systems\/1\/Actions\/ComputerSystem\.Reset before answering/)
    assert.doesNotMatch(err.message, /https/) // it spoke plain HTTP before: no scheme hint
    readable(err, hostOf(s))
  })

  await t.test('the answer never comes: a timeout naming the request', async (t) => {
    const s = await server(t, { quirks: { loseResetAnswer: 'hang' } })
    const d = driverFor(t, s, { timeoutMs: 1500 })
    const call = sends()
    const err = await failure(d.power('reset', call))
    assert.equal(s.state.resetsCarriedOut, 1)
    assert.equal(call.count, 1)
    assert.equal(err.kind, 'timeout')
    assert.equal(err.notRun, false)
    assert.match(err.message, /did not answer POST \/redfish\/v1\/Systems\/1\/Actions\/ComputerSystem\.Reset \(waited \d+ ms\)/)
    readable(err, hostOf(s))
  })
})

test('HTTP 500/502/504 on a reset the BMC carried out: protocol, not busy, not "not run"', async (t) => {
  for (const status of [500, 502, 504]) {
    await t.test(`HTTP ${status}`, async (t) => {
      const s = await server(t, { quirks: { resetErrorAfterApply: status } })
      const d = driverFor(t, s)
      const call = sends()
      const err = await failure(d.power('cycle', call))
      assert.equal(err.kind, 'protocol')
      assert.equal(err.notRun, false)
      assert.equal(err.retryable, true) // reads may be retried; the manager never resends a sent reset
      assert.equal(call.count, 1)
      assert.equal(s.state.resetsCarriedOut, 1)
      assert.deepEqual(resetPosts(s).map((r) => r.status), [status]) // no second reset type tried
      assert.match(err.message, new RegExp(`failed to reset PowerCycle: HTTP ${status} \\(it may have been carried out\\): ` +
        'The request failed due to an internal service error'))
      readable(err, hostOf(s))
    })
  }
})

test('503 and 429 prove nothing ran: busy, notRun, with the BMC\'s Retry-After', async (t) => {
  await t.test('Retry-After in seconds', async (t) => {
    const s = await server(t, { quirks: { temporaryError: { times: 1, status: 503, messageId: 'Base.1.8.ServiceShuttingDown', retryAfter: '7' } } })
    const d = driverFor(t, s)
    const err = await failure(d.power('on', sends()))
    assert.equal(err.kind, 'busy')
    assert.equal(err.notRun, true)
    assert.equal(err.retryAfterMs, 7000)
    assert.equal(s.state.resetsCarriedOut, 0)
    readable(err, hostOf(s))
  })

  await t.test('Retry-After as an HTTP date', async (t) => {
    const at = new Date(Date.now() + 20_000).toUTCString()
    const s = await server(t, { quirks: { temporaryError: { times: 1, status: 429, messageId: 'Base.1.8.GeneralError', retryAfter: at } } })
    const d = driverFor(t, s)
    const err = await failure(d.power('on'))
    assert.equal(err.kind, 'busy')
    assert.equal(err.notRun, true)
    assert.ok(err.retryAfterMs! > 15_000 && err.retryAfterMs! <= 20_000, String(err.retryAfterMs))
  })
})

test('a vendor temporary error k times, then success: each one busy, not run, with a wait', async (t) => {
  await t.test('iLO UnableToModifyDuringSystemPOST twice, then the reset is done once', async (t) => {
    const s = await server(t, { quirks: { temporaryError: { times: 2, status: 400, messageId: 'iLO.2.37.UnableToModifyDuringSystemPOST',
      messageArgs: ['ResetType'], message: 'Unable to modify during system POST.' } } })
    const d = driverFor(t, s)
    const call = sends()
    for (let i = 0; i < 2; i++) {
      const err = await failure(d.power('cycle', call))
      assert.equal(err.kind, 'busy')
      assert.equal(err.notRun, true)
      assert.equal(err.retryable, true)
      assert.equal(err.retryAfterMs, 30_000) // the table's default: iLO sends no Retry-After
      assert.match(err.message, /is busy and did not carry out reset PowerCycle: HTTP 400: Unable to modify during system POST\. \(retry in 30 s\)/)
      readable(err, hostOf(s))
    }
    // A busy 400 is no refusal of the reset type: ForceRestart was never tried behind it.
    assert.deepEqual(resetPosts(s).map((r) => (r.body as { ResetType: string }).ResetType), ['PowerCycle', 'PowerCycle'])
    await d.power('cycle', call)
    assert.equal(s.state.resetsCarriedOut, 1)
    assert.deepEqual(s.state.resets, ['PowerCycle'])
    assert.equal(call.count, 3)
  })

  await t.test('iLO InvalidOperationForSystemState, Retry-After wins over the default', async (t) => {
    const s = await server(t, { quirks: { temporaryError: { times: 1, status: 400, messageId: 'iLO.2.15.InvalidOperationForSystemState',
      messageArgs: ['Power is off'], retryAfter: '3' } } })
    const err = await failure(driverFor(t, s).power('reset'))
    assert.equal(err.kind, 'busy')
    assert.equal(err.notRun, true)
    assert.equal(err.retryAfterMs, 3000)
  })

  await t.test('a BMC message with line breaks and no end: one bounded line', async (t) => {
    const s = await server(t, { quirks: { temporaryError: { times: 1, status: 503, messageId: 'IDRAC.2.8.SYS518',
      message: `iDRAC is not ready.\r\nTrace:\n${'x'.repeat(2000)}` } } })
    const err = await failure(driverFor(t, s).power('on'))
    readable(err, hostOf(s))
    assert.match(err.message, /iDRAC is not ready\. Trace: x+…/)
  })

  await t.test('iDRAC SYS518, even as HTTP 500, on a read', async (t) => {
    const s = await server(t, { quirks: { temporaryError: { times: 1, status: 500, messageId: 'IDRAC.2.8.SYS518', on: 'get',
      message: 'iDRAC is currently unable to display any information because data sources are unavailable.' } } })
    const d = driverFor(t, s)
    const err = await failure(d.powerStatus())
    assert.equal(err.kind, 'busy')
    assert.equal(err.notRun, true)
    assert.equal(err.retryAfterMs, 30_000)
    assert.equal(await d.powerStatus(), 'off')
  })

  await t.test('Base ServiceTemporarilyUnavailable: the wait its argument names', async (t) => {
    const s = await server(t, { quirks: { temporaryError: { times: 1, status: 503, messageId: 'Base.1.12.ServiceTemporarilyUnavailable',
      messageArgs: ['12'], on: 'patch', message: 'The service is temporarily unavailable.  Retry in 12 seconds.' } } })
    const err = await failure(driverFor(t, s).setBootDevice({ device: 'pxe', mode: 'uefi' }))
    assert.equal(err.kind, 'busy')
    assert.equal(err.retryAfterMs, 12_000)
    assert.equal(err.notRun, true)
    // Busy is no refusal of the payload: the PATCH without the mode is not tried behind it.
    assert.equal(s.requests.filter((r) => r.method === 'PATCH').length, 1)
  })

  await t.test('iDRAC 409 to a power-on: busy on a Dell, a plain refusal elsewhere; never run', async (t) => {
    const psu501 = { times: 1, status: 409, messageId: 'IDRAC.2.1.PSU501', message: 'Server is already powered ON.' }
    const dell = await server(t, { quirks: { temporaryError: psu501, root: { Vendor: 'Dell', Oem: { Dell: {} } } } })
    const onDell = await failure(driverFor(t, dell).power('on'))
    assert.equal(onDell.kind, 'busy')
    assert.equal(onDell.notRun, true)
    assert.equal(onDell.retryAfterMs, 10_000)
    assert.match(onDell.message, /Server is already powered ON/)
    const other = await server(t, { quirks: { temporaryError: psu501 } })
    const elsewhere = await failure(driverFor(t, other).power('on'))
    assert.equal(elsewhere.kind, 'rejected')
    assert.equal(elsewhere.notRun, true)
  })
})

test('power applied late: the driver reports the accepted reset once and does not send it again', async (t) => {
  const s = await server(t, { quirks: { powerDelayMs: 300 } })
  const d = driverFor(t, s)
  const call = sends()
  await d.power('on', call)
  assert.equal(await d.powerStatus(), 'off') // accepted, not applied yet: the caller's read-back must wait
  await new Promise((r) => setTimeout(r, 400))
  assert.equal(await d.powerStatus(), 'on')
  assert.equal(call.count, 1)
  assert.equal(s.state.resetsCarriedOut, 1)
})

test('resets accepted and without effect (the caller\'s read-back tells): soft-off ignored, restart of an off machine', async (t) => {
  const s = await server(t, { quirks: { gracefulShutdownIgnored: true, restartWhenOffStaysOff: true } })
  const d = driverFor(t, s)
  await d.power('reset')
  await d.power('cycle')
  assert.equal(await d.powerStatus(), 'off')
  await d.power('on')
  await d.power('soft-off')
  assert.equal(await d.powerStatus(), 'on')
  assert.deepEqual(s.state.resets, ['ForceRestart', 'PowerCycle', 'On', 'GracefulShutdown'])
  assert.equal(s.state.resetsCarriedOut, 4)
})

test('onSend: once per Reset POST that leaves, never before a refusal of the call itself', async (t) => {
  await t.test('a session expired under the reset: 401 proves nothing ran, the POST goes again after a new log-in', async (t) => {
    const s = await server(t, { quirks: { expiresSessionAtReset: true } })
    const d = driverFor(t, s)
    const call = sends()
    await d.power('on', call)
    assert.deepEqual(resetPosts(s).map((r) => r.status), [401, 204])
    assert.equal(call.count, 2)
    assert.equal(s.state.resetsCarriedOut, 1)
    assert.equal(s.state.sessionsCreated, 2)
  })

  await t.test('an advertised type refused (501) and the next one done: two sends, one reset', async (t) => {
    const s = await server(t, { quirks: { refusedResetTypes: ['PowerCycle'] } })
    const call = sends()
    await driverFor(t, s).power('cycle', call)
    assert.equal(call.count, 2)
    assert.equal(s.state.resetsCarriedOut, 1)
  })

  await t.test('cycle as off then on: an "on" that fails after the off leaves the outcome open', async (t) => {
    const s = await server(t, { quirks: { resetTypes: ['On', 'ForceOff'], refusedResetTypes: ['On'] } })
    const call = sends()
    const err = await failure(driverFor(t, s).power('cycle', call))
    assert.deepEqual(s.state.resets, ['ForceOff'])
    assert.equal(call.count, 2)
    assert.equal(err.notRun, false)
    assert.match(err.message, /^cycle as off then on: the off was done, then BMC .* refused every reset type for on/)
  })

  await t.test('no reset type at all: unsupported, not run, nothing sent', async (t) => {
    const s = await server(t, { quirks: { resetTypes: ['Nmi'] } })
    const call = sends()
    const err = await failure(driverFor(t, s).power('on', call))
    assert.equal(err.kind, 'unsupported')
    assert.equal(err.notRun, true)
    assert.equal(call.count, 0)
  })

  await t.test('an error while following an accepted reset\'s task: busy, yet left open', async (t) => {
    const s = await server(t, { quirks: { resetTaskPolls: 1, taskMonitorStatus: 503 } })
    const call = sends()
    const err = await failure(driverFor(t, s).power('on', call))
    assert.equal(err.kind, 'busy')
    assert.equal(err.notRun, false)
    assert.equal(call.count, 1)
  })

  await t.test('a task monitor that never ends: the accepted reset is left open', async (t) => {
    const s = await server(t, { quirks: { resetTaskPolls: 1_000_000 } })
    const call = sends()
    const err = await failure(driverFor(t, s, { timeoutMs: 1000 }).power('on', call))
    assert.equal(err.kind, 'timeout')
    assert.equal(err.notRun, false)
    assert.equal(call.count, 1)
  })
})

test('a BMC that hangs on every request: timeout naming the BMC and the request, nothing sent', async (t) => {
  const s = await server(t, { quirks: { hang: true } })
  const d = driverFor(t, s, { timeoutMs: 500 })
  const call = sends()
  const started = Date.now()
  const err = await failure(d.power('on', call))
  assert.ok(Date.now() - started < 3000)
  assert.equal(err.kind, 'timeout')
  assert.equal(err.notRun, false)
  assert.equal(call.count, 0)
  assert.match(err.message, /^BMC 127\.0\.0\.1:\d+ did not answer GET \/redfish\/v1\/ \(waited \d+ ms\)$/)
  readable(err, hostOf(s))
})

test('If-Match: the ETag as given, the strong form after a 412 on a weak one, at most two PATCHes', async (t) => {
  const ifMatches = (s: RedfishServer) => s.requests.filter((r) => r.method === 'PATCH').map((r) => `${r.status} ${r.headers['if-match'] ?? '-'}`)

  await t.test('every request asks for identity encoding (gzip turns ETags weak)', async (t) => {
    const s = await server(t, { quirks: { requiresIfMatch: true } })
    const d = driverFor(t, s)
    await d.setBootDevice({ device: 'pxe' })
    await d.power('on')
    assert.ok(s.requests.length > 4)
    assert.ok(s.requests.every((r) => r.headers['accept-encoding'] === 'identity'), JSON.stringify(s.requests.map((r) => r.headers['accept-encoding'])))
  })

  await t.test('a BMC demanding If-Match with weak ETags gets W/"n" as it gave it: one PATCH', async (t) => {
    const s = await server(t, { quirks: { requiresIfMatch: true } })
    await driverFor(t, s).setBootDevice({ device: 'pxe', mode: 'uefi' })
    assert.deepEqual(ifMatches(s), ['204 W/"1"'])
  })

  await t.test('a BMC demanding If-Match with strong ETags gets "n": one PATCH', async (t) => {
    const s = await server(t, { quirks: { requiresIfMatch: true, strongEtags: true } })
    await driverFor(t, s).identify(true)
    assert.deepEqual(ifMatches(s), ['204 "1"'])
    assert.equal(s.state.indicator, 'Blinking')
  })

  await t.test('a BMC handing out weak ETags and matching only strong ones: 412, then the strong form', async (t) => {
    const s = await server(t, { quirks: { ifMatchStrongOnly: true } })
    const r = await driverFor(t, s).setBootDevice({ device: 'disk', persistent: true })
    assert.deepEqual(ifMatches(s), ['412 W/"1"', '204 "1"'])
    assert.equal(r.raw, 'Hdd/Continuous/UEFI')
  })

  await t.test('a BMC refusing every If-Match: a weak tag ends after two PATCHes with the 412 explained', async (t) => {
    const s = await server(t, { quirks: { refusesEveryIfMatch: true } })
    const err = await failure(driverFor(t, s).setBootDevice({ device: 'pxe' }))
    assert.deepEqual(ifMatches(s), ['412 W/"1"', '412 "1"'])
    assert.equal(err.kind, 'rejected')
    assert.equal(err.notRun, true)
    assert.match(err.message, /refused to set boot override Pxe: HTTP 412: The ETag supplied did not match/)
  })

  await t.test('a strong tag refused although unchanged: the last try goes without If-Match (as sushy does)', async (t) => {
    const s = await server(t, { quirks: { refusesEveryIfMatch: true, strongEtags: true } })
    await driverFor(t, s).setBootDevice({ device: 'pxe' })
    assert.deepEqual(ifMatches(s), ['412 "1"', '204 -'])
  })

  await t.test('no ETag at hand (settings object): 428, read the ETag, retry once with it', async (t) => {
    const s = await server(t, { quirks: { requiresIfMatch: true, noEtag: true } })
    const err = await failure(driverFor(t, s).setBootDevice({ device: 'pxe' }))
    assert.deepEqual(ifMatches(s), ['428 -'])
    assert.match(err.message, /wants If-Match for set boot override Pxe but sends no ETag/)
  })
})

test('boot override read-back: every field checked, the one documented fallback flagged', async (t) => {
  await t.test('an override dropped: not-applied naming each field, asked and read', async (t) => {
    const s = await server(t, { quirks: { dropsBootOverride: true } })
    const err = await failure(driverFor(t, s, { verifyReads: 2 }).setBootDevice({ device: 'cd', mode: 'bios', persistent: true }))
    assert.equal(err.kind, 'not-applied')
    assert.match(err.message, /did not stick \(read None\/Disabled\/UEFI\): target asked Cd, read None; enabled asked Continuous, read Disabled; mode asked Legacy, read UEFI$/)
    readable(err, hostOf(s))
  })

  await t.test('Continuous asked, Once read: a mismatch, not a fallback', () => {
    const check = checkBoot({ device: 'pxe', persistent: true }, { target: 'Pxe', enabled: 'Once', mode: 'UEFI', uri: null })
    assert.deepEqual(check.mismatches, ['enabled asked Continuous, read Once'])
    assert.equal(check.fallback, undefined)
  })

  await t.test('no "Once" among the allowed values: Continuous is sent directly, flagged as the fallback', async (t) => {
    const s = await server(t, { quirks: { enabledAllowable: ['Disabled', 'Continuous'] } })
    const r = await driverFor(t, s).setBootDevice({ device: 'pxe', mode: 'uefi' })
    const patch = s.requests.find((q) => q.method === 'PATCH')!.body as { Boot: Record<string, string> }
    assert.equal(patch.Boot.BootSourceOverrideEnabled, 'Continuous')
    assert.equal(r.fallback, 'continuous')
    assert.deepEqual(r.verified, { device: true, mode: true, persistent: false })
  })

  await t.test('a BMC that does not report the mode: accepted, mode not verified', () => {
    const check = checkBoot({ device: 'pxe', mode: 'uefi' }, { target: 'Pxe', enabled: 'Once', mode: null, uri: null })
    assert.deepEqual(check, { mismatches: [], verified: { device: true, mode: false, persistent: true } })
    const noEnabled = checkBoot({ device: 'pxe' }, { target: 'Pxe', enabled: null, mode: 'UEFI', uri: null })
    assert.deepEqual(noEnabled.verified, { device: true, mode: false, persistent: false })
    const disabled = checkBoot({ device: 'pxe' }, { target: 'Pxe', enabled: 'Disabled', mode: 'UEFI', uri: null })
    assert.deepEqual(disabled.verified, { device: false, mode: false, persistent: false })
    assert.deepEqual(disabled.mismatches, ['enabled asked Once, read Disabled'])
  })

  await t.test('clearing: Enabled=Disabled alone, then with target None where the BMC wants a target', async (t) => {
    const s = await server(t, { quirks: { requiresTarget: true } })
    const d = driverFor(t, s)
    await d.setBootDevice({ device: 'pxe', persistent: true })
    const r = await d.setBootDevice({ device: 'none' })
    assert.equal(r.enabled, false)
    assert.deepEqual(r.verified, { device: true, mode: false, persistent: false })
    const patches = s.requests.filter((q) => q.method === 'PATCH').slice(1)
    assert.deepEqual(patches.map((p) => [p.status, p.body]), [
      [400, { Boot: { BootSourceOverrideEnabled: 'Disabled' } }],
      [204, { Boot: { BootSourceOverrideTarget: 'None', BootSourceOverrideEnabled: 'Disabled' } }],
    ])
  })

  await t.test('UEFI HTTP boot with its URI, checked; refused where the BMC does not list UefiHttp', async (t) => {
    const s = await server(t)
    const d = driverFor(t, s)
    const uri = 'http://10.0.0.1:8080/boot/ipxe.efi'
    const r = await d.setBootDevice({ device: 'http', mode: 'uefi', uri })
    assert.equal(r.device, 'http')
    assert.equal(r.raw, `UefiHttp/Once/UEFI/${uri}`)
    const patch = s.requests.find((q) => q.method === 'PATCH')!.body as { Boot: Record<string, string> }
    assert.equal(patch.Boot.HttpBootUri, uri)
    const cd = await d.setBootDevice({ device: 'cd' })
    assert.equal(cd.device, 'cd')
    assert.deepEqual(checkBoot({ device: 'http', uri }, { target: 'UefiHttp', enabled: 'Once', mode: null, uri: null }).mismatches,
      [`uri asked ${uri}, read (none)`])
    const old = await server(t, { quirks: { targets: ['None', 'Pxe', 'Hdd', 'Cd'] } })
    const err = await failure(driverFor(t, old).setBootDevice({ device: 'http', uri }))
    assert.equal(err.kind, 'unsupported')
    assert.match(err.message, /cannot boot-override to UefiHttp \(it allows None, Pxe, Hdd, Cd\)/)
  })
})

test('capabilities: cd, http where listed, virtual media on the system or its manager', async (t) => {
  const plain = await driverFor(t, await server(t)).capabilities()
  assert.ok(plain.includes('boot.cd') && plain.includes('boot.http'))
  assert.ok(!plain.includes('media.virtual'))
  const noHttp = await driverFor(t, await server(t, { quirks: { targets: ['None', 'Pxe', 'Hdd'] } })).capabilities()
  assert.ok(!noHttp.includes('boot.http') && !noHttp.includes('boot.cd'))
  const onSystem = await driverFor(t, await server(t, { quirks: { virtualMedia: 'system' } })).capabilities()
  assert.ok(onSystem.includes('media.virtual'))
  const onManager = await driverFor(t, await server(t, { quirks: { virtualMedia: 'manager', manager: { Model: 'X' } } })).capabilities()
  assert.ok(onManager.includes('media.virtual'))
})

test('several systems: chosen by systemId or by the address path, and a clear error otherwise', async (t) => {
  const s = await server(t, { quirks: { systems: 2 } })
  const two = s.state.systems.get('2')!

  await t.test('no choice: the error lists the systems and says how to choose', async (t) => {
    const err = await failure(driverFor(t, s).powerStatus())
    assert.equal(err.kind, 'invalid')
    assert.match(err.message, /manages 2 systems \(1, 2\); choose one with bmc\.systemId in the inventory file or `rackboot machines bmc set MACHINE --system-id ID`/)
    readable(err, hostOf(s))
  })

  await t.test('by Id, by path, by the address', async (t) => {
    await driverFor(t, s, { systemId: '2' }).power('on')
    await driverFor(t, s, { systemId: '/redfish/v1/Systems/2' }).power('off')
    await driverFor(t, s, { address: `${s.url}/redfish/v1/Systems/2` }).power('cycle')
    await driverFor(t, s, { address: `${s.url}/redfish/v1/Systems/2/`, systemId: '2' }).power('reset')
    assert.deepEqual(two.resets, ['On', 'ForceOff', 'PowerCycle', 'ForceRestart'])
    assert.deepEqual(s.state.resets, [])
  })

  await t.test('an address path and a different systemId, another path, an unknown system: invalid', async (t) => {
    assert.throws(() => driverFor(t, s, { address: `${s.url}/redfish/v1/Systems/2`, systemId: '1' }),
      (err) => isPowerError(err, 'invalid') && /names system 2 in its address but its systemId is 1/.test(err.message))
    assert.throws(() => driverFor(t, s, { address: `${s.url}/redfish/v1/Managers/1` }),
      (err) => isPowerError(err, 'invalid') && /only a \/redfish\/v1\/Systems\/<id> path/.test(err.message))
    const err = await failure(driverFor(t, s, { systemId: '3' }).powerStatus())
    assert.match(err.message, /has no system 3 \(it has 1, 2\)/)
  })
})

test('auth: basic never logs in; session fails clearly without a SessionService; auto falls back', async (t) => {
  const s = await server(t)
  await driverFor(t, s, { auth: 'basic' }).power('on')
  assert.equal(s.state.sessionsCreated, 0)
  assert.ok(s.requests.filter((r) => r.path !== '/redfish/v1/').every((r) => String(r.headers.authorization).startsWith('Basic ')))

  const basicOnly = await server(t, { quirks: { noSessionService: true } })
  const err = await failure(driverFor(t, basicOnly, { auth: 'session' }).powerStatus())
  assert.equal(err.kind, 'unsupported')
  assert.match(err.message, /cannot do session log-in \(it has no SessionService\) but its auth is set to session; set it to basic or auto/)
  assert.equal(await driverFor(t, basicOnly, { auth: 'auto' }).powerStatus(), 'off')
})

test('the wrong scheme: one actionable line, never an OpenSSL dump', async (t) => {
  await t.test('https to a plain-HTTP port', async (t) => {
    const s = await server(t)
    const err = await failure(driverFor(t, { url: s.url.replace('http:', 'https:') }).powerStatus())
    assert.equal(err.kind, 'tls')
    assert.equal(err.notRun, true)
    assert.equal(err.message, `BMC 127.0.0.1:${s.port} does not speak TLS on this port (it looks like plain HTTP); ` +
      `write http://127.0.0.1:${s.port} in the BMC address if that is intended`)
  })

  await t.test('http to a TLS port that drops plain HTTP', async (t) => {
    const { key, cert } = await selfSigned()
    const s = await server(t, { tls: { key, cert } })
    const err = await failure(driverFor(t, { url: s.url.replace('https:', 'http:') }).powerStatus())
    assert.equal(err.kind, 'tls')
    assert.equal(err.message, `BMC 127.0.0.1:${s.port} closed the connection on a plain-HTTP request; it probably wants https:// ` +
      `(write https://127.0.0.1:${s.port} in the BMC address)`)
  })

  await t.test('http to a TLS port that answers 400 "plain HTTP request was sent to HTTPS port" (nginx)', async (t) => {
    const sockets = new Set<Socket>()
    const nginx = createTcpServer((sock) => {
      sockets.add(sock)
      sock.once('data', () => {
        const html = '<html><head><title>400 The plain HTTP request was sent to HTTPS port</title></head><body>\r\n' +
          '<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was sent to HTTPS port</center>\r\n</body></html>'
        sock.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\nContent-Length: ${Buffer.byteLength(html)}\r\nConnection: close\r\n\r\n${html}`)
      })
    })
    await new Promise<void>((r) => nginx.listen(0, '127.0.0.1', r))
    t.after(() => new Promise<void>((r) => { for (const s of sockets) s.destroy(); nginx.close(() => r()) }))
    const port = (nginx.address() as { port: number }).port
    const err = await failure(driverFor(t, { url: `http://127.0.0.1:${port}` }).powerStatus())
    assert.equal(err.kind, 'tls')
    assert.match(err.message, /closed the connection on a plain-HTTP request; it probably wants https:\/\//)
  })
})

test('vendor detection: the root first, the Manager only when the root does not say; describe() after the first call', async (t) => {
  await t.test('HPE from the root', async (t) => {
    const s = await server(t, { quirks: { root: { Vendor: 'HPE', Oem: { Hpe: {} }, Product: 'ProLiant DL360 Gen10' }, manager: { Model: 'iLO 5' } } })
    const d = driverFor(t, s)
    assert.equal(d.describe!(), null)
    await d.powerStatus()
    const what = d.describe!()!
    assert.equal(what.vendor, 'hpe')
    assert.equal(what.model, 'ProLiant DL360 Gen10')
    assert.ok(what.quirks.includes('ilo-busy-during-post') && what.quirks.includes('identity-encoding'))
    assert.ok(!what.quirks.includes('idrac-sys518'))
    assert.ok(!s.requests.some((r) => r.path.startsWith('/redfish/v1/Managers')), 'no Manager read when the root says')
  })

  await t.test('sushy-tools\' emulator by its root', async (t) => {
    const s = await server(t, { quirks: { root: { Id: 'RedvirtService', Name: 'Redvirt Service' } } })
    const d = driverFor(t, s)
    await d.powerStatus()
    assert.equal(d.describe!()!.vendor, 'sushy-emulator')
    assert.ok(d.describe!()!.quirks.includes('once-reads-continuous'))
  })

  await t.test('a root that says nothing: the Manager\'s Model and FirmwareVersion', async (t) => {
    const s = await server(t, { quirks: { manager: { Model: 'iDRAC 9', FirmwareVersion: '7.10.50.00' } } })
    const d = driverFor(t, s)
    await d.powerStatus()
    assert.deepEqual({ ...d.describe!(), quirks: undefined }, { vendor: 'dell', model: 'iDRAC 9 (firmware 7.10.50.00)', quirks: undefined })
    assert.ok(d.describe!()!.quirks.includes('idrac-409-power-on'))
  })

  await t.test('nothing known: vendor null, the quirks every BMC gets', async (t) => {
    const d = driverFor(t, await server(t))
    await d.powerStatus()
    assert.deepEqual(d.describe!(), { vendor: null, model: null, quirks: quirksFor(null) })
  })
})

test('quirks and helpers as data', () => {
  assert.equal(vendorFromRoot({ Oem: { Supermicro: {} } }), 'supermicro')
  assert.equal(vendorFromRoot({ Product: 'Lenovo XClarity Controller' }), 'lenovo')
  assert.equal(vendorFromRoot({ Vendor: 'AMI' }), 'ami')
  assert.equal(vendorFromRoot({ Name: 'Root Service' }), null)
  const ilo = temporaryError({ status: 400, messages: [{ id: 'iLO.2.37.UnableToModifyDuringSystemPOST', args: [] }], vendor: null })
  assert.equal(ilo?.rule.quirk, 'ilo-busy-during-post')
  assert.equal(temporaryError({ status: 400, messages: [{ id: 'iLO.2.37.PropertyValueNotInList', args: [] }], vendor: 'hpe' }), null)
  assert.equal(temporaryError({ status: 409, messages: [], vendor: 'dell', resetType: 'ForceOff' }), null)
  assert.equal(temporaryError({ status: 409, messages: [], vendor: 'dell', resetType: 'On' })?.waitMs, 10_000)
  assert.equal(strongEtag('W/"abc"'), '"abc"')
  assert.equal(strongEtag('W/abc'), '"abc"')
  assert.equal(retryAfterMs('5'), 5000)
  assert.equal(retryAfterMs('Wed, 21 Oct 2015 07:28:00 GMT', Date.parse('Wed, 21 Oct 2015 07:27:00 GMT')), 60_000)
  assert.equal(retryAfterMs('soon'), null)
  assert.equal(systemOfAddress('https://bmc.example:8443/redfish/v1/Systems/2'), '/redfish/v1/Systems/2')
  assert.equal(systemOfAddress('https://bmc.example:8443/redfish/v1/'), null)
  assert.equal(systemOfAddress('bmc.example', 443), null)
  assert.equal(systemOfAddress('bmc.example/redfish/v1/Systems/System.Embedded.1', 8443), '/redfish/v1/Systems/System.Embedded.1')
  assert.equal(baseUrlOf('bmc.example/redfish/v1/Systems/1', 8443).href, 'https://bmc.example:8443/')
  assert.equal(baseUrlOf('fd00::17', 443).href, 'https://[fd00::17]/')
  assert.equal(baseUrlOf('fd00::17', 8443).href, 'https://[fd00::17]:8443/')
  assert.equal(baseUrlOf('http://10.0.0.9:8000/redfish/v1/Systems/2', null).href, 'http://10.0.0.9:8000/')
})

/** A throwaway self-signed certificate for 127.0.0.1 (openssl), for the scheme tests. */
async function selfSigned(): Promise<{ key: string; cert: string }> {
  const { spawnSync } = await import('node:child_process')
  const { mkdtempSync, readFileSync, rmSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const dir = mkdtempSync(join(tmpdir(), 'rackboot-faults-'))
  try {
    const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '2', '-subj', '/CN=bmc.test',
      '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' })
    assert.equal(made.status, 0, made.stderr)
    return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

test('sushy-emulator (fake driver): recognised, Once kept as Continuous (the fallback), two systems, late power', {
  skip: sushyMissing() ?? false, timeout: 120_000,
}, async (t) => {
  const sushy = await startSushy({ t, systems: [{}, {}], powerDelaySeconds: 2 })
  const base = { address: sushy.url, username: 'admin', password: 'password', timeoutMs: 10_000, verifyIntervalMs: 100 }
  const [one, two] = sushy.systems

  const err = await failure(driverFor(t, { url: sushy.url }, base).powerStatus())
  assert.equal(err.kind, 'invalid')
  assert.ok(err.message.includes(`manages 2 systems (${one!.uuid}, ${two!.uuid})`) || err.message.includes(`manages 2 systems (${two!.uuid}, ${one!.uuid})`), err.message)

  const d = driverFor(t, { url: sushy.url }, { ...base, systemId: two!.uuid })
  assert.equal(d.describe!(), null)
  assert.equal(await d.powerStatus(), 'off')
  assert.equal(d.describe!()!.vendor, 'sushy-emulator')
  const caps = await d.capabilities()
  assert.ok(caps.includes('media.virtual') && caps.includes('boot.cd') && caps.includes('boot.http'), caps.join(' '))

  const r = await d.setBootDevice({ device: 'pxe', mode: 'uefi' })
  assert.equal(r.fallback, 'continuous')
  assert.deepEqual(r.verified, { device: true, mode: true, persistent: false })
  const cleared = await d.setBootDevice({ device: 'none' })
  assert.equal(cleared.enabled, false)

  const call = sends()
  await d.power('on', call)
  assert.equal(call.count, 1)
  assert.equal(await d.powerStatus(), 'off') // sushy applies it 2 s later: the caller's read-back waits
  const until = Date.now() + 8000
  while ((await d.powerStatus()) !== 'on') {
    assert.ok(Date.now() < until, 'sushy never applied the power-on')
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
  assert.equal(call.count, 1)
})
