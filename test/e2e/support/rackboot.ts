// rackboot serving a VM lab: full DHCP on the lab's segment, TFTP, HTTP, boot assets in place, RAs on the segment.
import assert from 'node:assert/strict'
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { openSqliteInventory, type Machine } from '../../../src/inventory/index.js'
import { generateConfig, generateSecretsBundle } from '../../../src/talos/index.js'
import { BIN, rackbootAsync } from '../../support/cli.js'
import { createVmLab, installAgentAssets, installFakeTalos, type VmLab } from './index.js'

export const TALOS = 'v1.13.9'
const IPXE_DIR = '/usr/lib/ipxe'

export interface Rackboot {
  lab: VmLab
  config: string
  dataDir: string
  url: string
  /** rackboot's output so far (stdout and stderr), for diagnostics. */
  log(): string
  cli(args: string[]): ReturnType<typeof rackbootAsync>
  /** RACKBOOT_TOKEN for CLI commands that go through the server (an admin token, made once on the lab's database). */
  cliEnv(): Promise<NodeJS.ProcessEnv>
  machine(mac: string): Promise<Machine | null>
  events(machineId: string): Promise<{ type: string; message: string; at: number; data: Record<string, unknown> }[]>
  api(method: string, path: string, token: string, body?: unknown): Promise<{ status: number; json: any }>
}

/** A lab with rackboot serving it: full DHCP on the lab's segment, TFTP, HTTP, assets in place. */
export async function startRackboot(
  t: { after(fn: () => unknown): void },
  options: {
    /** Top-level settings replacing the defaults below; a function gets the lab (its addresses) first. */
    settings?: Record<string, unknown> | ((lab: VmLab) => Record<string, unknown> | Promise<Record<string, unknown>>)
    /** Puts further boot assets in place (e.g. arm64 ones) before rackboot starts; gets <assetsDir>. */
    assets?: (assetsDir: string) => Promise<void>
  } = {},
): Promise<Rackboot> {
  const lab = await createVmLab(t, { ipv6: true })
  const dir = lab.tmpDir
  const assetsDir = join(dir, 'assets')
  mkdirSync(join(assetsDir, 'ipxe'), { recursive: true })
  for (const f of ['undionly.kpxe', 'ipxe.efi', 'snponly.efi']) if (existsSync(join(IPXE_DIR, f))) copyFileSync(join(IPXE_DIR, f), join(assetsDir, 'ipxe', f))
  await installAgentAssets(assetsDir)
  await installFakeTalos(join(assetsDir, 'talos', TALOS, 'amd64'))
  await options.assets?.(assetsDir)
  const settings = typeof options.settings === 'function' ? await options.settings(lab) : options.settings
  const url = `http://${lab.serverIp}:8080`
  const config = join(dir, 'rackboot.yaml')
  writeFileSync(config, stringify({
    dataDir: join(dir, 'data'),
    assetsDir,
    log: { level: 'info' },
    http: { listen: lab.serverIp, port: 8080, publicUrl: url },
    tftp: { listen: '0.0.0.0', port: 69 },
    dhcp: {
      mode: 'full', interface: lab.serverInterface, serverAddress: lab.serverIp,
      subnets: [{ subnet: lab.subnet, rangeStart: lab.address(100), rangeEnd: lab.address(199), routers: [lab.serverIp], leaseSeconds: 600 }],
    },
    // The agent powers off after its report so QEMU (-no-reboot) ends and the next boot is a new QEMU run.
    boot: { agentAfter: 'poweroff', holdSeconds: 5, agentKernelArgs: ['console=ttyS0,115200'] },
    ...settings,
  }))
  const server = lab.spawn(['node', BIN, 'serve', '--config', config], { cwd: dir })
  let log = ''
  server.stdout?.on('data', (d) => (log += d))
  server.stderr?.on('data', (d) => (log += d))
  // Up to 90 s: on a loaded 2-core runner (other test files, TCG guests) rackboot's start alone has taken over 30 s.
  for (let i = 0; i < 360 && !log.includes('rackboot is serving') && server.exitCode === null; i++) await new Promise((r) => setTimeout(r, 250))
  assert.match(log, /rackboot is serving/, `rackboot did not start:\n${log}`)
  // No router on the lab segment: rackboot's own router advertisements (dhcp.routerAdverts auto, full mode) end
  // iPXE's IPv6 wait, ~16 s a boot otherwise (lab.md).
  const dbFile = join(dir, 'data', 'rackboot.db')
  let adminToken: Promise<string> | null = null
  return {
    lab, config, url, dataDir: join(dir, 'data'),
    log: () => log,
    // The lab's database directly (the CLI goes to a server only when told which, with a token).
    cli: (args) => rackbootAsync([...args, '--config', config, '--data-dir', join(dir, 'data')], { cwd: dir }),
    async cliEnv() {
      adminToken ??= rackbootAsync(['tokens', 'create', 'e2e-cli', '--scope', 'admin', '--json', '--config', config, '--data-dir', join(dir, 'data')], { cwd: dir })
        .then((r) => {
          assert.equal(r.code, 0, r.stderr)
          return JSON.parse(r.stdout).secret as string
        })
      return { RACKBOOT_TOKEN: await adminToken }
    },
    async machine(mac) {
      const inv = await openSqliteInventory({ file: dbFile })
      try {
        return await inv.machines.byMac(mac)
      } finally {
        await inv.close()
      }
    },
    async events(machineId) {
      const inv = await openSqliteInventory({ file: dbFile })
      try {
        return await inv.events.list({ machineId, limit: 5000 })
      } finally {
        await inv.close()
      }
    },
    async api(method, path, token, body) {
      const args = ['curl', '-sS', '-X', method, '-H', `authorization: Bearer ${token}`, '-w', '\n%{http_code}']
      if (body !== undefined) args.push('-H', 'content-type: application/json', '--data-binary', JSON.stringify(body))
      const res = await lab.exec([...args, `${url}/api/v1${path}`], { timeoutMs: 30_000 })
      const lines = res.stdout.trimEnd().split('\n')
      const status = Number(lines.pop())
      return { status, json: lines.join('\n') ? JSON.parse(lines.join('\n')) : null }
    },
  }
}


/**
 * The install step of an e2e flow: the discovered machine accepted, a profile `name` with a real Talos config as base
 * (its arch and kernel args), an allocation by serial: the machine is provisioning, so its next boot installs.
 */
export async function allocateForInstall(rb: Rackboot, o: { mac: string; serial: string; profile: string; arch: 'amd64' | 'arm64'; kernelArgs: string[]; endpoint?: string }): Promise<void> {
  assert.equal((await rb.cli(['machines', 'accept', o.mac])).code, 0)
  const secrets = await generateSecretsBundle({ talosVersion: TALOS, rsaBits: 2048 })
  const base = generateConfig({ secrets, clusterName: 'lab', endpoint: o.endpoint ?? 'https://198.18.0.10:6443', talosVersion: TALOS, role: 'worker' }).yaml
  const token = JSON.parse((await rb.cli(['tokens', 'create', 'e2e', '--scope', 'admin', '--scope', 'provision', '--scope', 'read', '--json'])).stdout).secret as string
  const profile = await rb.api('POST', '/profiles', token, { name: o.profile, talosVersion: TALOS, arch: o.arch, kernelArgs: o.kernelArgs, baseConfig: base })
  assert.ok(profile.status === 201 || profile.status === 200, JSON.stringify(profile))
  const alloc = await rb.api('POST', '/allocations', token, { count: 1, selector: `serial == "${o.serial}"`, profile: o.profile, idempotencyKey: `e2e-${o.profile}` })
  assert.equal(alloc.status, 201, JSON.stringify(alloc.json))
  assert.equal((await rb.machine(o.mac))?.state, 'provisioning')
}
