import { test } from 'node:test'
import assert from 'node:assert/strict'
import { chooseInstallDisk, diskKind, parseSize, parseSizeCondition, type DiskSelector } from '../../src/talos/index.js'
import type { DiskFacts } from '../../src/inventory/types.js'

const GB = 1e9
const DISKS: DiskFacts[] = [
  { name: 'sda', model: 'SAMSUNG MZ7LH480', serial: 'S45PNA0M', sizeBytes: 480 * GB, rotational: false },
  { name: 'sdb', model: 'ST8000NM000A', serial: 'ZA1B2C3D', sizeBytes: 8000 * GB, rotational: true },
  { name: 'nvme1n1', model: 'Micron_7450', serial: 'MTFD2', sizeBytes: 960 * GB, type: 'nvme' },
  { name: 'nvme0n1', model: 'Micron_7450', serial: 'MTFD1', sizeBytes: 960 * GB, type: 'nvme' },
  { name: 'sdc', model: 'Ultra USB 3.0', serial: 'USB1', sizeBytes: 32 * GB, rotational: false, removable: true } as DiskFacts,
  { name: 'loop0', sizeBytes: 64 * GB },
  { name: 'sr0', sizeBytes: 0 },
]

function pick(selector: DiskSelector, disks: DiskFacts[] = DISKS): string | null {
  const r = chooseInstallDisk(disks, selector)
  return r.ok ? r.path : null
}

test('sizes parse with decimal and binary units', () => {
  assert.equal(parseSize('480GB'), 480e9)
  assert.equal(parseSize('1.5 TiB'), 1.5 * 2 ** 40)
  assert.equal(parseSize('512'), 512)
  assert.equal(parseSize(1000), 1000)
  assert.ok(Number.isNaN(parseSize('lots')))
  assert.ok(Number.isNaN(parseSize('5 XB')))
  const between = parseSizeCondition('>= 100GB, < 1TB')
  assert.equal(typeof between, 'function')
  if (typeof between === 'function') {
    assert.equal(between(480e9), true)
    assert.equal(between(1e12), false)
    assert.equal(between(99e9), false)
  }
  assert.equal(typeof parseSizeCondition('>= lots'), 'string')
  // Bounds that no disk can meet, or that name something else, are refused rather than matching nothing.
  assert.match(String(parseSizeCondition({ min: '2TB', max: '1TB' })), /min is above max/)
  assert.match(String(parseSizeCondition({ min: '1TB', most: '2TB' } as never)), /not most/)
  const r = chooseInstallDisk(DISKS, { size: { min: '2TB', max: '1TB' } })
  assert.equal(r.ok, false)
  assert.match(!r.ok ? r.reason : '', /min is above max/)
})

test('default: the smallest fixed disk; removable, loop and CD devices never qualify', () => {
  const r = chooseInstallDisk(DISKS)
  assert.ok(r.ok)
  assert.equal(r.ok && r.path, '/dev/sda')
  assert.equal(r.ok && r.candidates, 4)
})

test('table: selectors pick the expected disk', () => {
  const table: Array<[DiskSelector, string | null]> = [
    [{ type: 'nvme' }, '/dev/nvme0n1'],
    [{ type: 'nvme', prefer: 'largest' }, '/dev/nvme0n1'],
    [{ type: 'hdd' }, '/dev/sdb'],
    [{ type: ['ssd', 'hdd'], prefer: 'largest' }, '/dev/sdb'],
    [{ size: '>= 500GB' }, '/dev/nvme0n1'],
    [{ size: '>= 500GB', prefer: 'largest' }, '/dev/sdb'],
    [{ size: { min: '100GB', max: '1TB' }, prefer: 'largest' }, '/dev/nvme0n1'],
    [{ size: '<= 100GB' }, null],
    [{ model: 'Micron_*', serial: '*2' }, '/dev/nvme1n1'],
    [{ model: 'SAMSUNG*' }, '/dev/sda'],
    [{ name: 'sd?' }, '/dev/sda'],
    [{ serial: 'USB1' }, null],
    [{ wwn: '5000*' }, null],
  ]
  for (const [selector, expected] of table) assert.equal(pick(selector), expected, JSON.stringify(selector))
})

test('the choice does not depend on the order disks were reported in', () => {
  const selectors: DiskSelector[] = [{}, { type: 'nvme' }, { prefer: 'largest' }, { size: '>= 900GB' }]
  for (const selector of selectors) {
    const expected = pick(selector)
    for (let i = 0; i < 10; i++) {
      const shuffled = [...DISKS].sort(() => Math.random() - 0.5)
      assert.equal(pick(selector, shuffled), expected, JSON.stringify(selector))
    }
  }
  // Natural order breaks ties: nvme2n1 before nvme10n1.
  const twins: DiskFacts[] = [
    { name: 'nvme10n1', sizeBytes: GB, type: 'nvme' },
    { name: 'nvme2n1', sizeBytes: GB, type: 'nvme' },
  ]
  assert.equal(pick({}, twins), '/dev/nvme2n1')
})

test('no match is a value with the reasons, not an exception', () => {
  const r = chooseInstallDisk(DISKS, { type: 'nvme', size: '>= 2TB' })
  assert.equal(r.ok, false)
  if (!r.ok) {
    assert.equal(r.reason, 'no disk matches the selector')
    const reasons = Object.fromEntries(r.rejected.map((x) => [x.name, x.reason]))
    assert.equal(reasons.sdc, 'removable')
    assert.equal(reasons.loop0, 'not a disk')
    assert.match(reasons.nvme0n1!, /^size 960000000000 does not match/)
    assert.match(reasons.sda!, /^size/)
  }
  const none = chooseInstallDisk([])
  assert.equal(none.ok, false)
  assert.equal(!none.ok && none.reason, 'no disks reported')
  const badSize = chooseInstallDisk(DISKS, { size: 'huge' })
  assert.equal(!badSize.ok && badSize.reason, "bad size condition 'huge'")
})

test('disk type is inferred when the report has none', () => {
  assert.equal(diskKind({ name: 'nvme0n1', sizeBytes: 1 }), 'nvme')
  assert.equal(diskKind({ name: '/dev/vda', sizeBytes: 1 }), 'virtual')
  assert.equal(diskKind({ name: 'sda', sizeBytes: 1, rotational: true }), 'hdd')
  assert.equal(diskKind({ name: 'sda', sizeBytes: 1, rotational: false }), 'ssd')
  assert.equal(diskKind({ name: 'sda', sizeBytes: 1 }), null)
  assert.equal(diskKind({ name: 'sda', sizeBytes: 1, type: 'ssd', rotational: true }), 'ssd')
  assert.equal(pick({ type: 'ssd' }, [{ name: 'sda', sizeBytes: GB }]), null)
})
