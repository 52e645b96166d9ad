// Random, truncated and mutated datagrams at a live server: every one is dropped or answered, none escapes the
// socket handler, and the server keeps answering valid requests in between.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { encode, tryDecode } from '../../src/dhcp/codec.js'
import { MessageType, OptionCode, getMessageType } from '../../src/dhcp/options.js'
import { FIRMWARE, request } from './packets.js'
import { LINK, RELAY, startLoopbackServer } from './loopback.js'

function rng(seed: number) {
  let s = seed >>> 0
  return (n: number) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s % n
  }
}

/** Valid requests of every kind, as mutation seeds. */
function seeds(): Buffer[] {
  const link: [number, Buffer][] = [[OptionCode.SubnetSelection, Buffer.from(LINK.split('.').map(Number))]]
  const base = { mac: '52:54:00:ff:00:01', giaddr: RELAY, extra: link }
  return [
    encode(request({ type: MessageType.Discover, ...base, ...FIRMWARE.ipxeBios, uuid: '8c3f5a7e-1b2d-4c6e-9f01-23456789abcd', clientId: '015254000000ff' })),
    encode(request({ type: MessageType.Request, ...base, ...FIRMWARE.ovmfHttp, requestedIp: '198.18.60.20', serverId: '127.0.0.1' })),
    encode(request({ type: MessageType.Request, ...base, ciaddr: '198.18.60.21' })),
    encode(request({ type: MessageType.Inform, ...base, ciaddr: '198.18.60.22', ...FIRMWARE.aavmfPxe })),
    encode(request({ type: MessageType.Release, ...base, ciaddr: '198.18.60.21', serverId: '127.0.0.1' })),
    encode(request({ type: MessageType.Decline, ...base, requestedIp: '198.18.60.20', serverId: '127.0.0.1', extra: [...link, [OptionCode.RelayAgentInformation, Buffer.from([1, 2, 3, 4, 5, 4, 198, 18, 60, 0])]] })),
  ]
}

function mutate(buf: Buffer, r: (n: number) => number): Buffer {
  const out = Buffer.from(buf)
  switch (r(6)) {
    case 0: // truncate anywhere
      return out.subarray(0, r(out.length + 1))
    case 1: // flip bytes, mostly in the options area
      for (let i = 0, n = 1 + r(8); i < n; i++) out[r(2) ? 240 + r(Math.max(1, out.length - 240)) : r(out.length)] = r(256)
      return out
    case 2: // a length byte set to something wild
      if (out.length > 241) out[241 + r(out.length - 241)] = [0, 1, 2, 255, 254, 128][r(6)]!
      return out
    case 3: // overload flags with garbage in file/sname
      return Buffer.concat([out.subarray(0, 240), Buffer.from([52, 1, 1 + r(3)]), out.subarray(240)]).fill(r(256), 44, 236)
    case 4: // append junk after END
      return Buffer.concat([out, Buffer.from(Array.from({ length: r(64) }, () => r(256)))])
    default: // duplicate options (RFC 3396 concatenation of odd pieces)
      return Buffer.concat([out.subarray(0, out.length - 1), out.subarray(240)])
  }
}

test('fuzz: the server survives random, truncated and mutated datagrams and keeps answering', async (t) => {
  const lb = await startLoopbackServer()
  t.after(() => lb.close())
  const r = rng(20261122)
  const pool = seeds()
  let sent = 0
  let decodable = 0
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 150; i++) {
      let buf: Buffer
      const kind = r(4)
      if (kind === 0) buf = Buffer.from(Array.from({ length: r(700) }, () => r(256)))
      else if (kind === 1) buf = pool[r(pool.length)]!.subarray(0, r(300))
      else buf = mutate(pool[r(pool.length)]!, r)
      if (tryDecode(buf).ok) decodable++
      await lb.sendRaw(buf)
      sent++
    }
    // Still alive and correct after each batch.
    const offer = await lb.exchange({ type: MessageType.Discover, xid: 0x7000_0000 + round, mac: `52:54:00:ee:00:${round.toString(16).padStart(2, "0")}`, ...FIRMWARE.biosPxe }, 10_000)
    assert.ok(offer, `no OFFER after ${sent} fuzzed datagrams`)
    assert.equal(getMessageType(offer.options), MessageType.Offer)
    assert.equal(offer.file, 'undionly.kpxe')
  }
  const m = await lb.registry.metrics()
  const dropped = [...m.matchAll(/rackboot_dhcp_dropped_total\{reason="malformed:[^"]+"\} (\d+)/g)].reduce((n, x) => n + Number(x[1]), 0)
  assert.ok(dropped > 0 && dropped <= sent - decodable + 0, `malformed drops ${dropped}, sent ${sent}, decodable ${decodable}`)
  assert.doesNotMatch(m, /reason="handler-error"/)
  assert.doesNotMatch(m, /reason="encode-error"/)
})
