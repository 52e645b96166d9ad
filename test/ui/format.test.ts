import { test } from 'node:test'
import assert from 'node:assert/strict'

// The UI's one unit system and one date format (format.js), the name a machine shows by, and the filter box's
// split into the rack field and labels (labels.js). Browser ES modules without types, loaded by URL.
const load = (name: string) => import(new URL(`../../src/http/ui/static/js/${name}.js`, import.meta.url).href)

test('sizes: binary units everywhere, as the CLI prints them (disks too: a 960 GB drive is 894 GiB)', async () => {
  const { bytes, diskSize, memory } = await load('format')
  assert.equal(diskSize, bytes)
  assert.equal(memory, bytes)
  assert.equal(bytes(0), '0 B')
  assert.equal(bytes(1023), '1023 B')
  assert.equal(bytes(1024), '1 KiB')
  assert.equal(bytes(1536), '1.5 KiB')
  assert.equal(bytes(256 * 2 ** 30), '256 GiB')
  assert.equal(bytes(2 ** 40), '1 TiB')
  assert.equal(bytes(960_197_124_096), '894 GiB')
  assert.equal(bytes(480e9), '447 GiB')
  assert.equal(bytes(64 * 2 ** 30), '64 GiB')
  assert.equal(bytes(1_920_383_410_176), '1.7 TiB')
  assert.equal(bytes(3.84e12), '3.5 TiB')
  assert.equal(bytes(null), '—')
  for (const n of [1e3, 1e6, 1e9, 1e12, 4e12]) assert.match(bytes(n), /^[\d.]+ (B|KiB|MiB|GiB|TiB)$/, `${n}`)
})

test('dates: one format, local ISO-like with the UTC offset, daylight saving included; no relative times', async (t) => {
  const before = process.env.TZ
  t.after(() => {
    if (before === undefined) delete process.env.TZ
    else process.env.TZ = before
  })
  const format = await load('format')
  const { dateTime, timeTitle } = format
  process.env.TZ = 'Europe/Berlin'
  assert.equal(dateTime('2026-12-07T07:47:35.123Z'), '2026-12-07 08:47:35 +01:00')
  assert.equal(dateTime('2026-07-01T10:00:00Z'), '2026-07-01 12:00:00 +02:00')
  assert.match(timeTitle('2026-12-07T07:47:35.123Z'), /^2026-12-07 08:47:35\.123 \+01:00/)
  process.env.TZ = 'America/New_York'
  assert.equal(dateTime('2026-12-07T07:47:35Z'), '2026-12-07 02:47:35 -05:00')
  process.env.TZ = 'UTC'
  assert.equal(dateTime('2026-12-07T07:47:35Z'), '2026-12-07 07:47:35 +00:00')
  process.env.TZ = 'Asia/Kolkata'
  assert.equal(dateTime('2026-12-07T07:47:35Z'), '2026-12-07 13:17:35 +05:30')
  assert.equal(dateTime(null), '')
  assert.equal(dateTime('not a date'), '')
  // The relative and clock-only formats are gone: nothing in the UI can show "3 min ago" or a bare 08:47:35.123.
  assert.equal(format.ago, undefined)
  assert.equal(format.clock, undefined)
})

test('machine names: name, else serial, else first MAC, else a short id marked unnamed; never a bare m-<hex>', async () => {
  const { machineLabel } = await load('format')
  const base = { id: 'm-3f9a2b1c4d5e', name: null, serial: null, nics: [] as { mac: string }[] }
  assert.deepEqual(machineLabel({ ...base, name: 'r12-node-04', serial: 'SN1' }), { text: 'r12-node-04', named: true, by: 'name' })
  assert.deepEqual(machineLabel({ ...base, serial: 'CZ2D1F0ABC', nics: [{ mac: '02:42:c6:12:00:01' }] }), { text: 'CZ2D1F0ABC', named: false, by: 'serial' })
  assert.deepEqual(machineLabel({ ...base, nics: [{ mac: '02:42:c6:12:00:01' }, { mac: '02:42:c6:12:00:02' }] }), { text: '02:42:c6:12:00:01', named: false, by: 'MAC' })
  const bare = machineLabel(base)
  assert.deepEqual(bare, { text: 'unnamed m-3f9a2b', named: false, by: 'id' })
  assert.doesNotMatch(bare.text, /^m-[0-9a-f]+$/)
})

test('filter box: rack=r12 is the rack field (the API rack parameter), other keys stay labels', async () => {
  const { parseLabelFilter, splitFilter } = await load('labels')
  assert.deepEqual(splitFilter(parseLabelFilter('rack=r12 role=db')), { rack: 'r12', labels: ['role=db'] })
  assert.deepEqual(splitFilter(parseLabelFilter('role=db, zone=a')), { rack: null, labels: ['role=db', 'zone=a'] })
  assert.deepEqual(splitFilter(parseLabelFilter('rack=r1 rack=r12')), { rack: 'r12', labels: [] })
  assert.deepEqual(splitFilter(parseLabelFilter('rackunit=4')), { rack: null, labels: ['rackunit=4'] })
})
