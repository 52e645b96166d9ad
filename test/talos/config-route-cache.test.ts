import { test, before, beforeEach } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createEventBus } from '../../src/events/bus.js'
import { buildApp } from '../../src/http/index.js'
import { createDownloadGate } from '../../src/http/download-gate.js'
import { openSqliteInventory, type MachineNetwork } from '../../src/inventory/index.js'
import { attachTimeline, createBootService, createConfigService, createLifecycle } from '../../src/lifecycle/index.js'
import { silentLogger } from '../../src/log.js'
import { createMetricsRegistry } from '../../src/metrics.js'
import { createConfigLinter, generateConfig, generateSecretsBundle, parseConfigDocuments, type SecretsBundle } from '../../src/talos/index.js'
import { clearRenderCache, renderCacheStats } from '../../src/talos/render-cache.js'

// GET /talos/config with the render cache: what an operator changes (a profile's patch, a machine's name or
// addresses) is in the very next fetch, one machine's config never reaches another, and a per-machine value the
// schema refuses is still refused.

const TALOS = 'v1.13.9'
const CLIENT = '198.18.0.50'
let secrets: [SecretsBundle, SecretsBundle]
before(async () => {
  secrets = await Promise.all([
    generateSecretsBundle({ talosVersion: TALOS, rsaBits: 2048 }),
    generateSecretsBundle({ talosVersion: TALOS, rsaBits: 2048 }),
  ]) as [SecretsBundle, SecretsBundle]
})
beforeEach(() => clearRenderCache())

const base = (s: SecretsBundle, clusterName: string) =>
  generateConfig({ secrets: s, clusterName, endpoint: 'https://198.18.0.10:6443', talosVersion: TALOS, role: 'worker' }).yaml

async function setup(file = ':memory:') {
  const inventory = await openSqliteInventory({ file })
  const log = silentLogger()
  const bus = createEventBus()
  const timeline = attachTimeline({ inventory, bus, log })
  const clock = { now: () => Date.now() }
  const lifecycle = createLifecycle({ inventory, bus, log, clock })
  const configs = createConfigService({ inventory, lifecycle, log, clock, linter: createConfigLinter(), maxFetches: 1000 })
  const app = await buildApp({
    inventory, lifecycle, log, registry: createMetricsRegistry(), version: 'test',
    boot: {
      service: createBootService({ inventory, lifecycle, log, clock, policy: { holdMode: 'retry', autoAccept: false } }),
      gate: createDownloadGate({ limit: 10, holdMs: 60_000 }), assetsDir: '/nonexistent', publicUrl: '',
      hold: { seconds: 30, maxSeconds: 300 }, agent: { after: 'reboot', kernelArgs: { amd64: [], arm64: [] } }, configs,
    },
  })
  let n = 0
  return {
    inventory, app,
    async profile(name: string, baseConfig: string, patches: unknown[]) {
      await inventory.profiles.put({ name, description: null, talosVersion: TALOS, arch: 'amd64', schematic: null, kernelArgs: [], baseConfig, patches, installDisk: null, managedBy: null }, 1)
    },
    async machine(name: string, profile: string, network: MachineNetwork | null = null) {
      const mac = `3c:ec:ef:00:01:${(++n).toString(16).padStart(2, '0')}`
      const m = await inventory.machines.create({ name, state: 'provisioning', profile, network, nics: [{ mac, name: 'eno1', boot: true }] }, 1)
      await inventory.machines.setHardware(m.id, { disks: [{ name: 'nvme0n1', serial: `S-${name}`, sizeBytes: 960e9, type: 'nvme' }] }, 1)
      const token = await inventory.bootTokens.issue({ machineId: m.id, purpose: 'config', clientIp: CLIENT, ttlMs: 60_000 }, Date.now())
      return {
        id: m.id,
        fetch: () => app.inject({ url: `/talos/config?t=${token}`, remoteAddress: CLIENT }),
        async config() {
          const res = await app.inject({ url: `/talos/config?t=${token}`, remoteAddress: CLIENT })
          assert.equal(res.statusCode, 200, res.body)
          return res.body
        },
      }
    },
    async close() {
      await app.close()
      await timeline.flush()
      timeline.detach()
      await inventory.close()
    },
  }
}

test('a profile patch changed between two fetches of one boot is in the second; a renamed machine gets its new name', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  const b = base(secrets[0], 'lab')
  await s.profile('p', b, [{ machine: { sysctls: { 'vm.nr_hugepages': '128' } } }])
  const m = await s.machine('node-1', 'p')
  const first = await m.config()
  assert.match(first, /vm\.nr_hugepages: "128"/)
  assert.equal(await m.config(), first, 'a retry: the same config')
  assert.ok(renderCacheStats().rendered.hits >= 1, 'the retry was not rendered again')
  await s.profile('p', b, [{ machine: { sysctls: { 'vm.nr_hugepages': '256' } } }])
  const second = await m.config()
  assert.match(second, /vm\.nr_hugepages: "256"/)
  assert.doesNotMatch(second, /"128"/)
  await s.profile('p', b, [])
  assert.doesNotMatch(await m.config(), /nr_hugepages/)
  await s.inventory.machines.update(m.id, { name: 'node-1b' }, 2)
  const renamed = await m.config()
  assert.match(renamed, /hostname: node-1b/)
})

test('two machines of two clusters fetching in turn: each gets its own hostname, addresses and cluster secrets', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  await s.profile('kestrel', base(secrets[0], 'kestrel'), [])
  await s.profile('osprey', base(secrets[1], 'osprey'), [])
  const net = (ip: string): MachineNetwork => ({ addresses: [{ link: 'eno1', addresses: [`${ip}/24`] }], nameservers: [] })
  const a = await s.machine('kestrel-1', 'kestrel', net('10.1.0.11'))
  const b = await s.machine('osprey-1', 'osprey', net('10.2.0.22'))
  const c = await s.machine('kestrel-2', 'kestrel', net('10.1.0.12'))
  for (let round = 0; round < 2; round++) {
    const [ya, yb, yc] = [await a.config(), await b.config(), await c.config()]
    assert.match(ya, /hostname: kestrel-1\n/)
    assert.match(ya, /10\.1\.0\.11\/24/)
    assert.doesNotMatch(ya, /osprey|kestrel-2|10\.2\.0\.22|10\.1\.0\.12/)
    assert.match(yb, /hostname: osprey-1\n/)
    assert.doesNotMatch(yb, /kestrel|10\.1\.0\./)
    assert.match(yc, /hostname: kestrel-2\n/)
    assert.doesNotMatch(yc, /kestrel-1|osprey|10\.1\.0\.11/)
    const token = (y: string) => (parseConfigDocuments(y)[0] as any).machine.token
    assert.equal(token(ya), secrets[0].trustdinfo.token)
    assert.equal(token(yc), secrets[0].trustdinfo.token)
    assert.equal(token(yb), secrets[1].trustdinfo.token)
  }
})

test('a machine value the schema refuses is refused (503) while other machines of the profile are served', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  await s.profile('p', base(secrets[0], 'lab'), [])
  const good = await s.machine('good-1', 'p', { addresses: [{ link: 'eno1', addresses: ['10.0.0.5/24'], mtu: 9000 }], nameservers: [] })
  assert.match(await good.config(), /mtu: 9000/)
  const bad = await s.machine('bad-1', 'p', { addresses: [{ link: 'eno1', addresses: ['10.0.0.6/24'], mtu: 1500.5 }], nameservers: [] })
  const res = await bad.fetch()
  assert.equal(res.statusCode, 503, res.body)
  assert.match(res.body, /fails the Talos v1\.13\.9 schema: LinkConfig \/mtu/)
  const badName = await s.machine('bad_name', 'p')
  const r2 = await badName.fetch()
  assert.equal(r2.statusCode, 503)
  assert.match(r2.body, /invalid hostname 'bad_name'/)
  assert.match(await good.config(), /mtu: 9000/)
})

test('a class patch or selector changed between two fetches is in the second, made here, in an import transaction, or by another process', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rb-route-classes-'))
  const file = join(dir, 'rackboot.db')
  const s = await setup(file)
  const cli = await openSqliteInventory({ file })
  t.after(async () => {
    await cli.close()
    await s.close()
    rmSync(dir, { recursive: true, force: true })
  })
  const cls = (selectors: string[], value: string) =>
    ({ name: 'tuned', description: null, selectors, profile: null, patches: [{ machine: { sysctls: { 'kernel.pid_max': value } } }], managedBy: null })
  await s.profile('p', base(secrets[0], 'lab'), [])
  const m = await s.machine('node-1', 'p')
  assert.doesNotMatch(await m.config(), /pid_max/)
  await s.inventory.classes.put(cls(['name = "node-1"'], '4194304'), 1)
  assert.match(await m.config(), /kernel\.pid_max: "4194304"/)
  await s.inventory.transaction(async (tx) => {
    await tx.classes.put(cls(['name = "node-1"'], '65536'), 1)
  })
  assert.match(await m.config(), /kernel\.pid_max: "65536"/)
  await cli.classes.put(cls(['name = "node-1"'], '131072'), 1)
  assert.match(await m.config(), /kernel\.pid_max: "131072"/)
  await cli.classes.put(cls(['name = "node-2"'], '131072'), 1)
  assert.doesNotMatch(await m.config(), /pid_max/, 'a selector that no longer matches drops the class patch')
  await cli.profiles.put({ name: 'p', description: null, talosVersion: TALOS, arch: 'amd64', schematic: null, kernelArgs: [], baseConfig: base(secrets[0], 'lab'), patches: [{ machine: { sysctls: { 'vm.swappiness': '1' } } }], installDisk: null, managedBy: null }, 1)
  assert.match(await m.config(), /vm\.swappiness: "1"/, 'a profile changed by another process')
})
