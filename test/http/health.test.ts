import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loaderUrl, offeredLoaders } from '../../src/assets/loaders.js'
import { bootFileProblems } from '../../src/assets/readiness.js'
import { buildApp } from '../../src/http/index.js'
import { createDownloadGate } from '../../src/http/download-gate.js'
import type { Inventory } from '../../src/inventory/index.js'
import type { BootService, Lifecycle } from '../../src/lifecycle/index.js'
import { silentLogger } from '../../src/log.js'
import { createMetricsRegistry } from '../../src/metrics.js'

// /healthz says which loaders network boot offers but cannot serve (degraded, still 200), and the loader URLs UEFI
// HTTP boot is given (ipxe/ or grub/) are served by /assets.

const BASE = 'http://198.18.0.1:8080'

async function setup(t: { after(fn: () => Promise<void> | void): void }, bootFiles: Record<string, string>) {
  const assetsDir = mkdtempSync(join(tmpdir(), 'rb-health-'))
  t.after(() => rmSync(assetsDir, { recursive: true, force: true }))
  for (const f of ['ipxe/undionly.kpxe', 'ipxe/ipxe.efi', 'agent/vmlinuz', 'agent/agent.img']) {
    mkdirSync(join(assetsDir, f, '..'), { recursive: true })
    writeFileSync(join(assetsDir, f), f)
  }
  const loaders = offeredLoaders({ bootFiles, archBootFiles: {} })
  const app = await buildApp({
    inventory: { machines: { count: async () => 0 } } as unknown as Inventory, lifecycle: { record() {} } as unknown as Lifecycle,
    registry: createMetricsRegistry(), log: silentLogger(), version: 'test',
    warnings: () => bootFileProblems({ assetsDir, loaders, profiles: async () => [] }),
    boot: {
      service: {} as BootService, gate: createDownloadGate({ limit: 10, holdMs: 60_000 }), assetsDir, publicUrl: BASE,
      hold: { seconds: 30, maxSeconds: 300 }, agent: { after: 'reboot', kernelArgs: { amd64: [], arm64: [] } },
    },
  })
  t.after(() => app.close())
  return { app, assetsDir }
}

const health = async (app: Awaited<ReturnType<typeof setup>>['app']) => {
  const res = await app.inject({ url: '/healthz' })
  return { code: res.statusCode, body: res.json() as { status: string; warnings?: string[] } }
}

test('/healthz: a missing GRUB loader and arm64 agent degrade it (200) with the fix; switched off or fetched, ok', async (t) => {
  const s = await setup(t, { bios: 'undionly.kpxe', uefiX64: 'ipxe.efi', uefiArm64: 'grubnetaa64.efi' })
  const before = await health(s.app)
  assert.equal(before.code, 200)
  assert.equal(before.body.status, 'degraded')
  assert.equal(before.body.warnings?.length, 2)
  assert.match(before.body.warnings![0]!, /^GRUB loaders missing \(grub\/grubnetaa64\.efi\): run rackboot assets fetch grub, or set dhcp\.bootFiles\.uefiArm64: none/)
  assert.match(before.body.warnings![1]!, /^arm64 discovery agent missing .*rackboot assets build agent --arch arm64/)
  // Fetched: the warnings go at the next look (no restart).
  for (const f of ['grub/grubnetaa64.efi', 'agent/arm64/vmlinuz', 'agent/arm64/agent.img']) {
    mkdirSync(join(s.assetsDir, f, '..'), { recursive: true })
    writeFileSync(join(s.assetsDir, f), f)
  }
  const after = await health(s.app)
  assert.equal(after.code, 200)
  assert.equal(after.body.status, 'ok')
  assert.equal(after.body.warnings, undefined)

  const off = await setup(t, { bios: 'undionly.kpxe', uefiX64: 'ipxe.efi', uefiArm64: 'none' })
  const h = await health(off.app)
  assert.equal(h.body.status, 'ok', JSON.stringify(h.body.warnings))
})

test('/assets serves the loader URLs UEFI HTTP boot is given: ipxe/ and grub/', async (t) => {
  const s = await setup(t, { bios: 'undionly.kpxe', uefiX64: 'ipxe.efi', uefiArm64: 'grubnetaa64.efi' })
  mkdirSync(join(s.assetsDir, 'grub'))
  writeFileSync(join(s.assetsDir, 'grub', 'grubnetaa64.efi'), 'GRUB-AA64')
  const grub = loaderUrl(BASE, 'grubnetaa64.efi')
  assert.equal(grub, `${BASE}/assets/grub/grubnetaa64.efi`)
  const ipxe = loaderUrl(`${BASE}/`, 'ipxe.efi')
  assert.equal(ipxe, `${BASE}/assets/ipxe/ipxe.efi`)
  for (const [url, body] of [[grub, 'GRUB-AA64'], [ipxe, 'ipxe/ipxe.efi']] as const) {
    const res = await s.app.inject({ url: url.slice(BASE.length) })
    assert.equal(res.statusCode, 200, url)
    assert.equal(res.body, body)
    // UEFI HTTP boot sends HEAD first.
    assert.equal((await s.app.inject({ method: 'HEAD', url: url.slice(BASE.length) })).statusCode, 200)
  }
})
