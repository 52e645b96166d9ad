import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { ipv6ToBigint, macFromLinkLocal, parsePrefix } from '../../src/dhcp6/address.js'
import { decode6, encode6, type Dhcp6Decoded } from '../../src/dhcp6/codec.js'
import { duidUuid, loadServerDuid, macFromDuid, SERVER_DUID_FILE } from '../../src/dhcp6/duid.js'
import { createDhcp6Handler, type Dhcp6AdviceRequest, type Dhcp6HandlerConfig, type Dhcp6HandlerDeps, type Dhcp6Result } from '../../src/dhcp6/handler.js'
import type { DhcpBootAdvice } from '../../src/dhcp/ports.js'
import { firmwareAwaitingRoute, rangeFromSettings } from '../../src/dhcp6/index.js'
import { Lease6Store } from '../../src/dhcp6/leases.js'
import {
  MessageType6, Option6, StatusCode6, allOptions, decodeAddressList, decodeIaAddr, decodeIaNa, decodeStatus, decodeVendorClass6,
  firstOption, type Options6,
} from '../../src/dhcp6/options.js'
import { silentLogger } from '../../src/log.js'
import { CLIENT_DUID, CLIENT_MAC, clientMessage, direct, relayed } from './packets.js'

const SERVER_DUID = duidUuid('8c3f5a7e-1b2d-4c6e-9f01-23456789abcd')
const SERVER = '2001:db8:7::1'

function setup(o: { rangeEnd?: string; maxLeases?: number; maxIasPerClient?: number; config?: Partial<Dhcp6HandlerConfig>; advise?: Dhcp6HandlerDeps['advise']; adviseTimeoutMs?: number } = {}) {
  let t = 1_000_000
  const clock = { now: () => t, advance: (ms: number) => (t += ms) }
  const range = rangeFromSettings({ prefix: '2001:db8:7::/64', rangeStart: '2001:db8:7::100', rangeEnd: o.rangeEnd ?? '2001:db8:7::1ff' })
  const store = new Lease6Store({ range, maxLeases: o.maxLeases ?? 1000, maxIasPerClient: o.maxIasPerClient ?? 4, exclude: [ipv6ToBigint(SERVER)!], now: clock.now })
  const handler = createDhcp6Handler({
    config: {
      serverDuid: SERVER_DUID, serverAddress: SERVER, preferredSeconds: 3600, validSeconds: 7200, offerSeconds: 30, declineSeconds: 600,
      rapidCommit: true, preference: 255, dnsServers: ['2001:db8:7::53'],
      boot: {
        bootFiles: { bios: 'undionly.kpxe', uefiX64: 'ipxe.efi', uefiArm64: 'grubnetaa64.efi' },
        archBootFiles: {},
        scriptUrl: 'http://[2001:db8:7::1]:8080/boot.ipxe',
        httpBootUrl: (loader) => `http://[2001:db8:7::1]:8080/assets/ipxe/${loader}`,
        nextServer: SERVER,
      },
      ...o.config,
    },
    store, log: silentLogger(), now: clock.now,
    ...(o.advise ? { advise: o.advise } : {}),
    ...(o.adviseTimeoutMs !== undefined ? { adviseTimeoutMs: o.adviseTimeoutMs } : {}),
  })
  // Every reply goes through the wire format and back, as the socket would send it.
  const handle = async (d: Dhcp6Decoded): Promise<Dhcp6Result> => {
    const r = await handler.handle(d)
    if (r.kind === 'reply') {
      const back = decode6(encode6(r.reply))
      assert.ok(back.ok)
      return { ...r, reply: { message: back.message, relays: back.relays } }
    }
    return r
  }
  return { handle, store, clock }
}

function reply(r: Dhcp6Result) {
  assert.equal(r.kind, 'reply', r.kind === 'ignore' ? `ignored: ${r.reason}` : '')
  return (r as Extract<Dhcp6Result, { kind: 'reply' }>).reply.message
}

function iaAddrs(options: Options6) {
  return allOptions(options, Option6.IaNa).map((raw) => {
    const ia = decodeIaNa(raw)!
    return {
      iaid: ia.iaid, t1: ia.t1, t2: ia.t2,
      status: decodeStatus(firstOption(ia.options, Option6.StatusCode) ?? Buffer.alloc(0))?.code ?? null,
      addrs: allOptions(ia.options, Option6.IaAddr).map((a) => decodeIaAddr(a)!),
    }
  })
}

const text = (b: Buffer | undefined) => b?.toString('utf8')
const topStatus = (o: Options6) => decodeStatus(firstOption(o, Option6.StatusCode) ?? Buffer.alloc(0))?.code

test('SOLICIT → ADVERTISE (preference 255, an address held), REQUEST → REPLY binds it, RENEW extends it', async () => {
  const { handle, store, clock } = setup()
  const adv = reply((await handle(direct(clientMessage(MessageType6.Solicit, { ias: [{ iaid: 7 }] })))))
  assert.equal(adv.type, MessageType6.Advertise)
  assert.equal(adv.transactionId, 0x123456)
  assert.deepEqual(firstOption(adv.options, Option6.ServerId), SERVER_DUID)
  assert.deepEqual(firstOption(adv.options, Option6.ClientId), CLIENT_DUID)
  assert.deepEqual(firstOption(adv.options, Option6.Preference), Buffer.from([255]))
  const [ia] = iaAddrs(adv.options)
  assert.equal(ia!.iaid, 7)
  assert.equal(ia!.t1, 1800)
  assert.equal(ia!.t2, 2880)
  const offered = ia!.addrs[0]!
  assert.ok(store.inRange(ipv6ToBigint(offered.address)!))
  assert.equal(offered.preferred, 3600)
  assert.equal(offered.valid, 7200)
  assert.equal(store.list()[0]!.state, 'offered')
  assert.equal(store.list()[0]!.mac, CLIENT_MAC, 'MAC from the DUID-LLT')
  // Not a netboot client and no ORO: no boot file, no DNS.
  assert.equal(firstOption(adv.options, Option6.BootfileUrl), undefined)

  const rep = reply((await handle(direct(clientMessage(MessageType6.Request, { serverId: SERVER_DUID, ias: [{ iaid: 7, addresses: [offered.address] }] })))))
  assert.equal(rep.type, MessageType6.Reply)
  assert.equal(iaAddrs(rep.options)[0]!.addrs[0]!.address, offered.address)
  assert.equal(store.list()[0]!.state, 'bound')

  clock.advance(3_000_000)
  const ren = reply((await handle(direct(clientMessage(MessageType6.Renew, { serverId: SERVER_DUID, ias: [{ iaid: 7, addresses: [offered.address] }] })))))
  assert.equal(iaAddrs(ren.options)[0]!.addrs[0]!.valid, 7200)
  assert.equal(store.list()[0]!.expiresAt, clock.now() + 7_200_000)
})

test('an advertised address is held only offerSeconds; the same client gets the same address again', async () => {
  const { handle, store, clock } = setup()
  const first = iaAddrs(reply((await handle(direct(clientMessage(MessageType6.Solicit, { ias: [{ iaid: 1 }] }))))).options)[0]!.addrs[0]!.address
  clock.advance(31_000)
  assert.equal(store.used(), 0, 'the offer expired')
  const again = iaAddrs(reply((await handle(direct(clientMessage(MessageType6.Solicit, { ias: [{ iaid: 1 }] }))))).options)[0]!.addrs[0]!.address
  assert.equal(again, first)
})

test('messages for another server, or missing what RFC 8415 §16 requires, are not answered', async () => {
  const { handle } = setup()
  const other = duidUuid()
  const cases: [Dhcp6Result, string][] = [
    [(await handle(direct(clientMessage(MessageType6.Request, { serverId: other, ias: [{ iaid: 1 }] })))), 'other-server'],
    [(await handle(direct(clientMessage(MessageType6.Request, { ias: [{ iaid: 1 }] })))), 'no-server-id'],
    [(await handle(direct(clientMessage(MessageType6.Solicit, { serverId: SERVER_DUID, ias: [{ iaid: 1 }] })))), 'unexpected-server-id'],
    [(await handle(direct(clientMessage(MessageType6.Solicit, { duid: null, ias: [{ iaid: 1 }] })))), 'no-client-id'],
    [(await handle(direct(clientMessage(MessageType6.Solicit, { duid: Buffer.from([0, 1]), ias: [{ iaid: 1 }] })))), 'bad-client-id'],
    [(await handle(direct(clientMessage(MessageType6.Advertise, {})))), 'not-client-message'],
    [(await handle(direct(clientMessage(MessageType6.Solicit, { extra: [{ code: Option6.IaNa, data: Buffer.alloc(5) }] })))), 'malformed-ia'],
    [(await handle(direct(clientMessage(MessageType6.Confirm, { ias: [{ iaid: 1 }] })))), 'confirm-without-addresses'],
  ]
  for (const [r, reason] of cases) assert.deepEqual(r.kind === 'ignore' ? r.reason : `replied ${r.type}`, reason)
})

test('rapid commit: SOLICIT with Rapid Commit → REPLY with the address bound', async () => {
  const { handle, store } = setup()
  const r = reply((await handle(direct(clientMessage(MessageType6.Solicit, { ias: [{ iaid: 3 }], rapidCommit: true })))))
  assert.equal(r.type, MessageType6.Reply)
  assert.ok(firstOption(r.options, Option6.RapidCommit))
  assert.equal(store.list()[0]!.state, 'bound')
  const off = setup({ config: { rapidCommit: false } })
  assert.equal(reply((await off.handle(direct(clientMessage(MessageType6.Solicit, { ias: [{ iaid: 3 }], rapidCommit: true }))))).type, MessageType6.Advertise)
})

test('RELEASE frees, DECLINE takes the address out of the pool, REBIND and CONFIRM check the link', async () => {
  const { handle, store, clock } = setup()
  const bind = async (iaid: number) => iaAddrs(reply((await handle(direct(clientMessage(MessageType6.Solicit, { ias: [{ iaid }], rapidCommit: true }))))).options)[0]!.addrs[0]!.address
  const a = (await bind(1))
  const rel = reply((await handle(direct(clientMessage(MessageType6.Release, { serverId: SERVER_DUID, ias: [{ iaid: 1, addresses: [a] }] })))))
  assert.equal(topStatus(rel.options), StatusCode6.Success)
  assert.equal(store.used(), 0)
  const relAgain = reply((await handle(direct(clientMessage(MessageType6.Release, { serverId: SERVER_DUID, ias: [{ iaid: 1, addresses: [a] }] })))))
  assert.equal(iaAddrs(relAgain.options)[0]!.status, StatusCode6.NoBinding)

  const b = (await bind(2))
  reply((await handle(direct(clientMessage(MessageType6.Decline, { serverId: SERVER_DUID, ias: [{ iaid: 2, addresses: [b] }] })))))
  assert.deepEqual(store.list().map((l) => [l.address, l.state, l.duid]), [[b, 'declined', '']])
  clock.advance(601_000)
  assert.equal(store.used(), 0, 'declined addresses come back after declineSeconds')

  // REBIND: an address off the link gets lifetimes 0 (and the client gets a usable one beside it).
  const rb = reply((await handle(direct(clientMessage(MessageType6.Rebind, { ias: [{ iaid: 4, addresses: ['2001:db8:99::5'] }] })))))
  const addrs = iaAddrs(rb.options)[0]!.addrs
  assert.deepEqual(addrs.map((x) => x.valid), [0])
  // REBIND after a restart (no binding) for a free address in the range: the binding is re-created.
  const rb2 = reply((await handle(direct(clientMessage(MessageType6.Rebind, { ias: [{ iaid: 5, addresses: ['2001:db8:7::150'] }] })))))
  assert.deepEqual(iaAddrs(rb2.options)[0]!.addrs.map((x) => [x.address, x.valid]), [['2001:db8:7::150', 7200]])
  // ... but not when another client holds it.
  const thief = duidUuid()
  const rb3 = reply((await handle(direct(clientMessage(MessageType6.Rebind, { duid: thief, ias: [{ iaid: 5, addresses: ['2001:db8:7::150'] }] })))))
  assert.deepEqual(iaAddrs(rb3.options)[0]!.addrs.map((x) => [x.address, x.valid]), [['2001:db8:7::150', 0]])

  const on = reply((await handle(direct(clientMessage(MessageType6.Confirm, { ias: [{ iaid: 1, addresses: ['2001:db8:7::abcd'] }] })))))
  assert.equal(topStatus(on.options), StatusCode6.Success)
  const offLink = reply((await handle(direct(clientMessage(MessageType6.Confirm, { ias: [{ iaid: 1, addresses: ['2001:db8:8::1'] }] })))))
  assert.equal(topStatus(offLink.options), StatusCode6.NotOnLink)
})

test('netboot: PXEv6 gets tftp://[server]/loader by arch, HTTP boot the http URL with vendor class HTTPClient echoed, iPXE its script', async () => {
  const { handle } = setup()
  const boot = async (o: Parameters<typeof clientMessage>[1]) => {
    const m = reply((await handle(direct(clientMessage(MessageType6.Solicit, { ias: [{ iaid: 1 }], ...o })))))
    return { url: text(firstOption(m.options, Option6.BootfileUrl)), vc: decodeVendorClass6(firstOption(m.options, Option6.VendorClass)), dns: decodeAddressList(firstOption(m.options, Option6.DnsServers)) }
  }
  // OVMF PXEv6 (x64): option 61 = 7 and vendor class PXEClient.
  const pxe = (await boot({ arch: 7, vendorClass: 'PXEClient:Arch:00007:UNDI:003000', oro: [59, 60, 23, 24] }))
  assert.equal(pxe.url, 'tftp://[2001:db8:7::1]/ipxe.efi')
  assert.equal(pxe.vc, undefined)
  assert.deepEqual(pxe.dns, ['2001:db8:7::53'])
  // AAVMF PXEv6: the arm64 loader of the DHCPv4 table.
  assert.equal((await boot({ arch: 11, oro: [59] })).url, 'tftp://[2001:db8:7::1]/grubnetaa64.efi')
  // UEFI HTTPv6 boot.
  const http = (await boot({ arch: 16, vendorClass: 'HTTPClient:Arch:00016:UNDI:003000', oro: [59, 23] }))
  assert.equal(http.url, 'http://[2001:db8:7::1]:8080/assets/ipxe/ipxe.efi')
  assert.deepEqual(http.vc, { enterprise: 343, classes: ['HTTPClient'] })
  // iPXE (user class "iPXE", and it says PXEClient and arch 7 too): the script, never the binary again.
  assert.equal((await boot({ arch: 7, vendorClass: 'PXEClient:Arch:00007:UNDI:003010', userClass: 'iPXE', oro: [59] })).url, 'http://[2001:db8:7::1]:8080/boot.ipxe')
  // Arch from the vendor class alone.
  assert.equal((await boot({ vendorClass: 'PXEClient:Arch:00011:UNDI:003000' })).url, 'tftp://[2001:db8:7::1]/grubnetaa64.efi')
  // An architecture with no loader: no boot file at all.
  assert.equal((await boot({ arch: 2, oro: [59] })).url, undefined)
  // INFORMATION-REQUEST (stateless, as iPXE does with the O flag alone) gets the same options.
  const info = reply((await handle(direct(clientMessage(MessageType6.InformationRequest, { userClass: 'iPXE', oro: [59, 23] })))))
  assert.equal(text(firstOption(info.options, Option6.BootfileUrl)), 'http://[2001:db8:7::1]:8080/boot.ipxe')
  assert.equal(firstOption(info.options, Option6.IaNa), undefined)
})

test('relayed: served when the relay link is in the prefix; relay-repl mirrors the chain with Interface-Id; MAC from option 79', async () => {
  const { handle, store } = setup()
  const ll = Buffer.from('0001aabbccddeeff', 'hex')
  const req = relayed(clientMessage(MessageType6.Solicit, { duid: duidUuid(), ias: [{ iaid: 1 }] }), [
    { linkAddress: '2001:db8:100::1', peerAddress: '2001:db8:100::2', options: [{ code: Option6.InterfaceId, data: Buffer.from('if-outer') }] },
    { linkAddress: '2001:db8:7::2', peerAddress: 'fe80::1', options: [{ code: Option6.InterfaceId, data: Buffer.from('if-7') }, { code: Option6.ClientLinkLayerAddr, data: ll }] },
  ])
  const r = (await handle(req))
  assert.equal(r.kind, 'reply')
  const out = (r as Extract<Dhcp6Result, { kind: 'reply' }>).reply
  assert.equal(out.relays.length, 2)
  assert.deepEqual(out.relays.map((h) => [h.type, h.hopCount, h.linkAddress, h.peerAddress, text(firstOption(h.options, Option6.InterfaceId))]), [
    [MessageType6.RelayRepl, 1, '2001:db8:100::1', '2001:db8:100::2', 'if-outer'],
    [MessageType6.RelayRepl, 0, '2001:db8:7::2', 'fe80::1', 'if-7'],
  ])
  assert.equal(firstOption(out.relays[1]!.options, Option6.ClientLinkLayerAddr), undefined, 'only Interface-Id is echoed')
  assert.equal(out.message.type, MessageType6.Advertise)
  assert.equal(store.list()[0]!.mac, 'aa:bb:cc:dd:ee:ff')
  // A relay on a link rackboot has no range for: not answered.
  const elsewhere = (await handle(relayed(clientMessage(MessageType6.Solicit, { ias: [{ iaid: 1 }] }), [{ linkAddress: '2001:db8:99::1' }])))
  assert.deepEqual(elsewhere.kind === 'ignore' && elsewhere.reason, 'unserved-link')
  // relay-repl arriving at a server is not a client message.
  const repl = relayed(clientMessage(MessageType6.Solicit, { ias: [{ iaid: 1 }] }), [{ linkAddress: '2001:db8:7::1' }])
  repl.relays[0]!.type = MessageType6.RelayRepl
  assert.deepEqual(((await handle(repl)) as { reason?: string }).reason, 'not-client-message')
})

test('bounds: IAs per client, the lease table, and an exhausted range answer NoAddrsAvail', async () => {
  const perClient = setup({ maxIasPerClient: 2 })
  const many = reply((await perClient.handle(direct(clientMessage(MessageType6.Solicit, { ias: [{ iaid: 1 }, { iaid: 2 }, { iaid: 3 }, { iaid: 4 }] })))))
  assert.deepEqual(iaAddrs(many.options).map((ia) => [ia.iaid, ia.addrs.length, ia.status]), [[1, 1, null], [2, 1, null], [3, 0, StatusCode6.NoAddrsAvail], [4, 0, StatusCode6.NoAddrsAvail]])
  assert.equal(perClient.store.used(), 2)

  const table = setup({ maxLeases: 3 })
  for (let i = 0; i < 5; i++) (await table.handle(direct(clientMessage(MessageType6.Solicit, { duid: duidUuid(), ias: [{ iaid: 1 }] }))))
  assert.equal(table.store.used(), 3)
  const full = reply((await table.handle(direct(clientMessage(MessageType6.Solicit, { duid: duidUuid(), ias: [{ iaid: 1 }] })))))
  assert.equal(iaAddrs(full.options)[0]!.status, StatusCode6.NoAddrsAvail)
  assert.equal(topStatus(full.options), StatusCode6.NoAddrsAvail)

  const tiny = setup({ rangeEnd: '2001:db8:7::103' })
  const got = new Set<string>()
  for (let i = 0; i < 6; i++) {
    const r = reply((await tiny.handle(direct(clientMessage(MessageType6.Solicit, { duid: duidUuid(), ias: [{ iaid: 1 }] })))))
    for (const a of iaAddrs(r.options)[0]!.addrs) got.add(a.address)
  }
  assert.deepEqual([...got].sort(), ['2001:db8:7::100', '2001:db8:7::101', '2001:db8:7::102', '2001:db8:7::103'])
})

test('server DUID: made once under dataDir, read back unchanged, a corrupt file refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rb-duid-'))
  try {
    const first = loadServerDuid({ dataDir: dir, type: 'uuid' })
    assert.equal(first.created, true)
    assert.equal(first.duid.readUInt16BE(0), 4)
    assert.equal(readFileSync(join(dir, SERVER_DUID_FILE), 'utf8').trim(), first.duid.toString('hex'))
    const again = loadServerDuid({ dataDir: dir })
    assert.equal(again.created, false)
    assert.deepEqual(again.duid, first.duid)
    writeFileSync(join(dir, SERVER_DUID_FILE), 'zz\n')
    assert.throws(() => loadServerDuid({ dataDir: dir }), /does not hold a DUID/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  assert.equal(macFromDuid(CLIENT_DUID), CLIENT_MAC)
  assert.equal(macFromDuid(duidUuid()), null)
})

test('settings: the range must lie inside the prefix', async () => {
  assert.throws(() => rangeFromSettings({ prefix: '2001:db8:7::/64', rangeStart: '2001:db8:8::1', rangeEnd: '2001:db8:8::9' }), /not inside/)
  assert.throws(() => rangeFromSettings({ prefix: '2001:db8:7::/64', rangeStart: '2001:db8:7::9', rangeEnd: '2001:db8:7::1' }), /after/)
  assert.throws(() => rangeFromSettings({ rangeStart: '2001:db8:7::1', rangeEnd: '2001:db8:7::9' }), /prefix is not set/)
  assert.equal(rangeFromSettings({ prefix: '2001:db8:7::/64', rangeStart: '2001:db8:7::1', rangeEnd: '2001:db8:7::9' }).prefix.text, parsePrefix('2001:db8:7::/64')!.text)
})

test('MAC from a modified EUI-64 link-local address; none from other addresses', async () => {
  assert.equal(macFromLinkLocal('fe80::5054:ff:fe1a:b062'), '52:54:00:1a:b0:62')
  assert.equal(macFromLinkLocal('fe80::5054:ff:fe1a:b062%eth0'), '52:54:00:1a:b0:62', 'a zone index is ignored')
  assert.equal(macFromLinkLocal('fe80::ff:fe00:1'), '02:00:00:00:00:01', 'the universal/local bit flipped back')
  assert.equal(macFromLinkLocal('fe80::1'), null, 'not EUI-64')
  assert.equal(macFromLinkLocal('fe80::a1b2:c3d4:e5f6:789a'), null, 'a stable-opaque or privacy address')
  assert.equal(macFromLinkLocal('2001:db8::5054:ff:fe1a:b062'), null, 'not link-local')
  assert.equal(macFromLinkLocal('not an address'), null)
})

test('the binding journal: bound and extended bindings, ended ones as null; an offer is not journalled; off by default', async () => {
  const range = rangeFromSettings({ prefix: '2001:db8:7::/64', rangeStart: '2001:db8:7::100', rangeEnd: '2001:db8:7::1ff' })
  let t = 1_000
  const store = new Lease6Store({ range, maxLeases: 100, maxIasPerClient: 4, now: () => t, journal: true })
  const c = { duid: 'aa', iaid: 1, mac: '52:54:00:00:00:01' }
  const offered = store.take(c, 'offered', 30_000)
  assert.ok(offered.ok)
  assert.equal(store.drainChanges().size, 0, 'an offer is not a binding')
  const bound = store.take(c, 'bound', 60_000)
  assert.ok(bound.ok)
  assert.deepEqual([...store.drainChanges()].map(([a, l]) => [a, l?.state]), [[bound.lease.address, 'bound']])
  t += 10_000
  assert.notEqual(store.extend(c, bound.lease.address, 60_000), 'taken')
  assert.equal(store.drainChanges().get(bound.lease.address)?.expiresAt, t + 60_000)
  assert.ok(store.release(c, bound.lease.address))
  assert.deepEqual([...store.drainChanges()], [[bound.lease.address, null]])
  // Restored bindings are held again, but never over a live one or past their expiry.
  assert.ok(store.restore({ ...bound.lease, expiresAt: t + 5_000 }))
  assert.equal(store.restore({ ...bound.lease, duid: 'bb', expiresAt: t + 5_000 }), false, 'the address is held')
  assert.equal(store.restore({ ...bound.lease, address: bound.lease.address + 1n, duid: 'cc', expiresAt: t - 1 }), false, 'expired')
  const quiet = new Lease6Store({ range, maxLeases: 100, maxIasPerClient: 4, now: () => t })
  assert.ok(quiet.take(c, 'bound', 60_000).ok)
  assert.equal(quiet.drainChanges().size, 0, 'no journal (and no growth) unless asked')
})

test("per-machine advice as DHCPv4's: maintenance keeps the address but drops the boot URL; an override replaces the loader; slow advice is not waited for", async () => {
  let advice: DhcpBootAdvice | 'never' = {}
  const asked: Dhcp6AdviceRequest[] = []
  const { handle } = setup({
    adviseTimeoutMs: 30,
    advise: async (r) => {
      asked.push(r)
      return advice === 'never' ? new Promise<never>(() => undefined) : advice
    },
  })
  const PXE = { arch: 7, vendorClass: 'PXEClient:Arch:00007:UNDI:003000', oro: [59, 23] }
  const IPXE = { arch: 7, vendorClass: 'PXEClient:Arch:00007:UNDI:003010', userClass: 'iPXE', oro: [59] }
  const HTTP = { arch: 16, vendorClass: 'HTTPClient:Arch:00016:UNDI:003000', oro: [59] }
  const solicit = async (o: Parameters<typeof clientMessage>[1], type: number = MessageType6.Solicit) => {
    const m = reply(await handle(direct(clientMessage(type, { ias: [{ iaid: 1 }], ...(type === MessageType6.Request ? { serverId: SERVER_DUID } : {}), ...o }))))
    return { url: text(firstOption(m.options, Option6.BootfileUrl)), vc: firstOption(m.options, Option6.VendorClass), addrs: iaAddrs(m.options)[0]?.addrs.length ?? 0 }
  }

  // No advice: the table's choice.
  assert.equal((await solicit(PXE)).url, 'tftp://[2001:db8:7::1]/ipxe.efi')
  assert.equal(asked.at(-1)!.mac, CLIENT_MAC)
  assert.deepEqual(asked.at(-1)!.planned, { kind: 'tftp', file: 'ipxe.efi', nextServer: SERVER, reason: 'pxe: x64 UEFI', setting: 'dhcp.bootFiles.uefiX64' })

  // Maintenance (DHCPv4 sends the lease without boot options): the address, no option 59, no HTTPClient class.
  advice = { ignore: true, reason: 'machine is in maintenance' }
  for (const [o, type] of [[PXE, MessageType6.Solicit], [IPXE, MessageType6.Request], [HTTP, MessageType6.Solicit]] as const) {
    const r = await solicit(o, type)
    assert.equal(r.url, undefined, `no boot URL for ${JSON.stringify(o)}`)
    assert.equal(r.vc, undefined)
    assert.equal(r.addrs, 1, 'the address is still served')
  }

  // An override boot file: a name for firmware PXE, a URL for iPXE and HTTP boot (dhcp/boot-file.ts chooseBoot).
  advice = { bootFile: 'snponly.efi' }
  assert.equal((await solicit(PXE)).url, 'tftp://[2001:db8:7::1]/snponly.efi')
  advice = { bootFile: 'snponly.efi', nextServer: '2001:db8:7::9' }
  assert.equal((await solicit(PXE)).url, 'tftp://[2001:db8:7::9]/snponly.efi')
  advice = { bootFile: 'http://[2001:db8:7::1]:8080/custom.ipxe' }
  assert.equal((await solicit(IPXE, MessageType6.Request)).url, 'http://[2001:db8:7::1]:8080/custom.ipxe')
  assert.equal((await solicit(HTTP)).url, 'http://[2001:db8:7::1]:8080/custom.ipxe')

  // Advice that never comes: the reply goes out with the table's choice after the timeout.
  advice = 'never'
  const started = Date.now()
  assert.equal((await solicit(PXE)).url, 'tftp://[2001:db8:7::1]/ipxe.efi')
  assert.ok(Date.now() - started < 1000)

  // Not a network-boot client: nobody is asked.
  const before = asked.length
  await solicit({})
  assert.equal(asked.length, before)
})

test('firmwareAwaitingRoute: UEFI firmware on the link that was just bound an address, at its link-local; not iPXE, a relayed client, a SOLICIT answered by ADVERTISE, or a reply that bound nothing', async () => {
  const { handle } = setup({ rangeEnd: '2001:db8:7::100' })
  const LL = 'fe80::5054:ff:fe12:3456'
  const pxe = { arch: 7, vendorClass: 'PXEClient:Arch:00007:UNDI:003016' }
  const adv = await handle(direct(clientMessage(MessageType6.Solicit, { ias: [{ iaid: 1 }], ...pxe })))
  assert.equal(firmwareAwaitingRoute(adv, LL), null, 'an ADVERTISE binds nothing yet')
  const offered = iaAddrs(reply(adv).options)[0]!.addrs[0]!.address
  const bound = await handle(direct(clientMessage(MessageType6.Request, { serverId: SERVER_DUID, ias: [{ iaid: 1, addresses: [offered] }], ...pxe })))
  assert.equal(firmwareAwaitingRoute(bound, `${LL}%eth0`), LL, 'the firmware, zone dropped')
  assert.equal(firmwareAwaitingRoute(bound, null), null)
  assert.equal(firmwareAwaitingRoute(bound, '2001:db8:7::99'), null, 'not from a link-local address')
  const http = await handle(direct(clientMessage(MessageType6.Solicit, { ias: [{ iaid: 1 }], arch: 16, vendorClass: 'HTTPClient:Arch:00016:UNDI:003016', rapidCommit: true })))
  assert.equal(firmwareAwaitingRoute(http, LL), LL, 'HTTP boot firmware, rapid commit')
  const ipxe = await handle(direct(clientMessage(MessageType6.Request, { serverId: SERVER_DUID, ias: [{ iaid: 1, addresses: [offered] }], ...pxe, userClass: 'iPXE' })))
  assert.equal(firmwareAwaitingRoute(ipxe, LL), null, 'iPXE')
  const os = await handle(direct(clientMessage(MessageType6.Request, { serverId: SERVER_DUID, ias: [{ iaid: 1, addresses: [offered] }] })))
  assert.equal(firmwareAwaitingRoute(os, LL), null, 'not a network-boot client')
  const viaRelay = await handle(relayed(clientMessage(MessageType6.Request, { serverId: SERVER_DUID, ias: [{ iaid: 1, addresses: [offered] }], ...pxe }), [{ linkAddress: '2001:db8:7::2', peerAddress: LL }]))
  assert.equal(firmwareAwaitingRoute(viaRelay, LL), null, 'relayed: another link')
  // The one address is taken: the next firmware's REPLY says NoAddrsAvail and binds nothing.
  const other = await handle(direct(clientMessage(MessageType6.Request, { duid: duidUuid(), serverId: SERVER_DUID, ias: [{ iaid: 2, addresses: [offered] }], ...pxe })))
  assert.equal(reply(other).type, MessageType6.Reply)
  assert.equal(iaAddrs(reply(other).options)[0]!.addrs.filter((a) => a.valid > 0).length, 0)
  assert.equal(firmwareAwaitingRoute(other, 'fe80::1'), null, 'nothing bound')
})
