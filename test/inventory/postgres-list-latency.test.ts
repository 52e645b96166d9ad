// The API's machine pages on PostgreSQL (issue 16: list p99 < 20 ms at 100,000 machines). A page after a cursor must
// cost what a first page costs: PostgreSQL carries only equalities across a join, so `machines.id > cursor` alone
// left the tables joined by machine id (hardware, bmcs) to be read from their first row when merge-joined; at 100,000
// machines a page near the end read 97,000 hardware rows (34 ms p99 in `npm run bench -- api`, up to 110 ms). Here
// the planner is steered to that join (merge joins only) and every scan of a joined table must stay near one page.
// PostgreSQL only: skipped (loudly) where no private cluster can be started.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { sql } from 'kysely'
import pg from 'pg'
import type { PostgresInventory } from '../../src/inventory/index.js'
import type { MachineScan } from '../../src/inventory/repositories.js'
import { encodeCursor } from '../../src/inventory/sql/machines.js'
import { seedMachines } from '../api/support/seed.js'
import { inventoryBackends, skipped } from '../support/backends.js'

const postgres = inventoryBackends().find((b) => b.name === 'postgres')!

const MACHINES = 3000
const PAGE = 50

interface PlanNode {
  'Relation Name'?: string
  'Actual Rows': number
  'Actual Loops': number
  'Rows Removed by Filter'?: number
  'Rows Removed by Join Filter'?: number
  Plans?: PlanNode[]
}

/** Rows each table's scans produced or filtered out, over the whole plan. */
function rowsRead(node: PlanNode, into = new Map<string, number>()): Map<string, number> {
  const table = node['Relation Name']
  if (table) into.set(table, (into.get(table) ?? 0) + (node['Actual Rows'] + (node['Rows Removed by Filter'] ?? 0)) * node['Actual Loops'])
  for (const child of node.Plans ?? []) rowsRead(child, into)
  return into
}

test('a machine page after a cursor reads about a page of each joined table, whatever join PostgreSQL picks', async (t) => {
  if (await skipped(t, postgres)) return
  const inv = (await postgres.open()) as PostgresInventory & { url?: string }
  t.after(() => inv.close())
  const ids = (await seedMachines(inv, { count: MACHINES })).sort()
  // A BMC for every machine: the page's other table joined by machine id.
  await sql`insert into bmcs (machine_id, type, address, insecure) select id, 'redfish', 'bmc-' || id, 0 from machines`.execute(inv.db)
  await sql`analyze`.execute(inv.db)

  // The statements a page sends, as the pool's clients send them.
  const sent: { text: string; values: unknown[] }[] = []
  const original = pg.Client.prototype.query
  const page = async (scan: MachineScan) => {
    sent.length = 0
    pg.Client.prototype.query = function (this: pg.Client, ...a: unknown[]) {
      const q = a[0] as { text?: string; values?: unknown[] } | string
      sent.push(typeof q === 'string' ? { text: q, values: (a[1] ?? []) as unknown[] } : { text: q.text ?? '', values: q.values ?? [] })
      return (original as (...x: unknown[]) => unknown).apply(this, a)
    } as typeof original
    try {
      const result = await inv.queries.scanMachines(scan)
      const statement = sent.find((s) => /from "machines"|from "machine_labels"/.test(s.text))
      assert.ok(statement, 'the page statement was seen')
      return { result, statement }
    } finally {
      pg.Client.prototype.query = original
    }
  }

  const explain = new pg.Client({ connectionString: inv.url! })
  await explain.connect()
  t.after(() => explain.end())
  // The join that read from the first row: a merge join over the primary keys (hash and nested loop joins off).
  await explain.query('set enable_hashjoin = off')
  await explain.query('set enable_nestloop = off')

  const near = MACHINES - 200
  const after = encodeCursor(ids[near]!)
  const cases: [string, MachineScan, string[]][] = [
    ['with views', { limit: PAGE, after, views: { now: Date.now() } }, ids.slice(near + 1, near + 1 + PAGE)],
    ['without views', { limit: PAGE, after }, ids.slice(near + 1, near + 1 + PAGE)],
    ['hardware bounds', { limit: PAGE, after, hardware: { cpuCores: { min: 1 } }, views: { now: Date.now() } }, ids.slice(near + 1, near + 1 + PAGE)],
  ]
  const zone = await sql<{ machine_id: string }>`select machine_id from machine_labels where key = 'zone' and value = 'z1' and machine_id > ${ids[near - 400]!} order by machine_id limit ${PAGE}`.execute(inv.db)
  cases.push(['a label', { limit: PAGE, after: encodeCursor(ids[near - 400]!), labels: { zone: 'z1' }, views: { now: Date.now() } }, zone.rows.map((r) => r.machine_id)])
  for (const [name, scan, expected] of cases) {
    const { result, statement } = await page(scan)
    assert.deepEqual(result.items.map((m) => m.id), expected, `${name}: the page after the cursor, in id order`)
    const res = await explain.query(`explain (analyze, format json) ${statement.text}`, statement.values)
    const plan = (res.rows[0] as { 'QUERY PLAN': [{ Plan: PlanNode }] })['QUERY PLAN'][0].Plan
    const read = rowsRead(plan)
    // Machines from the cursor to the page's last one (a label's page skips those without it), and room for the
    // look-ahead row and a merge join's one past the end; from the first row would be ~2,800.
    const span = ids.indexOf(expected[expected.length - 1]!) - ids.indexOf(Buffer.from(scan.after!, 'base64url').toString())
    const bound = 2 * (span + 1)
    for (const table of ['machines', 'hardware', ...(scan.views ? ['bmcs'] : []), ...(scan.labels ? ['machine_labels'] : [])]) {
      const rows = read.get(table)
      assert.ok(rows !== undefined, `${name}: ${table} is read (${JSON.stringify([...read])})`)
      assert.ok(rows <= bound, `${name}: ${table} read ${rows} rows for a page of ${PAGE} spanning ${span} machines (${JSON.stringify([...read])})`)
    }
  }
})
