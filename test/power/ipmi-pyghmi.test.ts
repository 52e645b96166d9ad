// rackboot's RMCP+ driver against the recording pyghmi BMC (shared/harness/pyghmi): the exact boot-flag bytes
// (UEFI, persistent), the set-in-progress / boot-info-ack sequence, one-shot consumption, and suite negotiation.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createIpmiDriver, isPowerError } from '../../src/power/index.js'
import { ipmitool, missing, pyghmiMissing, startPyghmi } from './fixtures/bmc-sims.js'

const skip = pyghmiMissing() ?? missing('ipmitool')

test('IPMI driver against the recording pyghmi BMC', { skip: skip ?? false, timeout: 60_000 }, async (t) => {
  const bmc = await startPyghmi(t)
  const driver = createIpmiDriver({ host: '127.0.0.1', port: bmc.port, username: 'admin', password: 'password', timeoutMs: 5000 })

  await t.test('pyghmi answers suite 3 when asked for 17: the driver checks the algorithms and uses 3', async () => {
    assert.equal(await driver.powerStatus(), 'off')
    // Only suite 17 allowed: the answered suite 3 is not silently accepted.
    const only17 = createIpmiDriver({ host: '127.0.0.1', port: bmc.port, username: 'admin', password: 'password',
      timeoutMs: 3000, suites: [17] })
    await assert.rejects(only17.powerStatus(), (err) => {
      assert.ok(isPowerError(err, 'unsupported'), String(err))
      assert.match(err.message, /not an allowed cipher suite/)
      return true
    })
  })

  // Each override beside the ipmitool command that means the same; both are sent to the recording BMC, whose log
  // must show the same Set System Boot Options requests, byte for byte.
  const cases = [
    { override: { device: 'pxe', mode: 'uefi', persistent: false }, bytes: 'a0 04 00 00 00', ipmitool: ['pxe', 'options=efiboot'] },
    { override: { device: 'pxe', mode: 'uefi', persistent: true }, bytes: 'e0 04 00 00 00', ipmitool: ['pxe', 'options=efiboot,persistent'] },
    { override: { device: 'disk', mode: 'bios', persistent: true }, bytes: 'c0 08 00 00 00', ipmitool: ['disk', 'options=persistent'] },
    { override: { device: 'pxe', mode: 'bios' }, bytes: '80 04 00 00 00', ipmitool: ['pxe'] },
    { override: { device: 'disk', mode: 'uefi' }, bytes: 'a0 08 00 00 00', ipmitool: ['disk', 'options=efiboot'] },
    { override: { device: 'cd', mode: 'bios' }, bytes: '80 14 00 00 00', ipmitool: ['cdrom'] },
  ] as const
  const bootSets = (from: number): string[] => bmc.state().log.slice(from).filter((e) => e.op === 'set-boot-option')
    .map((e) => `${e.param}=${e.data}`)

  for (const { override, bytes, ipmitool: args } of cases) {
    const persistent = 'persistent' in override && override.persistent
    await t.test(`boot ${override.device}/${override.mode}/${persistent ? 'persistent' : 'once'} sends ${bytes}, as ipmitool chassis bootdev ${args.join(' ')}`, async () => {
      const byIpmitool = bmc.state().log.length
      const r0 = await ipmitool(bmc.port, ['chassis', 'bootdev', ...args])
      assert.equal(r0.code, 0, r0.stderr)
      const ipmitoolSets = bootSets(byIpmitool)
      const logBefore = bmc.state().log.length
      const readback = await driver.setBootDevice(override)
      const state = bmc.state()
      assert.equal(state.boot.raw, bytes)
      assert.equal(readback.raw, bytes)
      assert.equal(readback.device, override.device)
      assert.equal(readback.mode, override.mode)
      assert.equal(readback.enabled, true)
      assert.equal(readback.persistent, persistent)
      // Strict read-back (the default) compared all three: the caller may say so.
      assert.deepEqual(readback.verified, { device: true, mode: true, persistent: true })
      // The sequence ipmitool uses: set in progress, boot info ack, the flags, commit write, set complete.
      const sets = bootSets(logBefore)
      assert.deepEqual(sets, ['0=01', '4=01 01', `5=${bytes}`, '0=02', '0=00'])
      assert.deepEqual(sets, ipmitoolSets)
      // Cross-check with ipmitool's own decoding.
      const r = await ipmitool(bmc.port, ['chassis', 'bootparam', 'get', '5'])
      assert.match(r.stdout, new RegExp(`Boot parameter data: ${bytes.replace(/ /g, '')}`))
      assert.match(r.stdout, override.mode === 'uefi' ? /BIOS EFI boot/ : /BIOS PC Compatible \(legacy\) boot/)
      assert.match(r.stdout, { pxe: /Force PXE/, disk: /Force Boot from default Hard-Drive/, cd: /Force Boot from CD\/DVD/ }[override.device])
    })
  }

  await t.test('ipmitool sets bootdev pxe efiboot,persistent; the driver reads it back', async () => {
    await ipmitool(bmc.port, ['chassis', 'bootdev', 'pxe', 'options=efiboot,persistent'])
    const readback = await driver.getBootDevice()
    // A plain read confirms no request: no `verified`.
    assert.deepEqual(readback, { device: 'pxe', mode: 'uefi', persistent: true, enabled: true, raw: 'e0 04 00 00 00' })
  })

  await t.test('power on, cycle, soft-off and reset are recorded as the directives sent', async () => {
    const before = { ...bmc.state().counters }
    await driver.power('on')
    await driver.power('cycle')
    await driver.power('reset')
    await driver.power('soft-off')
    const after = bmc.state().counters
    assert.equal(after.on, (before.on ?? 0) + 1)
    assert.equal(after.cycle, (before.cycle ?? 0) + 1)
    assert.equal(after.reset, (before.reset ?? 0) + 1)
    assert.equal(after['soft-off'], (before['soft-off'] ?? 0) + 1)
    assert.equal(bmc.state().power, 'off')
    const r = await ipmitool(bmc.port, ['chassis', 'power', 'status'])
    assert.match(r.stdout, /Chassis Power is off/)
  })

  await t.test('a wrong password fails at RAKP2 without the password in the error', async () => {
    const secret = 'not-the-password'
    const bad = createIpmiDriver({ host: '127.0.0.1', port: bmc.port, username: 'admin', password: secret, timeoutMs: 5000 })
    await assert.rejects(bad.powerStatus(), (err) => {
      assert.ok(isPowerError(err, 'auth'), String(err))
      assert.ok(!err.message.includes(secret) && !JSON.stringify(err.details).includes(secret))
      return true
    })
  })

  await t.test('an unknown user (pyghmi drops RAKP1) is a timeout naming RAKP1, within the budget', async () => {
    const unknown = createIpmiDriver({ host: '127.0.0.1', port: bmc.port, username: 'nobody', password: 'password',
      timeoutMs: 1500, retransmitMs: 300 })
    const started = Date.now()
    await assert.rejects(unknown.powerStatus(), (err) => {
      assert.ok(isPowerError(err, 'timeout'), String(err))
      assert.match(err.message, /RAKP message 1 \(no answer: the BMC may not know this user\)/)
      return true
    })
    assert.ok(Date.now() - started < 2500)
  })
})

test('IPMI next-boot flags are consumed by a one-shot BMC; persistent ones survive', { skip: skip ?? false, timeout: 60_000 }, async (t) => {
  const bmc = await startPyghmi(t, { oneShot: true })
  const driver = createIpmiDriver({ host: '127.0.0.1', port: bmc.port, username: 'admin', password: 'password', timeoutMs: 5000 })
  await driver.setBootDevice({ device: 'pxe', mode: 'uefi' })
  await driver.power('on')
  const once = await driver.getBootDevice()
  assert.equal(once.enabled, false)
  assert.equal(once.raw, '20 04 00 00 00')
  assert.deepEqual(bmc.state().boots.at(-1), { ...bmc.state().boots.at(-1), how: 'on', device: 'pxe', efi: true })

  await driver.setBootDevice({ device: 'pxe', mode: 'uefi', persistent: true })
  await driver.power('reset')
  const persistent = await driver.getBootDevice()
  assert.equal(persistent.enabled, true)
  assert.equal(persistent.raw, 'e0 04 00 00 00')
  assert.equal(bmc.state().boots.at(-1)?.device, 'pxe')
})
