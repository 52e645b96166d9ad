// Batched lease reads for DHCP servers sharing a store: the same answers as one query per lookup, in far fewer
// queries, on both backends.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createLeaseLookups, MAX_LOOKUPS_PER_QUERY } from '../../src/dhcp/lease-lookups.js'
import type { Lease } from '../../src/inventory/types.js'
import { eachBackend } from '../support/backends.js'
import { memoryLeases } from './fakes.js'

const NOW = 1_700_000_000_000
const mac = (i: number) => `02:00:00:00:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`

function lease(i: number, over: Partial<Lease> = {}): Lease {
  return { ip: `198.18.${i >> 8}.${i & 0xff}`, mac: mac(i), clientId: null, subnet: '198.18.0.0/16', state: 'bound', hostname: null, expiresAt: NOW + 3_600_000, updatedAt: NOW, ...over }
}

/** A memory store with lookupMany, counting queries. */
function countingStore(rows: Lease[]) {
  const repo = memoryLeases(rows)
  const stats = { queries: 0, largest: 0 }
  const store = Object.assign(repo, {
    async lookupMany(q: { ips: readonly string[]; clientIds: readonly string[]; macs: readonly string[] }) {
      stats.queries += 1
      stats.largest = Math.max(stats.largest, q.ips.length + q.clientIds.length + q.macs.length)
      await new Promise((r) => setTimeout(r, 2))
      return [...repo.rows.values()].filter((l) => q.ips.includes(l.ip) || (l.clientId !== null && q.clientIds.includes(l.clientId)) || q.macs.includes(l.mac))
    },
  })
  return { store, stats }
}

test('a burst of lookups costs a few queries and each gets the answer a single lookup gives', async () => {
  const rows = Array.from({ length: 300 }, (_, i) => lease(i + 1))
  // A client with two leases: the newest wins, as byClient says; a client id outranks the MAC.
  rows.push(lease(400, { mac: mac(7), updatedAt: NOW + 5 }))
  rows.push(lease(401, { mac: 'aa:aa:aa:aa:aa:aa', clientId: 'ff00', updatedAt: NOW }))
  const { store, stats } = countingStore(rows)
  const lookups = createLeaseLookups(store)
  const asks = [
    ...Array.from({ length: 300 }, (_, i) => ({ kind: 'client' as const, mac: mac(i + 1), clientId: null })),
    ...Array.from({ length: 200 }, (_, i) => ({ kind: 'ip' as const, ip: `198.18.${(i + 50) >> 8}.${(i + 50) & 0xff}` })),
    { kind: 'client' as const, mac: mac(9999), clientId: null },
    { kind: 'client' as const, mac: mac(1), clientId: 'ff00' },
    { kind: 'ip' as const, ip: '198.51.100.1' },
  ]
  const got = await Promise.all(asks.map((a) => (a.kind === 'ip' ? lookups.byIp(a.ip) : lookups.byClient(a.mac, a.clientId))))
  const want = await Promise.all(asks.map((a) => (a.kind === 'ip' ? store.byIp(a.ip) : store.byClient(a.mac, a.clientId))))
  assert.deepEqual(got, want)
  assert.equal(got[6]?.ip, lease(400).ip, 'the newest lease of a client with two')
  assert.equal(got[501]?.ip, lease(401).ip, 'the client id decides, not the MAC')
  assert.equal(got[500], null)
  // 503 lookups: the first alone, the rest in batches of at most MAX_LOOKUPS_PER_QUERY.
  assert.ok(stats.queries <= 1 + Math.ceil(502 / MAX_LOOKUPS_PER_QUERY), `${stats.queries} queries`)
  assert.ok(stats.largest <= MAX_LOOKUPS_PER_QUERY)
})

test('a failed query fails its batch and the next batch still runs', async () => {
  const { store } = countingStore([lease(1)])
  let fail = true
  const real = store.lookupMany
  store.lookupMany = async (q) => {
    if (fail) {
      fail = false
      throw new Error('connection lost')
    }
    return real(q)
  }
  const lookups = createLeaseLookups(store)
  const first = lookups.byClient(mac(1), null)
  const second = lookups.byClient(mac(1), null)
  await assert.rejects(first, /connection lost/)
  assert.equal((await second)?.ip, lease(1).ip)
})

test('a store without lookupMany is asked one lookup at a time', async () => {
  const repo = memoryLeases([lease(1)])
  const lookups = createLeaseLookups(repo)
  assert.equal((await lookups.byIp(lease(1).ip))?.mac, mac(1))
  assert.equal((await lookups.byClient(mac(1), null))?.ip, lease(1).ip)
})

eachBackend('lookupMany returns every lease matching an address, a client id or a MAC', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  for (let i = 1; i <= 20; i++) await inv.leases.put(lease(i, i % 2 ? {} : { clientId: `01${mac(i).replaceAll(':', '')}` }))
  const rows = await inv.leases.lookupMany!({ ips: [lease(3).ip, '198.51.100.9'], clientIds: [`01${mac(4).replaceAll(':', '')}`], macs: [mac(5), mac(6)] })
  assert.deepEqual(rows.map((r) => r.ip).sort(), [lease(3).ip, lease(4).ip, lease(5).ip, lease(6).ip].sort())
  assert.deepEqual(await inv.leases.lookupMany!({ ips: [], clientIds: [], macs: [] }), [])
  const lookups = createLeaseLookups(inv.leases)
  const got = await Promise.all([1, 2, 3, 4].map((i) => lookups.byClient(mac(i), i % 2 ? null : `01${mac(i).replaceAll(':', '')}`)))
  assert.deepEqual(got.map((l) => l?.ip), [1, 2, 3, 4].map((i) => lease(i).ip))
})
