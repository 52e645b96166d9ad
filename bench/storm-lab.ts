// The lab of `npm run bench -- storm`: two network namespaces, the servers as their users run them, the client
// process, and what /proc says about the servers.
//
// Segment. The server namespace holds 198.18.0.1/24; the client namespace is the rack's relay at 198.18.0.2 with
// the rack subnet 198.19.0.0/16 behind it. Every address of that /16 is local to the client namespace (an AnyIP
// route, `ip route add local 198.19.0.0/16 dev lo`), so each simulated machine can open its TCP connections from the
// address DHCP leased it, and the server routes the whole /16 through one neighbour (198.18.0.2): 10,000 machines
// need no 10,000 ARP entries. A rack behind a relay is how a 10,000-machine site is cabled.
import { nginxConfig } from './nginx-config.js'
import type { ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { which } from '../src/processes.js'
import { BIN, REPO } from '../test/support/cli.js'
import { createNetLab, stopChild, type NetLab, type Netns } from '../test/support/netns.js'
import { ownedNetLab, statFields, sweepBeforeLab } from '../test/e2e/support/netns-sweep.js'
import type { ClientResult, DhcpJob, DhcpOutcome, HttpJob, HttpOutcome } from './storm-client.js'

export const SERVER_IP = '198.18.0.1'
export const RELAY_IP = '198.18.0.2'
/** giaddr: the relay's address in the rack subnet. */
export const GIADDR = '198.19.0.1'
export const POOL = { start: '198.19.1.0', end: '198.19.255.250' }
export const RACKBOOT_PORT = 8080
export const NGINX_PORT = 8081
export const TALOS_VERSION = 'v1.13.9'
/** Stand-ins for the boot files: small, so the storm measures requests rather than the veth's bandwidth. */
export const KERNEL_BYTES = 256 * 1024
export const INITRAMFS_BYTES = 1024 * 1024

export interface StormLab {
  lab: NetLab
  srv: Netns
  cli: Netns
}

export async function createStormLab(): Promise<StormLab> {
  // As the e2e labs: remove namespaces of killed runs, and record ours (test/e2e/support/netns-sweep.ts).
  await sweepBeforeLab()
  const lab = ownedNetLab(await createNetLab())
  try {
    const srv = await lab.ns('storms')
    const cli = await lab.ns('stormc')
    await lab.veth({ ns: srv, name: 'eth0', cidr: `${SERVER_IP}/24` }, { ns: cli, name: 'eth0', cidr: `${RELAY_IP}/24` })
    await srv.ip(['route', 'add', '198.19.0.0/16', 'via', RELAY_IP])
    await cli.ip(['route', 'add', 'local', '198.19.0.0/16', 'dev', 'lo'])
    return { lab, srv, cli }
  } catch (err) {
    await lab.destroy()
    throw err
  }
}

// ---------------------------------------------------------------------------------------------------------------
// /proc

const CLK_TCK = 100 // USER_HZ on Linux


/** A process and its live children (nginx's workers). */
function tree(pid: number): number[] {
  const kids = readdirSync('/proc').filter((e) => /^\d+$/.test(e)).map(Number).filter((p) => statFields(p)?.[1] === String(pid))
  return [pid, ...kids]
}

/** utime + stime (all threads) of a process and its live children, seconds. */
export function cpuSeconds(pid: number): number {
  return tree(pid).reduce((sum, p) => {
    const f = statFields(p)
    return sum + (f ? (Number(f[11]) + Number(f[12])) / CLK_TCK : 0)
  }, 0)
}

/** VmHWM (peak resident set) of a process and its live children, MiB. */
export function peakRssMiB(pid: number): number {
  return tree(pid).reduce((sum, p) => {
    try {
      const kb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0)
      return sum + kb / 1024
    } catch {
      return sum
    }
  }, 0)
}

// ---------------------------------------------------------------------------------------------------------------
// The client process

const CLIENT = join(REPO, 'bench', 'storm-client.ts')

export function runClient(cli: Netns, job: DhcpJob): Promise<ClientResult<DhcpOutcome>>
export function runClient(cli: Netns, job: HttpJob): Promise<ClientResult<HttpOutcome>>
export function runClient(cli: Netns, job: DhcpJob | HttpJob): Promise<ClientResult<DhcpOutcome | HttpOutcome>> {
  const child = cli.spawn(['node', '--import', 'tsx', CLIENT], { cwd: REPO, stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr?.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)))
  // A client killed early (Ctrl-C reaches the whole process group) closes its stdin: its exit says so below.
  child.stdin?.on('error', () => undefined)
  child.stdin?.end(JSON.stringify(job))
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`storm client exited ${code}: ${err}`))
      resolve(JSON.parse(out) as ClientResult<DhcpOutcome | HttpOutcome>)
    })
  })
}

// ---------------------------------------------------------------------------------------------------------------
// Servers

export interface Server {
  /** The processes whose CPU and memory are the server's (rackboot; dnsmasq and nginx). */
  pids: number[]
  tail(): string
  stop(): Promise<void>
}

function follow(child: ChildProcess): () => string {
  let text = ''
  const keep = (d: Buffer) => (text = (text + d.toString()).slice(-20_000))
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  return () => text
}

/** The fake boot files: the discovery agent (so discovery is not held for a missing agent) and Talos. */
export function writeAssets(assetsDir: string): void {
  const files: [string, number][] = [
    ['agent/vmlinuz', KERNEL_BYTES], ['agent/agent.img', INITRAMFS_BYTES],
    [`talos/${TALOS_VERSION}/amd64/vmlinuz`, KERNEL_BYTES], [`talos/${TALOS_VERSION}/amd64/initramfs.xz`, INITRAMFS_BYTES],
  ]
  for (const [rel, size] of files) {
    mkdirSync(join(assetsDir, rel, '..'), { recursive: true })
    writeFileSync(join(assetsDir, rel), Buffer.alloc(size, 0x5a))
  }
}

/**
 * `rackboot serve` in the server namespace, full DHCP for the relayed rack subnet, HTTP on SERVER_IP. Settings a site
 * expecting a storm of `machines` sets (printed by the bench): the new-machine bound and the download slots.
 */
export async function startRackboot(s: StormLab, dir: string, assetsDir: string, machines: number): Promise<Server> {
  const config = join(dir, 'rackboot.yaml')
  writeFileSync(config, stringify(rackbootSettings(dir, assetsDir, machines)))
  // STORM_CPU_PROF=DIR: a V8 CPU profile of the server, written there when it stops (cut per phase by the times logged).
  const prof = process.env.STORM_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.STORM_CPU_PROF}`] : []
  const child = s.srv.spawn(['node', ...prof, BIN, 'serve', '--config', config], { cwd: dir })
  const tail = follow(child)
  const t0 = Date.now()
  while (!tail().includes('rackboot is serving')) {
    if (child.exitCode !== null || Date.now() - t0 > 180_000) {
      await stopChild(child, 5_000)
      throw new Error(`rackboot did not start:\n${tail().slice(-3000)}`)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  return { pids: [child.pid!], tail, stop: () => stopChild(child, 10_000) }
}

export function rackbootSettings(dir: string, assetsDir: string, machines: number) {
  return {
    dataDir: join(dir, 'data'),
    assetsDir,
    log: { level: 'info', format: 'json' },
    http: { listen: SERVER_IP, port: RACKBOOT_PORT, publicUrl: `http://${SERVER_IP}:${RACKBOOT_PORT}`, maxConcurrentDownloads: machines },
    tftp: { enabled: false },
    dhcp: {
      mode: 'full', serverAddress: SERVER_IP, routerAdverts: 'off',
      subnets: [
        { subnet: `${SERVER_IP.replace(/\.1$/, '.0')}/24`, rangeStart: '198.18.0.100', rangeEnd: '198.18.0.200' },
        { subnet: '198.19.0.0/16', rangeStart: POOL.start, rangeEnd: POOL.end, routers: [GIADDR], leaseSeconds: 3600 },
      ],
    },
    security: { newMachinesPerMinute: Math.max(600, machines) },
  }
}

/** The static iPXE script nginx serves: what a dnsmasq + nginx site writes once for every machine. */
function staticScript(base: string): string {
  return [
    '#!ipxe',
    `kernel ${base}/talos/vmlinuz initrd=initramfs.xz talos.platform=metal console=ttyS0 talos.config=${base}/config.yaml || goto retry`,
    `initrd --name initramfs.xz ${base}/talos/initramfs.xz || goto retry`,
    'boot || goto retry',
    ':retry',
    'sleep 15',
    `chain --replace --autofree ${base}/boot.ipxe`,
    '',
  ].join('\n')
}

/** Why the peer cannot run here (a program missing), or null. */
export function peerMissing(): string | null {
  const missing = ['dnsmasq', 'nginx'].filter((p) => !which(p))
  return missing.length ? `${missing.join(' and ')} not installed (Debian packages ${missing.join(', ')})` : null
}

/**
 * dnsmasq (full DHCP for the relayed rack subnet, iPXE clients told the script URL by user class, as boot-lab.ts
 * configures it, logging to a file as it does by default) and nginx (sendfile on, tcp_nopush on, Debian's
 * worker_processes auto, access log on) serving the static script and the same boot files.
 */
export async function startPeer(s: StormLab, dir: string, assetsDir: string, machines: number): Promise<Server> {
  const www = join(dir, 'www')
  mkdirSync(join(www, 'talos'), { recursive: true })
  const base = `http://${SERVER_IP}:${NGINX_PORT}`
  writeFileSync(join(www, 'boot.ipxe'), staticScript(base))
  for (const f of ['vmlinuz', 'initramfs.xz']) writeFileSync(join(www, 'talos', f), readFileSync(join(assetsDir, 'talos', TALOS_VERSION, 'amd64', f)))
  writeFileSync(join(dir, 'nginx.conf'), nginxConfig({
    dir, workers: 'auto', workerConnections: 4096, accessLog: { path: `${dir}/access.log` }, asRoot: true,
    listen: `${SERVER_IP}:${NGINX_PORT} backlog=4096`, server: [`root ${www};`],
  }))
  const nginx = s.srv.spawn(['nginx', '-e', join(dir, 'error.log'), '-p', dir, '-c', join(dir, 'nginx.conf')])
  const nginxTail = follow(nginx)
  const dnsmasq = s.srv.spawn([
    'dnsmasq', '--keep-in-foreground', '--no-resolv', '--no-hosts', '--port=0', '--user=root',
    '--interface=eth0', '--bind-interfaces', '--no-ping', '--dhcp-authoritative', `--log-facility=${join(dir, 'dnsmasq.log')}`,
    `--pid-file=${join(dir, 'dnsmasq.pid')}`, `--dhcp-leasefile=${join(dir, 'dnsmasq.leases')}`,
    `--dhcp-range=${POOL.start},${POOL.end},255.255.0.0,1h`, `--dhcp-lease-max=${Math.max(1000, 2 * machines)}`,
    `--dhcp-option=option:router,${GIADDR}`,
    '--dhcp-userclass=set:ipxe,iPXE', '--dhcp-match=set:ipxe,175',
    `--dhcp-boot=tag:ipxe,${base}/boot.ipxe`, '--dhcp-option=tag:ipxe,encap:175,176,1b',
  ])
  const dnsTail = follow(dnsmasq)
  const tail = () => `${nginxTail()}${existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8').slice(-2000) : ''}\n${dnsTail()}`
  const stop = async () => {
    await stopChild(dnsmasq, 5_000)
    await stopChild(nginx, 5_000)
  }
  // Up when nginx listens and dnsmasq holds port 67.
  const t0 = Date.now()
  for (;;) {
    const ss = await s.srv.exec(['ss', '-Hln', `( sport = :${NGINX_PORT} or sport = :67 )`], { check: false })
    if (ss.stdout.includes(`:${NGINX_PORT}`) && ss.stdout.includes(':67')) break
    if (nginx.exitCode !== null || dnsmasq.exitCode !== null || Date.now() - t0 > 30_000) {
      await stop()
      throw new Error(`dnsmasq or nginx did not start:\n${tail()}`)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  return { pids: [dnsmasq.pid!, nginx.pid!], tail, stop }
}
