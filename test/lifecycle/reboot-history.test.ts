import { bmcRecord } from '../support/bmc.js'
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { rebootHistory } from '../../src/lifecycle/index.js'
import { silentLogger } from '../../src/log.js'
import { createPowerManager, isPowerError, type BmcDriver } from '../../src/power/index.js'

test('the reboot interval holds across processes: the last reboot is read from the timeline', async (t) => {
  const inv = await openSqliteInventory({ file: ':memory:' })
  t.after(() => inv.close())
  const now = Date.now()
  const history = rebootHistory(inv)
  assert.equal(await history('m1'), null)
  // What another process (the CLI, or the server before a restart) recorded: a status poll and a failed cycle.
  await inv.events.append({ machineId: 'm1', type: 'power', at: now - 30_000, message: 'power status', data: { action: 'status', ok: true, ms: 10 } })
  await inv.events.append({ machineId: 'm1', type: 'power', at: now - 20_000, message: 'power cycle (CLI) failed', data: { action: 'cycle', ok: false, ms: 5_000 } })
  await inv.events.append({ machineId: 'm1', type: 'boot.dhcp', at: now - 1_000, message: 'DHCP', data: {} })
  assert.equal(await history('m1'), now - 25_000, 'a failed reboot counts, from when it was sent')

  const sent: string[] = []
  const driver: BmcDriver = {
    type: 'ipmi',
    capabilities: async () => [],
    powerStatus: async () => 'on',
    power: async (action) => void sent.push(action),
    setBootDevice: async () => ({ device: 'pxe', mode: null, persistent: false, enabled: true, raw: '' }),
    getBootDevice: async () => ({ device: 'none', mode: null, persistent: null, enabled: false, raw: '' }),
    identify: async () => undefined,
    insertMedia: async () => undefined,
    ejectMedia: async () => undefined,
    close: async () => undefined,
  }
  const manager = createPowerManager({
    bmcs: {
      get: async (id) => bmcRecord({ machineId: id, type: 'ipmi', address: '198.18.0.9', port: 623 }),
      credentials: async () => ({ username: 'admin', password: 'pw' }),
    },
    log: silentLogger(),
    settings: { minRebootIntervalMs: 120_000, attempts: 1 },
    createDriver: () => driver,
    lastRebootAt: history,
  })
  t.after(() => manager.stop())
  await assert.rejects(manager.power('m1', 'reset'), (e) => isPowerError(e, 'too-soon') && /rebooted 2\d s ago/.test(e.message))
  assert.deepEqual(sent, [], 'nothing was sent')
  await manager.power('m2', 'reset') // no history: goes
  assert.deepEqual(sent, ['reset'])
})
