// A real rackboot for the browser tests: `rackboot serve` in a temp directory, machines seeded through the paths
// real machines use (iPXE boot script, asset downloads, the discovery agent's report, the config fetch) and the
// API a tech or a control plane uses.
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { openSqliteInventory, type Inventory, type TokenScope } from '../../src/inventory/index.js'
import type { Page } from 'playwright-core'
import { startServe, tempCwd } from '../support/cli.js'

export const TALOS = 'v1.13.9'

export interface Rackboot {
  cwd: string
  base: string
  /** Tokens by name: viewer (read), tech (provision). */
  tokens: { viewer: string; tech: string }
  stop(): Promise<number | null>
  output(): string
  /** Stops the server, runs `between` while it is down, and starts it again on the same port and data. */
  restart(between?: () => Promise<void> | void): Promise<void>
}

export interface StartOptions {
  /** More `--set key=value` settings (tiny repair deadlines, say). */
  set?: string[]
  /** Writes into the database before `serve` opens it (machines and timelines a test needs as they are). */
  seed?: (inventory: Inventory) => Promise<void>
}

export async function startRackboot(options: StartOptions = {}): Promise<Rackboot> {
  const cwd = tempCwd('rb-ui-')
  // Small stand-ins for the boot files: the downloads land on the timeline as kernel and initramfs steps.
  for (const [dir, files] of [['agent', ['vmlinuz', 'agent.img']], [`talos/${TALOS}/amd64`, ['vmlinuz', 'initramfs.xz']]] as const) {
    mkdirSync(join(cwd, 'assets', dir), { recursive: true })
    for (const f of files) writeFileSync(join(cwd, 'assets', dir, f), Buffer.alloc(64 * 1024, 7))
  }
  // Tokens and a profile straight into the database `serve` will open (what `rackboot tokens create` and an
  // inventory import would write, without two more CLI start-ups).
  mkdirSync(join(cwd, 'data'))
  const inv = await openSqliteInventory({ file: join(cwd, 'data', 'rackboot.db'), secretKeyFile: join(cwd, 'data', 'secret.key') })
  const token = async (name: string, scope: TokenScope) => (await inv.tokens.create({ name, scopes: [scope] }, Date.now())).secret
  const tokens = { viewer: await token('viewer', 'read'), tech: await token('tech', 'provision') }
  await inv.profiles.put({ name: 'worker', description: null, talosVersion: TALOS, arch: 'amd64', schematic: null, kernelArgs: [], baseConfig: null, patches: [], managedBy: null }, Date.now())
  await options.seed?.(inv)
  await inv.close()
  const args = (port: number) => [
    '--set', 'http.listen=127.0.0.1', '--set', `http.port=${port}`, '--set', 'tftp.enabled=false',
    '--set', `assetsDir=${join(cwd, 'assets')}`, '--set', 'talos.eventsSinkPort=0', '--set', 'talos.kernelLogPort=0',
    // Every test machine asks from 127.0.0.1 with no DHCP of ours to vouch for it: the documented trusting mode.
    '--set', 'security.trustClaimedIdentity=true',
    ...(options.set ?? []).flatMap((s) => ['--set', s]),
  ]
  // A loaded machine (the tests share two cores with others) takes minutes, not the default 30 s, to start serve.
  const SERVE_START_MS = 180_000
  let server = await startServe(args(0), { cwd, timeoutMs: SERVE_START_MS })
  const line = server.output().split('\n').find((l) => l.includes('rackboot is serving'))!
  const base = JSON.parse(line).address as string
  return {
    cwd, base, tokens,
    stop: () => server.stop(),
    output: () => server.output(),
    async restart(between) {
      await server.stop()
      await between?.()
      server = await startServe(args(Number(new URL(base).port)), { cwd, timeoutMs: SERVE_START_MS })
    },
  }
}

/** JSON API call with a token; returns status and body. */
export async function api(rb: Rackboot, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${rb.base}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  })
  return { status: res.status, body: res.status === 204 ? null : await res.json() }
}

/** GET with a chosen source address on loopback (a machine asking from somewhere else). */
export function getFrom(url: string, localAddress: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { localAddress }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

export interface Hardware {
  serial: string
  manufacturer: string
  product: string
  cores: number
  memoryGiB: number
  disks: { name: string; model: string; serial: string; sizeBytes: number; type: string }[]
  nics: { mac: string; name: string; driver: string; speedMbps: number }[]
}

/** What iPXE asks for first: the boot script, as a machine with this MAC and serial. */
export async function bootScript(rb: Rackboot, mac: string, serial: string): Promise<string> {
  const res = await fetch(`${rb.base}/boot.ipxe?mac=${mac.replaceAll(':', '-')}&serial=${encodeURIComponent(serial)}&arch=x86_64&platform=efi`)
  assert.equal(res.status, 200)
  return res.text()
}

/** Downloads the kernel and initrd a boot script names, as iPXE does. */
export async function fetchBootFiles(script: string): Promise<void> {
  const urls = [...script.matchAll(/^(?:kernel|initrd)\s+(?:--name\s+\S+\s+)?(http:\/\/\S+)/gm)].map((m) => m[1]!)
  assert.ok(urls.length >= 2, `kernel and initrd in:\n${script}`)
  for (const url of urls) {
    const res = await fetch(url)
    assert.equal(res.status, 200, url)
    await res.arrayBuffer()
  }
}

/** A first network boot: script, agent kernel and initramfs, then the agent's hardware report. Returns the id. */
export async function discover(rb: Rackboot, hw: Hardware, options: { report?: boolean } = {}): Promise<string> {
  const mac = hw.nics[0]!.mac
  const script = await bootScript(rb, mac, hw.serial)
  const id = /rackboot\.machine=(\S+)/.exec(script)?.[1]
  const token = /rackboot\.token=(\S+)/.exec(script)?.[1]
  assert.ok(id && token, `discovery script:\n${script}`)
  if (options.report === false) return id
  await fetchBootFiles(script)
  await report(rb, token, id, hw)
  return id
}

export async function report(rb: Rackboot, token: string, id: string, hw: Hardware): Promise<void> {
  const res = await fetch(`${rb.base}/api/v1/agent/report`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      agentVersion: 'test', machineId: id,
      smbios: { serial: hw.serial, manufacturer: hw.manufacturer, product: hw.product, uuid: '4c4c4544-0000-1000-8000-' + hw.nics[0]!.mac.replaceAll(':', '') },
      cpu: { model: 'AMD EPYC 9354P 32-Core Processor', sockets: 1, cores: hw.cores, threads: hw.cores * 2 },
      memory: { totalBytes: hw.memoryGiB * 2 ** 30 },
      disks: hw.disks,
      nics: hw.nics.map((n) => ({ ...n, link: true })),
    }),
  })
  assert.equal(res.status, 200, await res.clone().text())
}

export function hardware(n: number, extra: Partial<Hardware> = {}): Hardware {
  const hex = n.toString(16).padStart(2, '0')
  return {
    serial: `SN-UI-${n}`,
    manufacturer: 'Dell Inc.',
    product: 'PowerEdge R6625',
    cores: 32,
    memoryGiB: 256,
    disks: [
      { name: 'nvme0n1', model: 'Samsung PM9A3 960GB', serial: `S5NZ${hex}001`, sizeBytes: 960_197_124_096, type: 'nvme' },
      { name: 'sda', model: 'Micron 5400 MAX', serial: `MI54${hex}002`, sizeBytes: 1_920_383_410_176, type: 'ssd' },
    ],
    nics: [
      { mac: `02:42:c6:12:00:${hex}`, name: 'eno1', driver: 'bnxt_en', speedMbps: 25000 },
      { mac: `02:42:c6:12:01:${hex}`, name: 'eno2', driver: 'bnxt_en', speedMbps: 25000 },
    ],
    ...extra,
  }
}

// Browser helpers (playwright-core) for the UI tests.

export const CHROMIUM = '/usr/bin/chromium'
export const WAIT = { timeout: 10_000 }

export interface Watch {
  consoleErrors: string[]
  pageErrors: string[]
  failedRequests: string[]
  badResponses: string[]
}

/** Everything that went wrong in the page: console errors, uncaught exceptions, failed requests and 4xx/5xx. */
export function watch(page: Page): Watch {
  const w: Watch = { consoleErrors: [], pageErrors: [], failedRequests: [], badResponses: [] }
  page.on('console', (m) => {
    if (m.type() === 'error') w.consoleErrors.push(`${m.text()} @ ${m.location().url}`)
  })
  page.on('pageerror', (e) => w.pageErrors.push(String(e.stack ?? e)))
  page.on('requestfailed', (r) => w.failedRequests.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`))
  page.on('response', (r) => {
    if (r.status() >= 400) w.badResponses.push(`${r.request().method()} ${new URL(r.url()).pathname} ${r.status()}`)
  })
  return w
}

/** Signs in through the page's dialog and waits for the event stream to be live. */
export async function signIn(page: Page, token: string): Promise<void> {
  const dialog = page.locator('dialog#signin')
  await dialog.waitFor({ state: 'visible', ...WAIT })
  await page.fill('#token', token)
  await page.click('dialog#signin button[type=submit]')
  await dialog.waitFor({ state: 'hidden', ...WAIT })
  await page.locator('#live[data-state="live"]').waitFor(WAIT)
}

/** A full-page screenshot in the server's directory (kept with RACKBOOT_KEEP_TEST_TMP=1). */
export async function shot(page: Page, rb: Rackboot, name: string, t: { diagnostic(msg: string): void }): Promise<string> {
  const path = join(rb.cwd, `${name}.png`)
  await page.screenshot({ path, fullPage: true })
  t.diagnostic(`screenshot: ${path}`)
  return path
}
