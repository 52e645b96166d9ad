// The two boot servers of `npm run bench -- boot`, in one VM lab (test/e2e/support/lab.ts), one at a time:
//   rackboot  `rackboot serve` with full DHCP, TFTP, HTTP and RAs, configured as test/e2e/support/rackboot.ts does
//             (discovery agent, agentAfter poweroff), but in a lab the bench owns (startRackboot makes its own).
//   dnsmasq   what its users do: dnsmasq DHCP + TFTP (--enable-tftp, dhcp-match/dhcp-boot per arch, iPXE's
//             no-pxedhcp, RAs, no-ping: lab.md's options) plus a static HTTP server (nginx with sendfile, or, when
//             nginx is missing, a minimal Node static server: labelled so) for boot.ipxe / grub.cfg, the kernel and
//             the initramfs. iPXE chain: undionly.kpxe (not reached in QEMU: the NIC ROM is iPXE) / ipxe.efi over TFTP
//             or HTTP (UEFI HTTP boot), then a static iPXE script; arm64: the GRUB image of `rackboot assets fetch
//             grub` with a static grub.cfg. The agent's report goes to a static 204 answer on the same server.
// Both record per-boot phase times as epoch ms (servers' own logs and request times); the bench turns them into
// seconds after QEMU start.
import { nginxConfig } from './nginx-config.js'
import type { ChildProcess } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { stringify } from 'yaml'
import { openSqliteInventory } from '../src/inventory/index.js'
import { which } from '../src/processes.js'
import { BIN } from '../test/support/cli.js'
import { installAgentAssets, installGrubAssets, type VmLab } from '../test/e2e/support/index.js'
import { stopChild } from '../test/support/netns.js'

const IPXE_DIR = '/usr/lib/ipxe'
export const HTTP_PORT = 8080

/** Epoch ms of each server-side phase of one boot (null: not seen). */
export interface ServerPhases {
  discover: number | null
  script: number | null
  kernel: number | null
  initramfs: number | null
  report: number | null
}

export interface Peer {
  key: 'rackboot' | 'dnsmasq'
  label: string
  start(): Promise<void>
  stop(): Promise<void>
  /** Server-side phases of the boot of `mac` started at `since` (epoch ms). */
  phases(mac: string, since: number): Promise<ServerPhases>
  /** The server's log tail (for failures). */
  tail(): string
}


/** Lines of a child's stdout+stderr, each stamped with its arrival time (epoch ms). */
function timedLines(child: ChildProcess, into: { at: number; text: string }[]): void {
  let partial = ''
  const feed = (d: Buffer) => {
    const now = Date.now()
    const parts = (partial + d.toString()).split('\n')
    partial = parts.pop() ?? ''
    for (const p of parts) into.push({ at: now, text: p })
    if (into.length > 200_000) into.splice(0, 100_000)
  }
  child.stdout?.on('data', feed)
  child.stderr?.on('data', feed)
}

/** The boot assets both peers serve: agent (amd64, and arm64 when asked), iPXE loaders, the GRUB image. */
export async function prepareAssets(dir: string, arm64: boolean): Promise<string> {
  const assetsDir = join(dir, 'assets')
  mkdirSync(join(assetsDir, 'ipxe'), { recursive: true })
  for (const f of ['undionly.kpxe', 'ipxe.efi', 'snponly.efi']) if (existsSync(join(IPXE_DIR, f))) copyFileSync(join(IPXE_DIR, f), join(assetsDir, 'ipxe', f))
  await installAgentAssets(assetsDir)
  if (arm64) {
    await installGrubAssets(assetsDir, 'arm64')
    await installAgentAssets(assetsDir, 'arm64')
  }
  return assetsDir
}

// ---------------------------------------------------------------------------------------------------------------
// rackboot

/**
 * rackboot on the lab's segment. `variant` is another segment setup (bench/boot-lab-ipv6.ts): its own directory
 * (inventory, config) and top-level settings replacing the IPv4 ones below.
 */
export function rackbootPeer(lab: VmLab, assetsDir: string, variant: { name: string; settings: Record<string, unknown> } | null = null): Peer {
  const dir = join(lab.tmpDir, variant?.name ?? 'rackboot')
  mkdirSync(dir, { recursive: true })
  const url = `http://${lab.serverIp}:${HTTP_PORT}`
  const config = join(dir, 'rackboot.yaml')
  writeFileSync(config, stringify({
    dataDir: join(dir, 'data'),
    assetsDir,
    log: { level: 'info' },
    http: { listen: lab.serverIp, port: HTTP_PORT, publicUrl: url },
    tftp: { listen: '0.0.0.0', port: 69 },
    dhcp: {
      mode: 'full', interface: lab.serverInterface, serverAddress: lab.serverIp,
      subnets: [{ subnet: lab.subnet, rangeStart: lab.address(100), rangeEnd: lab.address(199), routers: [lab.serverIp], leaseSeconds: 600 }],
    },
    boot: { agentAfter: 'poweroff', holdSeconds: 5, agentKernelArgs: ['console=ttyS0,115200'] },
    ...variant?.settings,
  }))
  const lines: { at: number; text: string }[] = []
  let child: ChildProcess | null = null
  return {
    key: 'rackboot',
    label: 'rackboot',
    async start() {
      const c = lab.spawn(['node', BIN, 'serve', '--config', config], { cwd: dir })
      child = c
      timedLines(c, lines)
      const t0 = Date.now()
      while (Date.now() - t0 < 120_000 && c.exitCode === null && !lines.some((l) => l.at >= t0 && l.text.includes('rackboot is serving'))) {
        await new Promise((r) => setTimeout(r, 200))
      }
      if (!lines.some((l) => l.at >= t0 && l.text.includes('rackboot is serving'))) {
        await stopChild(c, 5_000)
        throw new Error(`rackboot did not start:\n${lines.slice(-30).map((l) => l.text).join('\n')}`)
      }
    },
    async stop() {
      if (child) await stopChild(child, 5_000)
      child = null
    },
    async phases(mac, since) {
      const inv = await openSqliteInventory({ file: join(dir, 'data', 'rackboot.db') })
      try {
        const m = await inv.machines.byMac(mac)
        const none: ServerPhases = { discover: null, script: null, kernel: null, initramfs: null, report: null }
        if (!m) return none
        const events = (await inv.events.list({ machineId: m.id, limit: 5000 })).filter((e) => e.at >= since).sort((a, b) => a.at - b.at)
        const first = (pred: (e: { type: string; message: string; data: Record<string, unknown> }) => boolean) => events.find(pred)?.at ?? null
        return {
          discover: first((e) => e.type === 'boot.dhcp'),
          script: first((e) => e.type === 'boot.script'),
          kernel: first((e) => e.type === 'boot.asset' && /vmlinuz/.test(e.message) && e.data.complete === true),
          initramfs: first((e) => e.type === 'boot.asset' && /agent\.img/.test(e.message) && e.data.complete === true),
          report: first((e) => e.type === 'boot.agent'),
        }
      } finally {
        await inv.close()
      }
    },
    tail: () => lines.slice(-40).map((l) => l.text).filter((t) => !/"level":20/.test(t)).join('\n'),
  }
}

// ---------------------------------------------------------------------------------------------------------------
// dnsmasq + a static HTTP server

/** A minimal static server (Node's http + fs streams), used only when nginx is missing. Logs like the nginx config. */
const NODE_STATIC = `
import { createServer } from 'node:http'
import { createReadStream, statSync, appendFileSync } from 'node:fs'
import { join, normalize } from 'node:path'
const [root, host, port, log] = process.argv.slice(2)
const server = createServer((req, res) => {
  const path = decodeURIComponent((req.url || '/').split('?')[0])
  const done = () => appendFileSync(log, (Date.now() / 1000).toFixed(3) + ' ' + res.statusCode + ' ' + req.method + ' ' + path + '\\n')
  res.on('finish', done)
  if (path === '/report') { req.resume(); req.on('end', () => { res.statusCode = 204; res.end() }); return }
  const file = join(root, normalize(path))
  let st
  try { st = statSync(file) } catch { res.statusCode = 404; res.end(); return }
  if (!st.isFile()) { res.statusCode = 404; res.end(); return }
  res.setHeader('content-length', st.size)
  res.setHeader('content-type', 'application/octet-stream')
  if (req.method === 'HEAD') { res.end(); return }
  createReadStream(file).pipe(res)
})
server.keepAliveTimeout = 5000
server.listen(Number(port), host, () => console.log('listening'))
`

/** How dnsmasq's side sits on the segment: its directory, the HTTP server's address and dnsmasq's DHCP options. */
export interface DnsmasqNet {
  name: string
  /** The static server's address as URLs write it (198.18.X.1, [2001:db8:X::1]). */
  urlHost: string
  /** The same for nginx's listen and the Node fallback (which takes a bare IPv6 address). */
  listen: string
  bind: string
  /** dnsmasq's DHCP, TFTP and RA options; `base` is the static server's URL, `tftp` the TFTP root. */
  dhcpArgs(base: string, tftp: string): string[]
}

/** DHCPv4 per arch (lab.md's options) and RAs for the lab's IPv6 prefix (ra-only: no DHCPv6). */
function ipv4Net(lab: VmLab): DnsmasqNet {
  const octet = Number(lab.serverIp.split('.')[2])
  return {
    name: 'dnsmasq', urlHost: lab.serverIp, listen: `${lab.serverIp}:${HTTP_PORT}`, bind: lab.serverIp,
    dhcpArgs: (base, tftp) => [
      `--dhcp-range=${lab.address(100)},${lab.address(199)},255.255.255.0,1h`,
      `--dhcp-option=option:router,${lab.serverIp}`,
      '--dhcp-userclass=set:ipxe,iPXE', '--dhcp-match=set:ipxe,175',
      '--dhcp-match=set:efi64,option:client-arch,7', '--dhcp-match=set:efi64,option:client-arch,9',
      '--dhcp-match=set:efihttp,option:client-arch,16',
      '--dhcp-match=set:arm64,option:client-arch,11',
      '--dhcp-match=set:arm64http,option:client-arch,19',
      `--dhcp-boot=tag:ipxe,${base}/boot.ipxe`,
      '--dhcp-boot=tag:efi64,tag:!ipxe,ipxe.efi',
      `--dhcp-boot=tag:efihttp,tag:!ipxe,${base}/ipxe.efi`,
      '--dhcp-option-force=tag:efihttp,60,HTTPClient',
      '--dhcp-boot=tag:arm64,tag:!ipxe,grub/grubnetaa64.efi',
      `--dhcp-boot=tag:arm64http,tag:!ipxe,${base}/grub/grubnetaa64.efi`,
      '--dhcp-option-force=tag:arm64http,60,HTTPClient',
      '--dhcp-boot=tag:!efi64,tag:!efihttp,tag:!arm64,tag:!arm64http,tag:!ipxe,undionly.kpxe',
      '--dhcp-option=tag:ipxe,encap:175,176,1b',
      '--enable-tftp', `--tftp-root=${tftp}`,
      '--enable-ra', `--dhcp-range=2001:2:0:${octet.toString(16)}::,ra-only,64`,
    ],
  }
}

/** dnsmasq + a static HTTP server; `variant` another segment setup (bench/boot-lab-ipv6.ts), IPv4 by default. */
export function dnsmasqPeer(lab: VmLab, assetsDir: string, variant?: DnsmasqNet): Peer {
  const net = variant ?? ipv4Net(lab)
  const dir = join(lab.tmpDir, net.name)
  const tftp = join(dir, 'tftp')
  const www = join(dir, 'www')
  const base = `http://${net.urlHost}:${HTTP_PORT}`
  const nginx = which('nginx')
  const accessLog = join(dir, 'access.log')
  mkdirSync(join(tftp, 'grub'), { recursive: true })
  mkdirSync(join(www, 'agent', 'arm64'), { recursive: true })
  mkdirSync(join(www, 'grub'), { recursive: true })
  const copy = (from: string, to: string) => {
    if (!existsSync(from)) return
    mkdirSync(dirname(to), { recursive: true })
    copyFileSync(from, to)
  }
  for (const f of ['undionly.kpxe', 'ipxe.efi']) {
    copy(join(IPXE_DIR, f), join(tftp, f))
    copy(join(IPXE_DIR, f), join(www, f))
  }
  for (const f of ['vmlinuz', 'agent.img']) {
    copy(join(assetsDir, 'agent', f), join(www, 'agent', f))
    copy(join(assetsDir, 'agent', 'arm64', f), join(www, 'agent', 'arm64', f))
  }
  copy(join(assetsDir, 'grub', 'grubnetaa64.efi'), join(tftp, 'grub', 'grubnetaa64.efi'))
  copy(join(assetsDir, 'grub', 'grubnetaa64.efi'), join(www, 'grub', 'grubnetaa64.efi'))
  // The same kernel arguments rackboot gives the discovery agent (console, report URL, after), minus its token and
  // machine id; the report goes to a static 204 (no inventory behind it).
  const agentArgs = `rackboot.report=${base}/report rackboot.after=poweroff`
  writeFileSync(join(www, 'boot.ipxe'), [
    '#!ipxe',
    'echo dnsmasq-bench: discovery agent',
    `kernel ${base}/agent/vmlinuz initrd=agent.img console=ttyS0,115200 ${agentArgs} BOOTIF=01-\${net0/mac:hexhyp}`,
    `initrd --name agent.img ${base}/agent/agent.img`,
    'boot',
    '',
  ].join('\n'))
  const grubCfg = [
    'set timeout=0',
    `linux (http,${lab.serverIp}:${HTTP_PORT})/agent/arm64/vmlinuz console=tty0 console=ttyAMA0,115200 ${agentArgs}`,
    `initrd (http,${lab.serverIp}:${HTTP_PORT})/agent/arm64/agent.img`,
    'boot',
    '',
  ].join('\n')
  writeFileSync(join(tftp, 'grub', 'grub.cfg'), grubCfg)
  writeFileSync(join(www, 'grub', 'grub.cfg'), grubCfg)

  const lines: { at: number; text: string }[] = []
  let dns: ChildProcess | null = null
  let http: ChildProcess | null = null
  const label = nginx ? 'dnsmasq + nginx (sendfile)' : 'dnsmasq + plain Node static server (nginx missing)'
  return {
    key: 'dnsmasq',
    label,
    async start() {
      if (nginx) {
        writeFileSync(join(dir, 'nginx.conf'), nginxConfig({
          dir, workers: 1, workerConnections: 1024, asRoot: true,
          accessLog: { path: accessLog, format: { name: 'bench', spec: '$msec $status $request_method $uri' } },
          listen: net.listen, server: [`root ${www};`, 'location = /report { return 204; }'],
        }))
        http = lab.spawn(['nginx', '-e', join(dir, 'error.log'), '-p', dir, '-c', join(dir, 'nginx.conf')])
      } else {
        writeFileSync(join(dir, 'static.mjs'), NODE_STATIC)
        http = lab.spawn(['node', join(dir, 'static.mjs'), www, net.bind, String(HTTP_PORT), accessLog])
      }
      timedLines(http, lines)
      await new Promise((r) => setTimeout(r, 700))
      if (http.exitCode !== null) throw new Error(`static HTTP server exited (${http.exitCode}): ${lines.slice(-10).map((l) => l.text).join('\n')}${existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : ''}`)
      const args = [
        'dnsmasq', '--keep-in-foreground', '--no-resolv', '--no-hosts', '--port=0', '--user=root',
        `--interface=${lab.serverInterface}`, '--bind-interfaces', '--no-ping', '--log-dhcp', '--log-facility=-',
        `--pid-file=${join(dir, 'dnsmasq.pid')}`, `--dhcp-leasefile=${join(dir, 'dnsmasq.leases')}`,
        ...net.dhcpArgs(base, tftp),
      ]
      dns = lab.spawn(['timeout', '7200', ...args])
      timedLines(dns, lines)
      await new Promise((r) => setTimeout(r, 500))
      if (dns.exitCode !== null) throw new Error(`dnsmasq exited at once (${dns.exitCode}): ${lines.slice(-10).map((l) => l.text).join('\n')}`)
    },
    async stop() {
      if (dns) await stopChild(dns, 5_000)
      if (http) await stopChild(http, 5_000)
      dns = http = null
    },
    async phases(mac, since) {
      const m = mac.toLowerCase()
      const dhcp = lines.find((l) => l.at >= since && /DHCP(DISCOVER|SOLICIT)/.test(l.text) && l.text.toLowerCase().includes(m))?.at ?? null
      // The boot's HTTP requests: the access log (end of each request, epoch seconds), from `since` on. One VM at
      // a time, so every request after `since` is this boot's.
      const access = (existsSync(accessLog) ? readFileSync(accessLog, 'utf8') : '')
        .split('\n')
        .map((l) => l.split(' '))
        .filter((f) => f.length >= 4)
        .map(([t, status, method, uri]) => ({ at: Math.round(Number(t) * 1000), status: Number(status), method: method!, uri: uri! }))
        .filter((r) => r.at >= since && r.status < 300)
      const done = (re: RegExp, method = 'GET') => access.find((r) => r.method === method && re.test(r.uri))?.at ?? null
      return {
        discover: dhcp,
        // grub.cfg comes over TFTP after AAVMF PXE (dnsmasq logs "sent <file> to <ip>" when the transfer ends; its log
        // lines are stamped on arrival here), over HTTP after UEFI HTTP boot.
        script: done(/^\/(boot\.ipxe|grub\/grub\.cfg)$/) ?? lines.find((l) => l.at >= since && /sent \S*\/grub\/grub\.cfg to /.test(l.text))?.at ?? null,
        kernel: done(/\/vmlinuz$/),
        initramfs: done(/\/agent\.img$/),
        report: done(/^\/report$/, 'POST'),
      }
    },
    tail: () => lines.slice(-40).map((l) => l.text).join('\n'),
  }
}

// ---------------------------------------------------------------------------------------------------------------
// First DHCPDISCOVER (DHCPv6 SOLICIT) on the wire (the same clock and source for both peers): tcpdump on the
// lab's bridge.

export interface DhcpCapture {
  /** Epoch ms of the first packet to port 67 (547 for DHCPv6) from `mac` (its DISCOVER / SOLICIT), or null. */
  first(mac: string): number | null
  stop(): Promise<void>
}

/** tcpdump on the lab's bridge with `args`, once it says it is listening (or gave up: 10 s, or it exited). */
async function tcpdumpOnBridge(lab: VmLab, args: string[], stdout: 'pipe' | 'ignore') {
  const child = lab.bridgeNs.spawn(['timeout', '900', 'tcpdump', '-i', 'br0', '-n', ...args], { stdio: ['ignore', stdout, 'pipe'] })
  let err = ''
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()))
  const t0 = Date.now()
  while (!/listening on/.test(err) && child.exitCode === null && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 50))
  return { child, listening: /listening on/.test(err), err }
}

/**
 * Every packet on the bridge, headers and the first 512 bytes, to `file` (the boot bench's --pcap=DIR, for reading a
 * boot's timing on the wire afterwards: `tcpdump -r FILE -n -tt -v`); null when tcpdump is missing.
 */
export async function capturePackets(lab: VmLab, file: string): Promise<{ stop(): Promise<void> } | null> {
  if (!which('tcpdump')) return null
  const { child } = await tcpdumpOnBridge(lab, ['-s', '512', '-U', '-w', file], 'ignore')
  return { stop: () => stopChild(child, 2_000) }
}

/** tcpdump (Debian package tcpdump) on the bridge; null when it is missing (then the servers' logs are used). */
export async function captureDhcp(lab: VmLab, ipv6 = false): Promise<DhcpCapture | null> {
  if (!which('tcpdump')) return null
  const { child, listening, err } = await tcpdumpOnBridge(lab, ['-l', '-tt', '-e', `udp and dst port ${ipv6 ? 547 : 67}`], 'pipe')
  const packets: { at: number; text: string }[] = []
  let out = ''
  child.stdout?.on('data', (d: Buffer) => {
    const parts = (out + d.toString()).split('\n')
    out = parts.pop() ?? ''
    for (const p of parts) {
      const at = Math.round(Number(p.split(' ')[0]) * 1000)
      if (Number.isFinite(at)) packets.push({ at, text: p.toLowerCase() })
    }
  })
  if (!listening) {
    await stopChild(child, 5_000)
    console.log(`NOTE: tcpdump did not start (${err.trim().split('\n').pop()}): first DISCOVER from the servers' logs`)
    return null
  }
  return {
    first: (mac) => packets.find((p) => p.text.includes(` ${mac.toLowerCase()} > `))?.at ?? null,
    stop: () => stopChild(child, 2_000),
  }
}
