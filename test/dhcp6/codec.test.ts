import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { bigintToIpv6, bytesToIpv6, ipv6ToBigint, ipv6ToBytes, parsePrefix } from '../../src/dhcp6/address.js'
import { DEFAULT_LIMITS6, decode6, encode6, encodeMessage6 } from '../../src/dhcp6/codec.js'
import {
  MessageType6, Option6, decodeIaNa, decodeUserClass6, decodeVendorClass6, encodeUserClass6, firstOption,
} from '../../src/dhcp6/options.js'
import { CLIENT_DUID, clientMessage, direct, relayed, wire } from './packets.js'

test('IPv6 text: RFC 5952 output, bigint round trip, prefixes', () => {
  for (const [input, out] of [
    ['2001:db8:0:0:0:0:2:1', '2001:db8::2:1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
    ['::', '::'],
    ['::1', '::1'],
    ['fe80::1%eth0', 'fe80::1'],
    ['::ffff:192.0.2.1', '::ffff:c000:201'],
  ] as const) {
    assert.equal(bytesToIpv6(ipv6ToBytes(input)!), out, input)
    assert.equal(bigintToIpv6(ipv6ToBigint(input)!), out)
  }
  assert.equal(ipv6ToBytes('2001:db8::g'), null)
  assert.equal(ipv6ToBytes('1.2.3.4'), null)
  assert.equal(parsePrefix('2001:db8:1::5/64')!.text, '2001:db8:1::/64')
  assert.equal(parsePrefix('2001:db8::/129'), null)
})

test('a SOLICIT round-trips; options keep their order and repeats', () => {
  const m = clientMessage(MessageType6.Solicit, { ias: [{ iaid: 1 }, { iaid: 2, addresses: ['2001:db8::5'] }], oro: [23, 59], arch: 7 })
  const d = decode6(encodeMessage6(m))
  assert.ok(d.ok)
  assert.equal(d.message.type, MessageType6.Solicit)
  assert.equal(d.message.transactionId, 0x123456)
  assert.deepEqual(d.message.options.map((o) => o.code), m.options.map((o) => o.code))
  assert.deepEqual(firstOption(d.message.options, Option6.ClientId), CLIENT_DUID)
  const ias = d.message.options.filter((o) => o.code === Option6.IaNa).map((o) => decodeIaNa(o.data)!)
  assert.deepEqual(ias.map((ia) => ia.iaid), [1, 2])
  assert.equal(ias[1]!.options.length, 1)
})

test('relay-forw envelopes decode outermost first and re-encode byte for byte', () => {
  const req = relayed(clientMessage(MessageType6.Solicit, { ias: [{ iaid: 9 }] }), [
    { linkAddress: '2001:db8:99::1', peerAddress: '2001:db8:98::2', options: [{ code: Option6.InterfaceId, data: Buffer.from('outer') }] },
    { linkAddress: '2001:db8:7::1', peerAddress: 'fe80::5054:ff:fe12:3456', options: [{ code: Option6.InterfaceId, data: Buffer.from('inner') }] },
  ])
  const bytes = wire(req)
  const d = decode6(bytes)
  assert.ok(d.ok)
  assert.equal(d.relays.length, 2)
  assert.equal(d.relays[0]!.linkAddress, '2001:db8:99::1')
  assert.equal(d.relays[1]!.peerAddress, 'fe80::5054:ff:fe12:3456')
  assert.equal(d.relays[0]!.hopCount, 1)
  assert.deepEqual(firstOption(d.relays[1]!.options, Option6.InterfaceId), Buffer.from('inner'))
  assert.deepEqual(encode6(d), bytes)
})

test('user class and vendor class (RFC 8415 framing; a bare user class string is read too)', () => {
  assert.deepEqual(decodeUserClass6(encodeUserClass6(['iPXE'])), ['iPXE'])
  assert.deepEqual(decodeUserClass6(Buffer.from('iPXE')), ['iPXE'])
  const vc = Buffer.from('00000157002148545450436c69656e743a417263683a30303031363a554e44493a303033303030', 'hex')
  assert.deepEqual(decodeVendorClass6(vc), { enterprise: 343, classes: ['HTTPClient:Arch:00016:UNDI:003000'] })
  assert.equal(decodeVendorClass6(Buffer.from('0000015700ff41', 'hex')), undefined, 'entry longer than the option')
})

// Hostile packets: each must fail with its reason, never throw.
test('hostile: short, truncated option headers, lengths past the end', () => {
  assert.deepEqual(decode6(Buffer.alloc(0)), { ok: false, reason: 'too-short' })
  assert.deepEqual(decode6(Buffer.from([1, 0, 0])), { ok: false, reason: 'too-short' })
  const good = encodeMessage6(clientMessage(MessageType6.Solicit, { ias: [{ iaid: 1 }] }))
  // Cut inside the last option's header, then inside its value.
  assert.deepEqual(decode6(Buffer.concat([good, Buffer.from([0, 1, 0])])), { ok: false, reason: 'truncated-option' })
  assert.deepEqual(decode6(good.subarray(0, good.length - 3)), { ok: false, reason: 'option-overrun' })
  // A length of 65535 in a 20-byte datagram.
  assert.deepEqual(decode6(Buffer.from([1, 0, 0, 1, 0, 1, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])), { ok: false, reason: 'option-overrun' })
  // A relay envelope shorter than its fixed header, and one without a Relay Message option (or with two).
  assert.deepEqual(decode6(Buffer.concat([Buffer.from([12, 0]), Buffer.alloc(20)])), { ok: false, reason: 'relay-too-short' })
  assert.deepEqual(decode6(Buffer.concat([Buffer.from([12, 0]), Buffer.alloc(32)])), { ok: false, reason: 'relay-without-message' })
  const twice = relayed(clientMessage(MessageType6.Solicit), [{ options: [{ code: Option6.RelayMsg, data: good }] }])
  assert.deepEqual(decode6(wire(twice)), { ok: false, reason: 'relay-without-message' })
})

test('hostile: relay nesting is bounded (8 envelopes read, the 9th refused) without recursion', () => {
  const inner = clientMessage(MessageType6.Solicit, { ias: [{ iaid: 1 }] })
  const nest = (n: number) => wire(relayed(inner, Array.from({ length: n }, () => ({ linkAddress: '2001:db8:7::1' }))))
  const eight = decode6(nest(8))
  assert.ok(eight.ok)
  assert.equal(eight.relays.length, 8)
  assert.deepEqual(decode6(nest(9)), { ok: false, reason: 'relay-too-deep' })
  // 1,000 envelopes (34 bytes each plus a 4-byte option header): refused early, whatever the size limit.
  const deep = nest(1000)
  assert.deepEqual(decode6(deep, { ...DEFAULT_LIMITS6, maxBytes: 1 << 20 }), { ok: false, reason: 'relay-too-deep' })
  assert.deepEqual(decode6(deep), { ok: false, reason: 'too-large' })
})

test('hostile: huge option counts and oversized datagrams are refused', () => {
  const many = clientMessage(MessageType6.Solicit, { extra: Array.from({ length: 200 }, () => ({ code: 65000, data: Buffer.alloc(0) })) })
  assert.deepEqual(decode6(encodeMessage6(many)), { ok: false, reason: 'too-many-options' })
  const limit = clientMessage(MessageType6.Solicit, { duid: null, extra: Array.from({ length: 63 }, () => ({ code: 65000, data: Buffer.alloc(0) })) })
  assert.equal(limit.options.length, 64)
  assert.ok(decode6(encodeMessage6(limit)).ok)
  // Options inside an IA_NA are bounded too: a 10,000-sub-option IA_NA does not decode.
  const ia = Buffer.concat([Buffer.alloc(12), Buffer.alloc(4 * 10_000)])
  assert.equal(decodeIaNa(ia), undefined)
  assert.deepEqual(decode6(Buffer.alloc(5000, 1)), { ok: false, reason: 'too-large' })
})

test('fuzz: random and mutated datagrams never throw', () => {
  const seeds = [
    wire(direct(clientMessage(MessageType6.Solicit, { ias: [{ iaid: 1, addresses: ['2001:db8::1'] }], arch: 7, vendorClass: 'PXEClient:Arch:00007:UNDI:003000' }))),
    wire(relayed(clientMessage(MessageType6.Request, { ias: [{ iaid: 1 }] }), [{ linkAddress: '2001:db8::1' }, { linkAddress: '2001:db8::1' }])),
  ]
  for (let i = 0; i < 20_000; i++) {
    let b: Buffer
    if (i % 3 === 0) b = randomBytes(Math.floor(Math.random() * 200))
    else {
      b = Buffer.from(seeds[i % seeds.length]!)
      for (let k = 0; k < 1 + (i % 4); k++) b[Math.floor(Math.random() * b.length)] = Math.floor(Math.random() * 256)
      if (i % 5 === 0) b = b.subarray(0, Math.floor(Math.random() * b.length))
    }
    const d = decode6(b)
    if (d.ok) for (const o of d.message.options) if (o.code === Option6.IaNa) decodeIaNa(o.data)
  }
})
