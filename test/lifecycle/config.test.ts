import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseAllDocuments } from 'yaml'
import { createEventBus } from '../../src/events/bus.js'
import { isRackbootError } from '../../src/errors.js'
import { openSqliteInventory, type DiskFacts, type InstallDiskSelector, type MachineNetwork } from '../../src/inventory/index.js'
import { attachTimeline, createConfigService, createLifecycle, createPeerDirectory } from '../../src/lifecycle/index.js'
import { silentLogger } from '../../src/log.js'
import { createConfigLinter, generateConfig, generateSecretsBundle, type SecretsBundle } from '../../src/talos/index.js'

// The per-machine values of a served Talos config: the install disk the profile's selector picks among the disks
// the machine reported, and the machine's own static addresses, in a config that still passes the Talos schema.

const TALOS = 'v1.13.9'
const GB = 1e9
const DISKS: DiskFacts[] = [
  { name: 'sda', model: 'SAMSUNG MZ7L3480', serial: 'S6KNNA0T', sizeBytes: 480 * GB, type: 'ssd', rotational: false },
  { name: 'nvme0n1', model: 'Micron_7450_MTFDKCC3T8TFR', serial: 'MTFD-BIG', sizeBytes: 3840 * GB, type: 'nvme' },
  { name: 'nvme1n1', model: 'Micron_7450_MTFDKBG960TFR', serial: 'MTFD-SMALL', sizeBytes: 960 * GB, type: 'nvme' },
]
const CLIENT = '198.18.0.50'
const linter = createConfigLinter()
let secrets: Promise<SecretsBundle> | null = null

async function setup(role: 'controlplane' | 'worker' = 'worker') {
  secrets ??= generateSecretsBundle({ talosVersion: TALOS, rsaBits: 2048 })
  const base = generateConfig({ secrets: await secrets, clusterName: 'lab', endpoint: 'https://198.18.0.10:6443', talosVersion: TALOS, role }).yaml
  const inventory = await openSqliteInventory({ file: ':memory:' })
  const log = silentLogger()
  const bus = createEventBus()
  const timeline = attachTimeline({ inventory, bus, log })
  const clock = { now: () => Date.now() }
  const lifecycle = createLifecycle({ inventory, bus, log, clock })
  // Tests here fetch one boot's config many times over, changing the profile between fetches.
  const configs = createConfigService({ inventory, lifecycle, log, clock, linter, peers: createPeerDirectory({ inventory }), maxFetches: 1000 })
  let machines = 0
  return {
    inventory, configs, timeline,
    async profile(installDisk: InstallDiskSelector | null) {
      await inventory.profiles.put({ name: 'p', description: null, talosVersion: TALOS, arch: 'amd64', schematic: null, kernelArgs: [], baseConfig: base, patches: [], installDisk, managedBy: null }, 1)
    },
    async machine(name: string, network: MachineNetwork | null = null, disks: DiskFacts[] = DISKS) {
      const mac = `3c:ec:ef:00:00:${(++machines).toString(16).padStart(2, '0')}`
      const m = await inventory.machines.create({ name, state: 'provisioning', profile: 'p', network, nics: [{ mac, name: 'eno1', boot: true }] }, 1)
      await inventory.machines.setHardware(m.id, { disks }, 1)
      const token = await inventory.bootTokens.issue({ machineId: m.id, purpose: 'config', clientIp: CLIENT, ttlMs: 60_000 }, Date.now())
      return { id: m.id, config: () => configs.configFor(token, CLIENT) }
    },
    async events(machineId: string) {
      await timeline.flush()
      return inventory.events.list({ machineId, types: ['boot.config'] })
    },
    async close() {
      await timeline.flush()
      timeline.detach()
      await inventory.close()
    },
  }
}

function documents(yaml: string): Record<string, any>[] {
  return parseAllDocuments(yaml).map((d) => d.toJS() as Record<string, any>).filter(Boolean)
}

function installDisk(yaml: string): string {
  return documents(yaml).find((d) => d.version === 'v1alpha1')!.machine.install.disk
}

test('the profile\'s selector picks the install disk: type nvme takes an NVMe over the SATA SSD, smaller or larger as it prefers', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  const table: [InstallDiskSelector | null, string][] = [
    [null, '/dev/sda'],
    [{ type: 'nvme' }, '/dev/nvme1n1'],
    [{ type: 'nvme', prefer: 'smallest' }, '/dev/nvme1n1'],
    [{ type: 'nvme', prefer: 'largest' }, '/dev/nvme0n1'],
    [{ type: ['ssd', 'nvme'], prefer: 'largest' }, '/dev/nvme0n1'],
    [{ size: '>= 1TB' }, '/dev/nvme0n1'],
    [{ model: '*MTFDKBG*' }, '/dev/nvme1n1'],
  ]
  const m = await s.machine('w1')
  for (const [selector, want] of table) {
    await s.profile(selector)
    const served = await m.config()
    assert.equal(installDisk(served.yaml), want, JSON.stringify(selector))
  }
  // Disk order in the report does not matter.
  const shuffled = await s.machine('w2', null, [DISKS[2]!, DISKS[0]!, DISKS[1]!])
  await s.profile({ type: 'nvme', prefer: 'largest' })
  assert.equal(installDisk((await shuffled.config()).yaml), '/dev/nvme0n1')
})

test('a selector no reported disk matches: no config (503), and the timeline names the selector and each rejected disk', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  await s.profile({ type: 'hdd' })
  const m = await s.machine('w1')
  await assert.rejects(m.config(), (err) => {
    assert.ok(isRackbootError(err, 'RB_ERR_NOT_SERVABLE'), String(err))
    assert.equal(err.statusCode, 503)
    assert.match(err.message, /no install disk: no disk matches the selector/)
    return true
  })
  const [event] = (await s.events(m.id)).slice(-1)
  assert.equal(event?.data.status, 503)
  assert.match(event!.message, /^config not served: no install disk: no disk matches the selector of profile p \(installDisk \{"type":"hdd"\}\); rejected /)
  for (const d of DISKS) assert.match(event!.message, new RegExp(`${d.name}: type ${d.type} is not hdd`))
  assert.deepEqual((event!.data.details as any).rejected.map((r: any) => r.name).sort(), ['nvme0n1', 'nvme1n1', 'sda'])
  assert.deepEqual((event!.data.details as any).selector, { type: 'hdd' })

  // The same machine with a selector that fits is served again.
  await s.profile({ type: 'ssd' })
  assert.equal(installDisk((await m.config()).yaml), '/dev/sda')
  assert.deepEqual((await s.events(m.id)).map((e) => e.data.status), [503, 200])
})

const NETWORK: MachineNetwork = {
  addresses: [
    { link: 'eno1', addresses: ['198.18.0.20/24', 'fd00:198:18::20/64'], gateway: '198.18.0.1', mtu: 9000 },
    { mac: '3c:ec:ef:12:34:57', addresses: ['198.19.0.20/24'] },
  ],
  nameservers: ['198.18.0.53', 'fd00:198:18::53'],
}

for (const role of ['controlplane', 'worker'] as const) {
  test(`${role}: the machine's static addresses and nameservers are in its config, which passes the ${TALOS} schema`, async (t) => {
    const s = await setup(role)
    t.after(() => s.close())
    await s.profile({ type: 'nvme' })
    const m = await s.machine(`${role}-1`, NETWORK)
    const { yaml } = await m.config()
    const lint = linter.lint(yaml, { talosVersion: TALOS })
    assert.equal(lint.schemaVersion, TALOS)
    assert.deepEqual(lint.errors, [])
    assert.ok(lint.ok)
    const docs = documents(yaml)
    const find = (kind: string, name?: string) => docs.find((d) => d.kind === kind && (name === undefined || d.name === name))
    assert.deepEqual(find('LinkConfig', 'eno1'), {
      apiVersion: 'v1alpha1', kind: 'LinkConfig', name: 'eno1', up: true, mtu: 9000,
      addresses: [{ address: '198.18.0.20/24' }, { address: 'fd00:198:18::20/64' }], routes: [{ gateway: '198.18.0.1' }],
    })
    assert.deepEqual(find('LinkAliasConfig', 'net-3cecef123457')?.selector, { match: 'mac(link.permanent_addr) == "3c:ec:ef:12:34:57"' })
    assert.deepEqual(find('LinkConfig', 'net-3cecef123457')?.addresses, [{ address: '198.19.0.20/24' }])
    assert.deepEqual(find('ResolverConfig')?.nameservers, [{ address: '198.18.0.53' }, { address: 'fd00:198:18::53' }])
    assert.equal(installDisk(yaml), '/dev/nvme1n1')
    assert.equal(find('HostnameConfig')?.hostname, `${role}-1`)

    // Without a network the config has no link documents of rackboot's (DHCP, as before).
    const plain = await s.machine(`${role}-2`)
    const plainDocs = documents((await plain.config()).yaml)
    assert.equal(plainDocs.some((d) => d.kind === 'LinkConfig' || d.kind === 'ResolverConfig'), false)
  })
}

test('a refused unknown token lands on the timeline of the machine whose lease has the requesting address', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  await s.profile(null)
  const m = await s.machine('w-1')
  const mac = (await s.inventory.machines.get(m.id))!.nics[0]!.mac
  const now = Date.now()
  await s.inventory.leases.put({ ip: CLIENT, mac, clientId: null, subnet: '198.18.0.0/24', state: 'bound', hostname: null, expiresAt: now + 60_000, updatedAt: now })
  await assert.rejects(s.configs.configFor('not-a-token', CLIENT), (e) => isRackbootError(e) && e.code === 'RB_ERR_FORBIDDEN')
  const events = await s.events(m.id)
  assert.equal(events.length, 1)
  assert.match(events[0]!.message, /config refused: unknown token, from 198\.18\.0\.50/)
  assert.equal((events[0]!.data as { status?: number }).status, 403)
  // From an address nobody holds, the refusal is still recorded, on no machine.
  await assert.rejects(s.configs.configFor('not-a-token', '198.18.0.99'))
  assert.equal((await s.events(m.id)).length, 1)
})
