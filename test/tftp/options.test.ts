import { test } from 'node:test'
import assert from 'node:assert/strict'
import { blockSizeCap, negotiate } from '../../src/tftp/options.js'

const limits = { maxBlockSize: 1468, mtu: 1500, maxWindowSize: 64, retransmitMs: 1000 }
const req = (o: Record<string, string>) => new Map(Object.entries(o))

test('no options: defaults and no OACK', () => {
  const n = negotiate(new Map(), limits, 100)
  assert.equal(n.blksize, 512)
  assert.equal(n.windowsize, 1)
  assert.equal(n.timeoutMs, 1000)
  assert.equal(n.clientTimeout, false)
  assert.equal(n.oack.size, 0)
})

test('blksize is capped by the setting and by the MTU', () => {
  assert.equal(negotiate(req({ blksize: '65464' }), limits, 1).blksize, 1468)
  assert.equal(negotiate(req({ blksize: '1024' }), limits, 1).blksize, 1024)
  assert.equal(negotiate(req({ blksize: '9000' }), { ...limits, maxBlockSize: 65464, mtu: 9000 }, 1).blksize, 8968)
  assert.equal(negotiate(req({ blksize: '8' }), limits, 1).blksize, 8)
  assert.equal(blockSizeCap({ maxBlockSize: 65464, mtu: 65535 }), 65464)
  assert.equal(negotiate(req({ blksize: '1468' }), limits, 1).oack.get('blksize'), '1468')
})

test('invalid values are left out of the OACK', () => {
  for (const v of ['7', '65465', '-1', '1e3', ' 512', '', 'abc', '99999999999']) {
    const n = negotiate(req({ blksize: v, timeout: v === '7' ? '0' : v, windowsize: v === '7' ? '0' : v }), limits, 1)
    assert.equal(n.oack.has('blksize'), false, `blksize ${v}`)
    assert.equal(n.blksize, 512)
  }
  assert.equal(negotiate(req({ timeout: '256' }), limits, 1).oack.has('timeout'), false)
  assert.equal(negotiate(req({ windowsize: '0' }), limits, 1).oack.has('windowsize'), false)
})

test('tsize answers the size, or is left out when the size is unknown', () => {
  assert.equal(negotiate(req({ tsize: '0' }), limits, 41943040).oack.get('tsize'), '41943040')
  assert.equal(negotiate(req({ tsize: '0' }), limits, 0).oack.get('tsize'), '0')
  assert.equal(negotiate(req({ tsize: '0' }), limits, null).oack.has('tsize'), false)
})

test('timeout is honoured in seconds; windowsize capped by the setting', () => {
  const n = negotiate(req({ timeout: '6', windowsize: '128' }), limits, 1)
  assert.equal(n.timeoutMs, 6000)
  assert.equal(n.clientTimeout, true)
  assert.equal(n.oack.get('timeout'), '6')
  assert.equal(n.windowsize, 64)
  assert.equal(n.oack.get('windowsize'), '64')
  assert.equal(negotiate(req({ windowsize: '8' }), limits, 1).windowsize, 8)
  assert.equal(negotiate(req({ windowsize: '65535' }), { ...limits, maxWindowSize: 65535 }, 1).windowsize, 32767)
})

test('unknown options are ignored', () => {
  assert.equal(negotiate(req({ multicast: '', rollover: '0' }), limits, 1).oack.size, 0)
})
