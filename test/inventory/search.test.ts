// Free-text machine search (the API's `q`, QueryRepository.scanMachines' `text`) answers the same on both backends
// and, on PostgreSQL, exactly what `doc LIKE '%needle%'` over the search documents says, whichever way it is looked up
// (src/inventory/sql/search-plan.ts): the rarest trigrams of a whole serial with every hit checked against the whole
// needle, a whole MAC through the NIC index and the few names or serials with a ':' in them, the rest through pg_trgm.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { sql } from 'kysely'
import type { Inventory } from '../../src/inventory/index.js'
import { createTrigramSampler } from '../../src/inventory/sql/search-plan.js'
import { macFor, seedMachines } from '../api/support/seed.js'
import { inventoryBackends, skipped } from '../support/backends.js'

const NOW = 1_700_000_000_000

/** 150 seeded machines (serials SN00000000..., two MACs each) and a few made to trip the shortcuts. */
async function fill(inv: Inventory & { db: any }): Promise<void> {
  await seedMachines(inv, { count: 150, now: NOW })
  const made: [string, { serial?: string; name?: string }][] = [
    // The rare trigrams of 'sn00054321' (543, 432, 321), but not the needle: a hit of the index, not of the search.
    ['decoy', { serial: 'XX543Y432Z321' }],
    // The needle inside a longer serial.
    ['longer', { serial: 'SN000543210' }],
    // A seeded machine's whole MAC inside a name and inside a serial: no NIC has it, the search still finds them.
    [`rack-${macFor(64, 0)}-x`, {}],
    ['colon-serial', { serial: `SER:${macFor(65, 1).toUpperCase()}` }],
    // Wildcards typed by the user are literal.
    ['pct', { serial: 'A%B_C\\D' }],
  ]
  for (const [name, fields] of made) await inv.machines.create({ name, ...fields }, NOW)
}

const NEEDLES = [
  'sn00054321', 'SN00000042', 'sn0000004', 'SN000001', macFor(64, 0).toUpperCase().replaceAll(':', '-'), macFor(65, 1),
  macFor(3, 1).replaceAll(':', ''), '02:00:00:00:01', ':01:0', 'r1-u7-', 'r2-u', '543y', 'y4', 'a%b_c\\d', '%b_', 'zzzz', 'm-0000',
]
// (Machine ids end in six random hex digits, different on each backend: no needle here can match inside them.)

async function names(inv: Inventory, text: string): Promise<string[]> {
  const out: string[] = []
  for (let after: string | null = null; ;) {
    const page = await inv.queries.scanMachines({ text, limit: 1000, ...(after ? { after } : {}) })
    out.push(...page.items.map((m) => m.name ?? m.id))
    if (!page.next) return out.sort()
    after = page.next
  }
}

test('free-text search finds the same machines on SQLite and PostgreSQL, exactly the documents that contain the needle', async (t) => {
  const [sqlite, postgres] = inventoryBackends()
  if (await skipped(t, postgres!)) return
  const a = await sqlite!.open()
  const b = await postgres!.open()
  t.after(() => Promise.all([a.close(), b.close()]))
  await fill(a)
  await fill(b)
  const expected: Record<string, string[]> = {
    sn00054321: ['longer'],
    [macFor(64, 0).toUpperCase().replaceAll(':', '-')]: ['r2-u25-64', `rack-${macFor(64, 0)}-x`],
    [macFor(65, 1)]: ['colon-serial', 'r2-u26-65'],
    'a%b_c\\d': ['pct'],
  }
  for (const needle of NEEDLES) {
    const [onSqlite, onPostgres] = [await names(a, needle), await names(b, needle)]
    assert.deepEqual(onPostgres, onSqlite, `'${needle}': the same machines on both backends`)
    if (expected[needle]) assert.deepEqual(onPostgres, expected[needle], `'${needle}'`)
    // PostgreSQL's answer is the documents' own (the MAC spelled as stored).
    const lower = needle.toLowerCase()
    const stored = /^([0-9a-f]{2}[:-]?){5}[0-9a-f]{2}$/.test(lower) ? lower.replace(/[:-]/g, '').match(/../g)!.join(':') : lower
    if (stored.length >= 3) {
      const docs = await sql<{ name: string }>`select coalesce(m.name, m.id) as name from machine_search s join machines m on m.id = s.machine_id
        where s.doc like ${`%${stored.replace(/[%_\\]/g, (c) => `\\${c}`)}%`} escape '\\' order by 1`.execute(b.db)
      assert.deepEqual(onPostgres, docs.rows.map((r) => r.name).sort(), `'${needle}': what doc LIKE says`)
    }
  }
  // A whole serial asks the index for its rare trigrams only (the sample's 'sn0', '000' are in every document).
  const sampler = createTrigramSampler()
  const rare = await sampler.rarest(b.db, 'sn00054321')
  assert.equal(rare.length, 3, `three rare trigrams (${rare})`)
  assert.ok(rare.every((r) => ['005', '054', '543', '432', '321'].includes(r)), `none of the common ones: ${rare}`)
  assert.deepEqual(await sampler.rarest(b.db, 'sn000'), [], 'nothing rare: the whole needle')
})
