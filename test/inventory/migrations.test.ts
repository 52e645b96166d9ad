import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sql } from 'kysely'
import { MIGRATIONS, openSqliteInventory } from '../../src/inventory/index.js'

test('an older database (schema 0001) with data is upgraded at open, its data kept and summaries filled in', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'rb-mig-')), 'old.db')
  const old = await openSqliteInventory({ file, migrateTo: '0001-initial' })
  const cols = await sql<{ name: string }>`select name from pragma_table_info('hardware')`.execute(old.db)
  assert.deepEqual(cols.rows.map((r) => r.name).sort(), ['facts', 'machine_id', 'reported_at'])
  // Write the way a 0001-era rackboot did: raw rows, since today's repository writes the newer columns.
  await old.db.insertInto('machines').values({ id: 'm-old', name: 'veteran', uuid: null, serial: 'S1', manufacturer: null, product: null, arch: 'amd64', firmware: 'uefi', state: 'installed', labels: '{"rack":"r1"}', rack: 'r1', rack_unit: 3, always_pxe: 0, profile: null, created_at: 1, updated_at: 1, state_changed_at: 1 }).execute()
  await old.db.insertInto('hardware' as any).values({ machine_id: 'm-old', facts: JSON.stringify({ cpu: { cores: 64 }, memory: { totalBytes: 549755813888 }, disks: [{ name: 'nvme0n1', sizeBytes: 1, type: 'nvme' }, { name: 'sda', sizeBytes: 2, type: 'hdd' }] }), reported_at: 1 }).execute()
  await old.close()

  const upgraded = await openSqliteInventory({ file })
  const applied = await upgraded.db.selectFrom('kysely_migration' as any).select('name' as any).execute()
  assert.deepEqual(applied.map((r: any) => r.name), Object.keys(MIGRATIONS))
  const m = await upgraded.machines.get('m-old')
  assert.equal(m?.name, 'veteran')
  assert.equal(m?.state, 'installed')
  assert.equal(m?.hardware?.cpu?.cores, 64)
  const hw = await upgraded.db.selectFrom('hardware').selectAll().where('machine_id', '=', 'm-old').executeTakeFirstOrThrow()
  assert.equal(hw.cpu_cores, 64)
  assert.equal(Number(hw.memory_bytes), 549755813888)
  assert.equal(hw.disk_count, 2)
  assert.equal(hw.nvme_count, 1)
  await upgraded.close()

  // Opening an up-to-date database again applies nothing and changes nothing.
  const again = await openSqliteInventory({ file })
  assert.equal((await again.machines.get('m-old'))?.name, 'veteran')
  await again.close()
})

test('migrations run down and up again cleanly (each has a working down)', async () => {
  const inv = await openSqliteInventory({ file: ':memory:' })
  const { migrate } = await import('../../src/inventory/index.js')
  const { Migrator, NO_MIGRATIONS } = await import('kysely')
  const { migrationProvider } = await import('../../src/inventory/sql/migrations/index.js')
  const down = await new Migrator({ db: inv.db, provider: migrationProvider }).migrateTo(NO_MIGRATIONS)
  assert.equal(down.error, undefined)
  const tables = await sql<{ name: string }>`select name from sqlite_master where type='table' and name not like 'kysely%' and name not like 'sqlite%'`.execute(inv.db)
  assert.deepEqual(tables.rows, [])
  assert.deepEqual(await migrate(inv.db), Object.keys(MIGRATIONS))
  await inv.close()
})

test('a 0004 database gains the install-disk and network columns: old rows read as none, new values are written', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'rb-mig-')), 'v4.db')
  const old = await openSqliteInventory({ file, migrateTo: '0004-allocations-clusters' })
  const cols = async (table: string) => (await sql<{ name: string }>`select name from pragma_table_info(${table})`.execute(old.db)).rows.map((r) => r.name)
  assert.equal((await cols('profiles')).includes('install_disk'), false)
  assert.equal((await cols('machines')).includes('network'), false)
  await old.db.insertInto('machines').values({ id: 'm-v4', name: 'v4', uuid: null, serial: 'S4', manufacturer: null, product: null, arch: null, firmware: null, state: 'ready', labels: '{}', rack: null, rack_unit: null, always_pxe: 0, profile: 'p4', managed_by: null, created_at: 1, updated_at: 1, state_changed_at: 1 }).execute()
  await old.db.insertInto('profiles').values({ name: 'p4', description: null, talos_version: 'v1.13.9', arch: null, schematic: null, kernel_args: '[]', base_config: null, patches: '[]', managed_by: null, created_at: 1, updated_at: 1 }).execute()
  await old.close()

  const upgraded = await openSqliteInventory({ file })
  try {
    const m = await upgraded.machines.get('m-v4')
    assert.equal(m?.name, 'v4')
    assert.equal(m?.network, null)
    const p = await upgraded.profiles.get('p4')
    assert.equal(p?.talosVersion, 'v1.13.9')
    assert.equal(p?.installDisk, null)
    await upgraded.profiles.put({ ...p!, installDisk: { type: 'nvme' } }, 2)
    await upgraded.machines.update('m-v4', { network: { addresses: [{ link: 'eth0', addresses: ['198.18.0.4/24'] }] } }, 2)
  } finally {
    await upgraded.close()
  }
  const again = await openSqliteInventory({ file })
  try {
    assert.deepEqual((await again.profiles.get('p4'))?.installDisk, { type: 'nvme' })
    assert.deepEqual((await again.machines.get('m-v4'))?.network, { addresses: [{ link: 'eth0', addresses: ['198.18.0.4/24'] }] })
  } finally {
    await again.close()
  }
})

test('a 0014 database gains install slots (0015): a provisioning machine claims one after the upgrade', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'rb-mig-')), 'v14.db')
  const old = await openSqliteInventory({ file, migrateTo: '0014-leader-leases' })
  const tables = async (db: typeof old.db) => (await sql<{ name: string }>`select name from sqlite_master where type = 'table' and name = 'install_slots'`.execute(db)).rows.length
  assert.equal(await tables(old.db), 0)
  const m = await old.machines.create({ name: 'v14', nics: [], state: 'provisioning' }, 1)
  await old.close()
  const upgraded = await openSqliteInventory({ file })
  try {
    assert.equal(await tables(upgraded.db), 1)
    assert.deepEqual(await upgraded.installSlots!.claim(m.id, null, { overall: 1, perRack: 0 }, 'A', 2), { ok: true, installing: 0, rackInstalling: null })
    assert.deepEqual((await upgraded.installSlots!.list()).map((s) => s.machineId), [m.id])
  } finally {
    await upgraded.close()
  }
})
