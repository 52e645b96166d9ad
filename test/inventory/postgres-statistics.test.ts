// PostgreSQL plans from statistics autovacuum gathers late (a tenth of a table changed, a minute later): a transaction
// that wrote thousands of rows (an inventory import) analyzes the tables it changed once it commits, so the lists and
// searches that follow are planned for the inventory as it now is. Small transactions never pay for it.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sql } from 'kysely'
import { importInventory, loadInventoryFiles } from '../../src/inventory/index.js'
import { openPostgresInventory } from '../../src/inventory/postgres/open.js'
import { inventoryBackends, pgCluster, skipped } from '../support/backends.js'

const postgres = inventoryBackends().find((b) => b.name === 'postgres')!

function machinesFile(dir: string, count: number, serialPrefix: string): string {
  writeFileSync(join(dir, 'machines.yaml'), `machines:\n${Array.from({ length: count }, (_, i) =>
    `  - name: st-${i}\n    serial: ${serialPrefix}${i}\n    labels: { zone: z${i % 3} }\n    nics:\n      - mac: 02:00:00:bb:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}\n        boot: true\n`).join('')}`)
  return dir
}

test('an import that writes many rows analyzes the tables it changed once committed; a small one does not', async (t) => {
  if (await skipped(t, postgres)) return
  const c = await pgCluster()
  if ('skip' in c) return
  const analyzed: string[][] = []
  const inv = await openPostgresInventory({ url: await c.createDatabase(), analyzeAfterRows: 300, onAnalyze: (tables) => analyzed.push(tables) })
  t.after(() => inv.close())
  const lastAnalyze = async (table: string) =>
    (await sql<{ at: Date | null }>`select last_analyze as at from pg_stat_user_tables where relname = ${table}`.execute(inv.db)).rows[0]?.at ?? null
  assert.equal(await lastAnalyze('machines'), null)

  // 400 machines: 400 machine rows, 400 NICs, and (written by triggers) labels and search documents.
  const dir = mkdtempSync(join(tmpdir(), 'rb-pg-stats-'))
  await importInventory(inv, loadInventoryFiles(machinesFile(dir, 400, 'ST')), { now: 1 })
  assert.equal(analyzed.length, 1, 'one ANALYZE after the import')
  for (const table of ['machines', 'nics', 'machine_labels', 'machine_search']) assert.ok(analyzed[0]!.includes(table), `${table} analyzed (${analyzed[0]})`)
  assert.ok(!analyzed[0]!.includes('events'), 'tables the import hardly touched are left to autovacuum')
  assert.notEqual(await lastAnalyze('machines'), null)
  assert.equal(inv.analyzeCount(), 1)

  // A handful of changes: nothing to gather.
  await importInventory(inv, loadInventoryFiles(machinesFile(dir, 400, 'ST')), { now: 2 })
  const few = mkdtempSync(join(tmpdir(), 'rb-pg-stats-'))
  await importInventory(inv, loadInventoryFiles(machinesFile(few, 5, 'NEW')), { now: 3 })
  await inv.machines.create({ name: 'one-more' }, 4)
  assert.equal(analyzed.length, 1, 'small transactions and statements analyze nothing')
})
