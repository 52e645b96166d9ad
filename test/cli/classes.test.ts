import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { rackbootAsync, REPO, startApi } from '../support/cli.js'

test('classes test explains, selector by selector, which class a machine gets and which profile follows (through the API and --data-dir)', async (t) => {
  const api = await startApi()
  t.after(() => api.close())
  assert.equal((await api.cli(['inventory', 'import', join(REPO, 'inventory')])).code, 0)
  const inv = api.inventory
  const m = (await inv.machines.byName('r12-u07'))!
  await inv.machines.update(m.id, { profile: null }, 1)
  await inv.machines.setHardware(m.id, {
    cpu: { cores: 64 }, memory: { totalBytes: 512 * 2 ** 30 },
    disks: [{ name: 'nvme0n1', sizeBytes: 4e12, type: 'nvme' }, { name: 'nvme1n1', sizeBytes: 4e12, type: 'nvme' }],
  }, 1)
  const [res, show, json, list, local] = await Promise.all([
    api.cli(['classes', 'test', 'r12-u07'], { scope: 'read' }),
    api.cli(['machines', 'show', 'r12-u07'], { scope: 'read' }),
    api.cli(['classes', 'test', 'r12-u02', '--json'], { scope: 'read' }),
    api.cli(['classes', 'list'], { scope: 'read' }),
    rackbootAsync(['classes', 'test', 'r12-u07', '--data-dir', api.dir], { cwd: api.dir }),
  ])
  for (const r of [res, local]) {
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /storage-nvme\s+disks\[type=nvme\]\.count >= 2\s+yes/)
    assert.match(r.stdout, /memory\.gib >= 256\s+yes/)
    assert.match(r.stdout, /control-plane\s+labels\.role == "controlplane"\s+no/)
    assert.match(r.stdout, /matching classes \(specificity\): (compute-large \(1\), storage-nvme \(2\)|storage-nvme \(2\), compute-large \(1\))/)
    assert.match(r.stdout, /chosen: storage-nvme\n/, 'the most specific class wins')
    // The disk that selector picks among the reported ones (equal sizes: the lower device name).
    assert.match(r.stdout, /profile: talos-worker \(class storage-nvme gives profile talos-worker\)\ninstall disk: type=nvme size=">= 400GB" prefer=smallest -> \/dev\/nvme0n1\n/)
  }
  assert.match(show.stdout, /install disk\s+\/dev\/nvme0n1 \(profile talos-worker: type=nvme size=">= 400GB" prefer=smallest\)/)
  const view = JSON.parse(json.stdout)
  assert.equal(view.chosen, 'control-plane')
  assert.equal(view.profile, 'talos-controlplane')
  assert.match(list.stdout, /storage-nvme\s+talos-worker\s+disks\[type=nvme\]\.count >= 2 AND memory\.gib >= 256/)
})
