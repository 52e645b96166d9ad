import { test } from 'node:test'
import assert from 'node:assert/strict'
import { compileSelector, parseSelector, boundsOf } from '../../src/matching/index.js'
import type { Machine } from '../../src/inventory/index.js'
import { isRackbootError } from '../../src/errors.js'

function machine(over: Partial<Machine> = {}): Machine {
  return {
    id: 'm-000000000001', name: 'node-1', uuid: null, serial: 'SER-1', manufacturer: 'Dell Inc.', product: 'PowerEdge R650',
    arch: 'amd64', firmware: 'uefi', state: 'ready', labels: { rack: 'r12', 'topology.kubernetes.io/zone': 'z1', tier: '2' },
    rack: 'r12', rackUnit: 7, alwaysPxe: false, profile: null, managedBy: null, network: null,
    nics: [{ mac: '3c:ec:ef:00:00:01', name: 'eno1', boot: true }],
    hardware: {
      cpu: { model: 'Xeon', sockets: 2, cores: 32, threads: 64 },
      memory: { totalBytes: 256 * 2 ** 30 },
      disks: [
        { name: 'nvme0n1', sizeBytes: 3.84e12, type: 'nvme' },
        { name: 'nvme1n1', sizeBytes: 3.84e12, type: 'nvme' },
        { name: 'sda', sizeBytes: 480e9, type: 'ssd', rotational: false },
      ],
      nics: [
        { mac: '3c:ec:ef:00:00:01', name: 'eno1', speedMbps: 25000, link: true },
        { mac: '3c:ec:ef:00:00:02', name: 'eno2', speedMbps: 1000, link: false },
      ],
      smbios: { boardSerial: 'B-1' },
    },
    hardwareReportedAt: 1, createdAt: 1, updatedAt: 1, stateChangedAt: 1,
    ...over,
  }
}

const m = machine()

test('the issue\'s selector examples match the machine they describe, and miss one that differs', () => {
  const cases: [string, boolean][] = [
    ['cpu.cores >= 32', true],
    ['cpu.cores > 32', false],
    ['memory.gib >= 256', true],
    ['memory.gib >= 257', false],
    ['memory >= 256GiB', true],
    ['memory >= 274.8GB', true],
    ['memory >= 274.9GB', false],
    ['memory >= 275.0000001GB', false],
    ['disks[type=nvme].count >= 2', true],
    ['disks[type=nvme].count >= 3', false],
    ['disks[type = nvme, size.tb >= 3.8].count == 2', true],
    ['disks[type in [nvme, ssd]].size.tb > 8', true],
    ['disks.count == 3', true],
    ['manufacturer == "Dell Inc."', true],
    ["manufacturer == 'HPE'", false],
    ['labels.rack in [r12, r13]', true],
    ['labels.rack not in [r12, r13]', false],
    ['labels["topology.kubernetes.io/zone"] == z1', true],
    ['labels.tier >= 2', true],
    ['labels.gpu', false],
    ['not labels.gpu', true],
    ['labels.gpu != yes', true],
    ['labels.gpu == null', true],
    ['nics[speed.gbps >= 25].count >= 1', true],
    ['nics[boot].count == 1 && nics[link=false].count == 1', true],
    ['product =~ "^PowerEdge R6"', true],
    ['product !~ "R7"', true],
    ['serial == SER-1 or serial == SER-2', true],
    ['(arch == arm64 or firmware == bios) and cpu.cores >= 1', false],
    ['smbios.boardSerial == B-1', true],
    ['hardware.cpu.threads == 64', true],
    ['nics.count == 2 and bmc.address == null', true],
    ['rackUnit < 10 and rack == r12', true],
  ]
  for (const [source, expected] of cases) {
    assert.equal(compileSelector(source).matches(m), expected, source)
  }
  // A machine that never reported hardware matches nothing that needs hardware.
  const bare = machine({ hardware: null })
  assert.equal(compileSelector('cpu.cores >= 1').matches(bare), false)
  assert.equal(compileSelector('cpu.cores < 1000').matches(bare), false)
  assert.equal(compileSelector('disks.count == 0').matches(bare), true)
})

test('a class\'s list of selectors must all hold; an empty list matches everything', () => {
  assert.equal(compileSelector(['cpu.cores >= 32', 'memory.gib >= 256']).matches(m), true)
  assert.equal(compileSelector(['cpu.cores >= 32', 'memory.gib >= 512']).matches(m), false)
  assert.equal(compileSelector([]).matches(m), true)
})

function errorOf(source: string) {
  try {
    parseSelector(source)
  } catch (err) {
    assert.ok(isRackbootError(err, 'RB_ERR_VALIDATION'), String(err))
    return err.details as { position: number; reason: string }
  }
  assert.fail(`'${source}' parsed`)
}

test('parse errors say what and where (0-based position)', () => {
  assert.deepEqual(
    [errorOf('cpu.core >= 32').position, errorOf('cpu.core >= 32').reason],
    [4, "unknown field 'cpu.core' (one of: cpu.cores, cpu.threads, cpu.sockets, cpu.model)"],
  )
  assert.equal(errorOf('cpu.cores >= ').position, 13)
  assert.match(errorOf('cpu.cores >= ').reason, /expected a value, found the end/)
  assert.equal(errorOf('gpus > 1').position, 0)
  assert.equal(errorOf('labels.rack in [r1, r2').position, 22)
  assert.equal(errorOf('manufacturer == "Dell').position, 16)
  assert.match(errorOf('manufacturer == "Dell').reason, /unterminated string/)
  assert.equal(errorOf('cpu.cores >= 32 ) ').position, 16)
  assert.equal(errorOf('disks >= 2').position, 6)
  assert.match(errorOf('disks >= 2').reason, /compare 'disks.count'/)
  assert.equal(errorOf('cpu.cores >= 32GiB').position, 13)
  assert.equal(errorOf('memory.gigs > 1').position, 7)
  assert.equal(errorOf('product =~ "("').position, 11)
  assert.equal(errorOf('cpu.cores >= 1 # x').position, 15)
  assert.equal(errorOf('').position, 0)
  assert.equal(errorOf('cpu').position, 3)
})

test('bounds for SQL come only from and-joined comparisons, loosened to whole units', () => {
  assert.deepEqual(boundsOf(parseSelector('cpu.cores >= 32 and memory.gib >= 255.5 and disks[type=nvme].count >= 2 and disks.count <= 4')), {
    cpuCores: { min: 32 },
    memoryBytes: { min: Math.floor(255.5 * 2 ** 30) },
    nvmeCount: { min: 2 },
    diskCount: { max: 4 },
  })
  assert.deepEqual(boundsOf(parseSelector('cpu.cores >= 32 or memory.gib >= 256')), {})
  assert.deepEqual(boundsOf(parseSelector('not cpu.cores >= 32')), {})
  assert.deepEqual(boundsOf(parseSelector('disks[type=ssd].count >= 2 and cpu.cores == 16 and cpu.cores <= 64')), { cpuCores: { min: 16, max: 16 } })
  assert.deepEqual(compileSelector(['cpu.cores >= 8', 'cpu.cores >= 16', 'memory >= 1TB']).bounds, { cpuCores: { min: 16 }, memoryBytes: { min: 1e12 } })
})
