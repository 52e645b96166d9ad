import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createEventBus } from '../../src/events/bus.js'
import { buildApp } from '../../src/http/index.js'
import { createDownloadGate } from '../../src/http/download-gate.js'
import { createAgentFileCheck } from '../../src/http/plugins/boot.js'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { attachTimeline, createBootService, createConfigService, createLifecycle } from '../../src/lifecycle/index.js'
import { createConfigLinter, generateConfig, generateSecretsBundle } from '../../src/talos/index.js'
import { silentLogger } from '../../src/log.js'
import { createMetricsRegistry } from '../../src/metrics.js'
import { leaseAddress } from '../support/leases.js'

const UUID = '8c3f5a7e-1b2d-4c6e-9f01-23456789abcd'
const QUERY = `mac=52-54-00-1a-b0-01&uuid=${UUID}&serial=LAB-SERIAL-1&manufacturer=LAB&product=test&arch=x86_64&platform=pcbios`

async function setup(options: { limit?: number; holdMode?: 'retry' | 'exit'; autoAccept?: boolean; installedReturns?: 'disk' | 'reinstall' | 'fail'; arm64Agent?: boolean; publicUrl?: string } = {}) {
  const inventory = await openSqliteInventory({ file: ':memory:' })
  // The test machine asks from 127.0.0.1, the address rackboot's DHCP bound to its MAC.
  await leaseAddress(inventory, '127.0.0.1', '52:54:00:1a:b0:01')
  const log = silentLogger()
  const bus = createEventBus()
  const timeline = attachTimeline({ inventory, bus, log })
  const clock = { now: () => Date.now() }
  const lifecycle = createLifecycle({ inventory, bus, log, clock })
  const service = createBootService({ inventory, lifecycle, log, clock, policy: { holdMode: options.holdMode ?? 'retry', autoAccept: options.autoAccept ?? false, ...(options.installedReturns ? { installedReturns: options.installedReturns } : {}) } })
  const assetsDir = mkdtempSync(join(tmpdir(), 'rb-assets-'))
  mkdirSync(join(assetsDir, 'agent'))
  writeFileSync(join(assetsDir, 'agent', 'vmlinuz'), Buffer.alloc(100_000, 7))
  writeFileSync(join(assetsDir, 'agent', 'agent.img'), Buffer.alloc(50_000, 9))
  if (options.arm64Agent !== false) {
    mkdirSync(join(assetsDir, 'agent', 'arm64'))
    writeFileSync(join(assetsDir, 'agent', 'arm64', 'vmlinuz'), Buffer.alloc(1000, 7))
    writeFileSync(join(assetsDir, 'agent', 'arm64', 'agent.img'), Buffer.alloc(1000, 9))
  }
  mkdirSync(join(assetsDir, 'talos', 'v1.13.9', 'amd64'), { recursive: true })
  writeFileSync(join(assetsDir, 'talos', 'v1.13.9', 'amd64', 'vmlinuz'), 'kernel')
  const gate = createDownloadGate({ limit: options.limit ?? 10, holdMs: 60_000 })
  const configs = createConfigService({ inventory, lifecycle, log, clock, linter: createConfigLinter() })
  const app = await buildApp({
    inventory, lifecycle, log, registry: createMetricsRegistry(), version: 'test',
    boot: { service, gate, assetsDir, publicUrl: options.publicUrl ?? '', hold: { seconds: 30, maxSeconds: 300 }, agent: { after: 'reboot', kernelArgs: { amd64: ['console=ttyS0,115200n8'], arm64: ['console=ttyAMA0,115200'] }, assetsDir }, configs },
  })
  return { inventory, lifecycle, app, timeline, gate, assetsDir, async close() { await app.close(); await timeline.flush(); await inventory.close() } }
}

function tokenOf(script: string): string {
  const m = /rackboot\.token=([A-Za-z0-9]+)/.exec(script)
  assert.ok(m, `no agent token in:\n${script}`)
  return m[1]!
}

const REPORT = {
  agentVersion: '1',
  smbios: { uuid: UUID, serial: 'LAB-SERIAL-1', manufacturer: 'LAB', product: 'test' },
  cpu: { model: 'QEMU Virtual CPU', sockets: 1, cores: 2, threads: 2 },
  memory: { totalBytes: 512 * 2 ** 20 },
  disks: [{ name: 'vda', sizeBytes: 2 ** 30, rotational: true, type: 'virtual', serial: 'DISK-1' }],
  nics: [{ name: 'eth0', mac: '52:54:00:1a:b0:01', driver: 'virtio_net', link: true }, { name: 'eth1', mac: '52:54:00:1a:b0:02', driver: 'e1000', link: false }],
}

test('an unknown machine gets the discovery agent; its report makes it discovered with its hardware', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  const res = await s.app.inject({ url: `/boot.ipxe?${QUERY}`, headers: { host: '198.18.0.1:8080' } })
  assert.equal(res.statusCode, 200)
  const script = res.body
  assert.match(script, /^#!ipxe\n/)
  assert.match(script, /kernel http:\/\/198\.18\.0\.1:8080\/assets\/agent\/vmlinuz\?m=m-[0-9a-f]{12} initrd=agent\.img console=ttyS0,115200n8 rackboot\.report=http:\/\/198\.18\.0\.1:8080\/api\/v1\/agent\/report rackboot\.token=\w+ rackboot\.machine=m-[0-9a-f]{12} rackboot\.after=reboot/)
  assert.match(script, /initrd --name agent\.img http:\/\/198\.18\.0\.1:8080\/assets\/agent\/agent\.img/)
  const machine = (await s.inventory.machines.byMac('52:54:00:1a:b0:01'))!
  assert.equal(machine.state, 'new')
  assert.equal(machine.uuid, UUID)
  assert.equal(machine.serial, 'LAB-SERIAL-1')
  assert.equal(machine.firmware, 'bios')
  assert.equal(machine.arch, 'amd64')

  const denied = await s.app.inject({ method: 'POST', url: '/api/v1/agent/report', payload: REPORT })
  assert.equal(denied.statusCode, 401)
  const forged = await s.app.inject({ method: 'POST', url: '/api/v1/agent/report', payload: REPORT, headers: { authorization: 'Bearer AAAAAAAAAAAAAAAAAAAAAAAA' } })
  assert.equal(forged.statusCode, 403)
  assert.equal(forged.json().error, 'RB_ERR_FORBIDDEN')
  const bad = await s.app.inject({ method: 'POST', url: '/api/v1/agent/report', payload: { disks: 'lots' }, headers: { authorization: `Bearer ${tokenOf(script)}` } })
  assert.equal(bad.statusCode, 400)

  const ok = await s.app.inject({ method: 'POST', url: '/api/v1/agent/report', payload: REPORT, headers: { authorization: `Bearer ${tokenOf(script)}` } })
  assert.equal(ok.statusCode, 200, ok.body)
  assert.deepEqual(ok.json(), { machineId: machine.id, state: 'discovered' })
  const after = (await s.inventory.machines.get(machine.id))!
  assert.equal(after.hardware?.cpu?.cores, 2)
  assert.equal(after.hardware?.disks?.[0]?.serial, 'DISK-1')
  assert.deepEqual(after.nics.map((n) => `${n.mac}:${n.name}:${n.boot}`), ['52:54:00:1a:b0:01:eth0:true', '52:54:00:1a:b0:02:eth1:false'])
  await s.timeline.flush()
  const types = (await s.inventory.events.list({ machineId: machine.id })).map((e) => e.type)
  assert.deepEqual(types, ['machine.created', 'boot.script', 'boot.agent', 'machine.state'])
})

test('discovered and ready machines hold in a retry loop with backoff (or exit to disk by setting)', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  const m = await s.inventory.machines.create({ nics: [{ mac: '52:54:00:1a:b0:01', name: null, boot: true }], state: 'discovered' }, 1)
  const first = (await s.app.inject({ url: `/boot.ipxe?${QUERY}`, headers: { host: 'rb:8080' } })).body
  assert.match(first, /discovered: waiting to be accepted/)
  const sleep1 = Number(/sleep (\d+)/.exec(first)![1])
  assert.ok(sleep1 >= 24 && sleep1 <= 36, `first wait ${sleep1}`)
  assert.match(first, /chain --replace --autofree http:\/\/rb:8080\/boot\.ipxe\?mac=\$\{net0\/mac:hexhyp\}&uuid=\$\{uuid\}.*&attempt=1/)
  const later = (await s.app.inject({ url: `/boot.ipxe?${QUERY}&attempt=6`, headers: { host: 'rb:8080' } })).body
  const sleep6 = Number(/sleep (\d+)/.exec(later)![1])
  assert.ok(sleep6 >= 240 && sleep6 <= 360, `capped wait ${sleep6}`)
  await s.lifecycle.accept(m.id, 'test')
  assert.match((await s.app.inject({ url: `/boot.ipxe?${QUERY}`, headers: { host: 'rb:8080' } })).body, /ready: waiting to be allocated/)
  const e = await setup({ holdMode: 'exit' })
  t.after(() => e.close())
  await e.inventory.machines.create({ nics: [{ mac: '52:54:00:1a:b0:01', name: null, boot: true }], state: 'ready' }, 1)
  assert.match((await e.app.inject({ url: `/boot.ipxe?${QUERY}`, headers: { host: 'rb:8080' } })).body, /^#!ipxe\necho rackboot: .*ready.*\nexit\n$/)
})

test('provisioning boots Talos with the version\'s kernel args and a per-boot config URL; installed exits; always-PXE does not', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  await s.inventory.profiles.put({ name: 'w', description: null, talosVersion: 'v1.13.9', arch: 'amd64', schematic: null, kernelArgs: ['console=ttyS0,115200n8'], baseConfig: null, patches: [], managedBy: null }, 1)
  const m = await s.inventory.machines.create({ nics: [{ mac: '52:54:00:1a:b0:01', name: null, boot: true }], state: 'provisioning', profile: 'w' }, 1)
  const script = (await s.app.inject({ url: `/boot.ipxe?${QUERY}`, headers: { host: 'rb:8080' } })).body
  assert.match(script, /kernel http:\/\/rb:8080\/assets\/talos\/v1\.13\.9\/amd64\/vmlinuz\?m=m-\w+ initrd=initramfs\.xz talos\.platform=metal /)
  assert.match(script, / slab_nomerge pti=on /)
  assert.match(script, / proc_mem\.force_override=never/)
  assert.match(script, / talos\.config=http:\/\/rb:8080\/talos\/config\?t=[A-Za-z0-9]{32}/)
  assert.match(script, / console=ttyS0,115200n8/)
  assert.match(script, /initrd --name initramfs\.xz http:\/\/rb:8080\/assets\/talos\/v1\.13\.9\/amd64\/initramfs\.xz/)
  const token = /talos\.config=\S+\?t=(\w+)/.exec(script)![1]!
  assert.equal((await s.inventory.bootTokens.verify(token, 'config', Date.now()))?.machineId, m.id)

  await s.lifecycle.transition(m.id, 'installed', 'test')
  assert.match((await s.app.inject({ url: `/boot.ipxe?${QUERY}`, headers: { host: 'rb:8080' } })).body, /installed: boot from disk\nexit\n$/)
  await s.inventory.machines.update(m.id, { alwaysPxe: true }, 2)
  assert.match((await s.app.inject({ url: `/boot.ipxe?${QUERY}`, headers: { host: 'rb:8080' } })).body, /talos\.platform=metal/)
  await s.lifecycle.transition(m.id, 'maintenance', 'test')
  assert.match((await s.app.inject({ url: `/boot.ipxe?${QUERY}`, headers: { host: 'rb:8080' } })).body, /maintenance\nexit\n$/)
})

test('allocated without a usable profile: the console says why and the machine waits', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  await s.inventory.machines.create({ nics: [{ mac: '52:54:00:1a:b0:01', name: null, boot: true }], state: 'provisioning' }, 1)
  const script = (await s.app.inject({ url: `/boot.ipxe?${QUERY}`, headers: { host: 'rb:8080' } })).body
  assert.match(script, /cannot boot: allocated, but no profile applies/)
  assert.match(script, /sleep \d+/)
})

test('past the download limit a machine is told to wait and retry, and gets its slot once one frees up', async (t) => {
  const s = await setup({ limit: 1 })
  t.after(() => s.close())
  await leaseAddress(s.inventory, '127.0.0.2', '02:00:00:00:00:01')
  await leaseAddress(s.inventory, '127.0.0.3', '02:00:00:00:00:02')
  const a = (await s.app.inject({ url: `/boot.ipxe?mac=02-00-00-00-00-01&arch=x86_64`, headers: { host: 'rb' }, remoteAddress: '127.0.0.2' })).body
  assert.match(a, /kernel /)
  const b = (await s.app.inject({ url: `/boot.ipxe?mac=02-00-00-00-00-02&arch=x86_64`, headers: { host: 'rb' }, remoteAddress: '127.0.0.3' })).body
  assert.match(b, /1 machines are downloading, waiting for a slot/)
  assert.match(b, /sleep (\d+)\nchain --replace --autofree http:\/\/rb\/boot\.ipxe\?.*&attempt=0/)
  // Machine a finishes its initrd download: the slot frees.
  const mA = (await s.inventory.machines.byMac('02:00:00:00:00:01'))!
  const dl = await s.app.inject({ url: `/assets/agent/agent.img?m=${mA.id}` })
  assert.equal(dl.statusCode, 200)
  assert.match((await s.app.inject({ url: `/boot.ipxe?mac=02-00-00-00-00-02&arch=x86_64`, headers: { host: 'rb' }, remoteAddress: '127.0.0.3' })).body, /kernel /)
})

test('assets: Range, HEAD, ETag, no way out of the root, downloads on the timeline', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  const m = await s.inventory.machines.create({ name: 'dl' }, 1)
  const range = await s.app.inject({ url: `/assets/agent/vmlinuz?m=${m.id}`, headers: { range: 'bytes=100-199' } })
  assert.equal(range.statusCode, 206)
  assert.equal(range.headers['content-range'], 'bytes 100-199/100000')
  assert.equal(range.rawPayload.length, 100)
  const head = await s.app.inject({ method: 'HEAD', url: '/assets/agent/vmlinuz' })
  assert.equal(head.statusCode, 200)
  assert.equal(head.headers['content-length'], '100000')
  const etag = head.headers.etag as string
  assert.ok(etag)
  assert.equal((await s.app.inject({ url: '/assets/agent/vmlinuz', headers: { 'if-none-match': etag } })).statusCode, 304)
  for (const url of ['/assets/../package.json', '/assets/%2e%2e/%2e%2e/etc/passwd', '/assets/agent/../../x', '/assets/.secret', '/assets/agent/missing']) {
    const res = await s.app.inject({ url })
    assert.ok([403, 404].includes(res.statusCode), `${url} -> ${res.statusCode}`)
  }
  await s.app.inject({ url: `/assets/agent/agent.img?m=${m.id}` })
  await s.timeline.flush()
  const events = await s.inventory.events.list({ machineId: m.id, types: ['boot.asset'] })
  assert.equal(events.length, 2)
  assert.equal(events[1]!.data.path, 'agent/agent.img')
  assert.equal(events[1]!.data.bytes, 50_000)
  assert.match(events[1]!.message, /downloaded agent\/agent\.img: 0\.0 MiB in/)
})

test('bad boot requests get a 400 with a message', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  const none = await s.app.inject({ url: '/boot.ipxe?arch=x86_64' })
  assert.equal(none.statusCode, 400)
  assert.match(none.json().message, /needs at least one of mac, uuid or serial/)
  const attempt = await s.app.inject({ url: `/boot.ipxe?${QUERY}&attempt=lots` })
  assert.equal(attempt.statusCode, 400)
  assert.equal(attempt.json().error, 'RB_ERR_VALIDATION')
  assert.match((await s.app.inject({ url: '/ipxe/bootstrap.ipxe', headers: { host: 'rb:8080' } })).body, /chain --replace --autofree http:\/\/rb:8080\/boot\.ipxe\?mac=\$\{net0\/mac:hexhyp\}/)
})

test('the Talos config goes only to its machine: per-boot token and address; rendered, linted, never empty', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  const secrets = await generateSecretsBundle({ talosVersion: 'v1.13.9', rsaBits: 2048 })
  const base = generateConfig({ secrets, clusterName: 'lab', endpoint: 'https://198.18.0.10:6443', talosVersion: 'v1.13.9', role: 'worker' }).yaml
  await s.inventory.profiles.put({ name: 'w', description: null, talosVersion: 'v1.13.9', arch: 'amd64', schematic: null, kernelArgs: [], baseConfig: base, patches: [{ machine: { kubelet: { extraArgs: { 'rotate-server-certificates': 'true' } } } }], managedBy: null }, 1)
  const m = await s.inventory.machines.create({ name: 'r12-u07', nics: [{ mac: '52:54:00:1a:b0:01', name: null, boot: true }], state: 'provisioning', profile: 'w' }, 1)
  await s.inventory.machines.setHardware(m.id, { disks: [{ name: 'sda', sizeBytes: 4e12, type: 'hdd', rotational: true }, { name: 'nvme0n1', sizeBytes: 1e12, type: 'nvme', serial: 'NV1' }] }, 1)
  await leaseAddress(s.inventory, '198.18.0.50', '52:54:00:1a:b0:01')
  const script = (await s.app.inject({ url: `/boot.ipxe?${QUERY}`, headers: { host: 'rb:8080' }, remoteAddress: '198.18.0.50' })).body
  const url = /talos\.config=http:\/\/rb:8080(\S+)/.exec(script)![1]!
  // Talos may get another lease than iPXE had: an address leased to one of the machine's NICs is its own. The first
  // fetch binds the token to its address for the rest of the boot.
  await leaseAddress(s.inventory, '198.18.0.77', '52:54:00:1a:b0:01')
  const ok = await s.app.inject({ url, remoteAddress: '198.18.0.77' })
  assert.equal(ok.statusCode, 200, ok.body)
  assert.match(String(ok.headers['content-type']), /yaml/)
  assert.ok(ok.body.length > 1000)
  assert.match(ok.body, /hostname: r12-u07/)
  assert.match(ok.body, /rotate-server-certificates: "true"/)
  assert.match(ok.body, /disk: \/dev\/nvme0n1|nvme0n1/)
  const elsewhere = await s.app.inject({ url, remoteAddress: '198.18.0.99' })
  assert.equal(elsewhere.statusCode, 403)
  const second = await s.app.inject({ url, remoteAddress: '198.18.0.50' })
  assert.equal(second.statusCode, 403)
  assert.match(second.json().message, /already served to 198\.18\.0\.77/)
  const forged = await s.app.inject({ url: '/talos/config?t=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', remoteAddress: '198.18.0.50' })
  assert.equal(forged.statusCode, 403)
  assert.equal((await s.app.inject({ url: '/talos/config', remoteAddress: '198.18.0.50' })).statusCode, 400)
  assert.equal((await s.app.inject({ url, remoteAddress: '198.18.0.77' })).statusCode, 200, 'the same address may fetch again (Talos lost the answer)')
  // A config that fails the schema is not served, and the timeline says why.
  await s.inventory.profiles.put({ name: 'w', description: null, talosVersion: 'v1.13.9', arch: 'amd64', schematic: null, kernelArgs: [], baseConfig: base, patches: [{ machine: { kubelet: { extraArgs: 'not-a-map' } } }], managedBy: null }, 2)
  const broken = await s.app.inject({ url, remoteAddress: '198.18.0.77' })
  assert.equal(broken.statusCode, 503)
  await s.timeline.flush()
  const events = await s.inventory.events.list({ machineId: m.id, types: ['boot.config'] })
  assert.deepEqual(events.map((e) => e.data.status), [200, 403, 403, 200, 503])
  assert.match(events.at(-1)!.message, /config not served: config fails the Talos v1\.13\.9 schema/)
})

test('a released machine boots the agent to wipe its disks; it returns to ready only when every disk was wiped', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  const m = await s.inventory.machines.create({ nics: [{ mac: '52:54:00:1a:b0:01', name: null, boot: true }], state: 'released' }, 1)
  const first = (await s.app.inject({ url: `/boot.ipxe?${QUERY}`, headers: { host: 'rb' } })).body
  assert.match(first, /rackboot\.wipe=1/)
  assert.match(first, /BOOTIF=01-\$\{net0\/mac:hexhyp\}/)
  const failed = await s.app.inject({ method: 'POST', url: '/api/v1/agent/report', payload: { ...REPORT, wiped: ['vda'], wipeFailed: ['vdb'] }, headers: { authorization: `Bearer ${tokenOf(first)}` } })
  assert.equal(failed.statusCode, 200)
  assert.equal(failed.json().state, 'released')
  const again = (await s.app.inject({ url: `/boot.ipxe?${QUERY}`, headers: { host: 'rb' } })).body
  const ok = await s.app.inject({ method: 'POST', url: '/api/v1/agent/report', payload: { ...REPORT, wiped: ['vda', 'vdb'] }, headers: { authorization: `Bearer ${tokenOf(again)}` } })
  assert.equal(ok.json().state, 'ready')
  await s.timeline.flush()
  const msgs = (await s.inventory.events.list({ machineId: m.id })).map((e) => e.message)
  assert.ok(msgs.some((x) => /wipe failed on vdb: machine stays released/.test(x)))
  assert.ok(msgs.some((x) => /released → ready: disks wiped \(vda, vdb\)/.test(x)))
})

test('an installed machine that network-boots again boots its disk, is reinstalled, or is marked failed, by setting', async (t) => {
  const profile = { name: 'w', description: null, talosVersion: 'v1.13.9', arch: 'amd64' as const, schematic: null, kernelArgs: [], baseConfig: null, patches: [], managedBy: null }
  const results: Record<string, { script: string; state: string }> = {}
  for (const mode of ['disk', 'reinstall', 'fail'] as const) {
    const s = await setup({ installedReturns: mode })
    t.after(() => s.close())
    await s.inventory.profiles.put(profile, 1)
    const m = await s.inventory.machines.create({ nics: [{ mac: '52:54:00:1a:b0:01', name: null, boot: true }], state: 'installed', profile: 'w' }, 1)
    const script = (await s.app.inject({ url: `/boot.ipxe?${QUERY}`, headers: { host: 'rb:8080' } })).body
    results[mode] = { script, state: (await s.inventory.machines.get(m.id))!.state }
    await s.timeline.flush()
    if (mode !== 'disk') {
      const msgs = (await s.inventory.events.list({ machineId: m.id })).map((e) => e.message)
      assert.ok(msgs.some((x) => /installed machine network-booted again from 127\.0\.0\.1/.test(x)), msgs.join('\n'))
    }
  }
  assert.equal(results.disk!.state, 'installed')
  assert.match(results.disk!.script, /installed: boot from disk\nexit\n$/)
  assert.equal(results.reinstall!.state, 'provisioning')
  assert.match(results.reinstall!.script, /talos\.config=/)
  assert.equal(results.fail!.state, 'failed')
  assert.match(results.fail!.script, /failed: quarantined/)
})

const ARM_QUERY = QUERY.replace('arch=x86_64', 'arch=arm64').replace('platform=pcbios', 'platform=efi')

test('an arm64 iPXE gets the arm64 agent with its own console; amd64 keeps its own', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  const script = (await s.app.inject({ url: `/boot.ipxe?${ARM_QUERY}`, headers: { host: 'rb:8080' } })).body
  assert.match(script, /kernel http:\/\/rb:8080\/assets\/agent\/arm64\/vmlinuz\?m=m-\w+ initrd=agent\.img console=ttyAMA0,115200 rackboot\.report=\S+ rackboot\.token=\w+ /)
  assert.match(script, /initrd --name agent\.img http:\/\/rb:8080\/assets\/agent\/arm64\/agent\.img\?m=m-\w+/)
  assert.doesNotMatch(script, /ttyS0/)
  const machine = (await s.inventory.machines.byMac('52:54:00:1a:b0:01'))!
  assert.equal(machine.arch, 'arm64')
  // The agent's files are served from there.
  const dl = await s.app.inject({ url: `/assets/agent/arm64/vmlinuz?m=${machine.id}` })
  assert.equal(dl.statusCode, 200)
})

test('the loader\'s arch wins over the inventory\'s for the agent, and the timeline says they differ', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  const m = await s.inventory.machines.create({ nics: [{ mac: '52:54:00:1a:b0:01', name: null, boot: true }], arch: 'arm64', state: 'new' }, 1)
  const x86 = (await s.app.inject({ url: `/boot.ipxe?${QUERY}`, headers: { host: 'rb' } })).body
  assert.match(x86, /kernel http:\/\/rb\/assets\/agent\/vmlinuz\?m=\S+ initrd=agent\.img console=ttyS0,115200n8 /)
  // No claim: the recorded arch.
  const none = (await s.app.inject({ url: `/boot.ipxe?mac=52-54-00-1a-b0-01`, headers: { host: 'rb' } })).body
  assert.match(none, /kernel http:\/\/rb\/assets\/agent\/arm64\/vmlinuz\?m=\S+ initrd=agent\.img console=ttyAMA0,115200 /)
  await s.timeline.flush()
  const scripts = await s.inventory.events.list({ machineId: m.id, types: ['boot.script'] })
  const conflict = scripts.find((e) => /the loader runs amd64, the inventory says arm64/.test(e.message))
  assert.ok(conflict, scripts.map((e) => e.message).join('\n'))
  assert.equal(conflict.data.bootArch, 'amd64')
  assert.equal(conflict.data.recordedArch, 'arm64')
  // A tech's recorded arch is not overwritten by the claim.
  assert.equal((await s.inventory.machines.get(m.id))!.arch, 'arm64')
})

test('an arm64 agent missing on the server: the machine holds with the fix on its console and a failed timeline step', async (t) => {
  const s = await setup({ arm64Agent: false, limit: 1 })
  t.after(() => s.close())
  const script = (await s.app.inject({ url: `/boot.ipxe?${ARM_QUERY}`, headers: { host: 'rb' } })).body
  assert.doesNotMatch(script, /kernel /)
  assert.match(script, /cannot boot: the arm64 discovery agent is missing on this server \(agent\/arm64\/vmlinuz, agent\/arm64\/agent\.img\): run rackboot assets build agent --arch arm64/)
  assert.match(script, /sleep \d+\nchain --replace --autofree http:\/\/rb\/boot\.ipxe\?.*&attempt=1/)
  const m = (await s.inventory.machines.byMac('52:54:00:1a:b0:01'))!
  await s.timeline.flush()
  const blocked = (await s.inventory.events.list({ machineId: m.id, types: ['boot.script'] })).filter((e) => e.data.blocked)
  assert.equal(blocked.length, 1)
  assert.equal(blocked[0]!.data.fix, 'rackboot assets build agent --arch arm64')
  // No download slot was taken for a boot that cannot happen (the limit is 1): an amd64 machine still boots.
  await leaseAddress(s.inventory, '127.0.0.2', '02:00:00:00:00:01')
  assert.match((await s.app.inject({ url: `/boot.ipxe?mac=02-00-00-00-00-01&arch=x86_64`, headers: { host: 'rb' }, remoteAddress: '127.0.0.2' })).body, /kernel http:\/\/rb\/assets\/agent\/vmlinuz/)
})

test('an arm64 machine installs arm64 Talos with arm64 console args, from its own arch or its profile\'s', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  await s.inventory.profiles.put({ name: 'any', description: null, talosVersion: 'v1.13.9', arch: null, schematic: null, kernelArgs: [], baseConfig: null, patches: [], managedBy: null }, 1)
  const m = await s.inventory.machines.create({ nics: [{ mac: '52:54:00:1a:b0:01', name: null, boot: true }], arch: 'arm64', state: 'provisioning', profile: 'any' }, 1)
  for (const query of [ARM_QUERY, 'mac=52-54-00-1a-b0-01']) {
    const script = (await s.app.inject({ url: `/boot.ipxe?${query}`, headers: { host: 'rb' } })).body
    assert.match(script, /kernel http:\/\/rb\/assets\/talos\/v1\.13\.9\/arm64\/vmlinuz\?m=\S+ initrd=initramfs\.xz talos\.platform=metal console=ttyAMA0 console=tty0 /)
    assert.match(script, /initrd --name initramfs\.xz http:\/\/rb\/assets\/talos\/v1\.13\.9\/arm64\/initramfs\.xz/)
    assert.doesNotMatch(script, /ttyS0|amd64/)
  }
  // A profile for arm64 on a machine the inventory has no arch for.
  await s.inventory.profiles.put({ name: 'arm', description: null, talosVersion: 'v1.13.9', arch: 'arm64', schematic: null, kernelArgs: [], baseConfig: null, patches: [], managedBy: null }, 2)
  await s.inventory.machines.update(m.id, { arch: null, profile: 'arm' }, 2)
  assert.match((await s.app.inject({ url: `/boot.ipxe?mac=52-54-00-1a-b0-01`, headers: { host: 'rb' } })).body, /talos\/v1\.13\.9\/arm64\/vmlinuz\S* initrd=initramfs\.xz talos\.platform=metal console=ttyAMA0 console=tty0 /)
  // An x86 loader asking for an arm64 profile's Talos: it could not run it, so it waits and the console says why.
  const x86 = (await s.app.inject({ url: `/boot.ipxe?${QUERY}`, headers: { host: 'rb' } })).body
  assert.match(x86, /cannot boot: profile arm installs arm64 Talos, but this machine's boot loader runs amd64/)
  assert.doesNotMatch(x86, /kernel /)
})

test('the agent file check stats once per interval per arch, and sees an agent built meanwhile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rb-agent-check-'))
  let now = 1_000
  const missing = createAgentFileCheck(dir, () => now)
  assert.deepEqual(missing('arm64'), ['agent/arm64/vmlinuz', 'agent/arm64/agent.img'])
  assert.deepEqual(missing('amd64'), ['agent/vmlinuz', 'agent/agent.img'])
  mkdirSync(join(dir, 'agent', 'arm64'), { recursive: true })
  writeFileSync(join(dir, 'agent', 'arm64', 'vmlinuz'), 'k')
  writeFileSync(join(dir, 'agent', 'arm64', 'agent.img'), 'i')
  // Remembered: a boot storm does not stat per request.
  now += 4_000
  assert.equal(missing('arm64').length, 2)
  now += 1_000
  assert.deepEqual(missing('arm64'), [])
  // A directory where a file should be is not an agent.
  mkdirSync(join(dir, 'agent', 'vmlinuz'), { recursive: true })
  now += 5_000
  assert.deepEqual(missing('amd64'), ['agent/vmlinuz', 'agent/agent.img'])
})

test('a machine that reached rackboot over IPv6 gets URLs on that IPv6 address when publicUrl names an IPv4 one', async (t) => {
  const s = await setup({ publicUrl: 'http://198.18.0.1:8080' })
  t.after(() => s.close())
  // The same machine asks over IPv6 (a DHCPv6 binding vouches for ::1) and over IPv4 (its DHCPv4 lease).
  await leaseAddress(s.inventory, '::1', '52:54:00:1a:b0:01')
  await s.app.listen({ host: '::', port: 0 })
  const port = (s.app.server.address() as { port: number }).port
  const get = async (host: string) => {
    const res = await fetch(`http://${host}:${port}/boot.ipxe?${QUERY}`)
    assert.equal(res.status, 200)
    return res.text()
  }
  const v6 = await get('[::1]')
  assert.match(v6, new RegExp(`kernel http://\\[::1\\]:${port}/assets/agent/vmlinuz\\?m=m-[0-9a-f]{12} .*rackboot\\.report=http://\\[::1\\]:${port}/api/v1/agent/report `))
  assert.doesNotMatch(v6, /198\.18\.0\.1/, 'no IPv4 URL for an IPv6 client')
  const v4 = await get('127.0.0.1')
  assert.match(v4, /kernel http:\/\/198\.18\.0\.1:8080\/assets\/agent\/vmlinuz/, 'an IPv4 client keeps publicUrl')
})
