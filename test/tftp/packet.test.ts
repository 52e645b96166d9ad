import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  Opcode,
  ackBlock,
  decode,
  encodeAck,
  encodeData,
  encodeError,
  encodeOack,
  encodeRequest,
} from '../../src/tftp/packet.js'

test('RRQ round-trips with mode and options, names lower-cased', () => {
  const buf = encodeRequest(Opcode.RRQ, 'ipxe.efi', 'OCTET', { BLKSIZE: '1468', tsize: '0' })
  const r = decode(buf)
  assert.ok(r.ok)
  assert.equal(r.packet.op, Opcode.RRQ)
  if (r.packet.op !== Opcode.RRQ) return
  assert.equal(r.packet.filename, 'ipxe.efi')
  assert.equal(r.packet.mode, 'octet')
  assert.deepEqual([...r.packet.options], [['blksize', '1468'], ['tsize', '0']])
})

test('the first of a repeated option wins', () => {
  const raw = Buffer.from('\x00\x01f\x00octet\x00blksize\x00100\x00BlkSize\x00200\x00', 'latin1')
  const r = decode(raw)
  assert.ok(r.ok && r.packet.op === Opcode.RRQ)
  if (r.ok && r.packet.op === Opcode.RRQ) assert.equal(r.packet.options.get('blksize'), '100')
})

test('malformed requests are values with a reason, never exceptions', () => {
  const cases: [string, Buffer][] = [
    ['short', Buffer.from([0])],
    ['short', Buffer.from([0, 1, 0])],
    ['bad_opcode', Buffer.from([0, 9, 0, 0])],
    ['bad_opcode', Buffer.from([0xff, 0xff, 1, 2, 3])],
    ['unterminated', Buffer.from('\x00\x01file\x00octet', 'latin1')],
    ['unterminated', Buffer.from('\x00\x01file', 'latin1')],
    ['unterminated', Buffer.from('\x00\x01file\x00', 'latin1')],
    ['empty_filename', Buffer.from('\x00\x01\x00octet\x00', 'latin1')],
    ['bad_option', Buffer.from('\x00\x01f\x00octet\x00blksize\x00', 'latin1')],
    ['bad_option', Buffer.from('\x00\x01f\x00octet\x00\x00512\x00', 'latin1')],
    ['too_long', Buffer.concat([Buffer.from('\x00\x01', 'latin1'), Buffer.alloc(3000, 0x41), Buffer.from('\x00octet\x00')])],
  ]
  for (const [reason, buf] of cases) {
    const r = decode(buf)
    assert.equal(r.ok, false, buf.toString('hex'))
    if (!r.ok) assert.equal(r.reason, reason, buf.toString('hex'))
  }
})

test('a trailing extra NUL after the options is tolerated', () => {
  const r = decode(Buffer.from('\x00\x01f\x00octet\x00tsize\x000\x00\x00', 'latin1'))
  assert.ok(r.ok)
})

test('ACK, DATA, ERROR, OACK encode and decode', () => {
  const ack = decode(encodeAck(65536 + 7))
  assert.deepEqual(ack, { ok: true, packet: { op: Opcode.ACK, block: 7 } })
  assert.equal(ackBlock(encodeAck(65535)), 65535)
  assert.equal(ackBlock(Buffer.from([0, 3, 0, 1])), -1)
  assert.equal(ackBlock(Buffer.from([0, 4, 0])), -1)

  const data = decode(encodeData(65536, Buffer.from('hello')))
  assert.ok(data.ok && data.packet.op === Opcode.DATA)
  if (data.ok && data.packet.op === Opcode.DATA) {
    assert.equal(data.packet.block, 0, 'block numbers roll over to 0')
    assert.equal(data.packet.data.toString(), 'hello')
  }

  const err = decode(encodeError(1, 'File not found\n'))
  assert.deepEqual(err, { ok: true, packet: { op: Opcode.ERROR, code: 1, message: 'File not found?' } })

  const oack = decode(encodeOack(new Map([['blksize', '1468'], ['tsize', '123']])))
  assert.ok(oack.ok && oack.packet.op === Opcode.OACK)
  if (oack.ok && oack.packet.op === Opcode.OACK) assert.equal(oack.packet.options.get('tsize'), '123')
})

test('random bytes never make decode throw', () => {
  let seed = 12345
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff)
  for (let i = 0; i < 20000; i++) {
    const len = Math.floor(rnd() * 64)
    const buf = Buffer.alloc(len)
    for (let j = 0; j < len; j++) buf[j] = Math.floor(rnd() * 256)
    if (len >= 2 && rnd() < 0.7) buf[0] = 0 // mostly plausible opcodes, to reach the deeper parsers
    if (len >= 2 && rnd() < 0.7) buf[1] = 1 + Math.floor(rnd() * 6)
    decode(buf)
  }
})
