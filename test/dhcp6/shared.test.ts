// Two DHCPv6 servers (two handlers, each with its own in-memory bindings and its own database connection) on one
// PostgreSQL leases table, as two rackboot instances are: no address is advertised or bound to two clients, a refused
// claim moves on to another address, and a binding one instance granted is renewed by the other. PostgreSQL only:
// skipped loudly where no private cluster can be started.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ipv6ToBigint } from '../../src/dhcp6/address.js'
import { decode6, encode6, type Dhcp6Decoded } from '../../src/dhcp6/codec.js'
import { duidLlt, duidUuid } from '../../src/dhcp6/duid.js'
import { createDhcp6Handler, type Dhcp6Result } from '../../src/dhcp6/handler.js'
import { rangeFromSettings } from '../../src/dhcp6/index.js'
import { Lease6Store } from '../../src/dhcp6/leases.js'
import { MessageType6, Option6, allOptions, decodeIaAddr, decodeIaNa, decodeStatus, firstOption } from '../../src/dhcp6/options.js'
import { createShared6 } from '../../src/dhcp6/shared.js'
import type { ClaimingLeaseRepository } from '../../src/dhcp/lease-writer.js'
import { silentLogger } from '../../src/log.js'
import { inventoryBackends, skipped } from '../support/backends.js'
import { clientMessage, direct } from './packets.js'

const postgres = inventoryBackends().find((b) => b.name === 'postgres')!
const PREFIX = '2001:db8:7::/64'
const SERVER = '2001:db8:7::1'

type Inv = Awaited<ReturnType<typeof postgres.open>>

function server(inv: Inv, o: { rangeEnd?: string; shared?: boolean } = {}) {
  const range = rangeFromSettings({ prefix: PREFIX, rangeStart: '2001:db8:7::100', rangeEnd: o.rangeEnd ?? '2001:db8:7::1ff' })
  const store = new Lease6Store({ range, maxLeases: 1000, maxIasPerClient: 4, exclude: [ipv6ToBigint(SERVER)!], now: Date.now })
  const duid = duidUuid()
  const shared = o.shared === false ? undefined : createShared6({ leases: inv.leases as ClaimingLeaseRepository, store, subnet: range.prefix.text, now: Date.now })
  const handler = createDhcp6Handler({
    config: {
      serverDuid: duid, serverAddress: SERVER, preferredSeconds: 3600, validSeconds: 7200, offerSeconds: 30, declineSeconds: 600,
      rapidCommit: false, preference: 255, dnsServers: [],
      boot: { bootFiles: { uefiX64: 'ipxe.efi' }, archBootFiles: {}, scriptUrl: 'http://[2001:db8:7::1]:8080/boot.ipxe', httpBootUrl: (l) => l, nextServer: SERVER },
    },
    store, log: silentLogger(), ...(shared ? { shared } : {}),
  })
  const handle = async (d: Dhcp6Decoded): Promise<Dhcp6Result> => {
    const r = await handler.handle(d)
    if (r.kind !== 'reply') return r
    const back = decode6(encode6(r.reply))
    assert.ok(back.ok)
    return { ...r, reply: { message: back.message, relays: back.relays } }
  }
  return { handle, duid, store }
}

/** A client with its own MAC (a DUID-LLT names it, as the leases table needs). */
const client = (n: number) => duidLlt(`52:54:00:d6:01:${n.toString(16).padStart(2, '0')}`, Date.UTC(2020, 0, 1))

/** The IA's addresses with their valid lifetimes, or the IA's status code when it has none. */
function ia(r: Dhcp6Result): { addrs: { address: string; valid: number }[]; status: number | null } {
  assert.equal(r.kind, 'reply', r.kind === 'ignore' ? `ignored: ${r.reason}` : '')
  const m = (r as Extract<Dhcp6Result, { kind: 'reply' }>).reply.message
  const raw = allOptions(m.options, Option6.IaNa)[0]
  assert.ok(raw, 'an IA_NA in the reply')
  const x = decodeIaNa(raw)!
  return {
    addrs: allOptions(x.options, Option6.IaAddr).map((a) => decodeIaAddr(a)!).map((a) => ({ address: a.address, valid: a.valid })),
    status: decodeStatus(firstOption(x.options, Option6.StatusCode) ?? Buffer.alloc(0))?.code ?? null,
  }
}

/** Two servers, each on its own connection to one database (two instances). */
async function twoServers(t: { after(fn: () => unknown): void }) {
  const inv1 = await postgres.open()
  const inv2 = await postgres.open({ url: inv1.url! })
  t.after(async () => {
    await inv2.close()
    await inv1.close()
  })
  return { inv1, inv2, a: server(inv1), b: server(inv2) }
}

const solicit = (duid: Buffer, hint?: string) => direct(clientMessage(MessageType6.Solicit, { duid, ias: [{ iaid: 1, ...(hint ? { addresses: [hint] } : {}) }] }))
const request = (duid: Buffer, serverId: Buffer, address: string) => direct(clientMessage(MessageType6.Request, { duid, serverId, ias: [{ iaid: 1, addresses: [address] }] }))

test('two DHCPv6 servers on one PostgreSQL: an address advertised or bound by one is never given to another client by the other', async (t) => {
  if (await skipped(t, postgres)) return
  const { inv1, inv2, a, b } = await twoServers(t)

  // Client 1 is advertised an address by A; client 2 asks B for that very address: B claims, is refused, moves on.
  const x = ia(await a.handle(solicit(client(1)))).addrs[0]!.address
  const y = ia(await b.handle(solicit(client(2), x))).addrs[0]!.address
  assert.notEqual(y, x, 'B does not advertise what A advertised')
  // Client 1 binds at A; client 2 cannot REQUEST it from B.
  assert.equal(ia(await a.handle(request(client(1), a.duid, x))).addrs[0]!.address, x)
  const stolen = ia(await b.handle(request(client(2), b.duid, x)))
  assert.ok(!stolen.addrs.some((e) => e.address === x), `B does not bind ${x} to client 2: ${JSON.stringify(stolen)}`)

  // A burst of clients at both servers at once, more than the range holds: every address goes to one client only.
  const c = server(inv1, { rangeEnd: '2001:db8:7::107' })
  const d = server(inv2, { rangeEnd: '2001:db8:7::107' })
  const got = await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 ? c : d).handle(solicit(client(16 + i)))))
  const held = got.map(ia).flatMap((r, i) => r.addrs.map((e) => ({ address: e.address, client: 16 + (i as number) })))
  const free = 8 - [x, y].filter((v) => (ipv6ToBigint(v)! & 0xffffn) <= 0x107n).length
  assert.equal(new Set(held.map((h) => h.address)).size, held.length, `no address advertised twice: ${held.map((h) => h.address).join(' ')}`)
  assert.ok(!held.some((h) => h.address === x || h.address === y), 'nor one held from before')
  assert.ok(held.length >= 1 && held.length <= free, `${held.length} of ${free} free addresses advertised`)
  // And the table says each is held by the client it was advertised to.
  for (const h of held) assert.equal((await inv1.leases.byIp(h.address))?.clientId, `duid:${client(h.client).toString('hex')}/1`)
})

test('a binding one DHCPv6 server granted is renewed, rebound and solicited again at the other', async (t) => {
  if (await skipped(t, postgres)) return
  const { inv2, a, b } = await twoServers(t)
  const me = client(3)
  const x = ia(await a.handle(solicit(me))).addrs[0]!.address
  assert.equal(ia(await a.handle(request(me, a.duid, x))).addrs[0]!.address, x)

  // B never saw this client: its RENEW (addressed to B, as after a failover) and REBIND keep the address.
  const renewed = ia(await b.handle(direct(clientMessage(MessageType6.Renew, { duid: me, serverId: b.duid, ias: [{ iaid: 1, addresses: [x] }] }))))
  assert.deepEqual(renewed.addrs, [{ address: x, valid: 7200 }])
  const rebound = ia(await b.handle(direct(clientMessage(MessageType6.Rebind, { duid: me, ias: [{ iaid: 1, addresses: [x] }] }))))
  assert.deepEqual(rebound.addrs, [{ address: x, valid: 7200 }])
  // A new SOLICIT at B offers the client the binding it holds.
  assert.equal(ia(await b.handle(solicit(me))).addrs[0]!.address, x)
  // Another client's REBIND of that address, at an instance that never saw the binding, is told to stop using it.
  const thief = ia(await server(inv2).handle(direct(clientMessage(MessageType6.Rebind, { duid: client(4), ias: [{ iaid: 1, addresses: [x] }] }))))
  assert.ok(thief.addrs.every((e) => e.address !== x || e.valid === 0), JSON.stringify(thief))
  // Released at B: A may then give it to someone else.
  await b.handle(direct(clientMessage(MessageType6.Release, { duid: me, serverId: b.duid, ias: [{ iaid: 1, addresses: [x] }] })))
  assert.equal(ia(await a.handle(solicit(client(5), x))).addrs[0]!.address, x)
})
