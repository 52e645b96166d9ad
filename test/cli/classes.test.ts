import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { rackboot, REPO, tempCwd } from '../support/cli.js'

test('classes test explains, selector by selector, which class a machine gets and which profile follows', async () => {
  const cwd = tempCwd()
  assert.equal(rackboot(['inventory', 'import', join(REPO, 'inventory')], { cwd }).code, 0)
  const inv = await openSqliteInventory({ file: join(cwd, 'data', 'rackboot.db') })
  const m = (await inv.machines.byName('r12-u07'))!
  await inv.machines.update(m.id, { profile: null }, 1)
  await inv.machines.setHardware(m.id, {
    cpu: { cores: 64 }, memory: { totalBytes: 512 * 2 ** 30 },
    disks: [{ name: 'nvme0n1', sizeBytes: 4e12, type: 'nvme' }, { name: 'nvme1n1', sizeBytes: 4e12, type: 'nvme' }],
  }, 1)
  await inv.close()
  const res = rackboot(['classes', 'test', 'r12-u07'], { cwd })
  assert.equal(res.code, 0, res.stderr)
  assert.match(res.stdout, /storage-nvme\s+disks\[type=nvme\]\.count >= 2\s+yes/)
  assert.match(res.stdout, /memory\.gib >= 256\s+yes/)
  assert.match(res.stdout, /control-plane\s+labels\.role == "controlplane"\s+no/)
  assert.match(res.stdout, /matching classes \(specificity\): (compute-large \(1\), storage-nvme \(2\)|storage-nvme \(2\), compute-large \(1\))/)
  assert.match(res.stdout, /chosen: storage-nvme\n/, 'the most specific class wins')
  assert.match(res.stdout, /profile: talos-worker \(class storage-nvme gives profile talos-worker\)\ninstall disk: type=nvme size=">= 400GB" prefer=smallest\n/)
  // The disk that selector picks among the reported ones (equal sizes: the lower device name).
  assert.match(rackboot(['machines', 'show', 'r12-u07'], { cwd }).stdout, /install disk\s+\/dev\/nvme0n1 \(profile talos-worker: type=nvme size=">= 400GB" prefer=smallest\)/)
  const json = JSON.parse(rackboot(['classes', 'test', 'r12-u02', '--json'], { cwd }).stdout)
  assert.equal(json.chosen, 'control-plane')
  assert.equal(json.profile, 'talos-controlplane')
  assert.match(rackboot(['classes', 'list'], { cwd }).stdout, /storage-nvme\s+talos-worker\s+disks\[type=nvme\]\.count >= 2 AND memory\.gib >= 256/)
})
