// `npm run bench -- boot [--rounds=N] [--modes=bios,uefi,uefi-http,arm64,arm64-http,uefi-pxe6] [--pcap=DIR]`
// Whole network boots under QEMU (TCG), rackboot against dnsmasq, in the same run, the same netns lab
// (test/e2e/support/lab.ts, IPv6 on so both peers send RAs) and the same VM arguments (q35 or virt/cortex-a57, 512 MiB,
// 1 vCPU, virtio NIC on a tap, one 64 MiB virtio disk; a fresh random MAC and SMBIOS UUID per boot, so every boot is
// an unknown machine's discovery boot for rackboot). Servers (bench/boot-lab.ts), one at a time on the segment:
//   rackboot  `rackboot serve` (full DHCP, TFTP, HTTP, its own RAs), the discovery agent as the e2e tests use it.
//   dnsmasq   DHCP + TFTP (dhcp-match/dhcp-boot per arch, no-ping, iPXE no-pxedhcp, RAs: lab.md's options) and nginx
//             (sendfile) for the static iPXE script / grub.cfg, kernel and initramfs; when nginx is missing, a plain
//             Node static server, labelled so in the output. iPXE chain (ipxe.efi over TFTP, or over HTTP for UEFI
//             HTTP boot) -> static boot.ipxe -> the same agent kernel + initramfs with the same kernel arguments
//             (console, rackboot.report=, rackboot.after=poweroff; the report goes to a static 204 on nginx); arm64:
//             AAVMF -> the GRUB image of `rackboot assets fetch grub` -> static grub.cfg -> the arm64 agent.
// uefi-pxe6: IPv6 only on the segment (no DHCPv4 from either peer), OVMF's PXEv6 (fw_cfg, test/e2e/support/vm.ts) ->
// DHCPv6 option 59 tftp://[server]/ipxe.efi -> iPXE's DHCPv6 -> boot.ipxe over HTTP/IPv6 -> the agent, which takes
// its address from the RAs (SLAAC) and reports over IPv6; both peers as bench/boot-lab-ipv6.ts sets them up.
// Phases, seconds after QEMU start (lab.md's table): first DISCOVER (SOLICIT in uefi-pxe6; on the wire: tcpdump on the lab's bridge, the
// same clock for both peers; without tcpdump, the servers' logs: rackboot's boot.dhcp event, dnsmasq's DHCPDISCOVER
// line, which dnsmasq writes late under load), NBP done (serial: ipxe.efi's "iPXE initialising" / "Welcome to GRUB!"; none in bios, where
// the NIC ROM is iPXE), script fetched, kernel and initramfs downloaded (rackboot's boot.script / boot.asset
// events; nginx's access log, $msec = end of request), /init, network up (the agent's own DHCP lease, from the same
// server), report sent and power-off (serial markers of the agent). The last phase that is the same work for both
// peers is "network up"; "report" is rackboot's real inventory write against a static 204 for dnsmasq (the agent's
// hardware collection, identical on both, dominates it).
// Each round runs both peers (order alternating per round), each over all modes, one VM at a time (VM slots shared
// with the e2e tests: at most two QEMU guests on the machine). Figures are medians over rounds with the ratio
// rackboot/dnsmasq per phase, and the 1-minute load average is printed per boot and per round (TCG times move
// with load: ±30 % at load 2 on 2 cores).
// Needs root, iproute2, qemu-system-x86 (qemu-system-arm for arm64), ipxe-qemu, ipxe, ovmf (qemu-efi-aarch64),
// dnsmasq-base, radvd (uefi-pxe6: rackboot's RAs), nginx (or nginx-light; optional, see above), tcpdump (optional, see above), and the agent assets (built into the e2e test cache
// on first use: a Debian kernel .deb via apt, busybox-static, kmod). Hard timeout 300 s per boot (420 s in uefi-pxe6).
import { mkdir, readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { randomUUID } from 'node:crypto'
import { which } from '../src/processes.js'
import {
  agentAssetsSkipReason,
  createVmLab,
  randomMac,
  vmSkipReason,
  type BootMode,
  type Vm,
  type VmArch,
  type VmLab,
} from '../test/e2e/support/index.js'
import { captureDhcp, capturePackets, dnsmasqPeer, prepareAssets, rackbootPeer, type Peer } from './boot-lab.js'
import { ipv6Peers } from './boot-lab-ipv6.js'

const HARD_TIMEOUT_MS = 300_000
// ipv6-pxe.test.ts measured 155-280 s per PXEv6 boot at load 10-25 (OVMF ~50 s to the NBP, iPXE's futile DHCPv4).
const HARD_TIMEOUT_PXE6_MS = 420_000
const ALL_MODES = ['bios', 'uefi', 'uefi-http', 'arm64', 'arm64-http', 'uefi-pxe6'] as const
type ModeName = (typeof ALL_MODES)[number]
/** ipv6: the mode runs on the IPv6-only segment, against the peers of bench/boot-lab-ipv6.ts. */
const MODE: Record<ModeName, { arch: VmArch; mode: BootMode; ipv6?: true }> = {
  bios: { arch: 'x86_64', mode: 'bios' },
  uefi: { arch: 'x86_64', mode: 'uefi' },
  'uefi-http': { arch: 'x86_64', mode: 'uefi-http' },
  arm64: { arch: 'arm64', mode: 'uefi' },
  'arm64-http': { arch: 'arm64', mode: 'uefi-http' },
  'uefi-pxe6': { arch: 'x86_64', mode: 'uefi-pxe6', ipv6: true },
}

const PHASES = ['discover', 'nbp', 'script', 'kernel', 'initramfs', 'init', 'network', 'report', 'off'] as const
type Phase = (typeof PHASES)[number]
const HEADINGS: Record<Phase, string> = {
  discover: 'first DISCOVER/SOLICIT', nbp: 'NBP done', script: 'script', kernel: 'kernel', initramfs: 'initramfs',
  init: '/init', network: 'network up', report: 'report*', off: 'power-off',
}

type Times = Record<Phase, number | null>

interface BootResult {
  round: number
  mode: ModeName
  peer: Peer['key']
  ok: boolean
  error?: string
  times: Times
  load: string
}

function flag(args: string[], name: string): string | undefined {
  return args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
}

const median = (xs: number[]): number | null => {
  if (xs.length === 0) return null
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

const loadavg = async () => (await readFile('/proc/loadavg', 'utf8').catch(() => '?')).split(' ').slice(0, 3).join(' ')

/** Where a boot is stuck for good (it would only end at the hard timeout), or null. */
function stuck(vm: Vm): string | null {
  if (vm.serial.find(/^grub> ?$/)) return 'GRUB stopped at its prompt'
  const panic = vm.serial.find(/Kernel panic/)
  if (panic) return `kernel panic: ${panic.line}`
  if (vm.serial.find(/Shell> ?$/)) return 'UEFI shell: no network boot'
  return null
}

async function boot(lab: VmLab, peer: Peer, name: ModeName, round: number, pcapDir?: string): Promise<BootResult> {
  const { arch, mode, ipv6 } = MODE[name]
  const hardTimeoutMs = ipv6 ? HARD_TIMEOUT_PXE6_MS : HARD_TIMEOUT_MS
  const mac = randomMac()
  const capture = await captureDhcp(lab, ipv6)
  const packets = pcapDir ? await capturePackets(lab, join(pcapDir, `r${round}-${peer.key}-${name}.pcap`)) : null
  const vm = await lab.startVm({
    arch, mode, mac,
    smbios: { uuid: randomUUID(), serial: `BENCH-${round}-${peer.key}-${name}`, manufacturer: 'LAB', product: 'bench' },
    disks: [{ sizeMiB: 64 }],
    hardTimeoutMs,
    name: `r${round}-${peer.key}-${name}`,
  })
  let error: string | undefined
  let poll: NodeJS.Timeout | undefined
  try {
    const early = new Promise<never>((_, reject) => {
      poll = setInterval(() => {
        const why = stuck(vm)
        if (why) reject(new Error(why))
      }, 1_000)
    })
    const end = await Promise.race([vm.waitFor(/rackboot-agent: (powering off|report failed|network failed)/, hardTimeoutMs), early])
    if (!/powering off/.test(end.line)) error = end.line
    await vm.waitForExit(30_000).catch(() => vm.stop())
  } catch (err) {
    error = (err as Error).message.split('\n')[0]
    await vm.stop()
  } finally {
    clearInterval(poll)
    await capture?.stop()
    await packets?.stop()
  }
  const wire = capture?.first(mac) ?? null
  const server = await peer.phases(mac, vm.startedAt).catch(() => null)
  const rel = (at: number | null | undefined) => (at == null ? null : (at - vm.startedAt) / 1000)
  const ser = (re: RegExp) => rel(vm.serial.find(re)?.atMs == null ? null : vm.startedAt + vm.serial.find(re)!.atMs)
  const times: Times = {
    discover: rel(capture ? wire : server?.discover),
    nbp: mode === 'bios' ? null : ser(arch === 'arm64' ? /Welcome to GRUB!/ : /iPXE initialising devices/),
    script: rel(server?.script),
    kernel: rel(server?.kernel),
    initramfs: rel(server?.initramfs),
    init: ser(/rackboot-agent: start/),
    network: ser(/rackboot-agent: network up/),
    report: ser(/rackboot-agent: report sent/),
    off: ser(/rackboot-agent: powering off/),
  }
  const load = await loadavg()
  if (error) {
    console.log(`  ! ${peer.key} ${name} round ${round} failed: ${error}`)
    console.log(vm.serial.tail(15).replace(/^/gm, '    | '))
    console.log(peer.tail().split('\n').slice(-10).join('\n').replace(/^/gm, '    > '))
  }
  return { round, mode: name, peer: peer.key, ok: !error, ...(error ? { error } : {}), times, load }
}

const fmt = (v: number | null) => (v == null ? '-' : v.toFixed(1))

function printTable(results: BootResult[], modes: ModeName[], labels: Record<Peer['key'], string>, rounds: number, fromDiscover = false): void {
  console.log(fromDiscover
    ? `\nthe same, seconds after the first DISCOVER (leaves out firmware start-up, which no server touches)`
    : `\nmedians over rounds, seconds after QEMU start (TCG); ratio = rackboot / dnsmasq (< 1: rackboot faster)`)
  const phases = fromDiscover ? PHASES.filter((p) => p !== 'discover') : [...PHASES]
  console.log(`| mode | server | ok | ${phases.map((p) => HEADINGS[p]).join(' | ')} |`)
  console.log(`|---|---|---|${phases.map(() => '---').join('|')}|`)
  for (const mode of modes) {
    const med: Record<string, Record<Phase, number | null>> = {}
    for (const peer of ['rackboot', 'dnsmasq'] as const) {
      const rs = results.filter((r) => r.mode === mode && r.peer === peer)
      const ok = rs.filter((r) => r.ok)
      const value = (r: BootResult, p: Phase): number | null => {
        const v = r.times[p]
        if (!fromDiscover) return v
        const d = r.times.discover
        return v == null || d == null ? null : v - d
      }
      med[peer] = Object.fromEntries(phases.map((p) => [p, median(ok.map((r) => value(r, p)).filter((v): v is number => v != null))])) as Record<Phase, number | null>
      console.log(`| ${mode} | ${labels[peer]} | ${ok.length}/${rs.length || rounds} | ${phases.map((p) => fmt(med[peer]![p])).join(' | ')} |`)
    }
    const ratio = phases.map((p) => {
      const a = med.rackboot![p]
      const b = med.dnsmasq![p]
      return a == null || b == null || b === 0 ? '-' : `${(a / b).toFixed(2)}x`
    })
    console.log(`| ${mode} | ratio | | ${ratio.join(' | ')} |`)
    // Small figures make wild ratios (0.1 s against 0.05 s): the difference in seconds says more there.
    const delta = phases.map((p) => {
      const a = med.rackboot![p]
      const b = med.dnsmasq![p]
      return a == null || b == null ? '-' : `${a - b >= 0 ? '+' : ''}${(a - b).toFixed(1)}`
    })
    console.log(`| ${mode} | rackboot - dnsmasq (s) | | ${delta.join(' | ')} |`)
  }
  if (fromDiscover) return
  console.log('* report: rackboot stores the agent report in its inventory; dnsmasq\'s side is a static 204 from the HTTP server.')
  console.log('  The last phase that is the same work on both servers is "network up" (the agent\'s DHCP lease; its SLAAC address in uefi-pxe6).')
}

export async function run(args: string[]): Promise<void> {
  const rounds = Number(flag(args, 'rounds') ?? 3)
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds must be a positive integer')
  const pcapArg = flag(args, 'pcap')
  const pcapDir = pcapArg ? resolve(pcapArg) : undefined
  if (pcapDir) await mkdir(pcapDir, { recursive: true })
  const modeArg = (flag(args, 'modes') ?? 'bios,uefi,uefi-http').split(',').map((s) => s.trim()).filter(Boolean)
  for (const m of modeArg) if (!(ALL_MODES as readonly string[]).includes(m)) throw new Error(`unknown mode '${m}' (${ALL_MODES.join(', ')})`)

  if (process.getuid?.() !== 0) {
    console.log('SKIP boot bench: needs root (network namespaces, taps, DHCP on port 67)')
    return
  }
  if (!which('dnsmasq')) {
    console.log('SKIP boot bench: dnsmasq missing (Debian package dnsmasq-base): no reference peer')
    return
  }
  if (!which('nginx')) console.log('NOTE: nginx missing (Debian package nginx or nginx-light): dnsmasq\'s HTTP side is a plain Node static server')

  const modes: ModeName[] = []
  for (const m of modeArg as ModeName[]) {
    // rackboot's RAs on the IPv6-only segment come from radvd (src/dhcp/router-adverts.ts).
    const why = vmSkipReason(MODE[m].mode, MODE[m].ipv6 ? ['dnsmasq', 'radvd'] : ['dnsmasq'], MODE[m].arch) ?? (await agentAssetsSkipReason(MODE[m].arch === 'arm64' ? 'arm64' : 'amd64'))
    if (why) console.log(`SKIP mode ${m}: ${why}`)
    else modes.push(m)
  }
  if (modes.length === 0) {
    console.log('SKIP boot bench: no mode can run here')
    return
  }

  const lab = await createVmLab(undefined, { ipv6: true })
  const onSignal = () => {
    void lab.destroy().finally(() => process.exit(130))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    const arm64 = modes.some((m) => MODE[m].arch === 'arm64')
    const assetsDir = await prepareAssets(lab.tmpDir, arm64).catch(async (err) => {
      if (!arm64) throw err
      console.log(`SKIP arm64 modes: ${(err as Error).message}`)
      modes.splice(0, modes.length, ...modes.filter((m) => MODE[m].arch !== 'arm64'))
      return prepareAssets(lab.tmpDir, false)
    })
    // One server pair per segment setup: the IPv4 modes' and, when asked, the IPv6-only one's; each peer serves its
    // IPv4 modes, then (restarted in its IPv6-only setup) its IPv6 ones.
    const families: { modes: ModeName[]; peers: Record<Peer['key'], Peer> }[] = []
    const v4 = modes.filter((m) => !MODE[m].ipv6)
    const v6 = modes.filter((m) => MODE[m].ipv6)
    if (v4.length) families.push({ modes: v4, peers: { rackboot: rackbootPeer(lab, assetsDir), dnsmasq: dnsmasqPeer(lab, assetsDir) } })
    if (v6.length) families.push({ modes: v6, peers: await ipv6Peers(lab, assetsDir) })
    const labels = { rackboot: families[0]!.peers.rackboot.label, dnsmasq: families[0]!.peers.dnsmasq.label }
    console.log(`boot: ${rounds} round(s), modes ${modes.join(', ')}; peers: ${labels.rackboot} | ${labels.dnsmasq}; lab ${lab.subnet}; load ${await loadavg()}`)

    const results: BootResult[] = []
    for (let round = 1; round <= rounds; round++) {
      const order: Peer['key'][] = round % 2 === 1 ? ['rackboot', 'dnsmasq'] : ['dnsmasq', 'rackboot']
      console.log(`round ${round}: ${order.join(' then ')}, load at start ${await loadavg()}`)
      for (const [key, family] of order.flatMap((k) => families.map((f) => [k, f] as const))) {
        const peer = family.peers[key]
        try {
          await peer.start()
        } catch (err) {
          console.log(`  ! ${peer.key} did not start: ${(err as Error).message}`)
          for (const mode of family.modes) results.push({ round, mode, peer: peer.key, ok: false, error: 'server did not start', times: Object.fromEntries(PHASES.map((p) => [p, null])) as Times, load: await loadavg() })
          await peer.stop()
          continue
        }
        try {
          for (const mode of family.modes) {
            const r = await boot(lab, peer, mode, round, pcapDir)
            results.push(r)
            console.log(`  ${peer.key.padEnd(8)} ${mode.padEnd(10)} ${r.ok ? 'ok  ' : 'FAIL'} ${PHASES.map((p) => `${p}=${fmt(r.times[p])}`).join(' ')}  load ${r.load}`)
          }
        } finally {
          await peer.stop()
        }
      }
      console.log(`round ${round} done, load ${await loadavg()}`)
    }
    printTable(results, modes, labels, rounds)
    printTable(results, modes, labels, rounds, true)
  } finally {
    process.removeListener('SIGINT', onSignal)
    process.removeListener('SIGTERM', onSignal)
    await lab.destroy()
  }
}
