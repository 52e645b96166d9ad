// A relayed segment beside a lab: the DHCP server (rackboot) is not on the guests' link. Three namespaces of their
// own (torn down by t.after, or destroy()):
//
//   lab bridge ns (br0) --veth-- relay ns --veth-- segment ns (br0, the guests' taps)
//     198.18.X.0/24     198.18.X.2   198.18.Y.1        198.18.Y.0/24
//
// The relay namespace forwards IPv4 between the two (so guests reach the server's TFTP and HTTP), runs a DHCP relay
// (Debian's dnsmasq --dhcp-relay=198.18.Y.1,<server>: giaddr 198.18.Y.1) and, when asked, radvd on the segment
// (router advertisements end iPXE's IPv6 autoconfiguration wait, lab.md). The server namespace gets a route to
// 198.18.Y.0/24 via the relay. Guests start as with lab.startVm (same VM slots, hard timeouts, serial logs).
import type { ChildProcess } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { radvdConfig } from '../../../src/dhcp/router-adverts.js'
import { createNetLab, run, stopChild, type NetLab, type Netns } from '../../support/netns.js'
import { addBridgeTap, type VmLab } from './lab.js'
import { ownedNetLab } from './netns-sweep.js'
import { launchVm, type Vm, type VmOptions } from './vm.js'

const DAEMON_LIMIT = ['timeout', '3600']

export interface RelaySegment {
  /** 198.18.Y.1: the relay's address on the segment (giaddr, the guests' router). */
  readonly relayIp: string
  /** 198.18.X.2: the relay's address on the server's segment. */
  readonly upstreamIp: string
  /** 198.18.Y.0/24 */
  readonly subnet: string
  address(host: number): string
  readonly relayNs: Netns
  readonly segmentNs: Netns
  /** The relay's output (dnsmasq --log-dhcp), for diagnostics. */
  relayLog(): string
  /** Starts radvd on the segment (no prefix, router lifetime 0: only ends iPXE's IPv6 wait). */
  startRouterAdverts(): Promise<ChildProcess>
  stopRouterAdverts(): Promise<void>
  startVm(options: VmOptions): Promise<Vm>
  destroy(): Promise<void>
}

async function freeOctet(avoid: number[]): Promise<number> {
  const used = (await run(['ip', '-4', '-o', 'addr', 'show'], { check: false })).stdout
  for (let i = 0; i < 50; i++) {
    const y = 100 + Math.floor(Math.random() * 150)
    if (!avoid.includes(y) && !used.includes(`198.18.${y}.`)) return y
  }
  throw new Error('no free 198.18.Y.0/24 subnet on this host')
}

/** The octet Y of a relayed segment's 198.18.Y.0/24, picked before the server's config is written. */
export function pickRelayOctet(lab: VmLab): Promise<number> {
  return freeOctet([Number(lab.serverIp.split('.')[2])])
}


/**
 * A relayed segment 198.18.`octet`.0/24 attached to `lab` (serverSide netns), relaying DHCP to `serverIp` (default
 * the lab's server; another address breaks the path, for a test that must fail).
 */
export async function createRelaySegment(
  t: { after(fn: () => unknown): void },
  lab: VmLab,
  options: { octet: number; serverIp?: string },
): Promise<RelaySegment> {
  if (!lab.serverNs) throw new Error('a relayed segment needs the lab server in its own namespace (serverSide netns)')
  const x = lab.serverIp.split('.').slice(0, 3).join('.')
  const y = `198.18.${options.octet}`
  const relayIp = `${y}.1`
  const upstreamIp = `${x}.2`
  // Recorded as this process's, so a later lab removes them should this run die before destroy().
  const net: NetLab = ownedNetLab(await createNetLab())
  const vms: Vm[] = []
  const aborter = new AbortController()
  let radvd: ChildProcess | null = null
  let destroyed = false
  let vmSeq = 0
  let log = ''
  const destroy = async (): Promise<void> => {
    if (destroyed) return
    destroyed = true
    aborter.abort()
    await Promise.all(vms.map((vm) => vm.stop().catch(() => undefined)))
    await lab.serverNs?.ip(['route', 'del', `${y}.0/24`]).catch(() => undefined)
    await net.destroy().catch(() => undefined)
  }
  t.after(destroy)
  try {
    const relayNs = await net.ns('rly', { ipv6: true })
    const segmentNs = await net.ns('seg')
    const upName = `rly${net.tag}`.slice(0, 15)
    await net.veth({ ns: relayNs, name: 'up0', cidr: `${upstreamIp}/24` }, { ns: lab.bridgeNs, name: upName })
    await lab.bridgeNs.ip(['link', 'set', 'dev', upName, 'master', 'br0'])
    await net.veth({ ns: relayNs, name: 'seg0', cidr: `${relayIp}/24` }, { ns: segmentNs, name: 'uplink' })
    await net.bridge(segmentNs, 'br0', ['uplink'])
    await relayNs.sysctl('net.ipv4.ip_forward', '1')
    await lab.serverNs.addRoute(`${y}.0/24`, upstreamIp)

    const relay = relayNs.spawn([
      ...DAEMON_LIMIT, 'dnsmasq', '--keep-in-foreground', '--no-resolv', '--no-hosts', '--port=0', '--user=root',
      '--log-dhcp', '--log-facility=-', `--pid-file=${join(lab.tmpDir, `relay-${net.tag}.pid`)}`,
      `--dhcp-relay=${relayIp},${options.serverIp ?? lab.serverIp}`,
    ])
    relay.stdout?.on('data', (d) => (log += d))
    relay.stderr?.on('data', (d) => (log += d))
    await new Promise((r) => setTimeout(r, 300))
    if (relay.exitCode !== null) throw new Error(`dnsmasq --dhcp-relay exited at once (code ${relay.exitCode}):\n${log}`)

    const segment: RelaySegment = {
      relayIp,
      upstreamIp,
      subnet: `${y}.0/24`,
      address: (host) => `${y}.${host}`,
      relayNs,
      segmentNs,
      relayLog: () => log,
      async startRouterAdverts() {
        if (radvd) return radvd
        const conf = join(lab.tmpDir, `relay-radvd-${net.tag}.conf`)
        writeFileSync(conf, radvdConfig('seg0', 3, 10))
        const child = relayNs.spawn([...DAEMON_LIMIT, 'radvd', '--nodaemon', '-C', conf, '-p', join(lab.tmpDir, `relay-radvd-${net.tag}.pid`), '-m', 'stderr'])
        let err = ''
        child.stderr?.on('data', (d) => (err += d))
        await new Promise((r) => setTimeout(r, 500))
        if (child.exitCode !== null) throw new Error(`radvd exited at once (code ${child.exitCode}): ${err}`)
        radvd = child
        return child
      },
      async stopRouterAdverts() {
        if (radvd) await stopChild(radvd, 2_000)
        radvd = null
      },
      async startVm(vmOptions) {
        if (destroyed) throw new Error('relayed segment destroyed')
        vmSeq += 1
        const name = vmOptions.name ?? `relayed${vmSeq}`
        const tap = `tap${vmSeq}`
        await addBridgeTap(segmentNs, tap)
        const vm = await launchVm(vmOptions, {
          ns: segmentNs,
          tmpDir: lab.tmpDir,
          tap,
          name,
          slotSignal: aborter.signal,
          spawn: (argv) => segmentNs.spawn(argv, { stdio: ['pipe', 'pipe', 'pipe'] }),
        })
        vms.push(vm)
        return vm
      },
      destroy,
    }
    return segment
  } catch (err) {
    await destroy()
    throw err
  }
}
