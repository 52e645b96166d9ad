import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { rackbootAsync, startApi } from '../support/cli.js'

// `rackboot machines list` over an inventory bigger than one API page (1,000): --all follows the cursor to the end,
// --limit beyond 1,000 pages through it, --sort is the server's order; and the same reads from --data-dir.

const N = 2500

test('machines list: --all over 2,500 machines, --limit past one page, --sort and --rack; from --data-dir too; maintenance on and off', async (t) => {
  const api = await startApi()
  t.after(() => api.close())
  const now = Date.now()
  for (let i = 0; i < N; i++) {
    await api.inventory.machines.create({ name: `n${String(i).padStart(4, '0')}`, serial: `S${String((i * 7919) % N).padStart(4, '0')}`, rack: `r${i % 7}` }, now + i)
  }
  const [all, limited, sorted, table, rack, local, bad] = await Promise.all([
    api.cli(['machines', 'list', '--all', '--json'], { scope: 'read' }),
    api.cli(['machines', 'list', '--limit', '1500', '--json'], { scope: 'read' }),
    api.cli(['machines', 'list', '--sort', '-name', '--limit', '3', '--json'], { scope: 'read' }),
    api.cli(['machines', 'list', '--limit', '5'], { scope: 'read' }),
    api.cli(['machines', 'list', '--rack', 'r3', '--sort', 'serial', '--all'], { scope: 'read' }),
    // No server: the database file directly, read only.
    rackbootAsync(['machines', 'list', '--data-dir', api.dir, '--sort', '-name', '--limit', '2'], { cwd: api.dir }),
    api.cli(['machines', 'list', '--all', '--limit', '5']),
  ])
  const items = (r: { stdout: string }) => JSON.parse(r.stdout).items as { id: string; name: string; serial: string; rack: string }[]
  assert.equal(all.code, 0, all.stderr)
  assert.equal(items(all).length, N)
  assert.equal(new Set(items(all).map((m) => m.id)).size, N, 'every machine once')
  assert.equal(JSON.parse(all.stdout).next, null)
  assert.equal(items(limited).length, 1500)
  assert.notEqual(JSON.parse(limited.stdout).next, null, 'more to come: the cursor is given')
  assert.deepEqual(items(sorted).map((m) => m.name), ['n2499', 'n2498', 'n2497'])
  assert.match(table.stdout, /\n5 of 2500 machines \(--all for every one, or --limit N\)\n$/)
  assert.equal(table.stdout.trim().split('\n').length, 1 + 5 + 2, 'header, five rows, a blank line and the count')
  const rackRows = rack.stdout.trim().split('\n').slice(1, -2)
  const expected = Math.ceil((N - 3) / 7)
  assert.equal(rackRows.length, expected)
  assert.ok(rackRows.every((l) => /\sr3\s/.test(l)), 'only rack r3')
  const serials = rackRows.map((l) => /\s(S\d{4})\s/.exec(l)![1]!)
  assert.deepEqual(serials, [...serials].sort(), 'in serial order')
  assert.match(rack.stdout, new RegExp(`\\n${expected} of ${expected} machines\\n$`))
  assert.equal(local.code, 0, local.stderr)
  assert.match(local.stdout, /^\S+\s+n2499\s[\s\S]*\n\S+\s+n2498\s[\s\S]*\n2 of 2500 machines/m)
  assert.equal(bad.code, 2)
  assert.match(bad.stderr, /give --all or --limit, not both/)

  const on = await api.cli(['machines', 'maintenance', 'on', 'n0001', 'n0002', '--reason', 'fan swap'], { scope: 'provision' })
  assert.equal(on.code, 0, on.stderr)
  assert.equal(on.stdout, 'n0001: maintenance\nn0002: maintenance\n')
  const off = await api.cli(['machines', 'maintenance', 'off', 'n0001'], { scope: 'provision' })
  assert.equal(off.stdout, 'n0001: new\n')
  const events = await api.inventory.events.list({ machineId: (await api.inventory.machines.byName('n0002'))!.id })
  assert.ok(events.some((e) => /maintenance on by token capi: fan swap/.test(e.message)), JSON.stringify(events.map((e) => e.message)))
  assert.equal(existsSync(join(api.dir, 'data')), false)
})
