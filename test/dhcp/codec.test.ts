import assert from 'node:assert/strict'
import { test } from 'node:test'
import {
  BOOTREPLY, DEFAULT_MAX_DHCP_SIZE, HEADER_SIZE, MAGIC_COOKIE, MIN_PACKET_SIZE, decode, emptyPacket, encode,
  hardwareAddress, tryDecode,
} from '../../src/dhcp/codec.js'
import { isRackbootError } from '../../src/errors.js'
import {
  MessageType, OptionCode, formatGuid, getClientArchs, getClientId, getClientUuid, getIps, getMaxMessageSize, getString, guidBytes,
  setString,
} from '../../src/dhcp/options.js'
import { FIRMWARE, request } from './packets.js'

/** A hand-written datagram: header, cookie, then raw option bytes. */
function raw(options: number[], opts: { sname?: Buffer; file?: Buffer } = {}): Buffer {
  const b = Buffer.alloc(HEADER_SIZE + options.length)
  b[0] = 1
  b[1] = 1
  b[2] = 6
  b.writeUInt32BE(0xdeadbeef, 4)
  Buffer.from([0x52, 0x54, 0, 0x1a, 0xb0, 1]).copy(b, 28)
  opts.sname?.copy(b, 44)
  opts.file?.copy(b, 108)
  b.writeUInt32BE(MAGIC_COOKIE, 236)
  Buffer.from(options).copy(b, HEADER_SIZE)
  return b
}

test('round-trips a firmware-shaped DISCOVER with every header field and option', () => {
  const p = request({ type: 1, mac: '52:54:00:1a:b0:02', xid: 0xcafe0001, ...FIRMWARE.ovmfPxe, uuid: '8c3f5a7e-1b2d-4c6e-9f01-23456789abcd', clientId: '015254001ab002', giaddr: '198.18.20.1', flags: 0x8000 })
  p.secs = 4
  const bytes = encode(p)
  assert.ok(bytes.length >= MIN_PACKET_SIZE)
  const back = decode(bytes)
  assert.equal(back.xid, 0xcafe0001)
  assert.equal(back.secs, 4)
  assert.equal(back.flags, 0x8000)
  assert.equal(back.giaddr, '198.18.20.1')
  assert.equal(back.hops, 1)
  assert.equal(hardwareAddress(back), '52:54:00:1a:b0:02')
  assert.equal(getString(back.options, OptionCode.VendorClassIdentifier), 'PXEClient:Arch:00007:UNDI:003000')
  assert.deepEqual(getClientArchs(back.options), [7])
  assert.equal(getClientUuid(back.options), '8c3f5a7e-1b2d-4c6e-9f01-23456789abcd')
  assert.equal(getClientId(back.options), '015254001ab002')
  assert.deepEqual([...back.options.keys()], [...p.options.keys()])
  assert.deepEqual(encode(back), bytes)
})

test('PXE GUIDs keep the SMBIOS byte order (first three fields little-endian)', () => {
  const b = guidBytes('8c3f5a7e-1b2d-4c6e-9f01-23456789abcd')
  assert.equal(b.toString('hex'), '7e5a3f8c2d1b6e4c9f0123456789abcd')
  assert.equal(formatGuid(b), '8c3f5a7e-1b2d-4c6e-9f01-23456789abcd')
})

test('PAD bytes anywhere are skipped, and a missing END is tolerated', () => {
  const p = decode(raw([0, 0, 53, 1, 1, 0, 0, 12, 3, 0x61, 0x62, 0x63, 0]))
  assert.equal(p.options.get(53)?.[0], 1)
  assert.equal(getString(p.options, 12), 'abc')
})

test('options after END are ignored', () => {
  const p = decode(raw([53, 1, 3, 255, 12, 200]))
  assert.deepEqual([...p.options.keys()], [53])
})

test('malformed datagrams are values with a reason, never exceptions', () => {
  const cases: [Buffer, string][] = [
    [Buffer.alloc(0), 'too-short'],
    [Buffer.alloc(1), 'too-short'],
    [raw([53, 1, 1]).subarray(0, 239), 'too-short'],
    [(() => { const b = raw([53, 1, 1]); b.writeUInt32BE(0x63825364, 236); return b })(), 'bad-magic-cookie'],
    [(() => { const b = raw([53, 1, 1]); b[0] = 7; return b })(), 'bad-op'],
    [(() => { const b = raw([53, 1, 1]); b[2] = 17; return b })(), 'bad-hlen'],
    [raw([53, 1, 1, 12, 200, 0x61]), 'truncated-option'],
    [raw([53, 1, 1, 12]), 'truncated-option'],
    [raw([53, 1, 1, 52, 1, 9]), 'bad-overload'],
    [raw([53, 1, 1, 52, 1, 1], { file: Buffer.from([67, 200, 1]) }), 'truncated-option'],
  ]
  for (const [buf, reason] of cases) {
    const r = tryDecode(buf)
    assert.equal(r.ok, false, reason)
    if (!r.ok) assert.equal(r.reason, reason)
  }
  assert.throws(() => decode(Buffer.alloc(10)), (err) => isRackbootError(err, 'RB_ERR_VALIDATION'))
})

test('reads options overloaded into file and sname, in RFC 3396 order (options, file, sname)', () => {
  const file = Buffer.alloc(128)
  Buffer.from([12, 2, 0x63, 0x64, 255]).copy(file)
  const sname = Buffer.alloc(64)
  Buffer.from([12, 1, 0x65, 60, 9, ...Buffer.from('PXEClient'), 255]).copy(sname)
  const p = decode(raw([53, 1, 1, 52, 1, 3, 12, 2, 0x61, 0x62, 255], { file, sname }))
  assert.equal(getString(p.options, 12), 'abcde')
  assert.equal(getString(p.options, 60), 'PXEClient')
  assert.equal(p.file, '')
  assert.equal(p.sname, '')
  assert.equal(p.options.has(52), false)
})

test('file and sname are read as strings when not overloaded', () => {
  const p = decode(raw([53, 1, 2, 255], { file: Buffer.from('undionly.kpxe\0junk'), sname: Buffer.from('boot1') }))
  assert.equal(p.file, 'undionly.kpxe')
  assert.equal(p.sname, 'boot1')
})

test('long options are split into 255-byte pieces and joined on decode (RFC 3396)', () => {
  const p = emptyPacket(BOOTREPLY)
  p.options.set(53, Buffer.from([5]))
  const long = Buffer.alloc(600, 0x41)
  p.options.set(OptionCode.ClasslessStaticRoute, long)
  const bytes = encode(p, { maxSize: 1500 })
  // Three instances of option 121: 255 + 255 + 90.
  let i = HEADER_SIZE
  const lens: number[] = []
  while (bytes[i] !== 255) {
    if (bytes[i] === 121) lens.push(bytes[i + 1]!)
    i += 2 + bytes[i + 1]!
  }
  assert.deepEqual(lens, [255, 255, 90])
  assert.deepEqual(decode(bytes).options.get(121), long)
})

test('options that do not fit the client maximum overflow into file and sname with option 52', () => {
  const p = emptyPacket(BOOTREPLY)
  p.options.set(53, Buffer.from([2]))
  const names = Buffer.alloc(200, 0x62)
  p.options.set(OptionCode.DomainName, Buffer.alloc(150, 0x61))
  p.options.set(OptionCode.BootfileName, names)
  p.options.set(OptionCode.Message, Buffer.alloc(50, 0x63))
  const bytes = encode(p)
  assert.ok(bytes.length <= DEFAULT_MAX_DHCP_SIZE, `encoded ${bytes.length} bytes`)
  const back = decode(bytes)
  assert.ok(back.options.has(OptionCode.DomainName))
  assert.deepEqual(back.options.get(OptionCode.DomainName), Buffer.alloc(150, 0x61))
  assert.deepEqual(back.options.get(OptionCode.BootfileName), names)
  assert.deepEqual(back.options.get(OptionCode.Message), Buffer.alloc(50, 0x63))
  // The raw packet carries option 52.
  assert.ok(bytes.includes(Buffer.from([52, 1])))
})

test('a filled file field is never used for overload; then the datagram grows past the limit instead', () => {
  const p = emptyPacket(BOOTREPLY)
  p.file = 'ipxe.efi'
  p.sname = 'server'
  p.options.set(53, Buffer.from([2]))
  p.options.set(OptionCode.DomainName, Buffer.alloc(400, 0x61))
  const bytes = encode(p)
  assert.ok(bytes.length > DEFAULT_MAX_DHCP_SIZE)
  const back = decode(bytes)
  assert.equal(back.file, 'ipxe.efi')
  assert.equal(back.sname, 'server')
  assert.equal(back.options.get(OptionCode.DomainName)?.length, 400)
})

test('message type is encoded first and unknown options survive a round trip', () => {
  const p = emptyPacket(BOOTREPLY)
  p.options.set(224, Buffer.from('private'))
  p.options.set(53, Buffer.from([2]))
  const back = decode(encode(p))
  assert.deepEqual([...back.options.keys()], [53, 224])
  assert.equal(getString(back.options, 224), 'private')
})

test('replies are padded to 300 bytes', () => {
  const p = emptyPacket(BOOTREPLY)
  p.options.set(53, Buffer.from([5]))
  assert.equal(encode(p).length, 300)
})

test('typed getters return undefined for malformed values instead of throwing', () => {
  const o = new Map<number, Buffer>([
    [OptionCode.ClientSystemArchitecture, Buffer.from([0, 7, 1])],
    [OptionCode.ClientMachineIdentifier, Buffer.from([1, 2, 3])],
    [OptionCode.Router, Buffer.from([1, 2, 3])],
    [OptionCode.MaxMessageSize, Buffer.from([0, 10])],
    [OptionCode.ClientIdentifier, Buffer.from([1])],
  ])
  assert.equal(getClientArchs(o), undefined)
  assert.equal(getClientUuid(o), undefined)
  assert.equal(getIps(o, OptionCode.Router), undefined)
  assert.equal(getMaxMessageSize(o), 576)
  assert.equal(getClientId(o), undefined)
  setString(o, OptionCode.HostName, 'node1\0\0')
  assert.equal(getString(o, OptionCode.HostName), 'node1')
})

test('file names longer than the field are refused by the encoder', () => {
  const p = emptyPacket(BOOTREPLY)
  p.file = 'x'.repeat(128)
  assert.throws(() => encode(p), RangeError)
})

test('random option sets survive encode/decode at any maximum size (overload and splitting included)', () => {
  let seed = 12345
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    return seed % n
  }
  for (let round = 0; round < 500; round++) {
    const p = emptyPacket(BOOTREPLY)
    p.options.set(53, Buffer.from([5]))
    const count = 1 + rand(12)
    for (let i = 0; i < count; i++) {
      const code = 1 + rand(253)
      if (code === 52 || code === 53) continue
      const len = rand(4) === 0 ? rand(700) : rand(60)
      p.options.set(code, Buffer.from(Array.from({ length: len }, () => rand(256))))
    }
    if (rand(3) === 0) p.file = 'undionly.kpxe'
    const maxSize = 300 + rand(1200)
    const back = decode(encode(p, { maxSize }))
    assert.deepEqual(new Map([...back.options].sort((a, b) => a[0] - b[0])), new Map([...p.options].sort((a, b) => a[0] - b[0])), `round ${round}`)
    assert.equal(back.file, p.file)
  }
})

test('tryDecode copies the datagram unless the caller owns it: a reused input buffer does not change a decoded packet', () => {
  const bytes = encode(request({ type: MessageType.Discover, mac: '52:54:00:12:34:56', hostname: 'node-1' }))
  const copied = tryDecode(bytes)
  const viewed = tryDecode(bytes, true)
  assert.ok(copied.ok && viewed.ok)
  bytes.fill(0xee)
  assert.equal(hardwareAddress(copied.packet), '52:54:00:12:34:56')
  assert.equal(copied.packet.options.get(OptionCode.HostName)?.toString(), 'node-1')
  // Owned: views into the caller's buffer, no copy (the server passes each datagram's own buffer).
  assert.equal(viewed.packet.options.get(OptionCode.HostName)?.[0], 0xee)
})
