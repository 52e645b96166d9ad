// GRUB over rackboot's TFTP: grub.cfg-01-<mac> is the machine's config from the lifecycle (one plan per boot, though
// GRUB opens it twice), a grub.cfg not on disk is the bootstrap, and GRUB's probes for files that are not there are
// "not found" to GRUB and a counter here, never a failed step on the machine's timeline.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createEventBus } from '../../src/events/bus.js'
import { createDownloadGate } from '../../src/http/download-gate.js'
import { createGrubConfigs } from '../../src/http/grub/service.js'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { attachTimeline, createBootService, createLifecycle, createTftpObserver } from '../../src/lifecycle/index.js'
import { silentLogger } from '../../src/log.js'
import { createMetricsRegistry } from '../../src/metrics.js'
import { createGrubTftp, grubProbeKind } from '../../src/tftp/grub-source.js'
import { createFileSource, createRoutingSource, createTftpServer } from '../../src/tftp/index.js'
import { ErrorCode } from '../../src/tftp/packet.js'
import { leaseAddress } from '../support/leases.js'
import { DEFAULT_SETTINGS, expectError, metricValue, RawClient, tempDir, waitFor } from './support.js'
import { encodeRequest, Opcode } from '../../src/tftp/packet.js'

const MAC = '52:54:00:1a:b0:01'
const CFG = 'grub/grub.cfg-01-52-54-00-1a-b0-01'
const BASE = 'http://198.18.0.1:8080'

test('which names are GRUB probes', () => {
  const yes: Record<string, string> = {
    'grub/grub.cfg-01-52-54-00-1a-b0-01': 'config', 'grub/grub.cfg-C6120064': 'config', 'boot/grub/grub.cfg-C': 'config', '/grub/grub.cfg': 'config',
    'grub/grub.cfg-8c3f5a7e-1b2d-4c6e-9f01-23456789abcd': 'config', 'grub/x86_64-efi/linux.mod': 'module', 'boot/grub/arm64-efi/fs.lst': 'module',
    'grub/i386-pc/command.lst': 'module', 'grub/locale/en.mo': 'locale', 'grub/fonts/unicode.pf2': 'font', 'grub/grubenv': 'env',
  }
  for (const [path, kind] of Object.entries(yes)) assert.equal(grubProbeKind(path), kind, path)
  for (const path of ['ipxe.efi', 'undionly.kpxe', 'grub/x86_64-efi/core.efi', 'pxelinux.cfg/default', 'x86_64-efi.mod', 'grub.cfg.bak', 'boot.ipxe']) {
    assert.equal(grubProbeKind(path), null, path)
  }
})

async function setup(t: { after(fn: () => Promise<void>): void }, options: { failConfig?: boolean } = {}) {
  const root = await tempDir(t, 'rb-grub-tftp-')
  await mkdir(join(root, 'grub', 'x86_64-efi'), { recursive: true })
  await writeFile(join(root, 'grub', 'x86_64-efi', 'normal.mod'), Buffer.alloc(3000, 1))
  await mkdir(join(root, 'boot', 'grub'), { recursive: true })
  await writeFile(join(root, 'boot', 'grub', 'grub.cfg'), '# the operator\'s own\n')
  const inventory = await openSqliteInventory({ file: ':memory:' })
  await leaseAddress(inventory, '127.0.0.1', MAC)
  const log = silentLogger()
  const bus = createEventBus()
  const timeline = attachTimeline({ inventory, bus, log })
  const clock = { now: () => Date.now() }
  const lifecycle = createLifecycle({ inventory, bus, log, clock })
  const boot = createBootService({ inventory, lifecycle, log, clock, policy: { holdMode: 'retry', autoAccept: false } })
  const configs = createGrubConfigs({
    boot, lifecycle, gate: createDownloadGate({ limit: 10, holdMs: 60_000 }), publicUrl: BASE,
    hold: { seconds: 30, maxSeconds: 300 }, agent: { after: 'reboot', kernelArgs: { amd64: ['console=ttyS0,115200n8'], arm64: ['console=ttyAMA0,115200'] } },
  })
  const registry = createMetricsRegistry()
  const files = createFileSource({ root })
  const grub = createGrubTftp({
    config: options.failConfig ? async () => { throw new Error('database is gone') } : (mac, ip) => configs.forMac({ mac }, ip, BASE),
    bootstrap: () => configs.bootstrap(BASE),
    files, registry, log,
  })
  const source = createRoutingSource({ fallback: files })
  grub.attach(source)
  const finished: string[] = []
  const timelineObserver = createTftpObserver({ lifecycle, inventory, log })
  const server = createTftpServer({
    settings: DEFAULT_SETTINGS, source, log, metrics: registry,
    observer: grub.quiet({ transferFinished: (info) => { finished.push(info.file); timelineObserver.transferFinished(info) } }),
  })
  const { port } = await server.start()
  t.after(async () => {
    await server.stop()
    await timeline.flush()
    await inventory.close()
  })
  return { inventory, registry, port, finished, timeline }
}

/** Downloads as GRUB does (blksize 1024, tsize). */
async function get(client: RawClient, port: number, file: string): Promise<string> {
  return (await client.download(port, file, { blksize: '1024', tsize: '0' })).data.toString('utf8')
}

test('grub.cfg-01-<mac> is the machine\'s config: one plan per boot though GRUB opens it twice', async (t) => {
  const s = await setup(t)
  const client = await RawClient.open(t)
  const first = await get(client, s.port, CFG)
  assert.match(first, /^if linux '\(http,198\.18\.0\.1:8080\)\/assets\/agent\/vmlinuz\?m=m-\w+' .*rackboot\.token=\w+ .*BOOTIF=01-52-54-00-1a-b0-01; then$/m)
  assert.match(first, /^set rackboot_next='\(http,198\.18\.0\.1:8080\)\/grub\/grub\.cfg-01-52-54-00-1a-b0-01\?attempt=1'$/m)
  const second = await get(client, s.port, `/${CFG.replace('1a-b0', '1A-B0')}`)
  assert.equal(second, first, 'the same bytes, the same token')
  const machine = (await s.inventory.machines.byMac(MAC))!
  await waitFor(() => s.finished.length === 2)
  await s.timeline.flush()
  const events = await s.inventory.events.list({ machineId: machine.id })
  assert.deepEqual(events.filter((e) => e.type === 'boot.script').map((e) => e.data.decision), ['discovery'])
  const tftp = events.filter((e) => e.type === 'boot.tftp')
  assert.equal(tftp.length, 2)
  assert.ok(tftp.every((e) => e.data.ok === true), JSON.stringify(tftp))
  assert.equal(await metricValue(s.registry, 'rackboot_tftp_grub_configs_total', { result: 'served' }), 1)
  assert.equal(await metricValue(s.registry, 'rackboot_tftp_grub_configs_total', { result: 'reused' }), 1)
})

test('GRUB\'s probes for files that are not there are "not found", counted, and off the timeline; other misses stay on it', async (t) => {
  const s = await setup(t)
  const client = await RawClient.open(t)
  await get(client, s.port, CFG)
  const machine = (await s.inventory.machines.byMac(MAC))!
  const probes = ['grub/grub.cfg-8c3f5a7e-1b2d-4c6e-9f01-23456789abcd', 'grub/grub.cfg-7F000001', 'grub/grub.cfg-7F00000', 'grub/grub.cfg-7', 'grub/x86_64-efi/missing.mod', 'grub/x86_64-efi/fs.lst', 'grub/locale/en.mo', 'grub/fonts/unicode.pf2', 'grub/grubenv']
  for (const file of probes) {
    client.send(encodeRequest(Opcode.RRQ, file, 'octet', { blksize: '1024', tsize: '0' }), s.port)
    expectError(await client.next(), ErrorCode.FILE_NOT_FOUND)
  }
  // A module that is there is served from disk; a missing loader is a real failure.
  assert.equal((await client.download(s.port, 'grub/x86_64-efi/normal.mod')).data.length, 3000)
  client.send(encodeRequest(Opcode.RRQ, 'snponly.efi', 'octet'), s.port)
  expectError(await client.next(), ErrorCode.FILE_NOT_FOUND)
  await waitFor(() => s.finished.length === 3)
  await new Promise((r) => setTimeout(r, 100))
  await s.timeline.flush()
  const tftp = (await s.inventory.events.list({ machineId: machine.id, types: ['boot.tftp'] })).map((e) => `${e.data.file}:${e.data.ok}`)
  assert.deepEqual(tftp, [`${CFG}:true`, 'grub/x86_64-efi/normal.mod:true', 'snponly.efi:false'])
  assert.equal(await metricValue(s.registry, 'rackboot_tftp_grub_probes_total'), probes.length)
  assert.equal(await metricValue(s.registry, 'rackboot_tftp_grub_probes_total', { kind: 'config' }), 4)
  assert.equal(await metricValue(s.registry, 'rackboot_tftp_grub_probes_total', { kind: 'module' }), 2)
})

test('a grub.cfg that is not on disk is the bootstrap; one that is, is the operator\'s', async (t) => {
  const s = await setup(t)
  const client = await RawClient.open(t)
  const bootstrap = await get(client, s.port, 'grub/grub.cfg')
  assert.match(bootstrap, /^set rackboot_next="\(http,198\.18\.0\.1:8080\)\/grub\/grub\.cfg-01-\$\{net_default_mac\}\?cpu=\$\{grub_cpu\}&platform=\$\{grub_platform\}"$/m)
  assert.equal(await get(client, s.port, 'boot/grub/grub.cfg'), '# the operator\'s own\n')
})

test('a claim the network does not vouch for gets a hold config and no token; a failing lifecycle is a failed step', async (t) => {
  const s = await setup(t)
  const client = await RawClient.open(t, '127.0.0.5')
  const held = await get(client, s.port, CFG)
  assert.match(held, /^echo 'rackboot: .*127\.0\.0\.5.*'$/m)
  assert.match(held, /^sleep \d+$/m)
  assert.doesNotMatch(held, /token|linux/)

  const f = await setup(t, { failConfig: true })
  const c2 = await RawClient.open(t)
  c2.send(encodeRequest(Opcode.RRQ, CFG, 'octet'), f.port)
  expectError(await c2.next(), ErrorCode.NOT_DEFINED, /internal/)
  await waitFor(() => f.finished.length === 1)
  assert.equal(await metricValue(f.registry, 'rackboot_tftp_grub_configs_total', { result: 'error' }), 1)
})
