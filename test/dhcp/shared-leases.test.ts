// Two DHCP servers (two rackboot instances) answering one segment from one lease store: the store decides who holds
// an address. Run on both backends: SQLite (two handlers on one database in this process) and PostgreSQL (two
// inventories on one database, as two processes would have).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Registry } from 'prom-client'
import { decode, encode, type DhcpPacket } from '../../src/dhcp/codec.js'
import type { DhcpResult } from '../../src/dhcp/handler.js'
import { createFullHandler, type FullHandler } from '../../src/dhcp/handlers/full.js'
import { createDhcpMetrics } from '../../src/dhcp/metrics.js'
import { MessageType, getMessageType } from '../../src/dhcp/options.js'
import { parseSubnet } from '../../src/dhcp/subnet.js'
import type { Inventory } from '../../src/inventory/repositories.js'
import { silentLogger } from '../../src/log.js'
import { inventoryBackends, skipped } from '../support/backends.js'
import { meta, request, type RequestSpec } from './packets.js'

const SUBNET = { subnet: '198.18.1.0/24', rangeStart: '198.18.1.100', rangeEnd: '198.18.1.139', routers: ['198.18.1.1'], dnsServers: [], leaseSeconds: 600 }
const SERVERS = ['198.18.1.2', '198.18.1.3'] as const

interface Server {
  id: string
  h: FullHandler
  send(spec: RequestSpec): Promise<DhcpResult>
}

async function server(id: string, inventory: Inventory, clock: { t: number }, startAt: number): Promise<Server> {
  const registry = new Registry()
  let h: FullHandler | undefined
  const metrics = createDhcpMetrics(registry, () => h?.poolUsage() ?? [])
  h = createFullHandler({
    serverId: id,
    subnets: [parseSubnet(SUBNET)],
    settings: { offerSeconds: 30, declineSeconds: 3600, authoritative: true, reservationRefreshSeconds: 3600, ipxeNoPxedhcp: true },
    leases: inventory.leases,
    reservations: inventory.reservations,
    boot: {
      bootFiles: { bios: 'undionly.kpxe', uefiX64: 'ipxe.efi', uefiArm64: 'ipxe-arm64.efi' },
      archBootFiles: {},
      scriptUrl: 'http://198.18.1.2:8080/boot.ipxe',
      httpBootUrl: () => 'http://198.18.1.2:8080/assets/ipxe.efi',
      nextServer: id,
    },
    advice: { bootPort: { async inspect() {} }, timeoutMs: 1000, metrics, log: silentLogger() },
    log: silentLogger(),
    now: () => clock.t,
    shared: { syncSeconds: 3600, startAt },
  })
  await h.start?.()
  const handler = h
  return {
    id,
    h: handler,
    async send(spec) {
      const r = await handler.handle(decode(encode(request(spec))), meta({ receivedAt: clock.t }))
      if (r.kind === 'reply') r.packet = decode(encode(r.packet))
      return r
    },
  }
}

const mac = (i: number) => `52:54:00:aa:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`
const typeOf = (r: DhcpResult) => (r.kind === 'reply' ? getMessageType(r.packet.options) : r.kind)
const yiaddr = (r: DhcpResult) => (r.kind === 'reply' ? (r.packet as DhcpPacket).yiaddr : null)

for (const backend of inventoryBackends()) {
  /** Two servers, each on its own inventory handle over one database (one handle twice on SQLite :memory:). */
  async function pair(t: { after(fn: () => Promise<void>): void }, clock: { t: number }, startAt: [number, number]): Promise<[Server, Server, Inventory]> {
    const a = await backend.open()
    t.after(() => a.close())
    let b: Inventory = a
    if (backend.name === 'postgres') {
      b = await backend.open({ url: a.url! })
      t.after(() => b.close())
    }
    return [await server(SERVERS[0], a, clock, startAt[0]), await server(SERVERS[1], b, clock, startAt[1]), a]
  }

  test(`shared leases: two servers offering the same next address never both get it [${backend.name}]`, async (t) => {
    if (await skipped(t, backend)) return
    const clock = { t: 1_800_000_000_000 }
    // Same start: both servers pick the same fresh address for every client; the store refuses one of each pair.
    const [a, b, inv] = await pair(t, clock, [0, 0])
    const clients = 30
    const granted = new Map<string, string>()
    await Promise.all(Array.from({ length: clients }, async (_, i) => {
      const [ra, rb] = await Promise.all([a.send({ type: MessageType.Discover, mac: mac(i), xid: i }), b.send({ type: MessageType.Discover, mac: mac(1000 + i), xid: 1000 + i })])
      for (const [srv, r, m] of [[a, ra, mac(i)], [b, rb, mac(1000 + i)]] as const) {
        if (r.kind !== 'reply') continue
        const ip = yiaddr(r)!
        const ack = await srv.send({ type: MessageType.Request, mac: m, serverId: srv.id, requestedIp: ip })
        if (typeOf(ack) === MessageType.Ack) {
          assert.equal(granted.has(ip), false, `${ip} granted twice (${granted.get(ip)} and ${m})`)
          granted.set(ip, m)
        }
      }
    }))
    // 60 clients, 40 addresses: every address bound once, to the client the store says holds it.
    assert.equal(granted.size, 40, `all 40 addresses bound (${granted.size})`)
    const bound = (await inv.leases.list({ state: 'bound' }))
    assert.equal(bound.length, 40)
    for (const l of bound) assert.equal(granted.get(l.ip), l.mac, `${l.ip}: the store and the ACK agree`)
  })

  test(`shared leases: a server renews and rebinds leases the other granted, and refuses another client its address [${backend.name}]`, async (t) => {
    if (await skipped(t, backend)) return
    const clock = { t: 1_800_000_000_000 }
    const [a, b] = await pair(t, clock, [0, 20])
    const offer = await a.send({ type: MessageType.Discover, mac: mac(1) })
    const ip = yiaddr(offer)!
    assert.equal(typeOf(await a.send({ type: MessageType.Request, mac: mac(1), serverId: a.id, requestedIp: ip })), MessageType.Ack)
    // Server a is gone; at T2 the client broadcasts a REBINDING request, which b answers from the store.
    clock.t += 300_000
    const rebind = await b.send({ type: MessageType.Request, mac: mac(1), ciaddr: ip })
    assert.equal(typeOf(rebind), MessageType.Ack, `b rebinds ${ip}: ${JSON.stringify(rebind.kind === 'reply' ? '' : rebind)}`)
    assert.equal(yiaddr(rebind), ip)
    // INIT-REBOOT after a reboot of the client: b knows it from the store.
    assert.equal(typeOf(await b.send({ type: MessageType.Request, mac: mac(1), requestedIp: ip })), MessageType.Ack)
    // A DISCOVER of that client at b gets its own address back, not a new one.
    assert.equal(yiaddr(await b.send({ type: MessageType.Discover, mac: mac(1) })), ip)
    // Another client asking b for that address is refused, though b never granted it.
    const other = await b.send({ type: MessageType.Request, mac: mac(2), requestedIp: ip })
    assert.equal(typeOf(other), MessageType.Nak)
    // And a, which still thinks the address free after the client's release at b? It is told by the store.
    assert.equal(typeOf(await b.send({ type: MessageType.Release, mac: mac(1), ciaddr: ip, serverId: b.id })), 'silent')
    const taken = await a.send({ type: MessageType.Request, mac: mac(3), requestedIp: ip })
    assert.equal(typeOf(taken), MessageType.Ack, 'a released address is free again for anyone')
    assert.equal(typeOf(await b.send({ type: MessageType.Request, mac: mac(1), requestedIp: ip })), MessageType.Nak, 'the old client lost it')
  })

  test(`shared leases: a store that cannot be reached gets no offer and no ACK out [${backend.name}]`, async (t) => {
    if (await skipped(t, backend)) return
    const clock = { t: 1_800_000_000_000 }
    const [a, , inv] = await pair(t, clock, [0, 0])
    const offer = await a.send({ type: MessageType.Discover, mac: mac(7) })
    const ip = yiaddr(offer)!
    const leases = inv.leases as unknown as Record<string, unknown>
    const real = { claimMany: leases.claimMany, byClient: leases.byClient, byIp: leases.byIp }
    const down = async () => {
      throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
    }
    Object.assign(leases, { claimMany: down, byClient: down, byIp: down })
    t.after(() => void Object.assign(leases, real))
    assert.deepEqual(await a.send({ type: MessageType.Request, mac: mac(7), serverId: a.id, requestedIp: ip }), { kind: 'ignore', reason: 'storage-error' })
    assert.deepEqual(await a.send({ type: MessageType.Discover, mac: mac(8) }), { kind: 'ignore', reason: 'storage-error' })
    Object.assign(leases, real)
    assert.equal(typeOf(await a.send({ type: MessageType.Request, mac: mac(7), serverId: a.id, requestedIp: ip })), MessageType.Ack, 'answers again once the store is back')
  })
}
