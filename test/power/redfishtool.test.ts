// Cross-check against Debian's redfishtool (DMTF's client) on the same test server: what rackboot sets,
// redfishtool reads, and the other way round; both send the same request shapes; both log their sessions out.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createRedfishDriver } from '../../src/power/index.js'
import { have, run } from './fixtures/bmc-sims.js'
import { startRedfishServer } from './fixtures/redfish-server.js'

test('rackboot and redfishtool agree on one Redfish service', { skip: have('redfishtool') ? false : 'needs Debian package redfishtool', timeout: 60_000 }, async (t) => {
  const s = await startRedfishServer({ quirks: { requiresIfMatch: true } })
  t.after(() => s.close())
  // -S Never: plain HTTP to the local test server; -A Session: log in through SessionService like rackboot.
  const rt = async (...args: string[]): Promise<string> => {
    const r = await run('redfishtool', ['-r', `127.0.0.1:${s.port}`, '-u', 'admin', '-p', 'password', '-S', 'Never', '-A', 'Session',
      'Systems', '-1', ...args], {}, ['REQUESTS_CA_BUNDLE'])
    assert.equal(r.code, 0, `redfishtool ${args.join(' ')}: ${r.stderr}`)
    return r.stdout
  }
  const driver = createRedfishDriver({ address: s.url, username: 'admin', password: 'password', timeoutMs: 5000, verifyIntervalMs: 10 })
  t.after(() => driver.close())

  await t.test('rackboot sets PXE/UEFI/once; redfishtool reads it', async () => {
    await driver.setBootDevice({ device: 'pxe', mode: 'uefi' })
    const boot = (JSON.parse(await rt('get', '-P', 'Boot')) as { Boot: Record<string, string> }).Boot
    assert.equal(boot.BootSourceOverrideTarget, 'Pxe')
    assert.equal(boot.BootSourceOverrideEnabled, 'Once')
    assert.equal(boot.BootSourceOverrideMode, 'UEFI')
  })

  await t.test('redfishtool sets Hdd/Continuous; rackboot reads it', async () => {
    await rt('setBootOverride', 'Continuous', 'Hdd')
    const readback = await driver.getBootDevice()
    assert.equal(readback.device, 'disk')
    assert.equal(readback.persistent, true)
    assert.equal(readback.enabled, true)
  })

  await t.test('power both ways', async () => {
    await driver.power('on')
    assert.equal((JSON.parse(await rt('get', '-P', 'PowerState')) as { PowerState: string }).PowerState, 'On')
    await rt('reset', 'ForceOff')
    assert.equal(await driver.powerStatus(), 'off')
  })

  await t.test('the same request shapes: Reset body and target, boot PATCH body, If-Match on retry', async () => {
    const resets = s.requests.filter((r) => r.method === 'POST' && r.path.endsWith('ComputerSystem.Reset'))
    assert.equal(resets.length, 2)
    assert.equal(resets[0]!.path, resets[1]!.path)
    assert.deepEqual(Object.keys(resets[0]!.body as object), Object.keys(resets[1]!.body as object))
    const patches = s.requests.filter((r) => r.method === 'PATCH' && r.status === 204)
    const ours = (patches[0]!.body as { Boot: Record<string, string> }).Boot
    const theirs = (patches[1]!.body as { Boot: Record<string, string> }).Boot
    for (const k of Object.keys(theirs)) assert.ok(k in ours, `rackboot sends ${k} too`)
    assert.ok(patches.every((p) => typeof p.headers['if-match'] === 'string'))
  })

  await t.test('both log their sessions out', async () => {
    await driver.close()
    assert.equal(s.state.sessions.size, 0)
    assert.equal(s.state.sessionsDeleted, s.state.sessionsCreated)
  })
})
