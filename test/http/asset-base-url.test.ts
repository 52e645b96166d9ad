// Issue 15: http.assetBaseUrl points kernel and initramfs downloads at a mirror (or an nginx in front) instead of
// rackboot's /assets, in iPXE scripts and GRUB configs alike; rackboot still answers (and records) the script and the
// config, and a mirror's downloads take no download slot (they would never give it back).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createEventBus } from '../../src/events/bus.js'
import { buildApp } from '../../src/http/index.js'
import { createDownloadGate } from '../../src/http/download-gate.js'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { attachTimeline, createBootService, createConfigService, createLifecycle } from '../../src/lifecycle/index.js'
import { createConfigLinter } from '../../src/talos/index.js'
import { silentLogger } from '../../src/log.js'
import { createMetricsRegistry } from '../../src/metrics.js'
import { loadSettings } from '../../src/settings/index.js'
import { isRackbootError } from '../../src/errors.js'
import { leaseAddress } from '../support/leases.js'

const HOST = { host: '198.18.0.1:8080' }

async function setup(assetBaseUrl: string | undefined, limit = 1) {
  const inventory = await openSqliteInventory({ file: ':memory:' })
  const log = silentLogger()
  const bus = createEventBus()
  const timeline = attachTimeline({ inventory, bus, log })
  const clock = { now: () => Date.now() }
  const lifecycle = createLifecycle({ inventory, bus, log, clock })
  const service = createBootService({ inventory, lifecycle, log, clock, policy: { holdMode: 'retry', autoAccept: false } })
  const assetsDir = mkdtempSync(join(tmpdir(), 'rb-mirror-assets-'))
  mkdirSync(join(assetsDir, 'agent'))
  const gate = createDownloadGate({ limit, holdMs: 60_000 })
  const configs = createConfigService({ inventory, lifecycle, log, clock, linter: createConfigLinter() })
  const app = await buildApp({
    inventory, lifecycle, log, registry: createMetricsRegistry(), version: 'test',
    boot: {
      service, gate, assetsDir, publicUrl: '', ...(assetBaseUrl ? { assetBaseUrl } : {}),
      hold: { seconds: 30, maxSeconds: 300 }, agent: { after: 'reboot', kernelArgs: { amd64: [], arm64: [] } }, configs,
    },
  })
  return { inventory, app, timeline, gate, async close() { await app.close(); await timeline.flush(); await inventory.close() } }
}

test('http.assetBaseUrl: an http(s) URL, absent by default', () => {
  const cwd = mkdtempSync(join(tmpdir(), 'rb-mirror-settings-'))
  assert.equal(loadSettings({ cwd, env: {}, isRoot: false }).http.assetBaseUrl, undefined)
  assert.equal(loadSettings({ cwd, env: {}, isRoot: false, overrides: ['http.assetBaseUrl=http://mirror.lab:8081/rackboot'] }).http.assetBaseUrl, 'http://mirror.lab:8081/rackboot')
  for (const bad of ['mirror.lab/assets', 'ftp://mirror.lab/assets', 'http://mirror.lab/a b', 'http://mirror.lab/assets?x=1']) {
    assert.throws(() => loadSettings({ cwd, env: {}, isRoot: false, overrides: [`http.assetBaseUrl=${bad}`] }), (err) => isRackbootError(err) && err.code === 'RB_ERR_SETTINGS', bad)
  }
})

test('iPXE: kernel and initramfs from the mirror, everything else from rackboot, the script on the timeline, no slot taken', async (t) => {
  const s = await setup('http://mirror.lab:8081/rackboot/')
  t.after(() => s.close())
  await leaseAddress(s.inventory, '127.0.0.2', '52:54:00:00:00:01')
  await leaseAddress(s.inventory, '127.0.0.3', '52:54:00:00:00:02')
  const a = (await s.app.inject({ url: '/boot.ipxe?mac=52-54-00-00-00-01&arch=x86_64', headers: HOST, remoteAddress: '127.0.0.2' })).body
  const mA = (await s.inventory.machines.byMac('52:54:00:00:00:01'))!
  assert.match(a, new RegExp(`^kernel http://mirror\\.lab:8081/rackboot/agent/vmlinuz\\?m=${mA.id} initrd=agent\\.img .*rackboot\\.report=http://198\\.18\\.0\\.1:8080/api/v1/agent/report `, 'm'))
  assert.match(a, new RegExp(`^initrd --name agent\\.img http://mirror\\.lab:8081/rackboot/agent/agent\\.img\\?m=${mA.id} `, 'm'))
  assert.match(a, /chain --replace --autofree http:\/\/198\.18\.0\.1:8080\/boot\.ipxe\?/, 'the retry is rackboot\'s')
  // The limit is 1: a second machine is not told to wait, the mirror carries the load.
  const b = (await s.app.inject({ url: '/boot.ipxe?mac=52-54-00-00-00-02&arch=x86_64', headers: HOST, remoteAddress: '127.0.0.3' })).body
  assert.match(b, /^kernel http:\/\/mirror\.lab:8081\/rackboot\/agent\/vmlinuz/m)
  assert.equal(s.gate.active(Date.now()), 0)
  await s.timeline.flush()
  const events = await s.inventory.events.list({ machineId: mA.id, types: ['boot.script'] })
  assert.equal(events.length, 1)
  assert.match(events[0]!.message, /boot script: discovery/)

  // An install: Talos's files from the mirror, its config from rackboot.
  await s.inventory.profiles.put({ name: 'w', description: null, talosVersion: 'v1.13.9', arch: 'amd64', schematic: null, kernelArgs: [], baseConfig: null, patches: [], managedBy: null }, 1)
  const m = await s.inventory.machines.create({ name: 'r1-u1', nics: [{ mac: '52:54:00:00:00:09', name: null, boot: true }], state: 'provisioning', profile: 'w' }, 1)
  await leaseAddress(s.inventory, '127.0.0.9', '52:54:00:00:00:09')
  const install = (await s.app.inject({ url: '/boot.ipxe?mac=52-54-00-00-00-09&arch=x86_64', headers: HOST, remoteAddress: '127.0.0.9' })).body
  assert.match(install, new RegExp(`^kernel http://mirror\\.lab:8081/rackboot/talos/v1\\.13\\.9/amd64/vmlinuz\\?m=${m.id} .*talos\\.config=http://198\\.18\\.0\\.1:8080/talos/config\\?t=\\w+`, 'm'))
  assert.match(install, new RegExp(`^initrd --name initramfs\\.xz http://mirror\\.lab:8081/rackboot/talos/v1\\.13\\.9/amd64/initramfs\\.xz\\?m=${m.id} `, 'm'))
})

test('GRUB: an http:// mirror is used; an https:// one is not (GRUB has no HTTPS), rackboot serves and the slot applies', async (t) => {
  const plain = await setup('http://mirror.lab:8081/rackboot')
  t.after(() => plain.close())
  await leaseAddress(plain.inventory, '127.0.0.1', '52:54:00:00:00:01')
  const cfg = (await plain.app.inject({ url: '/grub/grub.cfg-01-52-54-00-00-00-01', headers: HOST })).body
  assert.match(cfg, /linux '\(http,mirror\.lab:8081\)\/rackboot\/agent\/vmlinuz\?m=m-[0-9a-f]{12}' rackboot\.report=http:\/\/198\.18\.0\.1:8080\//)
  assert.match(cfg, /initrd '\(http,mirror\.lab:8081\)\/rackboot\/agent\/agent\.img\?m=m-[0-9a-f]{12}'/)
  assert.match(cfg, /set rackboot_next='\(http,198\.18\.0\.1:8080\)\/grub\/grub\.cfg-01-52-54-00-00-00-01\?attempt=1'/)

  const tls = await setup('https://mirror.lab/rackboot')
  t.after(() => tls.close())
  await leaseAddress(tls.inventory, '127.0.0.1', '52:54:00:00:00:01')
  const grub = (await tls.app.inject({ url: '/grub/grub.cfg-01-52-54-00-00-00-01', headers: HOST })).body
  assert.match(grub, /linux '\(http,198\.18\.0\.1:8080\)\/assets\/agent\/vmlinuz\?m=/)
  assert.equal(tls.gate.active(Date.now()), 1, 'rackboot serves this one: it holds a slot')
  const ipxe = (await tls.app.inject({ url: '/boot.ipxe?mac=52-54-00-00-00-01&arch=x86_64', headers: HOST })).body
  assert.match(ipxe, /^kernel https:\/\/mirror\.lab\/rackboot\/agent\/vmlinuz\?m=/m)
})

test('without http.assetBaseUrl the URLs are rackboot\'s /assets and the download limit holds', async (t) => {
  const s = await setup(undefined)
  t.after(() => s.close())
  await leaseAddress(s.inventory, '127.0.0.2', '52:54:00:00:00:01')
  await leaseAddress(s.inventory, '127.0.0.3', '52:54:00:00:00:02')
  const a = (await s.app.inject({ url: '/boot.ipxe?mac=52-54-00-00-00-01&arch=x86_64', headers: HOST, remoteAddress: '127.0.0.2' })).body
  assert.match(a, /^kernel http:\/\/198\.18\.0\.1:8080\/assets\/agent\/vmlinuz\?m=/m)
  const b = (await s.app.inject({ url: '/boot.ipxe?mac=52-54-00-00-00-02&arch=x86_64', headers: HOST, remoteAddress: '127.0.0.3' })).body
  assert.match(b, /waiting for a slot/)
})
