// `npm run bench -- storm [--machines=10000] [--rounds=3] [--concurrency=200] [--head] [--no-peer]`
// A boot storm: N simulated machines do what their firmware and Talos do, phase by phase (every machine finishes a
// phase before the next starts, so each phase's rate, latency, errors and server CPU are its own):
//   DHCP DORA            iPXE's DHCP (option 77 "iPXE"), relayed, one MAC per machine (bench/storm-client.ts)
//   script (discovery)   GET the boot file URL the ACK gave, iPXE's variables filled in, from the leased address
//   agent report         POST to rackboot.report= with rackboot.token= from that script (the agent's files are not
//                        downloaded: the report is what reaches the inventory)
//   API accept/allocate  the control plane: POST /machines/{id}/accept, POST /allocations count=1 (a keep-alive pool
//                        of min(C, 32) connections from one address, as an API client holds)
//   DHCP DORA (2nd boot) the allocated machine reboots
//   script (install)     GET the same URL again: Talos kernel, initramfs and a per-boot config URL
//   kernel, initramfs    GET (HEAD with --head) the URLs in that script
//   config               GET talos.config= from the leased address (the token is checked against it)
// Every machine request opens a new TCP connection from the machine's own leased address (iPXE and Talos do not
// share connections across machines), so rackboot's identity check (the lease vouches for the MAC) is exercised.
// rackboot runs as `rackboot serve` (a child process: its CPU and peak RSS are read from /proc), fresh each round.
// The peer, in the same round on the same segment: dnsmasq (DHCP) and nginx (sendfile) serving a static script and
// the same files; ratios rackboot/peer are for the phases both serve. Medians over the rounds; errors summed.
// Goal (the issue's): a 10,000-machine storm's install script and config phases done in < 20 s.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { openSqliteInventory } from '../src/inventory/index.js'
import { netnsUnavailableReason } from '../test/support/netns.js'
import type { DhcpOutcome, HttpItem, HttpOutcome } from './storm-client.js'
import {
  cpuSeconds, createStormLab, GIADDR, peakRssMiB, peerMissing, rackbootSettings, RACKBOOT_PORT, runClient, SERVER_IP, startPeer,
  startRackboot, TALOS_VERSION, writeAssets, type Server, type StormLab,
} from './storm-lab.js'
import { flag, median } from './stats.js'

const GOAL_SECONDS = 20
const GOAL_MACHINES = 10_000
const API_CONNECTIONS = 32

const quantile = (sorted: number[], q: number): number => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! : NaN)

// ---------------------------------------------------------------------------------------------------------------
// Machines and what they learn on the way

interface Machine {
  mac: string
  uuid: string
  serial: string
  ip: string | null
  /** The boot file URL of the last ACK. */
  file: string | null
  machineId: string | null
  reportUrl: string | null
  agentToken: string | null
  kernelUrl: string | null
  initrdUrl: string | null
  configUrl: string | null
  /** The phase this machine failed in; it takes part in no later phase. */
  lost: string | null
}

function machines(n: number): Machine[] {
  return Array.from({ length: n }, (_, i) => {
    const hex = i.toString(16).padStart(8, '0')
    return {
      mac: `02:5b:${hex.match(/../g)!.join(':')}`,
      uuid: `5707a000-0000-4000-8000-${hex.padStart(12, '0')}`,
      serial: `STORM${String(i).padStart(6, '0')}`,
      ip: null, file: null, machineId: null, reportUrl: null, agentToken: null, kernelUrl: null, initrdUrl: null, configUrl: null, lost: null,
    }
  })
}

/** The boot file URL as iPXE expands it (an unset variable is empty, as in iPXE). */
function expand(url: string, m: Machine): string {
  const vars: Record<string, string> = {
    'net0/mac:hexhyp': m.mac.replaceAll(':', '-'), 'net0/mac': m.mac, uuid: m.uuid, 'serial:uristring': m.serial,
    'manufacturer:uristring': 'Storm', 'product:uristring': 'Bench%20Server', buildarch: 'x86_64', platform: 'efi',
  }
  return url.replace(/\$\{([^}]+)\}/g, (_, k: string) => vars[k] ?? '')
}

const scriptValue = (script: string, re: RegExp): string | null => re.exec(script)?.[1] ?? null

/** What a kernel script tells the machine to fetch: the kernel line's URL and args, the initrd's URL. */
function readScript(m: Machine, script: string): void {
  m.kernelUrl = scriptValue(script, /^kernel (\S+)/m)
  m.initrdUrl = scriptValue(script, /^initrd (?:--name \S+ )?(\S+)/m)
  m.configUrl = scriptValue(script, /\btalos\.config=(\S+)/)
  m.reportUrl = scriptValue(script, /\brackboot\.report=(\S+)/)
  m.agentToken = scriptValue(script, /\brackboot\.token=(\S+)/)
  m.machineId = scriptValue(script, /\brackboot\.machine=(\S+)/) ?? m.machineId
}

function agentReport(m: Machine): string {
  return JSON.stringify({
    agentVersion: 'storm-bench', machineId: m.machineId ?? '',
    smbios: { uuid: m.uuid, serial: m.serial, manufacturer: 'Storm', product: 'Bench Server', boardSerial: m.serial, chassisSerial: m.serial },
    cpu: { model: 'Bench CPU', sockets: 2, cores: 64, threads: 128 },
    memory: { totalBytes: 512 * 2 ** 30 },
    disks: [
      { name: 'sda', model: 'Bench SSD', serial: `S${m.serial}`, sizeBytes: 480e9, rotational: false, type: 'ssd', wwn: '' },
      { name: 'nvme0n1', model: 'Bench NVMe', serial: `N${m.serial}`, sizeBytes: 3840e9, rotational: false, type: 'nvme', wwn: '' },
    ],
    nics: [{ name: 'eno1', mac: m.mac, driver: 'ice', link: true, speedMbps: 25000 }],
  })
}

// ---------------------------------------------------------------------------------------------------------------
// Phases

interface PhaseResult {
  phase: string
  requests: number
  ok: number
  wallS: number
  rate: number
  p50: number
  p99: number
  /** Non-2xx answers (DHCP: NAK). */
  fail: number
  /** Resets, refused connections, timeouts, cut bodies (DHCP: no answer after iPXE's retransmissions). */
  net: number
  /** 2xx with the wrong content (a hold script instead of a kernel, a reply without a boot URL). */
  bad: number
  /** DHCP retransmissions (iPXE's timer fired before the answer came). */
  retx: number
  cpuS: number
  rssMiB: number
  clientCpuS: number
}

interface Ctx {
  s: StormLab
  server: Server
  concurrency: number
  log: (line: string) => void
}

/** Server CPU and peak RSS around one client run. */
async function measured<T>(ctx: Ctx, run: () => Promise<T>): Promise<{ value: T; cpuS: number; rssMiB: number }> {
  const cpu = () => ctx.server.pids.reduce((a, p) => a + cpuSeconds(p), 0)
  const c0 = cpu()
  const value = await run()
  return { value, cpuS: cpu() - c0, rssMiB: ctx.server.pids.reduce((a, p) => a + peakRssMiB(p), 0) }
}

function summary(phase: string, n: number, lat: number[], counts: { ok: number; fail: number; net: number; bad: number; retx: number }, wallMs: number, m: { cpuS: number; rssMiB: number }, clientCpuMs: number): PhaseResult {
  const sorted = lat.sort((a, b) => a - b)
  return {
    phase, requests: n, ...counts, wallS: wallMs / 1000, rate: counts.ok / (wallMs / 1000), p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99),
    cpuS: m.cpuS, rssMiB: m.rssMiB, clientCpuS: clientCpuMs / 1000,
  }
}

/** DORA for every machine; the ACK's address and boot URL are kept. A reply without a boot URL counts as bad. */
async function dhcpPhase(ctx: Ctx, phase: string, ms: Machine[]): Promise<PhaseResult> {
  ms = ms.filter((x) => !x.lost)
  const m = await measured(ctx, () => runClient(ctx.s.cli, { kind: 'dhcp', server: SERVER_IP, giaddr: GIADDR, concurrency: ctx.concurrency, clients: ms.map(({ mac, uuid }) => ({ mac, uuid })) }))
  const counts = { ok: 0, fail: 0, net: 0, bad: 0, retx: 0 }
  const lat: number[] = []
  m.value.outcomes.forEach((o: DhcpOutcome, i) => {
    const machine = ms[i]!
    counts.retx += o.retransmits
    machine.ip = o.ip
    machine.file = o.file
    if (o.error?.startsWith('nak')) {
      counts.fail++
      if (counts.fail === 1) ctx.log(`    ${phase}: ${o.error} (${machine.mac})`)
    } else if (o.error) counts.net++
    else if (!o.file?.startsWith('http://')) counts.bad++
    else {
      counts.ok++
      lat.push(o.ms)
      return
    }
    machine.lost = phase
  })
  return summary(phase, ms.length, lat, counts, m.value.wallMs, m, m.value.cpuMs)
}

/**
 * One request per machine that got this far (`item` returns null for one that did not); `check` says whether a 2xx
 * answer is the right one (and reads what the machine learns from it).
 */
async function httpPhase(ctx: Ctx, phase: string, ms: Machine[], item: (m: Machine) => HttpItem | null, check: (m: Machine, o: HttpOutcome) => boolean, keepAlive = false): Promise<PhaseResult> {
  const asked = ms.filter((x) => !x.lost).map((machine) => ({ machine, item: item(machine) })).filter((x): x is { machine: Machine; item: HttpItem } => x.item !== null)
  const concurrency = keepAlive ? Math.min(ctx.concurrency, API_CONNECTIONS) : ctx.concurrency
  const m = await measured(ctx, () => runClient(ctx.s.cli, { kind: 'http', concurrency, keepAlive, items: asked.map((a) => a.item) }))
  const counts = { ok: 0, fail: 0, net: 0, bad: 0, retx: 0 }
  const lat: number[] = []
  const seen = new Set<string>()
  m.value.outcomes.forEach((o, i) => {
    const machine = asked[i]!.machine
    if (o.status > 0) lat.push(o.ms)
    const kind = o.error ? 'net' : o.status < 200 || o.status > 299 ? 'fail' : check(machine, o) ? 'ok' : 'bad'
    counts[kind]++
    if (kind !== 'ok') machine.lost = phase
    // The first few unexpected answers, once each kind: what went wrong, not just how often.
    const what = kind === 'ok' ? null : kind === 'net' ? o.error : kind === 'fail' ? `HTTP ${o.status}` : 'unexpected answer'
    if (what && !seen.has(what) && seen.size < 3) {
      seen.add(what)
      ctx.log(`    ${phase}: ${what} ${o.body?.slice(0, 200).replace(/\s+/g, ' ') ?? ''}`)
    }
  })
  return summary(phase, asked.length, lat, counts, m.value.wallMs, m, m.value.cpuMs)
}

// What is kept of an answer: a whole script or API answer; the head of a config (its first document's keys).
const KEEP = 16_384

const machineGet = (url: (m: Machine) => string | null, method: 'GET' | 'HEAD' = 'GET', keep = 0) => (m: Machine): HttpItem | null => {
  const u = m.ip ? url(m) : null
  return u ? { method, url: u, local: m.ip!, keep } : null
}

const ok2xx = (): boolean => true

/** An API answer's fields; {} when it is not JSON (then the check fails, counted as a bad answer). */
function json(o: HttpOutcome): Record<string, unknown> {
  try {
    return JSON.parse(o.body ?? '') as Record<string, unknown>
  } catch {
    return {}
  }
}

/** The script phase: the boot URL of the ACK, expanded; `want` says what the script must carry. */
function scriptPhase(ctx: Ctx, phase: string, ms: Machine[], want: (m: Machine) => boolean): Promise<PhaseResult> {
  return httpPhase(ctx, phase, ms, machineGet((m) => (m.file ? expand(m.file, m) : null), 'GET', KEEP), (m, o) => {
    readScript(m, o.body ?? '')
    return want(m)
  })
}

function assetPhases(ctx: Ctx, ms: Machine[], head: boolean): (() => Promise<PhaseResult>)[] {
  const method = head ? 'HEAD' : 'GET'
  return [
    () => httpPhase(ctx, `kernel (${method})`, ms, machineGet((m) => m.kernelUrl, method), ok2xx),
    () => httpPhase(ctx, `initramfs (${method})`, ms, machineGet((m) => m.initrdUrl, method), ok2xx),
  ]
}

// ---------------------------------------------------------------------------------------------------------------
// Rounds

interface RoundOptions {
  s: StormLab
  dir: string
  assetsDir: string
  n: number
  concurrency: number
  head: boolean
  log: (line: string) => void
}

/** The admin token, written into the database before `serve` opens it (what `rackboot tokens create` does). */
async function seedToken(dataDir: string): Promise<string> {
  mkdirSync(dataDir, { recursive: true })
  const inv = await openSqliteInventory({ file: join(dataDir, 'rackboot.db'), secretKeyFile: join(dataDir, 'secret.key') })
  try {
    return (await inv.tokens.create({ name: 'storm-bench', scopes: ['admin'] }, Date.now())).secret
  } finally {
    await inv.close()
  }
}

const api = (path: string, token: string, body?: unknown): HttpItem => ({
  method: 'POST', url: `http://${SERVER_IP}:${RACKBOOT_PORT}/api/v1${path}`, headers: { authorization: `Bearer ${token}` },
  ...(body === undefined ? {} : { body: JSON.stringify(body) }), keep: KEEP,
})

/** A profile and a cluster through the API (not measured): what allocations name. */
async function apiSetup(s: StormLab, token: string): Promise<void> {
  const r = await runClient(s.cli, {
    kind: 'http', concurrency: 1, keepAlive: true,
    items: [
      api('/profiles', token, { name: 'storm', talosVersion: TALOS_VERSION, arch: 'amd64' }),
      api('/clusters', token, { name: 'storm', endpoint: 'https://198.18.0.10:6443', talosVersion: TALOS_VERSION }),
    ],
  })
  const bad = r.outcomes.filter((o) => o.status !== 201)
  if (bad.length) throw new Error(`API setup failed: ${bad.map((o) => `${o.status} ${o.error ?? ''} ${o.body?.slice(0, 300)}`).join('; ')}`)
}

type Step = (phase: () => Promise<PhaseResult>) => Promise<void>

/**
 * One server's round: its phases run one after another on the same machines, each result kept and said; the server
 * is stopped however the round ends, and a failure carries the server's log tail.
 */
async function runRound(o: RoundOptions, who: 'rackboot' | 'peer', server: Server, phases: (ctx: Ctx, ms: Machine[], step: Step) => Promise<void>): Promise<PhaseResult[]> {
  const ctx: Ctx = { s: o.s, server, concurrency: o.concurrency, log: o.log }
  const out: PhaseResult[] = []
  const step: Step = async (phase) => {
    // CLOCK_MONOTONIC µs, the clock of a V8 CPU profile's timestamps: a server profile (NODE_OPTIONS=--cpu-prof) can be cut per phase.
    const t0 = process.hrtime.bigint() / 1000n
    const r = await phase()
    out.push(r)
    o.log(`  ${who} ${r.phase}: ${r.ok}/${r.requests} ok in ${r.wallS.toFixed(2)} s (monotonic µs ${t0}..${process.hrtime.bigint() / 1000n})`)
  }
  try {
    await phases(ctx, machines(o.n), step)
    return out
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${who}'s log:\n${server.tail().slice(-3000)}`)
  } finally {
    await server.stop()
  }
}

async function rackbootRound(o: RoundOptions, round: number): Promise<PhaseResult[]> {
  const dir = join(o.dir, `rackboot-${round}`)
  const token = await seedToken(join(dir, 'data'))
  const server = await startRackboot(o.s, dir, o.assetsDir, o.n)
  return runRound(o, 'rackboot', server, async (ctx, ms, step) => {
    await apiSetup(o.s, token)
    await step(() => dhcpPhase(ctx, 'DHCP DORA', ms))
    await step(() => scriptPhase(ctx, 'script (discovery)', ms, (m) => !!m.reportUrl && !!m.agentToken && !!m.machineId))
    await step(() => httpPhase(ctx, 'agent report', ms, (m) => (m.ip && m.reportUrl && m.agentToken
      ? { method: 'POST', url: m.reportUrl, local: m.ip, headers: { authorization: `Bearer ${m.agentToken}` }, body: agentReport(m), keep: KEEP }
      : null), (m, r) => json(r).machineId === m.machineId))
    await step(() => httpPhase(ctx, 'API accept', ms, (m) => (m.machineId ? api(`/machines/${m.machineId}/accept`, token) : null), (_, r) => json(r).state === 'ready', true))
    // count=1 per request, one per accepted machine: which machine each gets is the allocator's choice.
    await step(() => httpPhase(ctx, 'API allocate', ms, () => api('/allocations', token, { count: 1, selector: 'cpu.cores >= 8', cluster: 'storm', profile: 'storm' }), (_, r) => r.status === 201, true))
    for (const m of ms) m.kernelUrl = m.initrdUrl = m.configUrl = null
    await step(() => dhcpPhase(ctx, 'DHCP DORA (2nd boot)', ms))
    await step(() => scriptPhase(ctx, 'script (install)', ms, (m) => !!m.kernelUrl && !!m.initrdUrl && !!m.configUrl))
    for (const p of assetPhases(ctx, ms, o.head)) await step(p)
    await step(() => httpPhase(ctx, 'config', ms, machineGet((m) => m.configUrl, 'GET', KEEP), (_, r) => /^machine:/m.test(r.body ?? '')))
  })
}

async function peerRound(o: RoundOptions, round: number): Promise<PhaseResult[]> {
  const dir = join(o.dir, `peer-${round}`)
  mkdirSync(dir, { recursive: true })
  const server = await startPeer(o.s, dir, o.assetsDir, o.n)
  return runRound(o, 'peer', server, async (ctx, ms, step) => {
    await step(() => dhcpPhase(ctx, 'DHCP DORA', ms))
    await step(() => scriptPhase(ctx, 'script (static)', ms, (m) => !!m.kernelUrl && !!m.initrdUrl))
    for (const p of assetPhases(ctx, ms, o.head)) await step(p)
  })
}

// ---------------------------------------------------------------------------------------------------------------
// Report

/** Per phase: medians over the rounds (errors summed over them). */
function combine(rounds: PhaseResult[][]): PhaseResult[] {
  const phases = rounds[0]?.map((r) => r.phase) ?? []
  return phases.map((phase) => {
    const xs = rounds.map((rs) => rs.find((r) => r.phase === phase)).filter((r): r is PhaseResult => !!r)
    const med = (k: keyof PhaseResult) => median(xs.map((x) => x[k] as number))
    const sum = (k: keyof PhaseResult) => xs.reduce((a, x) => a + (x[k] as number), 0)
    return {
      phase, requests: med('requests'), ok: med('ok'), wallS: med('wallS'), rate: med('rate'), p50: med('p50'), p99: med('p99'),
      fail: sum('fail'), net: sum('net'), bad: sum('bad'), retx: sum('retx'), cpuS: med('cpuS'), rssMiB: med('rssMiB'), clientCpuS: med('clientCpuS'),
    }
  })
}

function table(title: string, rows: PhaseResult[]): void {
  const head = ['phase', 'req', 'ok', 'rate/s', 'p50 ms', 'p99 ms', 'non2xx', 'net', 'bad', 'retx', 'wall s', 'srv CPU s', 'peak RSS MiB', 'client CPU s']
  const cells = rows.map((r) => [
    r.phase, String(r.requests), String(r.ok), r.rate.toFixed(0), r.p50.toFixed(1), r.p99.toFixed(1), String(r.fail), String(r.net), String(r.bad),
    r.phase.startsWith('DHCP') ? String(r.retx) : '', r.wallS.toFixed(2), r.cpuS.toFixed(2), r.rssMiB.toFixed(0), r.clientCpuS.toFixed(2),
  ])
  const width = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)))
  const line = (c: string[]) => `  ${c.map((v, i) => (i === 0 ? v.padEnd(width[i]!) : v.padStart(width[i]!))).join('  ')}`
  console.log(`\n${title}`)
  console.log(line(head))
  for (const c of cells) console.log(line(c))
}

const PAIRS: [string, string][] = [['DHCP DORA', 'DHCP DORA'], ['script (install)', 'script (static)'], ['kernel', 'kernel'], ['initramfs', 'initramfs']]

function ratios(rb: PhaseResult[], peer: PhaseResult[]): void {
  console.log('\nrackboot / peer, same run (rate: higher is better for rackboot; CPU per 1000 requests: lower is):')
  for (const [a, b] of PAIRS) {
    const x = rb.find((r) => r.phase.startsWith(a))
    const y = peer.find((r) => r.phase.startsWith(b))
    if (!x || !y) continue
    const cpuPer = (r: PhaseResult) => (1000 * r.cpuS) / Math.max(1, r.ok)
    // /proc counts CPU in 10 ms ticks: a peer that used fewer than two has no meaningful ratio.
    const cpuRatio = y.cpuS < 0.02 ? `n/a (peer < 0.02 s CPU, below /proc's resolution)` : (cpuPer(x) / cpuPer(y)).toFixed(2)
    console.log(`  ${`${x.phase} vs ${y.phase}`.padEnd(40)} rate ${x.rate.toFixed(0)} / ${y.rate.toFixed(0)} = ${(x.rate / y.rate).toFixed(2)}   CPU s per 1000 ${cpuPer(x).toFixed(2)} / ${cpuPer(y).toFixed(2)} = ${cpuRatio}`)
  }
}

function goal(rb: PhaseResult[], n: number): void {
  const wall = (name: string) => rb.find((r) => r.phase === name)?.wallS ?? NaN
  const storm = wall('script (install)') + wall('config')
  const lost = rb.reduce((a, r) => a + r.fail + r.net + r.bad, 0)
  const verdict = storm < GOAL_SECONDS && lost === 0 ? 'met' : 'NOT met'
  const scale = n === GOAL_MACHINES ? '' : ` (the goal is for ${GOAL_MACHINES} machines; this run has ${n}: not the goal's measure)`
  console.log(`\ngoal: ${n} machines' install script + config phases in < ${GOAL_SECONDS} s with no errors: ${storm.toFixed(2)} s (median script ${wall('script (install)').toFixed(2)} s + config ${wall('config').toFixed(2)} s), errors ${lost}: ${verdict}${scale}`)
}

/** 1-minute load average, sampled every second while the bench runs. */
function loadSampler() {
  const samples: number[] = []
  const timer = setInterval(() => samples.push(loadavg()[0]!), 1000)
  return {
    stop: () => clearInterval(timer),
    text: () => (samples.length ? `mean ${(samples.reduce((a, b) => a + b, 0) / samples.length).toFixed(2)}, max ${Math.max(...samples).toFixed(2)}` : 'no samples'),
  }
}

export async function run(args: string[]): Promise<void> {
  const n = flag(args, 'machines', 10_000, { integer: true })
  const rounds = flag(args, 'rounds', 3, { integer: true })
  const concurrency = flag(args, 'concurrency', 200, { integer: true })
  const head = args.includes('--head')
  const why = netnsUnavailableReason()
  if (why) {
    console.log(`SKIPPED: the storm bench needs network namespaces: ${why}`)
    return
  }
  // --no-peer: rackboot's rounds only (an A/B of two rackboot trees, where the peer's figures add nothing but time).
  const peerWhy = args.includes('--no-peer') ? 'skipped by --no-peer' : peerMissing()
  if (peerWhy) console.log(`\n!!! PEER SKIPPED: ${peerWhy}: no dnsmasq/nginx figures and no ratios in this run !!!\n`)
  console.log(`${n} machines, ${rounds} rounds, ${concurrency} at once, kernel/initramfs by ${head ? 'HEAD' : 'GET'}; load average before: ${loadavg().map((l) => l.toFixed(2)).join(' ')} (${cpus().length} CPUs)`)
  const settings = rackbootSettings('<round dir>', '<assets>', n)
  console.log(`rackboot settings a storm site sets: http.maxConcurrentDownloads=${settings.http.maxConcurrentDownloads} (every machine holds a download slot from its install script to its initramfs, and phases run one after another), security.newMachinesPerMinute=${settings.security.newMachinesPerMinute} (default 600 would hold all discovery past the first 600 a minute)`)
  const dir = mkdtempSync(join(tmpdir(), 'rb-bench-storm-'))
  const assetsDir = join(dir, 'assets')
  writeAssets(assetsDir)
  const load = loadSampler()
  const s = await createStormLab()
  // One clean-up, whoever asks first (a signal, or the run ending because the signal killed a client): both wait for it.
  let cleaning: Promise<void> | null = null
  const cleanup = (): Promise<void> => (cleaning ??= (async () => {
    load.stop()
    await s.lab.destroy()
    rmSync(dir, { recursive: true, force: true })
  })())
  // Ctrl-C or a kill: the namespaces, the servers and the temporary directory go too.
  const onSignal = () => void cleanup().finally(() => process.exit(130))
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    const o: RoundOptions = { s, dir, assetsDir, n, concurrency, head, log: (line) => console.log(line) }
    const rb: PhaseResult[][] = []
    const peer: PhaseResult[][] = []
    for (let r = 1; r <= rounds; r++) {
      console.log(`round ${r}/${rounds} (load ${loadavg()[0]!.toFixed(2)}):`)
      rb.push(await rackbootRound(o, r))
      if (!peerWhy) peer.push(await peerRound(o, r))
    }
    const rbRows = combine(rb)
    table(`rackboot (rackboot serve, SQLite), ${n} machines, medians of ${rounds} rounds (errors: sums), load 1m during the run ${load.text()}:`, rbRows)
    if (peerWhy) console.log(`\n!!! PEER SKIPPED: ${peerWhy} !!!`)
    else {
      const peerRows = combine(peer)
      table(`peer (dnsmasq DHCP + nginx sendfile, static script), same run:`, peerRows)
      ratios(rbRows, peerRows)
    }
    console.log('\n(req: per round; rate: ok per wall second; non2xx: HTTP status outside 2xx, for DHCP a NAK; net: reset, refused,\n timeout, cut body, for DHCP no answer after iPXE\'s 4 tries; bad: 2xx with the wrong content; retx: DHCP retransmissions;\n peak RSS: VmHWM after the phase; a machine that fails a phase takes part in no later one)')
    goal(rbRows, n)
    console.log(`(load average after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}; 'client CPU s' is the simulated machines' process: near a core-second per wall second, the client set the pace)`)
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await cleanup()
  }
}
