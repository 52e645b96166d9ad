// RMCP+ key exchange and packet protection, checked against an independent implementation: Python's hmac/hashlib
// compute RAKP2/RAKP3 auth codes, SIK, K1, K2, the RAKP4 ICV and a packet AuthCode from the spec's field lists
// (IPMI v2.0 §13.31-13.32), for cipher suites 3 and 17; openssl decrypts what AES-CBC-128 produced.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { test } from 'node:test'
import {
  CIPHER_SUITES, decryptPayload, deriveKeys, encryptPayload, packetAuthCode, rakp2AuthCode, rakp3AuthCode, rakp4Icv,
  sessionIntegrityKey, suiteByAlgorithms, type RakpContext,
} from '../../src/power/ipmi/crypto.js'
import { decodePacket, decodeResponse, encodeRequest, encodeV20 } from '../../src/power/ipmi/packet.js'
import { bootMatches, decodeBootFlags, encodeBootFlags, verifiedFields } from '../../src/power/ipmi/boot-flags.js'
import { completionError, provesNotRun } from '../../src/power/ipmi/completion.js'

// Written from the spec's field lists, not from src/: little-endian session IDs, ROLE byte, name length, name.
const PYTHON = String.raw`
import hmac, hashlib, json, struct, sys
a = json.loads(sys.argv[1])
h = getattr(hashlib, a['hash'])
kuid = bytes.fromhex(a['password']).ljust(20, b'\0')  # Kuid: the password, 20 bytes zero-padded
sidm = struct.pack('<I', a['sidm']); sidc = struct.pack('<I', a['sidc'])
rm, rc, guid = bytes.fromhex(a['rm']), bytes.fromhex(a['rc']), bytes.fromhex(a['guid'])
name = bytes.fromhex(a['user']); role = bytes([a['role'], len(name)]) + name
mac = lambda k, m: hmac.new(k, m, h).digest()
sik = mac(bytes.fromhex(a['kg']) if a['kg'] else kuid, rm + rc + role)
k1 = mac(sik, b'\x01' * 20); k2 = mac(sik, b'\x02' * 20)
icv_len = 12 if a['hash'] == 'sha1' else 16
print(json.dumps({
  'rakp2': mac(kuid, sidm + sidc + rm + rc + guid + role).hex(),
  'rakp3': mac(kuid, rc + sidm + role).hex(),
  'sik': sik.hex(), 'k1': k1.hex(), 'k2': k2.hex(),
  'rakp4': mac(sik, rm + sidc + guid)[:icv_len].hex(),
  'auth': mac(k1, bytes.fromhex(a['covered']))[:icv_len].hex(),
}))
`

const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : null

function context(): RakpContext {
  return {
    consoleSessionId: 0xa1b2c3d4,
    bmcSessionId: 0x00010203,
    consoleRandom: Buffer.from('00112233445566778899aabbccddeeff', 'hex'),
    bmcRandom: Buffer.from('f0e1d2c3b4a5968778695a4b3c2d1e0f', 'hex'),
    bmcGuid: Buffer.from('a123456789abcdefa123456789abcdef', 'hex'),
    role: 0x14,
    username: Buffer.from('admin'),
  }
}

for (const id of [3, 17] as const) {
  for (const kg of [null, Buffer.from('0102030405060708090a0b0c0d0e0f1011121314', 'hex')]) {
    test(`cipher suite ${id}${kg ? ' with K_G' : ''}: RAKP codes, SIK, K1, K2 and AuthCode match an independent implementation`,
      { skip: python ? false : 'needs /usr/bin/python3' }, () => {
        const suite = CIPHER_SUITES[id]
        const ctx = context()
        const password = Buffer.from('p@ssw0rd-Ünïcode')
        const keys = deriveKeys(suite, password, kg, ctx)
        const covered = Buffer.from('06c0d4c3b2a101000000200000', 'hex')
        const r = spawnSync(python!, ['-c', PYTHON, JSON.stringify({
          hash: suite.hash, password: password.toString('hex'), kg: kg?.toString('hex') ?? '',
          sidm: ctx.consoleSessionId, sidc: ctx.bmcSessionId, rm: ctx.consoleRandom.toString('hex'),
          rc: ctx.bmcRandom.toString('hex'), guid: ctx.bmcGuid.toString('hex'), user: ctx.username.toString('hex'),
          role: ctx.role, covered: covered.toString('hex'),
        })], { encoding: 'utf8' })
        assert.equal(r.status, 0, r.stderr)
        const want = JSON.parse(r.stdout) as Record<string, string>
        assert.equal(rakp2AuthCode(suite, password, ctx).toString('hex'), want.rakp2)
        assert.equal(rakp3AuthCode(suite, password, ctx).toString('hex'), want.rakp3)
        assert.equal(keys.sik.toString('hex'), want.sik)
        assert.equal(keys.k1.toString('hex'), want.k1)
        assert.equal(keys.aesKey.toString('hex'), want.k2!.slice(0, 32))
        assert.equal(rakp4Icv(suite, keys.sik, ctx).toString('hex'), want.rakp4)
        assert.equal(packetAuthCode(suite, keys.k1, covered).toString('hex'), want.auth)
        // Lengths the spec fixes per suite.
        assert.equal(keys.sik.length, id === 17 ? 32 : 20)
        assert.equal(rakp4Icv(suite, keys.sik, ctx).length, id === 17 ? 16 : 12)
        assert.equal(packetAuthCode(suite, keys.k1, covered).length, id === 17 ? 16 : 12)
        assert.equal(sessionIntegrityKey(suite, password, ctx).toString('hex'), kg ? deriveKeys(suite, password, null, ctx).sik.toString('hex') : want.sik)
      })
  }
}

test('suite lookup by the algorithms an Open Session response names', () => {
  assert.equal(suiteByAlgorithms(1, 1, 1)?.id, 3)
  assert.equal(suiteByAlgorithms(3, 4, 1)?.id, 17)
  assert.equal(suiteByAlgorithms(1, 1, 0), null)
  assert.equal(suiteByAlgorithms(0, 0, 0), null)
})

test('AES-CBC-128 confidentiality: IPMI pad 1,2,3..., pad length, decrypts with openssl',
  { skip: existsSync('/usr/bin/openssl') ? false : 'needs openssl' }, () => {
    const key = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex')
    const iv = Buffer.from('f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff', 'hex')
    for (const length of [0, 1, 7, 15, 16, 17, 31]) {
      const plain = Buffer.alloc(length, 0x5a)
      const sealed = encryptPayload(key, plain, iv)
      assert.deepEqual(sealed.subarray(0, 16), iv)
      assert.equal((sealed.length - 16) % 16, 0)
      const r = spawnSync('openssl', ['enc', '-d', '-aes-128-cbc', '-nopad', '-K', key.toString('hex'), '-iv', iv.toString('hex')],
        { input: sealed.subarray(16) })
      assert.equal(r.status, 0, String(r.stderr))
      const padLength = (16 - ((length + 1) % 16)) % 16
      const expected = Buffer.concat([plain, Buffer.from(Array.from({ length: padLength }, (_, i) => i + 1)), Buffer.from([padLength])])
      assert.deepEqual(r.stdout, expected)
      assert.deepEqual(decryptPayload(key, sealed), plain)
    }
    // A wrong pad is a packet to drop, not a crash.
    const sealed = encryptPayload(key, Buffer.alloc(5), iv)
    sealed[sealed.length - 1]! ^= 0xff
    assert.equal(decryptPayload(key, sealed), null)
    assert.equal(decryptPayload(key, Buffer.alloc(20)), null)
  })

test('IPMI message checksums and the RMCP+ integrity pad', () => {
  const msg = encodeRequest({ netFn: 0x00, cmd: 0x01, rqSeq: 5, data: Buffer.alloc(0) })
  // rsSA 20, netFn/LUN 00, checksum e0, rqSA 81, seq 5<<2, cmd 01, checksum
  assert.equal(msg.toString('hex'), '2000e0811401' + ((0x100 - ((0x81 + 0x14 + 0x01) & 0xff)) & 0xff).toString(16))
  const suite = CIPHER_SUITES[3]
  const k1 = Buffer.alloc(20, 7)
  for (let size = 1; size < 9; size++) {
    const packet = encodeV20({ payloadType: 0, sessionId: 0x11223344, sequence: 9, encrypted: true, payload: Buffer.alloc(size, 1),
      sign: (covered) => packetAuthCode(suite, k1, covered) })
    const decoded = decodePacket(packet, 12)
    assert.ok(decoded && decoded.format === 'v20')
    assert.equal(decoded.covered!.length % 4, 0) // AuthType .. Next Header is a whole number of DWORDs
    assert.equal(decoded.covered!.at(-1), 0x07)
    assert.deepEqual(decoded.authCode, packetAuthCode(suite, k1, decoded.covered!))
    assert.equal(decoded.sessionId, 0x11223344)
    assert.equal(decoded.sequence, 9)
    assert.equal(decoded.encrypted, true)
    assert.deepEqual(decoded.payload, Buffer.alloc(size, 1))
  }
  // Responses with a bad checksum, and garbage, decode to null rather than throwing.
  assert.equal(decodeResponse(Buffer.from('8104fb20140100ff', 'hex')), null)
  assert.equal(decodePacket(Buffer.from([1, 2, 3])), null)
  assert.equal(decodePacket(Buffer.alloc(0)), null)
  assert.equal(decodePacket(Buffer.from('0600ff0706c0', 'hex'), 12), null)
})

test('boot flags: encoding, decoding and verification rules', () => {
  assert.equal(encodeBootFlags({ device: 'pxe', mode: 'uefi' }).toString('hex'), 'a004000000')
  assert.equal(encodeBootFlags({ device: 'pxe', mode: 'uefi', persistent: true }).toString('hex'), 'e004000000')
  assert.equal(encodeBootFlags({ device: 'disk' }).toString('hex'), '8008000000')
  assert.equal(encodeBootFlags({ device: 'none' }).toString('hex'), '8000000000')
  const dropped = decodeBootFlags(Buffer.from('0004000000', 'hex'))! // ipmi_sim's answer
  assert.equal(bootMatches({ device: 'pxe', mode: 'uefi' }, dropped, 'device'), null)
  assert.match(bootMatches({ device: 'pxe', mode: 'uefi' }, dropped, 'strict')!, /not valid/)
  const legacy = decodeBootFlags(Buffer.from('8004000000', 'hex'))!
  assert.match(bootMatches({ device: 'pxe', mode: 'uefi' }, legacy, 'strict')!, /mode reads back bios/)
  assert.match(bootMatches({ device: 'disk' }, legacy, 'device')!, /device reads back pxe/)
  assert.equal(decodeBootFlags(Buffer.from('8004', 'hex')), null)
  // Selector 5 is the CD/DVD drive (virtual media's CD on most BMCs); 6 (BIOS setup) is nothing rackboot sets.
  assert.equal(encodeBootFlags({ device: 'cd' }).toString('hex'), '8014000000')
  assert.equal(decodeBootFlags(Buffer.from('8014000000', 'hex'))!.device, 'cd')
  assert.equal(decodeBootFlags(Buffer.from('8018000000', 'hex'))!.device, 'other')
  assert.throws(() => encodeBootFlags({ device: 'http' }), /no UEFI HTTP boot/)
})

test('boot read-back: verified names only the fields that were compared', () => {
  // `device` compares the selector only: a --uefi --persistent request must not come back "uefi persistent verified".
  assert.deepEqual(verifiedFields({ device: 'pxe', mode: 'uefi', persistent: true }, 'device'),
    { device: true, mode: false, persistent: false })
  assert.deepEqual(verifiedFields({ device: 'pxe', mode: 'uefi', persistent: true }, 'strict'),
    { device: true, mode: true, persistent: true })
  // No mode asked: none to confirm (the EFI bit was sent 0, and a firmware-chosen mode is not a verified one).
  assert.deepEqual(verifiedFields({ device: 'disk' }, 'strict'), { device: true, mode: false, persistent: true })
})

test('completion codes: which prove the request was not carried out', () => {
  for (const cc of [0xc0, 0xc1, 0xc7, 0xc9, 0xcc, 0xd2, 0xd4, 0xd5, 0xd6]) assert.equal(provesNotRun(cc), true, cc.toString(16))
  // 0xC3 and 0xCE: the BMC was at it; 0xCF: a copy was done; 0xFF: ipmi_sim answers it after acting; 0x80: vendor's.
  for (const cc of [0xc3, 0xce, 0xcf, 0xff, 0x80, 0x00]) assert.equal(provesNotRun(cc), false, cc.toString(16))
  const e = completionError('10.0.0.9:623', 'Chassis Control (power cycle)', 0xff)
  assert.equal(e.kind, 'rejected')
  assert.equal(e.notRun, false)
  assert.equal(e.message, 'BMC 10.0.0.9:623 refused Chassis Control (power cycle): unspecified error (0xff); it may have been carried out')
  assert.equal(completionError('h:1', 'x', 0xc3).kind, 'timeout')
  assert.equal(completionError('h:1', 'x', 0xc0).kind, 'busy')
  assert.match(completionError('h:1', 'x', 0xd5).message, /cannot do it in its present state/)
})
