// The network of an end-to-end test: a namespace holding a bridge, one tap per QEMU guest, and a veth whose other
// end carries the server address 198.18.X.1/24. That end sits in a second namespace where servers run
// (serverSide 'netns', the default: lab.spawn/lab.exec), or in the root namespace (serverSide 'host': an in-process
// server can bind lab.serverIp). Everything is removed by destroy(), which never throws.
//
//   const lab = await createVmLab(t)
//   const srv = lab.spawn(['node', '--import', 'tsx', 'src/main.ts', 'serve', ...])
//   const vm = await lab.startVm({ mode: 'bios', smbios: { uuid, serial }, disks: [{ sizeMiB: 64 }] })
//   await vm.waitFor(/rackboot-agent: report sent/, 120_000)
import type { ChildProcess, SpawnOptions } from 'node:child_process'
import { spawn as spawnChild } from 'node:child_process'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createNetLab, run, type ExecOptions, type ExecResult, type NetLab, type Netns } from '../../support/netns.js'
import { forgetIfGone, ownedNetLab, sweepBeforeLab } from './netns-sweep.js'
import { startSinkProcess, type Sink, type StartSinkOptions } from './sink.js'
import { launchVm, type Vm, type VmOptions } from './vm.js'

export interface VmLabOptions {
  serverSide?: 'netns' | 'host'
  /** X in 198.18.X.0/24 (default: random in 100..249, unused on the host). */
  subnetOctet?: number
  /** IPv6 in the server namespace (to send router advertisements, which spare iPXE a ~16 s wait). */
  ipv6?: boolean
  /** Keep the temp dir (serial logs, disk images) after destroy, for debugging. */
  keepTmp?: boolean
}

export interface VmLab {
  readonly tag: string
  /** Serial logs, disk images, VARS copies, server files. */
  readonly tmpDir: string
  /** The namespace with the bridge and the taps (QEMU runs here). */
  readonly bridgeNs: Netns
  /** The server namespace ('netns' side), or null on the host side. */
  readonly serverNs: Netns | null
  /** 198.18.X.1 */
  readonly serverIp: string
  readonly subnet: string
  readonly prefixLength: number
  /** The server end's interface name (in serverNs, or in the root namespace). */
  readonly serverInterface: string
  /** 198.18.X.<host> */
  address(host: number): string
  /** Starts a long-running command where the server end is; killed on destroy. */
  spawn(argv: string[], options?: SpawnOptions): ChildProcess
  exec(argv: string[], options?: ExecOptions): Promise<ExecResult>
  startVm(options: VmOptions): Promise<Vm>
  /** An HTTP server on serverIp recording requests (sink-server.ts). */
  startSink(options?: Omit<StartSinkOptions, 'host'>): Promise<Sink>
  /** busybox udhcpd on the server end: addresses .100-.199, router and server-id serverIp. */
  startDhcp(options?: { bootFile?: string; siaddr?: string }): Promise<ChildProcess>
  /** dnsmasq as a reference boot server (DHCP + TFTP of Debian's iPXE; RAs when ipv6), as in lab.md. */
  startDnsmasq(options: { ipxeScriptUrl: string; tftpRoot?: string; extraArgs?: string[] }): Promise<ChildProcess>
  readonly vms: readonly Vm[]
  destroy(): Promise<void>
}

// Helper daemons run under coreutils timeout (which passes SIGTERM on): should this process die without cleaning
// up, they still end within the hour.
const DAEMON_LIMIT = ['timeout', '3600']

interface AfterContext {
  after(fn: () => Promise<void> | void): void
}

/** A guest's tap device on the namespace's bridge br0, up (a lab's segment, or a relayed one). */
export async function addBridgeTap(ns: Netns, tap: string): Promise<void> {
  await ns.ip(['tuntap', 'add', 'dev', tap, 'mode', 'tap'])
  await ns.ip(['link', 'set', 'dev', tap, 'master', 'br0'])
  await ns.up(tap)
}

async function pickOctet(preferred?: number): Promise<number> {
  if (preferred !== undefined) return preferred
  const used = (await run(['ip', '-4', '-o', 'addr', 'show'], { check: false })).stdout
  for (let i = 0; i < 50; i++) {
    const x = 100 + Math.floor(Math.random() * 150)
    if (!used.includes(`198.18.${x}.`)) return x
  }
  throw new Error('no free 198.18.X.0/24 subnet on this host')
}

export async function createVmLab(t?: AfterContext, options: VmLabOptions = {}): Promise<VmLab> {
  // Namespaces of earlier runs killed before their teardown (netns-sweep.ts); this lab's are recorded as ours.
  await sweepBeforeLab()
  const net: NetLab = ownedNetLab(await createNetLab())
  const tmpDir = mkdtempSync(join(tmpdir(), `rackboot-e2e-${net.tag}-`))
  const vms: Vm[] = []
  const children = new Set<ChildProcess>()
  const aborter = new AbortController()
  let destroyed = false
  let vmSeq = 0

  // Last resort when the test process exits without destroy() (process.exit, an uncaught error): kill the guests
  // and drop the namespaces synchronously. (A SIGKILLed test process leaves them; QEMU still ends at its limit.)
  const groups = new Set<number>()
  const namespaces: string[] = []
  const onExit = () => {
    for (const pid of groups) {
      try {
        process.kill(-pid, 'SIGKILL')
      } catch {
        // gone
      }
    }
    for (const ns of namespaces) {
      const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout ?? ''
      for (const pid of pids.split(/\s+/).filter(Boolean).map(Number)) {
        try {
          if (pid > 1 && pid !== process.pid) process.kill(pid, 'SIGKILL')
        } catch {
          // gone
        }
      }
      spawnSync('ip', ['netns', 'del', ns])
      forgetIfGone(ns)
    }
  }
  process.once('exit', onExit)

  const destroy = async (): Promise<void> => {
    if (destroyed) return
    destroyed = true
    process.removeListener('exit', onExit)
    aborter.abort()
    await Promise.all(vms.map((vm) => vm.stop().catch(() => undefined)))
    await Promise.all(
      [...children].map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve()
            const timer = setTimeout(() => {
              try {
                c.kill('SIGKILL')
              } catch {
                // gone
              }
              resolve()
            }, 2_000)
            c.once('exit', () => {
              clearTimeout(timer)
              resolve()
            })
            try {
              c.kill('SIGTERM')
            } catch {
              // gone
            }
          }),
      ),
    ).catch(() => undefined)
    await net.destroy().catch(() => undefined)
    if (!options.keepTmp) {
      try {
        rmSync(tmpDir, { recursive: true, force: true })
      } catch {
        // best effort
      }
    }
  }
  t?.after(destroy)

  try {
    const octet = await pickOctet(options.subnetOctet)
    const serverIp = `198.18.${octet}.1`
    const bridgeNs = await net.ns('br')
    const serverSide = options.serverSide ?? 'netns'
    namespaces.push(bridgeNs.name)
    const serverNs = serverSide === 'netns' ? await net.ns('srv', { ipv6: options.ipv6 ?? false }) : null
    if (serverNs) namespaces.push(serverNs.name)
    const serverInterface = serverNs ? 'eth0' : net.ifname('rbsrv')
    await net.veth({ ns: bridgeNs, name: 'uplink', up: true }, { ...(serverNs ? { ns: serverNs } : {}), name: serverInterface, cidr: `${serverIp}/24` })
    await net.bridge(bridgeNs, 'br0', ['uplink'])
    if (serverNs && options.ipv6) await serverNs.addAddress('eth0', `2001:2:0:${octet.toString(16)}::1/64`).catch(() => undefined)

    const spawnHere = (argv: string[], spawnOptions: SpawnOptions = {}): ChildProcess => {
      const opts: SpawnOptions = { stdio: ['ignore', 'pipe', 'pipe'], ...spawnOptions }
      if (serverNs) return serverNs.spawn(argv, opts)
      const [cmd, ...args] = argv
      if (!cmd) throw new Error('empty command')
      const child = spawnChild(cmd, args, opts)
      children.add(child)
      child.once('exit', () => children.delete(child))
      child.on('error', () => undefined)
      return child
    }

    const lab: VmLab = {
      tag: net.tag,
      tmpDir,
      bridgeNs,
      serverNs,
      serverIp,
      subnet: `198.18.${octet}.0/24`,
      prefixLength: 24,
      serverInterface,
      address: (host) => `198.18.${octet}.${host}`,
      spawn: spawnHere,
      exec: (argv, execOptions) => (serverNs ? serverNs.exec(argv, execOptions) : run(argv, execOptions)),
      get vms() {
        return vms
      },
      async startVm(vmOptions) {
        if (destroyed) throw new Error('lab destroyed')
        vmSeq += 1
        const name = vmOptions.name ?? `vm${vmSeq}`
        const tap = `tap${vmSeq}`
        await addBridgeTap(bridgeNs, tap)
        const vm = await launchVm(vmOptions, {
          ns: bridgeNs,
          tmpDir,
          tap,
          name,
          slotSignal: aborter.signal,
          onSpawn: (child) => {
            if (child.pid === undefined) return
            const pid = child.pid
            groups.add(pid)
            child.once('exit', () => groups.delete(pid))
          },
          spawn: (argv) => bridgeNs.spawn(argv, { stdio: ['pipe', 'pipe', 'pipe'] }),
        })
        vms.push(vm)
        return vm
      },
      // stdin stays open: the sink exits when it closes (this process gone).
      startSink: (sinkOptions = {}) =>
        startSinkProcess((argv) => spawnHere(argv, { cwd: repoRoot(), stdio: ['pipe', 'pipe', 'pipe'] }), { ...sinkOptions, host: serverIp }),
      async startDhcp(dhcpOptions = {}) {
        if (!serverNs) throw new Error('startDhcp needs serverSide: netns (udhcpd would serve the host)')
        const conf = join(tmpDir, `udhcpd-${Date.now()}.conf`)
        const lines = [
          `start ${lab.address(100)}`,
          `end ${lab.address(199)}`,
          `interface ${serverInterface}`,
          `lease_file ${join(tmpDir, 'udhcpd.leases')}`,
          `pidfile ${join(tmpDir, 'udhcpd.pid')}`,
          'max_leases 100',
          'auto_time 0',
          `opt router ${serverIp}`,
          'opt subnet 255.255.255.0',
          'opt lease 3600',
          `siaddr ${dhcpOptions.siaddr ?? serverIp}`,
        ]
        if (dhcpOptions.bootFile) lines.push(`boot_file ${dhcpOptions.bootFile}`)
        writeFileSync(conf, lines.join('\n') + '\n')
        writeFileSync(join(tmpDir, 'udhcpd.leases'), '')
        // -a 100: a short ARP probe before each offer (the default 2 s would count in every boot).
        const child = spawnHere([...DAEMON_LIMIT, 'busybox', 'udhcpd', '-f', '-a', '100', conf])
        await new Promise((r) => setTimeout(r, 300))
        if (child.exitCode !== null) throw new Error(`udhcpd exited at once (code ${child.exitCode})`)
        return child
      },
      async startDnsmasq(d) {
        if (!serverNs) throw new Error('startDnsmasq needs serverSide: netns')
        const args = [
          'dnsmasq', '--keep-in-foreground', '--no-resolv', '--no-hosts', '--port=0', '--user=root',
          `--interface=${serverInterface}`, '--bind-interfaces', '--no-ping', '--log-dhcp', '--log-facility=-',
          `--pid-file=${join(tmpDir, 'dnsmasq.pid')}`, `--dhcp-leasefile=${join(tmpDir, 'dnsmasq.leases')}`,
          `--dhcp-range=${lab.address(100)},${lab.address(199)},255.255.255.0,1h`,
          '--dhcp-userclass=set:ipxe,iPXE', '--dhcp-match=set:ipxe,175',
          '--dhcp-match=set:efi64,option:client-arch,7', '--dhcp-match=set:efi64,option:client-arch,9',
          `--dhcp-boot=tag:ipxe,${d.ipxeScriptUrl}`,
          '--dhcp-boot=tag:efi64,tag:!ipxe,ipxe.efi',
          '--dhcp-boot=tag:!efi64,tag:!ipxe,undionly.kpxe',
          '--dhcp-option=tag:ipxe,encap:175,176,1b',
          '--enable-tftp', `--tftp-root=${d.tftpRoot ?? '/usr/lib/ipxe'}`,
        ]
        if (options.ipv6) args.push('--enable-ra', `--dhcp-range=2001:2:0:${octet.toString(16)}::,ra-only,64`)
        args.push(...(d.extraArgs ?? []))
        const child = spawnHere([...DAEMON_LIMIT, ...args])
        await new Promise((r) => setTimeout(r, 300))
        if (child.exitCode !== null) throw new Error(`dnsmasq exited at once (code ${child.exitCode})`)
        return child
      },
      destroy,
    }
    return lab
  } catch (err) {
    await destroy()
    throw err
  }
}

function repoRoot(): string {
  return new URL('../../../', import.meta.url).pathname
}
