// The lookups every config fetch makes (issue 15), compiled once (precompiled.ts): a machine by id or MAC with its
// NICs and hardware, and its open allocation, newest first, from the index migration 0016 makes. On both backends.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import SQLite from 'better-sqlite3'
import { sql } from 'kysely'
import type { Inventory } from '../../src/inventory/index.js'
import { eachBackend } from '../support/backends.js'
import { openSqliteInventory } from './helpers.js'

const NOW = 1_800_000_000_000

async function allocate(inv: Inventory, id: string, machineId: string, at: number): Promise<void> {
  await inv.allocations.create(
    { id, idempotencyKey: null, requestHash: id, class: null, selector: null, count: 1, cluster: null, role: 'worker', profile: null, patches: [{ id }], machines: [], createdAt: at },
    [{ machineId, class: null, cluster: null, role: 'worker', profile: null, previousProfile: null, patches: [{ id }] }],
  )
}

eachBackend('machines.get and byMac: the machine with its NICs in MAC order and its hardware; null for none', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const m = await inv.machines.create({ name: 'lookup', nics: [{ mac: '02:00:00:00:00:0b', name: 'eno2', boot: false }, { mac: '02:00:00:00:00:0a', name: 'eno1', boot: true }] }, NOW)
  await inv.machines.setHardware(m.id, { cpu: { cores: 32 }, disks: [{ name: 'nvme0n1', sizeBytes: 1e12, type: 'nvme' }] }, NOW + 1)
  const other = await inv.machines.create({ name: 'bare', nics: [] }, NOW)
  for (const got of [await inv.machines.get(m.id), await inv.machines.byMac('02-00-00-00-00-0B')]) {
    assert.equal(got?.id, m.id)
    assert.equal(got.name, 'lookup')
    assert.deepEqual(got.nics, [{ mac: '02:00:00:00:00:0a', name: 'eno1', boot: true }, { mac: '02:00:00:00:00:0b', name: 'eno2', boot: false }])
    assert.equal(got.hardware?.cpu?.cores, 32)
  }
  const bare = await inv.machines.get(other.id)
  assert.deepEqual([bare?.name, bare?.nics, bare?.hardware], ['bare', [], null])
  assert.equal(await inv.machines.get('no-such-machine'), null)
  assert.equal(await inv.machines.byMac('02:00:00:00:00:ff'), null)
  // Inside a transaction, its repositories see what it wrote.
  await inv.transaction(async (tx) => {
    await tx.machines.setHardware(other.id, { cpu: { cores: 4 } }, NOW + 2)
    assert.equal((await tx.machines.get(other.id))?.hardware?.cpu?.cores, 4)
  })
})

eachBackend('allocations.current: the newest open allocation of the machine, never a released one', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const m = await inv.machines.create({ name: 'alloc', nics: [] }, NOW)
  const other = await inv.machines.create({ name: 'other', nics: [] }, NOW)
  assert.equal(await inv.allocations.current(m.id), null)
  await allocate(inv, 'a1', m.id, NOW + 10)
  await allocate(inv, 'a2', m.id, NOW + 20)
  await allocate(inv, 'a3', other.id, NOW + 30)
  assert.equal((await inv.allocations.current(m.id))?.allocationId, 'a2')
  assert.deepEqual((await inv.allocations.current(m.id))?.patches, [{ id: 'a2' }])
  // Two open rows (written before create closed the previous one): the newest counts, whichever was written first.
  await sql`update allocation_machines set released_at = null`.execute(inv.db)
  await sql`update allocation_machines set allocated_at = ${NOW + 40} where allocation_id = 'a1'`.execute(inv.db)
  assert.equal((await inv.allocations.current(m.id))?.allocationId, 'a1')
  assert.equal((await inv.allocations.release(m.id, NOW + 50))?.allocationId, 'a1')
  assert.equal(await inv.allocations.current(m.id), null)
  assert.equal((await inv.allocations.current(other.id))?.allocationId, 'a3')
})

// SQLite re-prepares a statement each time a LIMIT parameter is bound (the value feeds its planner): a bound
// `limit ?` made this one-row read several times dearer on every config fetch. The limit is written in the SQL.
test('allocations.current on SQLite: its LIMIT is in the SQL, not a bound parameter', async (t) => {
  const inv = await openSqliteInventory({ file: ':memory:' })
  t.after(() => inv.close())
  const m = await inv.machines.create({ name: 'alloc', nics: [] }, NOW)
  await allocate(inv, 'a1', m.id, NOW + 10)
  const prepared: string[] = []
  const prepare = SQLite.prototype.prepare
  SQLite.prototype.prepare = function (this: SQLite.Database, source: string) {
    prepared.push(source)
    return prepare.call(this, source)
  } as typeof prepare
  try {
    assert.equal((await inv.allocations.current(m.id))?.allocationId, 'a1')
  } finally {
    SQLite.prototype.prepare = prepare
  }
  const reads = prepared.filter((s) => s.includes('"allocation_machines"'))
  assert.equal(reads.length, 1, `the open-allocation read was prepared: ${JSON.stringify(prepared)}`)
  assert.match(reads[0]!, /\blimit 1$/)
})

eachBackend('a 0015 database gains the allocation index (0016), in place of the one it extends', async (t, backend) => {
  const inv = await backend.open({ migrateTo: '0015-install-slots' })
  const url = (inv as { url?: string }).url
  const indexes = async (db: typeof inv.db): Promise<string[]> => (backend.name === 'sqlite'
    ? await sql<{ name: string }>`select name from sqlite_master where type = 'index' and tbl_name = 'allocation_machines' and name like 'allocation_machines_machine%'`.execute(db)
    : await sql<{ name: string }>`select indexname as name from pg_indexes where tablename = 'allocation_machines' and indexname like 'allocation_machines_machine%'`.execute(db)
  ).rows.map((r) => r.name).sort()
  assert.deepEqual(await indexes(inv.db), ['allocation_machines_machine'])
  const m = await inv.machines.create({ name: 'before', nics: [] }, NOW)
  await allocate(inv, 'a1', m.id, NOW)
  if (backend.name === 'postgres') await inv.close()
  const upgraded = backend.name === 'sqlite' ? inv : await backend.open({ url: url! })
  t.after(() => upgraded.close())
  if (backend.name === 'sqlite') {
    const { Migrator } = await import('kysely')
    const { migrationProvider } = await import('../../src/inventory/sql/migrations/index.js')
    const r = await new Migrator({ db: upgraded.db, provider: migrationProvider }).migrateToLatest()
    assert.equal(r.error, undefined)
  }
  assert.deepEqual(await indexes(upgraded.db), ['allocation_machines_machine_open'])
  assert.equal((await upgraded.allocations.current(m.id))?.allocationId, 'a1')
  if (backend.name === 'sqlite') {
    // The newest open row comes straight from the index: no sort.
    const plan = await sql<{ detail: string }>`explain query plan select * from allocation_machines where machine_id = ${m.id} and released_at is null order by allocated_at desc limit 1`.execute(upgraded.db)
    const details = plan.rows.map((r) => r.detail).join('; ')
    assert.match(details, /allocation_machines_machine_open/)
    assert.doesNotMatch(details, /TEMP B-TREE/)
  }
})
