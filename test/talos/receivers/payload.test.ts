import { test } from 'node:test'
import assert from 'node:assert/strict'
import { decodeEventPayload, typeNameOf, xidTime, normalizeIp } from '../../../src/talos/receivers/index.js'
import { bytes, message, vint, xid, xidFromBytes } from './wire.js'

const url = (name: string) => `type.googleapis.com/machine.${name}`

test('MachineStatusEvent from hand-made bytes: stage is field 1, status field 2 {ready 1, unmet_conditions 2 {name 1, reason 2}}', () => {
  // stage = INSTALLING (2); status = { ready: false, unmet_conditions: [{ network, waiting on: address }, { time, ... }] }
  const raw = Buffer.from([
    0x08, 0x02, // field 1 varint: 2
    0x12, 0x2e, // field 2 length-delimited, 46 bytes
    0x08, 0x00, // ready = false (explicitly encoded)
    0x12, 0x1a, 0x0a, 0x07, ...Buffer.from('network'), 0x12, 0x0f, ...Buffer.from('waiting on: dns'),
    0x12, 0x0e, 0x0a, 0x04, ...Buffer.from('time'), 0x12, 0x06, ...Buffer.from('unsync'),
  ])
  assert.equal(raw.length, 2 + 2 + 0x2e)
  const decoded = decodeEventPayload(url('MachineStatusEvent'), raw)
  assert.deepEqual(decoded, {
    ok: true,
    type: 'machine.MachineStatusEvent',
    known: true,
    data: {
      stage: 'INSTALLING',
      status: { ready: false, unmetConditions: [{ name: 'network', reason: 'waiting on: dns' }, { name: 'time', reason: 'unsync' }] },
    },
  })
})

test('every stage number maps to Talos\'s name; a newer stage stays a number', () => {
  const names = ['UNKNOWN', 'BOOTING', 'INSTALLING', 'MAINTENANCE', 'RUNNING', 'REBOOTING', 'SHUTTING_DOWN', 'RESETTING', 'UPGRADING']
  names.forEach((name, n) => {
    const d = decodeEventPayload(url('MachineStatusEvent'), message(vint(1, n), bytes(2, message(vint(1, true)))))
    assert.ok(d.ok)
    assert.equal((d.data as { stage: string }).stage, name)
    assert.equal((d.data as { status: { ready: boolean } }).status.ready, true)
  })
  const future = decodeEventPayload(url('MachineStatusEvent'), message(vint(1, 9)))
  assert.ok(future.ok)
  assert.deepEqual(future.data, { stage: '9', status: { ready: false, unmetConditions: [] } })
})

test('SequenceEvent carries common.Error {code 1, message 2}; unknown fields (error.details, field 3) are skipped', () => {
  const details = bytes(3, message(bytes(1, 'type.googleapis.com/x.Y'), bytes(2, Buffer.from([1, 2, 3]))))
  const d = decodeEventPayload(url('SequenceEvent'), message(bytes(1, 'install'), vint(2, 0), bytes(3, message(vint(1, 0), bytes(2, 'sequence failed: boom'), details))))
  assert.deepEqual(d, {
    ok: true, type: 'machine.SequenceEvent', known: true,
    data: { sequence: 'install', action: 'NOOP', error: { code: 'FATAL', message: 'sequence failed: boom' } },
  })
  const start = decodeEventPayload(url('SequenceEvent'), message(bytes(1, 'boot'), vint(2, 1)))
  assert.deepEqual(start.ok && start.data, { sequence: 'boot', action: 'START' })
  const locked = decodeEventPayload(url('SequenceEvent'), message(bytes(1, 'reboot'), vint(2, 0), bytes(3, message(vint(1, 1), bytes(2, 'locked')))))
  assert.deepEqual(locked.ok && locked.data, { sequence: 'reboot', action: 'NOOP', error: { code: 'LOCKED', message: 'locked' } })
})

test('Phase, Task, ServiceState, config errors, Address and Restart events decode with Talos\'s field numbers', () => {
  const cases: Array<[string, Buffer, unknown]> = [
    ['PhaseEvent', message(bytes(1, 'install'), vint(2, 0)), { phase: 'install', action: 'START' }],
    ['PhaseEvent', message(bytes(1, 'kexec'), vint(2, 1)), { phase: 'kexec', action: 'STOP' }],
    ['TaskEvent', message(bytes(1, 'runningMaintenance'), vint(2, 1)), { task: 'runningMaintenance', action: 'STOP' }],
    [
      'ServiceStateEvent',
      // health.last_change (field 4, a Timestamp) is not in rackboot's proto and must be skipped
      message(bytes(1, 'etcd'), vint(2, 6), bytes(3, 'Failed to run'), bytes(4, message(vint(2, false), bytes(3, 'not ok'), bytes(4, message(vint(1, 1_700_000_000)))))),
      { service: 'etcd', action: 'FAILED', message: 'Failed to run', health: { unknown: false, healthy: false, lastMessage: 'not ok' } },
    ],
    ['ServiceStateEvent', message(bytes(1, 'apid'), vint(2, 8)), { service: 'apid', action: 'STARTING', message: '' }],
    ['ConfigLoadErrorEvent', message(bytes(1, 'failed to fetch')), { error: 'failed to fetch' }],
    ['ConfigValidationErrorEvent', message(bytes(1, 'bad config')), { error: 'bad config' }],
    ['AddressEvent', message(bytes(1, 'node-1'), bytes(2, '198.18.0.10'), bytes(2, 'fd00::10')), { hostname: 'node-1', addresses: ['198.18.0.10', 'fd00::10'] }],
    ['RestartEvent', message(vint(1, 0x4321fedc)), { cmd: 0x4321fedc }],
  ]
  for (const [name, raw, want] of cases) {
    const d = decodeEventPayload(url(name), raw)
    assert.ok(d.ok, name)
    assert.equal(d.type, `machine.${name}`)
    assert.deepEqual(d.data, want, name)
  }
})

test('unknown types are kept as { typeUrl, bytes }; a known type with broken bytes is an error value', () => {
  assert.deepEqual(decodeEventPayload('type.googleapis.com/machine.SomethingNew', Buffer.alloc(17)), {
    ok: true, type: 'unknown', known: false, data: { typeUrl: 'type.googleapis.com/machine.SomethingNew', bytes: 17 },
  })
  // length says 100 bytes, 3 follow
  const truncated = decodeEventPayload(url('AddressEvent'), Buffer.from([0x0a, 100, 0x61, 0x62, 0x63]))
  assert.equal(truncated.ok, false)
  // field 7 with wire type 7, which does not exist
  const badWire = decodeEventPayload(url('MachineStatusEvent'), Buffer.from([0x08, 0x01, 0x3f, 0x01]))
  assert.equal(badWire.ok, false)
  assert.equal(typeNameOf('type.googleapis.com/machine.TaskEvent'), 'machine.TaskEvent')
  assert.equal(typeNameOf('machine.TaskEvent'), 'machine.TaskEvent')
})

test('xidTime reads the seconds of rs/xid ids', () => {
  // rs/xid's own test vector: bytes 4d88e15b60f486e428412dc9, "9m4e2mr0ui3e8a215n4g", 1300816219 s
  const raw = Buffer.from('4d88e15b60f486e428412dc9', 'hex')
  assert.equal(xidFromBytes(raw), '9m4e2mr0ui3e8a215n4g')
  assert.equal(xidTime('9m4e2mr0ui3e8a215n4g'), 1300816219 * 1000)
  assert.equal(xidTime(xid(1_787_000_000, 5)), 1_787_000_000 * 1000)
  assert.equal(xidTime('not-an-xid'), undefined)
  assert.equal(xidTime('9m4e2mr0ui3e8a215n4G'), undefined)
  assert.equal(xidTime('00000000000000000000'), undefined)
})

test('peer addresses are unwrapped and lower-cased', () => {
  assert.equal(normalizeIp('::ffff:198.18.0.7'), '198.18.0.7')
  assert.equal(normalizeIp('FD00::1'), 'fd00::1')
  assert.equal(normalizeIp('198.18.0.7'), '198.18.0.7')
})
