// The machine list's `sort`, `rack` and `serial` filters, and what each machine answer carries beyond its record:
// its address (lease or reservation), its class and the profile it installs.
import assert from 'node:assert/strict'
import { sql, type RawBuilder } from 'kysely'
import type { Machine } from '../../src/inventory/index.js'
import { dialectOf } from '../../src/inventory/sql/dialect.js'
import { apiSetup, eachBackend, type ApiSetup } from './support/app.js'
import { macFor, seedMachines } from './support/seed.js'

type Item = { id: string; name: string | null; state: string; rack: string | null; serial: string | null; createdAt: string; updatedAt: string }
const KEYS = ['name', 'state', 'rack', 'serial', 'createdAt', 'updatedAt'] as const

/** Every page of a list query, following `next`; the items in order and how many pages it took. */
async function pages(s: ApiSetup, query: string, limit: number): Promise<{ items: Item[]; pages: number }> {
  const items: Item[] = []
  let cursor: string | null = null
  let n = 0
  do {
    const r: { statusCode: number; body: string; json(): unknown } = await s.app.inject({ url: `/api/v1/machines?${query}&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, headers: s.auth('read') })
    assert.equal(r.statusCode, 200, `${query}: ${r.body}`)
    const page = r.json() as { items: Item[]; next: string | null }
    assert.ok(page.items.length <= limit)
    items.push(...page.items)
    cursor = page.next
    n++
    assert.ok(n < 10_000, 'the pages never end')
  } while (cursor)
  return { items, pages: n }
}

/** The order SQLite gives: by value (no value first, text compared by code unit), then id; descending the reverse. */
function expectedOrder(machines: Machine[], key: (typeof KEYS)[number], desc: boolean): string[] {
  const value = (m: Machine) => m[key] as string | number | null
  const cmp = (a: string | number, b: string | number) => (a < b ? -1 : a > b ? 1 : 0)
  const sorted = [...machines].sort((a, b) => {
    const va = value(a)
    const vb = value(b)
    if (va === null || vb === null) return va === vb ? cmp(a.id, b.id) : va === null ? -1 : 1
    return cmp(va, vb) || cmp(a.id, b.id)
  })
  return (desc ? sorted.reverse() : sorted).map((m) => m.id)
}

/**
 * `update machines set <set> where <where>`, both of which may name `rowid()`: SQLite's rowid (insertion order), or
 * on PostgreSQL, which has none, the same number (the seeded ids sort in insertion order).
 */
function rowUpdates(s: ApiSetup) {
  const postgres = dialectOf(s.inventory.db) === 'postgres'
  return {
    rowid: () => (postgres ? sql`r.rowid` : sql`rowid`),
    update: (set: RawBuilder<unknown>, where: RawBuilder<unknown>) => postgres
      ? sql`update machines set ${set} from (select id, row_number() over (order by id) as rowid from machines) r where r.id = machines.id and ${where}`.execute(s.inventory.db)
      : sql`update machines set ${set} where ${where}`.execute(s.inventory.db),
  }
}

async function all(s: ApiSetup): Promise<Machine[]> {
  const out: Machine[] = []
  let after: string | null = null
  do {
    const page = await s.inventory.machines.list({ limit: 1000, ...(after ? { after } : {}) })
    out.push(...page.items)
    after = page.next
  } while (after)
  return out
}

eachBackend('2,500 machines sorted by name descending, 1000 a page: each exactly once, in order (unnamed ones last)', async (t, backend) => {
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  await seedMachines(s.inventory, { count: 2500 })
  // Some without a name: they sort last descending (first ascending), by id.
  const { rowid, update } = rowUpdates(s)
  await update(sql`name = null`, sql`${rowid()} % 9 = 0`)
  const machines = await all(s)
  const { items, pages: n } = await pages(s, 'sort=-name', 1000)
  assert.equal(n, 3)
  assert.equal(items.length, 2500)
  assert.equal(new Set(items.map((m) => m.id)).size, 2500)
  assert.deepEqual(items.map((m) => m.id), expectedOrder(machines, 'name', true))
  assert.equal(items.at(-1)!.name, null)
  assert.notEqual(items[0]!.name, null)
  // And ascending, across the boundary between the unnamed and the named, in small pages.
  const up = await pages(s, 'sort=name', 250)
  assert.deepEqual(up.items.map((m) => m.id), expectedOrder(machines, 'name', false))
})

eachBackend('every sort key, both directions, in pages that split runs of equal values; filters and selectors keep the order', async (t, backend) => {
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  await seedMachines(s.inventory, { count: 90 })
  const { rowid, update } = rowUpdates(s)
  const base = Date.now() - 86_400_000
  // Ties and gaps everywhere: unnamed machines, racks and serials shared or missing, times repeating.
  await update(sql`name = null`, sql`${rowid()} % 7 = 0`)
  await update(sql`serial = 'DUP'`, sql`${rowid()} % 3 = 0`)
  await update(sql`serial = null`, sql`${rowid()} % 5 = 0`)
  await update(sql`rack = null`, sql`${rowid()} % 11 = 0`)
  await update(sql`state = 'discovered'`, sql`${rowid()} % 4 = 0`)
  if (dialectOf(s.inventory.db) === 'postgres') {
    await update(sql`created_at = ${base} + (r.rowid % 4) * 1000, updated_at = ${base} - (r.rowid % 6)`, sql`true`)
  } else {
    await sql`update machines set created_at = ${base} + (rowid % 4) * 1000, updated_at = ${base} - (rowid % 6)`.execute(s.inventory.db)
  }
  const machines = await all(s)
  for (const key of KEYS) {
    for (const desc of [false, true]) {
      const { items } = await pages(s, `sort=${desc ? '-' : ''}${key}`, 7)
      assert.deepEqual(items.map((m) => m.id), expectedOrder(machines, key, desc), `sort=${desc ? '-' : ''}${key}`)
    }
  }
  // With filters: state (its index), a label, and a class's selectors (checked in JS, the page cut short by limit).
  const ready = machines.filter((m) => m.state === 'ready')
  assert.deepEqual((await pages(s, 'sort=-serial&state=ready', 4)).items.map((m) => m.id), expectedOrder(ready, 'serial', true))
  const z2 = machines.filter((m) => m.labels.zone === 'z2')
  assert.deepEqual((await pages(s, 'sort=rack&label=zone%3Dz2', 3)).items.map((m) => m.id), expectedOrder(z2, 'rack', false))
  await s.inventory.classes.put({ name: 'big', description: null, selectors: ['cpu.cores >= 32'], profile: null, patches: [], managedBy: null }, 1)
  const big = machines.filter((m) => (m.hardware?.cpu?.cores ?? 0) >= 32)
  assert.ok(big.length > 10)
  assert.deepEqual((await pages(s, 'sort=-name&class=big', 4)).items.map((m) => m.id), expectedOrder(big, 'name', true))
})

eachBackend('a cursor continues only the order it was made in; an unknown sort is refused', async (t, backend) => {
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  await seedMachines(s.inventory, { count: 20 })
  const get = (q: string) => s.app.inject({ url: `/api/v1/machines?${q}`, headers: s.auth('read') })
  const byName = (await get('sort=name&limit=5')).json().next
  const byId = (await get('limit=5')).json().next
  for (const [q, made, asked] of [[`sort=-name&cursor=${byName}`, 'name', '-name'], [`cursor=${byName}`, 'name', 'id'], [`sort=name&cursor=${byId}`, 'id', 'name']]) {
    const r = await get(q!)
    assert.equal(r.statusCode, 400, `${q}: ${r.body}`)
    assert.equal(r.json().error, 'RB_ERR_VALIDATION')
    assert.equal(r.json().message, `cursor: it continues a list sorted by ${made}, not by ${asked}; ask again with the same sort`)
  }
  const forged = Buffer.from('{"k":"name","d":0,"v":{"x":1},"i":"m"}').toString('base64url')
  assert.equal((await get(`sort=name&cursor=${forged}`)).statusCode, 400)
  for (const bad of ['size', '--name', 'name,-rack', 'Name']) {
    const r = await get(`sort=${bad}`)
    assert.equal(r.statusCode, 400, bad)
    assert.equal(r.json().error, 'RB_ERR_VALIDATION')
  }
})

eachBackend('rack= is the rack field, not a label; serial= is exact', async (t, backend) => {
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  const [a, b, c] = await seedMachines(s.inventory, { count: 3 })
  // a: rack field r12 and no rack label; b: label rack=r12 but the field says r13; c: neither.
  await s.inventory.machines.update(a!, { rack: 'r12', labels: {} }, Date.now())
  await s.inventory.machines.update(b!, { rack: 'r13', labels: { rack: 'r12' } }, Date.now())
  await s.inventory.machines.update(c!, { rack: 'r14', serial: 'SN00000001X' }, Date.now())
  const ids = async (q: string) => ((await s.app.inject({ url: `/api/v1/machines?${q}`, headers: s.auth('read') })).json().items as Item[]).map((m) => m.id)
  assert.deepEqual(await ids('rack=r12'), [a])
  assert.deepEqual(await ids('label=rack%3Dr12'), [b])
  assert.deepEqual(await ids('serial=SN00000001X'), [c])
  assert.deepEqual(await ids('serial=SN0000000'), [])
})

eachBackend('each machine answer has its address (lease, else reservation), its class and the profile it installs', async (t, backend) => {
  const s = await apiSetup({ backend })
  t.after(() => s.close())
  const [leased, reserved, expired, nothing, own] = await seedMachines(s.inventory, { count: 5 })
  const now = Date.now()
  const lease = (ip: string, mac: string, state: 'bound' | 'offered', expiresAt: number) =>
    s.inventory.leases.put({ ip, mac, clientId: null, subnet: '198.18.0.0/24', state, hostname: null, expiresAt, updatedAt: now })
  // leased: an offered lease on its boot NIC and a bound one on the other (bound wins), and a reservation.
  await lease('198.18.0.31', macFor(0, 0), 'offered', now + 60_000)
  await lease('198.18.0.30', macFor(0, 1), 'bound', now + 60_000)
  await s.inventory.reservations.setForMachine(leased!, [{ ip: '198.18.0.130', mac: macFor(0, 0), clientId: null, hostname: null }])
  await s.inventory.reservations.setForMachine(reserved!, [{ ip: '198.18.0.131', mac: macFor(1, 1), clientId: null, hostname: null }])
  // expired: its lease ran out; its reservation still stands.
  await lease('198.18.0.32', macFor(2, 0), 'bound', now - 1)
  await s.inventory.reservations.setForMachine(expired!, [{ ip: '198.18.0.132', mac: macFor(2, 0), clientId: null, hostname: null }])
  await s.inventory.profiles.put({ name: 'p-big', description: null, talosVersion: 'v1.9.0', arch: 'amd64', schematic: null, kernelArgs: [], baseConfig: null, patches: [], managedBy: null }, now)
  await s.inventory.profiles.put({ name: 'p-own', description: null, talosVersion: 'v1.9.0', arch: 'amd64', schematic: null, kernelArgs: [], baseConfig: null, patches: [], managedBy: null }, now)
  // Machines 0..4 have 8, 16, 32, 64, 96 cores (seed): 'big' is the more specific of the two for 32 and up.
  await s.inventory.classes.put({ name: 'any', description: null, selectors: ['cpu.cores >= 1'], profile: null, patches: [], managedBy: null }, now)
  await s.inventory.classes.put({ name: 'big', description: null, selectors: ['cpu.cores >= 32', 'memory.gib >= 1'], profile: 'p-big', patches: [], managedBy: null }, now)
  await s.inventory.machines.update(own!, { profile: 'p-own' }, now)

  const list = (await s.app.inject({ url: '/api/v1/machines', headers: s.auth('read') })).json().items as any[]
  const byId = new Map(list.map((m) => [m.id, m]))
  const pick = (id: string) => ({ ip: byId.get(id).ip, ipSource: byId.get(id).ipSource, class: byId.get(id).class, effectiveProfile: byId.get(id).effectiveProfile, profile: byId.get(id).profile })
  assert.deepEqual(pick(leased!), { ip: '198.18.0.30', ipSource: 'lease', class: 'any', effectiveProfile: null, profile: null })
  assert.deepEqual(pick(reserved!), { ip: '198.18.0.131', ipSource: 'reservation', class: 'any', effectiveProfile: null, profile: null })
  assert.deepEqual(pick(expired!), { ip: '198.18.0.132', ipSource: 'reservation', class: 'big', effectiveProfile: 'p-big', profile: null })
  assert.deepEqual(pick(nothing!), { ip: null, ipSource: null, class: 'big', effectiveProfile: 'p-big', profile: null })
  assert.deepEqual(pick(own!), { ip: null, ipSource: null, class: 'big', effectiveProfile: 'p-own', profile: 'p-own' })

  // The detail answer and the answers of actions carry the same.
  const detail = (await s.app.inject({ url: `/api/v1/machines/${leased}`, headers: s.auth('read') })).json()
  assert.deepEqual([detail.ip, detail.ipSource, detail.class, detail.effectiveProfile], ['198.18.0.30', 'lease', 'any', null])
  const patched = (await s.app.inject({ method: 'PATCH', url: `/api/v1/machines/${expired}`, headers: s.auth('provision'), payload: { rack: 'r5' } })).json()
  assert.deepEqual([patched.ip, patched.class, patched.effectiveProfile], ['198.18.0.132', 'big', 'p-big'])
  // The class is the one class-match chooses.
  for (const id of [leased, expired, own]) {
    const match = (await s.app.inject({ url: `/api/v1/machines/${id}/class-match`, headers: s.auth('read') })).json()
    assert.equal(match.chosen, byId.get(id).class)
    assert.equal(match.profile, byId.get(id).effectiveProfile)
  }
})
