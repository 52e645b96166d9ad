// precompile (src/inventory/sql/precompiled.ts): a query compiled once runs with each call's values, every place a
// value is used gets it, constants stay, and a value the query has no place for is an error, not silently dropped.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { sql } from 'kysely'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { precompile } from '../../src/inventory/sql/precompiled.js'

test('a precompiled query runs with each call\'s values, in every place a value is used', async (t) => {
  const inv = await openSqliteInventory({ file: ':memory:' })
  t.after(() => inv.close())
  const db = inv.db
  for (const [i, m] of ['a', 'b', 'c'].entries()) await inv.events.append({ machineId: null, type: 'boot.dhcp', at: i, message: m, data: {} })
  // `at` twice (a range of one), plus a constant the builder put in the parameters.
  const q = precompile(db, ['at', 'message'] as const, (v) => db.selectFrom('events').select('message')
    .where('at', '>=', v.at as number).where('at', '<=', v.at as number).where('message', '=', v.message as string).where('type', '=', 'boot.dhcp'))
  assert.deepEqual((await q({ at: 1, message: 'b' })).rows, [{ message: 'b' }])
  assert.deepEqual((await q({ at: 2, message: 'c' })).rows, [{ message: 'c' }])
  assert.deepEqual((await q({ at: 2, message: 'b' })).rows, [])
  // On a transaction of the same database.
  const inTx = await db.transaction().execute((tx) => q({ at: 0, message: 'a' }, tx))
  assert.deepEqual(inTx.rows, [{ message: 'a' }])
  const unused = precompile(db, ['at', 'message'] as const, (v) => db.selectFrom('events').select('message').where('at', '=', v.at as number).where(sql<boolean>`1 = 1`))
  assert.throws(() => unused({ at: 1, message: 'x' }), /no place for message/)
})
