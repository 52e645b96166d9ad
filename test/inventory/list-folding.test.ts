// Statements folded for the machine list's round trips: a page's addresses (live leases and reservations, one
// statement) and a token's verification (check and record its use, one statement) answer as the two statements
// each replaced did, and a page of machines with its NICs, BMC summaries and addresses (one statement) as the
// separate reads do, on both backends.
import assert from 'node:assert/strict'
import type { Kysely } from 'kysely'
import pg from 'pg'
import type { Machine, MachineAddress } from '../../src/inventory/index.js'
import type { Database } from '../../src/inventory/sql/schema.js'
import { macFor, seedMachines } from '../api/support/seed.js'
import { eachBackend } from '../support/backends.js'

const NOW = 1_800_000_000_000

/** The addresses as the two statements before the fold found them: live leases first, then reservations for the rest. */
async function addressesBefore(db: Kysely<Database>, ids: string[], now: number): Promise<Map<string, MachineAddress>> {
  const out = new Map<string, MachineAddress>()
  const leases = await db.selectFrom('nics').innerJoin('leases', 'leases.mac', 'nics.mac')
    .select(['nics.machine_id', 'nics.boot', 'leases.ip', 'leases.state', 'leases.expires_at'])
    .where('nics.machine_id', 'in', ids).where('leases.state', 'in', ['bound', 'offered']).where('leases.expires_at', '>', now)
    .execute()
  leases.sort((a, b) => (a.state === b.state ? 0 : a.state === 'bound' ? -1 : 1) || b.boot - a.boot || Number(b.expires_at) - Number(a.expires_at))
  for (const l of leases) if (!out.has(l.machine_id)) out.set(l.machine_id, { ip: l.ip, source: 'lease' })
  const missing = ids.filter((id) => !out.has(id))
  const reserved = await db.selectFrom('nics').innerJoin('reservations', 'reservations.mac', 'nics.mac')
    .select(['nics.machine_id', 'nics.boot', 'reservations.ip']).where('nics.machine_id', 'in', missing).execute()
  reserved.sort((a, b) => b.boot - a.boot || a.ip.localeCompare(b.ip))
  for (const r of reserved) if (!out.has(r.machine_id)) out.set(r.machine_id, { ip: r.ip, source: 'reservation' })
  return out
}

eachBackend('a page of addresses in one statement: the same as live leases, then reservations, in two', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const ids = await seedMachines(inv, { count: 1200, now: NOW })
  // Machine i gets, by i modulo 8: nothing; a bound lease; an offered and a bound one (bound wins); two offered
  // (the boot NIC's wins, then the later expiry); an expired or released one plus a reservation (the reservation);
  // reservations on both NICs (the boot NIC's); IPv4 and IPv6 reservations on one NIC each of two machines...
  const leases: Database['leases'][] = []
  const reservations: Database['reservations'][] = []
  const lease = (i: number, nic: number, state: string, expiresIn: number) =>
    leases.push({ ip: `10.${i >> 8}.${i & 255}.${leases.length % 250}`, mac: macFor(i, nic), client_id: null, subnet: '10.0.0.0/8', state, hostname: null, expires_at: NOW + expiresIn, updated_at: NOW })
  const reserve = (i: number, nic: number, ip: string) => reservations.push({ ip, mac: macFor(i, nic), client_id: null, hostname: null, machine_id: ids[i]! })
  ids.forEach((_, i) => {
    switch (i % 8) {
      case 1: lease(i, 1, 'bound', 60_000); break
      case 2: lease(i, 0, 'offered', 90_000); lease(i, 1, 'bound', 30_000); break
      case 3: lease(i, 1, 'offered', 90_000); lease(i, 0, 'offered', 30_000); lease(i, 0, 'offered', 40_000); break
      case 4: lease(i, 0, i % 16 === 4 ? 'bound' : 'released', i % 16 === 4 ? -1 : 60_000); reserve(i, 1, `192.168.${i >> 8}.${i & 255}`); break
      case 5: reserve(i, 1, `172.16.${i >> 8}.${i & 255}`); reserve(i, 0, `172.17.${i >> 8}.${i & 255}`); break
      case 6: reserve(i, 0, `fd00::${i.toString(16)}:a`); reserve(i, 1, `fd00::${i.toString(16)}:10`); break
      case 7: reserve(i, 1, `10.9.${i >> 8}.${i & 255}`); lease(i, 1, 'bound', 60_000); break
    }
  })
  for (let s = 0; s < leases.length; s += 300) await inv.db.insertInto('leases').values(leases.slice(s, s + 300)).execute()
  for (let s = 0; s < reservations.length; s += 300) await inv.db.insertInto('reservations').values(reservations.slice(s, s + 300)).execute()

  // More than one statement's worth of machines (1000 a statement), a duplicate, and an unknown id.
  const asked = [...ids, ids[3]!, 'm-nosuchmachine']
  const folded = await inv.queries.addresses(asked, NOW)
  const expected = new Map<string, MachineAddress>()
  for (let s = 0; s < ids.length; s += 1000) for (const [k, v] of await addressesBefore(inv.db, ids.slice(s, s + 1000), NOW)) expected.set(k, v)
  assert.deepEqual(new Map([...folded].sort()), new Map([...expected].sort()))
  // The cases are all there: every kind of answer was checked, not only empty ones.
  const kinds = new Set([...folded.values()].map((a) => `${a.source}:${a.ip.includes(':') ? 6 : 4}`))
  assert.deepEqual([...kinds].sort(), ['lease:4', 'reservation:4', 'reservation:6'])
  assert.equal(folded.size, 1200 - 150)
  assert.deepEqual(folded.get(ids[2]!), { ip: leases.find((l) => l.mac === macFor(2, 1))!.ip, source: 'lease' })
  assert.deepEqual(folded.get(ids[5]!), { ip: '172.17.0.5', source: 'reservation' })
  assert.deepEqual(await inv.queries.addresses([], NOW), new Map())
  // The machine list reads the same addresses inside its scan (one statement a page).
  const viewed = new Map<string, MachineAddress | null>()
  for (let after: string | null | undefined; after !== null;) {
    const page = (await inv.queries.scanMachines({ limit: 1000, ...(after ? { after } : {}), views: { now: NOW } } as never)) as { items: Machine[]; next: string | null; views: Map<string, { address: MachineAddress | null }> }
    for (const m of page.items) viewed.set(m.id, page.views.get(m.id)!.address)
    after = page.next
  }
  assert.equal(viewed.size, 1200)
  for (const id of ids) assert.deepEqual(viewed.get(id), folded.get(id) ?? null, `address of ${id}`)
})

eachBackend('verify in one statement: records the use of a live token only, and answers it as it now is', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const live = await inv.tokens.create({ name: 'live', scopes: ['read', 'provision'] }, NOW)
  const expiring = await inv.tokens.create({ name: 'expiring', scopes: ['read'], expiresAt: NOW + 10 }, NOW)
  const revoked = await inv.tokens.create({ name: 'revoked', scopes: ['admin'] }, NOW)
  await inv.tokens.revoke('revoked', NOW + 1)

  assert.deepEqual(await inv.tokens.verify(live.secret, NOW + 5), { ...live.token, lastUsedAt: NOW + 5 })
  assert.deepEqual(await inv.tokens.verify(expiring.secret, NOW + 9), { ...expiring.token, lastUsedAt: NOW + 9 })
  assert.equal(await inv.tokens.verify(expiring.secret, NOW + 10), null)
  assert.equal(await inv.tokens.verify(revoked.secret, NOW + 11), null)
  assert.equal(await inv.tokens.verify('rbk_' + 'x'.repeat(40), NOW + 12), null)
  assert.equal(await inv.tokens.verify(live.secret.slice(4), NOW + 13), null)
  const used = Object.fromEntries((await inv.tokens.list()).map((k) => [k.name, k.lastUsedAt]))
  assert.deepEqual(used, { live: NOW + 5, expiring: NOW + 9, revoked: null })
})

eachBackend('a page in one statement: NICs, BMC summary and address come with the scan, as the separate reads answer them', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const ids = await seedMachines(inv, { count: 300, now: NOW })
  // A machine with no NIC, one whose NICs were written out of MAC order, BMCs (one with a power reading), a lease
  // and a reservation.
  await inv.machines.update(ids[10]!, { nics: [] }, NOW)
  await inv.machines.update(ids[11]!, { nics: [{ mac: '02:ff:00:00:00:09', name: 'b', boot: false }, { mac: '02:ff:00:00:00:01', name: 'a', boot: true }] }, NOW)
  await inv.bmcs.put(ids[12]!, { type: 'ipmi', address: '10.1.0.12' })
  await inv.bmcs.put(ids[13]!, { type: 'redfish', address: 'https://10.1.0.13', bootMethod: 'http' } as never)
  await inv.bmcs.recordPower(ids[13]!, { state: 'on', checkedAt: NOW - 5, error: null })
  await inv.db.insertInto('leases').values({ ip: '10.2.0.14', mac: macFor(14, 1), client_id: null, subnet: '10.0.0.0/8', state: 'bound', hostname: null, expires_at: NOW + 60_000, updated_at: NOW }).execute()
  await inv.db.insertInto('reservations').values({ ip: '10.3.0.15', mac: macFor(15, 0), client_id: null, hostname: null, machine_id: ids[15]! }).execute()

  type Views = Map<string, { bmc: { type: string; address: string; bootMethod: string; power: unknown } | null; address: MachineAddress | null }>
  const page = (await inv.queries.scanMachines({ limit: 1000, views: { now: NOW } } as never)) as { items: Machine[]; views?: Views }
  assert.equal(page.items.length, 300)
  const [addresses, bmcs] = await Promise.all([inv.queries.addresses(ids, NOW), inv.bmcs.many(ids)])
  for (const m of page.items) {
    assert.deepEqual(m.nics, (await inv.machines.get(m.id))!.nics, `NICs of ${m.id}`)
    const v = page.views?.get(m.id)
    const bmc = bmcs.get(m.id)
    assert.deepEqual(v, { address: addresses.get(m.id) ?? null, bmc: bmc ? { type: bmc.type, address: bmc.address, bootMethod: bmc.bootMethod, power: bmc.power } : null }, `views of ${m.id}`)
  }
  const byId = new Map(page.items.map((m) => [m.id, m]))
  assert.deepEqual(byId.get(ids[10]!)!.nics, [])
  assert.deepEqual(byId.get(ids[11]!)!.nics.map((n) => n.mac), ['02:ff:00:00:00:01', '02:ff:00:00:00:09'])
  assert.equal(page.views!.get(ids[13]!)!.bmc!.bootMethod, 'http')
  assert.deepEqual(page.views!.get(ids[14]!)!.address, { ip: '10.2.0.14', source: 'lease' })
  assert.deepEqual(page.views!.get(ids[15]!)!.address, { ip: '10.3.0.15', source: 'reservation' })
  // Without `views` (the allocator's scans), none are read.
  assert.equal(((await inv.queries.scanMachines({ limit: 10 })) as { views?: Views }).views, undefined)

  if (!('pool' in inv)) return
  // PostgreSQL: a page, filtered or not, sorted or not, is one statement (one round trip).
  const original = pg.Client.prototype.query
  let statements = 0
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    statements++
    return (original as (...a: unknown[]) => unknown).apply(this, args)
  } as typeof original
  try {
    for (const scan of [{ limit: 100 }, { limit: 100, after: page.items[150]!.id }, { limit: 100, state: 'ready' as const }, { limit: 50, labels: { zone: 'z1' } }]) {
      statements = 0
      await inv.queries.scanMachines({ ...scan, ...(scan.after ? { after: Buffer.from(scan.after).toString('base64url') } : {}), views: { now: NOW } } as never)
      assert.equal(statements, 1, JSON.stringify(scan))
    }
  } finally {
    pg.Client.prototype.query = original
  }
})
