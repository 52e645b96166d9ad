import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Registry } from 'prom-client'
import { decode, encode, type DhcpPacket } from '../../src/dhcp/codec.js'
import type { DhcpResult } from '../../src/dhcp/handler.js'
import { createFullHandler, type FullHandler } from '../../src/dhcp/handlers/full.js'
import { createDhcpMetrics } from '../../src/dhcp/metrics.js'
import {
  MessageType, OptionCode, getIp, getIps, getLeaseTime, getMessageType, getServerId, getString, getU32, parseSubOptions,
} from '../../src/dhcp/options.js'
import type { DhcpBootPort, DhcpBootEvent } from '../../src/dhcp/ports.js'
import { parseSubnet } from '../../src/dhcp/subnet.js'
import type { LeaseRepository, ReservationRepository } from '../../src/inventory/repositories.js'
import type { RequestFacts } from '../../src/dhcp/facts.js'
import { silentLogger } from '../../src/log.js'
import { failingLeases, memoryLeases, memoryReservations } from './fakes.js'
import { FIRMWARE, meta, request, type RequestSpec } from './packets.js'

const SERVER = '198.18.1.1'
const DIRECT = { subnet: '198.18.1.0/24', rangeStart: '198.18.1.100', rangeEnd: '198.18.1.109', routers: ['198.18.1.1'], dnsServers: ['198.18.1.53'], domainName: 'lab.test', leaseSeconds: 600 }
const RELAYED = { subnet: '198.18.2.0/24', rangeStart: '198.18.2.50', rangeEnd: '198.18.2.52', routers: ['198.18.2.1'], dnsServers: [], leaseSeconds: 300 }

interface Harness {
  h: FullHandler
  clock: { t: number }
  leases: LeaseRepository & { rows?: Map<string, unknown>; puts?: number }
  reservations: ReservationRepository
  events: { facts: RequestFacts; event: DhcpBootEvent }[]
  registry: Registry
  send(spec: RequestSpec): Promise<DhcpResult>
  reply(spec: RequestSpec): Promise<DhcpPacket>
}

async function harness(opts: {
  leases?: LeaseRepository
  reservations?: ReservationRepository
  port?: DhcpBootPort
  authoritative?: boolean
  portTimeoutMs?: number
  clock?: { t: number }
} = {}): Promise<Harness> {
  const clock = opts.clock ?? { t: 1_700_000_000_000 }
  const leases = opts.leases ?? memoryLeases()
  const reservations = opts.reservations ?? memoryReservations()
  const events: Harness['events'] = []
  const registry = new Registry()
  const metrics = createDhcpMetrics(registry, () => h.poolUsage())
  const port: DhcpBootPort = opts.port ?? {
    async inspect(facts, event) {
      events.push({ facts, event })
    },
  }
  const h = createFullHandler({
    serverId: SERVER,
    subnets: [parseSubnet(DIRECT), parseSubnet(RELAYED)],
    settings: { offerSeconds: 30, declineSeconds: 3600, authoritative: opts.authoritative ?? true, reservationRefreshSeconds: 3600, ipxeNoPxedhcp: true },
    leases,
    reservations,
    boot: {
      bootFiles: { bios: 'undionly.kpxe', uefiX64: 'ipxe.efi', uefiArm64: 'ipxe-arm64.efi' },
      archBootFiles: {},
      scriptUrl: 'http://198.18.1.1:8080/boot.ipxe?mac=${net0/mac}&uuid=${uuid}&serial=${serial}&arch=${buildarch}&platform=${platform}&manufacturer=${manufacturer}&product=${product}',
      httpBootUrl: (_loader, arch) => `http://198.18.1.1:8080/assets/${arch.family}/ipxe.efi`,
      nextServer: SERVER,
    },
    advice: { bootPort: port, timeoutMs: opts.portTimeoutMs ?? 1000, metrics, log: silentLogger() },
    log: silentLogger(),
    now: () => clock.t,
  })
  await h.start?.()
  const send = async (spec: RequestSpec) => {
    // Through the wire format, as the server does.
    const r = await h.handle(decode(encode(request(spec))), meta({ receivedAt: clock.t }))
    if (r.kind === 'reply') r.packet = decode(encode(r.packet, r.maxSize ? { maxSize: r.maxSize } : {}))
    return r
  }
  const reply = async (spec: RequestSpec) => {
    const r = await send(spec)
    assert.equal(r.kind, 'reply', `expected a reply, got ${JSON.stringify(r)}`)
    return (r as { packet: DhcpPacket }).packet
  }
  return { h, clock, leases, reservations, events, registry, send, reply }
}

const MAC = '52:54:00:aa:00:01'
const type = (p: DhcpPacket) => getMessageType(p.options)

async function dora(x: Harness, spec: Partial<RequestSpec> & { mac: string }) {
  const offer = await x.reply({ type: MessageType.Discover, ...spec })
  assert.equal(type(offer), MessageType.Offer)
  const ack = await x.reply({ type: MessageType.Request, ...spec, requestedIp: offer.yiaddr, serverId: SERVER })
  assert.equal(type(ack), MessageType.Ack)
  return { offer, ack }
}

test('DORA on the directly attached subnet: address, lease options, server id', async () => {
  const x = await harness()
  const { offer, ack } = await dora(x, { mac: MAC, hostname: 'node1' })
  assert.equal(offer.yiaddr, '198.18.1.100')
  assert.equal(ack.yiaddr, '198.18.1.100')
  for (const p of [offer, ack]) {
    assert.equal(getServerId(p.options), SERVER)
    assert.equal(getLeaseTime(p.options), 600)
    assert.equal(getU32(p.options, OptionCode.RenewalTime), 300)
    assert.equal(getU32(p.options, OptionCode.RebindingTime), 525)
    assert.equal(getIp(p.options, OptionCode.SubnetMask), '255.255.255.0')
    assert.deepEqual(getIps(p.options, OptionCode.Router), ['198.18.1.1'])
    assert.deepEqual(getIps(p.options, OptionCode.DomainNameServer), ['198.18.1.53'])
    assert.equal(getString(p.options, OptionCode.DomainName), 'lab.test')
    // Plain clients get no boot options.
    assert.equal(p.file, '')
    assert.equal(p.options.has(OptionCode.BootfileName), false)
  }
  const stored = await x.leases.byIp('198.18.1.100')
  assert.equal(stored?.state, 'bound')
  assert.equal(stored?.mac, MAC)
  assert.equal(stored?.subnet, '198.18.1.0/24')
  assert.equal(stored?.hostname, 'node1')
  assert.equal(stored?.expiresAt, x.clock.t + 600_000)
})

test('an offer is not written to storage; only the ACK is', async () => {
  const leases = memoryLeases()
  const x = await harness({ leases })
  await x.reply({ type: MessageType.Discover, mac: MAC })
  assert.equal(leases.puts, 0)
  await x.reply({ type: MessageType.Request, mac: MAC, requestedIp: '198.18.1.100', serverId: SERVER })
  assert.equal(leases.puts, 1)
})

test('two clients never get the same address, and an offer holds its address', async () => {
  const x = await harness()
  const seen = new Set<string>()
  for (let i = 0; i < 10; i++) {
    const offer = await x.reply({ type: MessageType.Discover, mac: `52:54:00:aa:01:${i.toString(16).padStart(2, '0')}` })
    assert.ok(!seen.has(offer.yiaddr), `duplicate ${offer.yiaddr}`)
    seen.add(offer.yiaddr)
  }
  // Range of 10 is full of offers: the 11th client gets nothing (counted as pool-exhausted).
  const r = await x.send({ type: MessageType.Discover, mac: '52:54:00:aa:02:00' })
  assert.deepEqual(r.kind === 'ignore' && r.reason, 'pool-exhausted')
  // Offers lapse after offerSeconds: the address comes back.
  x.clock.t += 31_000
  const again = await x.reply({ type: MessageType.Discover, mac: '52:54:00:aa:02:00' })
  assert.ok(seen.has(again.yiaddr))
  assert.match(await x.registry.metrics(), /rackboot_dhcp_pool_utilisation_ratio\{subnet="198.18.1.0\/24"\} 0.1/)
})

test('a returning client gets its previous address back; a requested free address is honoured', async () => {
  const x = await harness()
  const { ack } = await dora(x, { mac: MAC })
  const again = await x.reply({ type: MessageType.Discover, mac: MAC })
  assert.equal(again.yiaddr, ack.yiaddr)
  const other = await x.reply({ type: MessageType.Discover, mac: '52:54:00:aa:00:02', requestedIp: '198.18.1.105' })
  assert.equal(other.yiaddr, '198.18.1.105')
  // Asking for a taken address yields another one.
  const third = await x.reply({ type: MessageType.Discover, mac: '52:54:00:aa:00:03', requestedIp: ack.yiaddr })
  assert.notEqual(third.yiaddr, ack.yiaddr)
})

test('REQUEST naming another server is ignored and releases our offer', async () => {
  const x = await harness()
  const offer = await x.reply({ type: MessageType.Discover, mac: MAC })
  const r = await x.send({ type: MessageType.Request, mac: MAC, requestedIp: offer.yiaddr, serverId: '198.18.1.250' })
  assert.equal(r.kind === 'ignore' && r.reason, 'other-server')
  // The held address is free again at once for someone else.
  const other = await x.reply({ type: MessageType.Discover, mac: '52:54:00:aa:00:09', requestedIp: offer.yiaddr })
  assert.equal(other.yiaddr, offer.yiaddr)
  assert.equal(await x.leases.byIp(offer.yiaddr), null)
})

test('NAK: an address held by another client, outside the pool, or on the wrong network', async () => {
  const x = await harness()
  const { ack } = await dora(x, { mac: MAC })
  const cases: RequestSpec[] = [
    // INIT-REBOOT for someone else's address
    { type: MessageType.Request, mac: '52:54:00:aa:00:02', requestedIp: ack.yiaddr },
    // SELECTING (our id) for someone else's address
    { type: MessageType.Request, mac: '52:54:00:aa:00:02', requestedIp: ack.yiaddr, serverId: SERVER },
    // in the subnet but outside the range
    { type: MessageType.Request, mac: '52:54:00:aa:00:03', requestedIp: '198.18.1.20' },
    // another network (client moved)
    { type: MessageType.Request, mac: '52:54:00:aa:00:04', requestedIp: '198.18.99.5' },
    // the server's own address
    { type: MessageType.Request, mac: '52:54:00:aa:00:05', requestedIp: SERVER },
    // RENEWING an address that is someone else's
    { type: MessageType.Request, mac: '52:54:00:aa:00:06', ciaddr: ack.yiaddr },
  ]
  for (const spec of cases) {
    const p = await x.reply(spec)
    assert.equal(type(p), MessageType.Nak, JSON.stringify(spec))
    assert.equal(p.yiaddr, '0.0.0.0')
    assert.equal(getServerId(p.options), SERVER)
    assert.ok(getString(p.options, OptionCode.Message))
    assert.equal(getLeaseTime(p.options), undefined)
  }
  // The rightful owner still renews.
  const renew = await x.reply({ type: MessageType.Request, mac: MAC, ciaddr: ack.yiaddr })
  assert.equal(type(renew), MessageType.Ack)
  assert.equal(renew.ciaddr, ack.yiaddr)
})

test('a non-authoritative server stays silent for INIT-REBOOT of unknown clients on the wrong network', async () => {
  const x = await harness({ authoritative: false })
  const r = await x.send({ type: MessageType.Request, mac: '52:54:00:aa:00:04', requestedIp: '198.18.99.5' })
  assert.equal(r.kind, 'ignore')
})

test('renew and rebind extend the lease; a restart (new handler, same storage) keeps every lease', async () => {
  const clock = { t: 1_700_000_000_000 }
  const leases = memoryLeases()
  const x = await harness({ leases, clock })
  const a = await dora(x, { mac: MAC })
  const b = await dora(x, { mac: '52:54:00:aa:00:02', clientId: '01525400aa0002' })
  clock.t += 300_000
  const renew = await x.reply({ type: MessageType.Request, mac: MAC, ciaddr: a.ack.yiaddr })
  assert.equal(type(renew), MessageType.Ack)
  assert.equal((await leases.byIp(a.ack.yiaddr))?.expiresAt, clock.t + 600_000)
  await x.h.stop?.()

  const y = await harness({ leases, clock })
  // The old leases are known: INIT-REBOOT is acknowledged, a new client gets a different address.
  const reboot = await y.reply({ type: MessageType.Request, mac: '52:54:00:aa:00:02', clientId: '01525400aa0002', requestedIp: b.ack.yiaddr })
  assert.equal(type(reboot), MessageType.Ack)
  const stranger = await y.reply({ type: MessageType.Discover, mac: '52:54:00:aa:00:03' })
  assert.ok(![a.ack.yiaddr, b.ack.yiaddr].includes(stranger.yiaddr))
  const nak = await y.reply({ type: MessageType.Request, mac: '52:54:00:aa:00:03', requestedIp: a.ack.yiaddr })
  assert.equal(type(nak), MessageType.Nak)
  await y.h.stop?.()
})

test('expired leases are reused, preferring never-used addresses first', async () => {
  const x = await harness()
  const { ack } = await dora(x, { mac: MAC })
  x.clock.t += 601_000
  for (let i = 0; i < 9; i++) await dora(x, { mac: `52:54:00:bb:00:${i.toString(16).padStart(2, '0')}` })
  // The range is 10; the only address left is the expired one.
  const late = await x.reply({ type: MessageType.Discover, mac: '52:54:00:cc:00:01' })
  assert.equal(late.yiaddr, ack.yiaddr)
})

test('RELEASE frees the address; DECLINE keeps it out of the pool', async () => {
  const x = await harness()
  const { ack } = await dora(x, { mac: MAC })
  const rel = await x.send({ type: MessageType.Release, mac: MAC, ciaddr: ack.yiaddr, serverId: SERVER })
  assert.equal(rel.kind, 'silent')
  assert.equal((await x.leases.byIp(ack.yiaddr))?.state, 'released')
  const other = await x.reply({ type: MessageType.Discover, mac: '52:54:00:aa:00:02', requestedIp: ack.yiaddr })
  assert.equal(other.yiaddr, ack.yiaddr)
  await x.reply({ type: MessageType.Request, mac: '52:54:00:aa:00:02', requestedIp: ack.yiaddr, serverId: SERVER })
  // A release from someone who does not hold it changes nothing.
  const bogus = await x.send({ type: MessageType.Release, mac: MAC, ciaddr: ack.yiaddr, serverId: SERVER })
  assert.equal(bogus.kind, 'ignore')
  assert.equal((await x.leases.byIp(ack.yiaddr))?.mac, '52:54:00:aa:00:02')

  const dec = await x.send({ type: MessageType.Decline, mac: '52:54:00:aa:00:02', requestedIp: ack.yiaddr, serverId: SERVER })
  assert.equal(dec.kind, 'silent')
  assert.equal((await x.leases.byIp(ack.yiaddr))?.state, 'declined')
  const next = await x.reply({ type: MessageType.Discover, mac: '52:54:00:aa:00:02' })
  assert.notEqual(next.yiaddr, ack.yiaddr)
})

test('INFORM: configuration without an address or a lease time, to ciaddr', async () => {
  const x = await harness()
  const p = await x.reply({ type: MessageType.Inform, mac: MAC, ciaddr: '198.18.1.7' })
  assert.equal(type(p), MessageType.Ack)
  assert.equal(p.yiaddr, '0.0.0.0')
  assert.equal(p.ciaddr, '198.18.1.7')
  assert.equal(getLeaseTime(p.options), undefined)
  assert.deepEqual(getIps(p.options, OptionCode.Router), ['198.18.1.1'])
})

test('relayed requests: subnet chosen by giaddr, giaddr kept in the reply, option 82 echoed last', async () => {
  const x = await harness()
  const rai = Buffer.from([1, 4, 0x65, 0x74, 0x68, 0x31, 2, 2, 0xaa, 0xbb])
  const offer = await x.reply({ type: MessageType.Discover, mac: MAC, giaddr: '198.18.2.1', extra: [[OptionCode.RelayAgentInformation, rai]] })
  assert.equal(offer.yiaddr, '198.18.2.50')
  assert.equal(offer.giaddr, '198.18.2.1')
  assert.deepEqual(getIps(offer.options, OptionCode.Router), ['198.18.2.1'])
  assert.equal(getLeaseTime(offer.options), 300)
  assert.deepEqual(offer.options.get(OptionCode.RelayAgentInformation), rai)
  assert.equal([...offer.options.keys()].at(-1), OptionCode.RelayAgentInformation)
  const ack = await x.reply({ type: MessageType.Request, mac: MAC, giaddr: '198.18.2.1', requestedIp: offer.yiaddr, serverId: SERVER })
  assert.equal(type(ack), MessageType.Ack)
  assert.equal((await x.leases.byIp('198.18.2.50'))?.subnet, '198.18.2.0/24')
  // A relayed NAK asks the relay to broadcast.
  const nak = await x.reply({ type: MessageType.Request, mac: '52:54:00:aa:00:02', giaddr: '198.18.2.1', requestedIp: '198.18.2.50' })
  assert.equal(type(nak), MessageType.Nak)
  assert.equal(nak.flags & 0x8000, 0x8000)
  // A relay on a subnet we do not serve: no answer.
  const none = await x.send({ type: MessageType.Discover, mac: MAC, giaddr: '198.18.77.1' })
  assert.equal(none.kind === 'ignore' && none.reason, 'no-subnet')
  // Link selection (option 118) overrides giaddr.
  const sel = await x.reply({ type: MessageType.Discover, mac: '52:54:00:aa:00:05', giaddr: '198.18.77.1', extra: [[OptionCode.SubnetSelection, Buffer.from([198, 18, 2, 0])]] })
  assert.equal(sel.yiaddr, '198.18.2.51')
})

test('the relay pool of 3 addresses is exhausted cleanly and NAKs are counted separately', async () => {
  const x = await harness()
  for (let i = 0; i < 3; i++) await dora(x, { mac: `52:54:00:dd:00:0${i}`, giaddr: '198.18.2.1' })
  const r = await x.send({ type: MessageType.Discover, mac: '52:54:00:dd:00:09', giaddr: '198.18.2.1' })
  assert.equal(r.kind === 'ignore' && r.reason, 'pool-exhausted')
  assert.deepEqual(x.h.poolUsage().find((u) => u.subnet === '198.18.2.0/24'), { subnet: '198.18.2.0/24', used: 3, total: 3 })
})

test('reservations by MAC and by client id, also outside the range; nobody else gets them', async () => {
  const reservations = memoryReservations([
    { ip: '198.18.1.10', mac: MAC, clientId: null, hostname: 'node-a', machineId: 'm1' },
    { ip: '198.18.1.101', mac: null, clientId: '00ffee', hostname: null, machineId: 'm2' },
  ])
  const x = await harness({ reservations })
  const { offer, ack } = await dora(x, { mac: MAC })
  assert.equal(offer.yiaddr, '198.18.1.10')
  assert.equal(getString(ack.options, OptionCode.HostName), 'node-a')
  const byId = await dora(x, { mac: '52:54:00:ee:00:01', clientId: '00ffee' })
  assert.equal(byId.ack.yiaddr, '198.18.1.101')
  // Others are allocated around them.
  const other = await x.reply({ type: MessageType.Discover, mac: '52:54:00:ee:00:02', requestedIp: '198.18.1.101' })
  assert.equal(other.yiaddr, '198.18.1.100')
  const o2 = await x.reply({ type: MessageType.Discover, mac: '52:54:00:ee:00:03' })
  assert.equal(o2.yiaddr, '198.18.1.102')
  const nak = await x.reply({ type: MessageType.Request, mac: '52:54:00:ee:00:04', requestedIp: '198.18.1.10' })
  assert.equal(type(nak), MessageType.Nak)
})

test('a new reservation moves a client at its next request (NAK, then the reserved address)', async () => {
  const reservations = memoryReservations()
  const x = await harness({ reservations })
  const { ack } = await dora(x, { mac: MAC })
  await reservations.put({ ip: '198.18.1.20', mac: MAC, clientId: null, hostname: null, machineId: 'm1' })
  await x.h.reloadReservations()
  const renew = await x.reply({ type: MessageType.Request, mac: MAC, ciaddr: ack.yiaddr })
  assert.equal(type(renew), MessageType.Nak)
  const { ack: moved } = await dora(x, { mac: MAC })
  assert.equal(moved.yiaddr, '198.18.1.20')
  // The old address went back to the pool.
  assert.equal((await x.leases.byIp(ack.yiaddr))?.state, 'released')
})

test('firmware and iPXE of one machine (61 absent vs 01+MAC) share one lease', async () => {
  const x = await harness()
  const fw = await dora(x, { mac: MAC, ...FIRMWARE.ovmfPxe })
  const ipxe = await dora(x, { mac: MAC, clientId: '01525400aa0001', ...FIRMWARE.ipxeEfi })
  assert.equal(ipxe.ack.yiaddr, fw.ack.yiaddr)
})

test('PXE boot options: BIOS, UEFI, arm64, UEFI HTTP, iPXE (with 175.176)', async () => {
  const x = await harness()
  const bios = await x.reply({ type: MessageType.Discover, mac: '52:54:00:10:00:01', ...FIRMWARE.biosPxe })
  assert.equal(bios.file, 'undionly.kpxe')
  assert.equal(bios.siaddr, SERVER)
  assert.equal(getString(bios.options, OptionCode.VendorClassIdentifier), 'PXEClient')
  assert.equal(parseSubOptions(bios.options.get(OptionCode.VendorSpecific)!)?.get(6)?.[0], 8)
  const uefi = await x.reply({ type: MessageType.Discover, mac: '52:54:00:10:00:02', ...FIRMWARE.ovmfPxe })
  assert.equal(uefi.file, 'ipxe.efi')
  const arm = await x.reply({ type: MessageType.Discover, mac: '52:54:00:10:00:03', ...FIRMWARE.aavmfPxe })
  assert.equal(arm.file, 'ipxe-arm64.efi')
  const http = await x.reply({ type: MessageType.Discover, mac: '52:54:00:10:00:04', ...FIRMWARE.ovmfHttp })
  assert.equal(getString(http.options, OptionCode.BootfileName), 'http://198.18.1.1:8080/assets/uefiX64/ipxe.efi')
  assert.equal(getString(http.options, OptionCode.VendorClassIdentifier), 'HTTPClient')
  const ipxe = await x.reply({ type: MessageType.Discover, mac: '52:54:00:10:00:05', ...FIRMWARE.ipxeBios })
  const url = getString(ipxe.options, OptionCode.BootfileName)
  assert.match(url ?? '', /^http:\/\/198\.18\.1\.1:8080\/boot\.ipxe\?mac=\$\{net0\/mac\}&uuid=\$\{uuid\}/)
  // The script URL is longer than the file field: option 67 only.
  assert.equal(ipxe.file, '')
  assert.deepEqual(parseSubOptions(ipxe.options.get(OptionCode.Ipxe)!)?.get(176), Buffer.from([1]))
  // The ACK carries the same boot options.
  const ack = await x.reply({ type: MessageType.Request, mac: '52:54:00:10:00:05', ...FIRMWARE.ipxeBios, requestedIp: ipxe.yiaddr, serverId: SERVER })
  assert.equal(getString(ack.options, OptionCode.BootfileName), url)
})

test('every DISCOVER/REQUEST of a netboot client reaches the boot port, which can override or withhold', async () => {
  const events: { facts: RequestFacts; event: DhcpBootEvent }[] = []
  const port: DhcpBootPort = {
    async inspect(facts, event) {
      events.push({ facts, event })
      if (facts.mac === '52:54:00:20:00:02') return { bootFile: 'special.efi', nextServer: '198.18.1.9' }
      if (facts.mac === '52:54:00:20:00:03') return { ignore: true, reason: 'maintenance' }
      return undefined
    },
  }
  const x = await harness({ port })
  await dora(x, { mac: '52:54:00:20:00:01', ...FIRMWARE.ovmfPxe, uuid: '8c3f5a7e-1b2d-4c6e-9f01-23456789abcd' })
  assert.deepEqual(events.map((e) => [e.event.message, e.event.reply, e.event.ip, e.event.bootFile]), [
    ['discover', 'offer', '198.18.1.100', 'ipxe.efi'],
    ['request', 'ack', '198.18.1.100', 'ipxe.efi'],
  ])
  assert.equal(events[0]!.facts.uuid, '8c3f5a7e-1b2d-4c6e-9f01-23456789abcd')
  assert.equal(events[0]!.event.mode, 'full')
  const special = await x.reply({ type: MessageType.Discover, mac: '52:54:00:20:00:02', ...FIRMWARE.ovmfPxe })
  assert.equal(special.file, 'special.efi')
  assert.equal(special.siaddr, '198.18.1.9')
  // Ignore: the address is served (the OS needs it) but no boot options, so the firmware moves on.
  const maint = await x.reply({ type: MessageType.Discover, mac: '52:54:00:20:00:03', ...FIRMWARE.ovmfPxe })
  assert.notEqual(maint.yiaddr, '0.0.0.0')
  assert.equal(maint.file, '')
  assert.equal(maint.options.has(OptionCode.VendorClassIdentifier), false)
  // Plain DHCP clients do not reach the port.
  const before = events.length
  await dora(x, { mac: '52:54:00:20:00:04' })
  assert.equal(events.length, before)
})

test('a failing or slow boot port never blocks the reply (counted)', async () => {
  const failing = await harness({ port: { inspect: async () => { throw new Error('boom') } } })
  const a = await failing.reply({ type: MessageType.Discover, mac: MAC, ...FIRMWARE.biosPxe })
  assert.equal(a.file, 'undionly.kpxe')
  const throwing = await harness({ port: { inspect: () => { throw new Error('sync boom') } } })
  assert.equal((await throwing.reply({ type: MessageType.Discover, mac: MAC, ...FIRMWARE.biosPxe })).file, 'undionly.kpxe')
  const slow = await harness({ port: { inspect: () => new Promise(() => undefined) }, portTimeoutMs: 20 })
  const b = await slow.reply({ type: MessageType.Discover, mac: MAC, ...FIRMWARE.biosPxe })
  assert.equal(b.file, 'undionly.kpxe')
  assert.match(await failing.registry.metrics(), /rackboot_dhcp_boot_port_failures_total\{reason="error"\} 1/)
  assert.match(await slow.registry.metrics(), /rackboot_dhcp_boot_port_failures_total\{reason="timeout"\} 1/)
})

test('a failing lease store means no ACK (and it is counted), never a crash', async () => {
  const x = await harness({ leases: failingLeases() })
  const offer = await x.reply({ type: MessageType.Discover, mac: MAC })
  const r = await x.send({ type: MessageType.Request, mac: MAC, requestedIp: offer.yiaddr, serverId: SERVER })
  assert.equal(r.kind === 'ignore' && r.reason, 'storage-error')
  assert.match(await x.registry.metrics(), /rackboot_dhcp_lease_store_failures_total 1/)
})

test('concurrent DISCOVERs are all given distinct addresses', async () => {
  const x = await harness({ port: { inspect: () => new Promise((r) => setTimeout(r, Math.random() * 5)) } })
  const macs = Array.from({ length: 10 }, (_, i) => `52:54:00:30:00:${i.toString(16).padStart(2, '0')}`)
  const offers = await Promise.all(macs.map((mac) => x.reply({ type: MessageType.Discover, mac, ...FIRMWARE.biosPxe })))
  assert.equal(new Set(offers.map((o) => o.yiaddr)).size, 10)
  const acks = await Promise.all(offers.map((o, i) => x.reply({ type: MessageType.Request, mac: macs[i]!, ...FIRMWARE.biosPxe, requestedIp: o.yiaddr, serverId: SERVER })))
  assert.ok(acks.every((a) => type(a) === MessageType.Ack))
})

test('messages a server never receives, and replies, are ignored with a reason', async () => {
  const x = await harness()
  for (const t of [MessageType.Offer, MessageType.Ack, MessageType.Nak]) {
    const r = await x.send({ type: t, mac: MAC })
    assert.equal(r.kind, 'ignore')
  }
  const p = request({ type: 1, mac: MAC })
  p.op = 2
  assert.equal((await x.h.handle(p, meta())).kind, 'ignore')
  p.op = 1
  p.options.delete(OptionCode.MessageType)
  assert.equal((await x.h.handle(p, meta())).kind, 'ignore')
})

test('a reserved address held by someone else does not loop its owner through NAKs', async () => {
  const leases = memoryLeases()
  const x = await harness({ leases })
  // Another client is bound to .105 before the reservation exists.
  const squatter = await x.reply({ type: MessageType.Discover, mac: '52:54:00:aa:00:77', requestedIp: '198.18.1.105' })
  assert.equal(squatter.yiaddr, '198.18.1.105')
  await x.reply({ type: MessageType.Request, mac: '52:54:00:aa:00:77', requestedIp: '198.18.1.105', serverId: SERVER })
  await x.reservations.put({ ip: '198.18.1.105', mac: MAC, clientId: null, hostname: null, machineId: 'm1' })
  await x.h.reloadReservations()
  const { ack } = await dora(x, { mac: MAC })
  assert.notEqual(ack.yiaddr, '198.18.1.105')
  // Once the squatter is gone the owner moves onto its reservation.
  await x.send({ type: MessageType.Release, mac: '52:54:00:aa:00:77', ciaddr: '198.18.1.105', serverId: SERVER })
  const renew = await x.reply({ type: MessageType.Request, mac: MAC, ciaddr: ack.yiaddr })
  assert.equal(type(renew), MessageType.Nak)
  assert.equal((await dora(x, { mac: MAC })).ack.yiaddr, '198.18.1.105')
})
