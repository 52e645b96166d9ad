// `npm run bench -- config [--machines=2000] [--rounds=3] [--concurrency=32] [--only=render,service,http] [--fresh] [--cpu-prof=FILE]`
// Talos configs at boot-storm rate: N distinct machines across 4 profiles (Talos 1.12, 1.13, 1.14 base configs, each
// with profile patches; and, as in the storm bench, a profile without one whose machines are allocated to a cluster
// made through the API; a class patch for a third of the machines, and static addresses for half) fetch their
// config through the same path GET /talos/config takes (lifecycle's ConfigService: token check, profile, render,
// lint, token consume, timeline), in three layers:
//   render+lint   what src/talos does per machine (renderMachineConfig + linter.lint), CPU per machine;
//   service       configs.configFor in process (adds SQLite: token, machine, profile, class, consume, timeline);
//   HTTP          a loopback server, a client in a child process (so the CPU measured is the server's alone),
//                 first fetch of every machine, then a second fetch of each (a boot's retry); keep-alive connections,
//                 or with --fresh a new TCP connection per request, as iPXE and Talos fetch (and the storm bench does).
// Each layer runs --rounds times (fresh tokens each round; render and service after one warm-up round, not counted);
// medians are printed, with the load average.
// Goal: render+lint < 1 ms CPU per machine, HTTP >= 2,000 machines/s.
import { spawn } from 'node:child_process'
import { Session } from 'node:inspector/promises'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { createEventBus } from '../src/events/bus.js'
import { buildApp } from '../src/http/index.js'
import { openSqliteInventory, type DiskFacts, type Inventory } from '../src/inventory/index.js'
import { createDownloadGate } from '../src/http/download-gate.js'
import { attachTimeline, createBootService, createConfigService, createLifecycle } from '../src/lifecycle/index.js'
import { silentLogger } from '../src/log.js'
import { createMetricsRegistry } from '../src/metrics.js'
import { createConfigLinter, generateConfig, generateSecretsBundle, installDiskOf, renderMachineConfig, secretsBundleToYaml } from '../src/talos/index.js'
import * as renderCache from '../src/talos/render-cache.js'
import { flag, median } from './stats.js'

const GOAL_CPU_MS = 1
const GOAL_RATE = 2000

const quantile = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
const cpuMs = (): number => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ')

const PROFILES = [
  {
    name: 'w112', talosVersion: 'v1.12.11', role: 'worker' as const,
    patches: [
      { machine: { sysctls: { 'net.core.rmem_max': '8388608', 'vm.max_map_count': '262144' }, kubelet: { extraArgs: { 'max-pods': '250' } } } },
      'machine:\n  time:\n    servers:\n      - 198.18.0.123\n',
    ],
  },
  {
    name: 'w113', talosVersion: 'v1.13.9', role: 'worker' as const,
    patches: [
      { machine: { kubelet: { extraArgs: { 'rotate-server-certificates': 'true' } }, features: { hostDNS: { enabled: true, forwardKubeDNSToHost: true } } } },
      { machine: { nodeLabels: { 'rackboot.io/pool': 'storm' } } },
      'cluster:\n  proxy:\n    disabled: true\n',
    ],
  },
  {
    name: 'cp114', talosVersion: 'v1.14.0-rc.1', role: 'controlplane' as const,
    patches: [
      'apiVersion: v1alpha1\nkind: ResolverConfig\nnameservers:\n  - address: 198.18.0.53\n',
      { machine: { sysctls: { 'vm.nr_hugepages': '128' } } },
    ],
  },
  // As the storm bench's machines: a profile with no base config, the machine allocated through the API to a cluster
  // whose sealed secrets give the base config (lifecycle's baseConfigFor: cluster, secrets, generateConfig per fetch).
  { name: 'api113', talosVersion: 'v1.13.9', role: 'worker' as const, cluster: 'storm', patches: [] },
]

const DISKS = (i: number): DiskFacts[] => [
  { name: 'sda', model: 'SAMSUNG MZ7L3480', serial: `S6KN${i}`, sizeBytes: 480e9, type: 'ssd', rotational: false },
  { name: 'nvme0n1', model: 'Micron_7450', serial: `MTFD-${i}`, sizeBytes: 3840e9, type: 'nvme' },
]

interface Machine { id: string; index: number }

export async function setup(dir: string, count: number) {
  // As `serve` opens it (inventory/open.ts): WAL checkpoints in a worker, not inline in a commit on the event loop.
  const inventory = await openSqliteInventory({ file: join(dir, 'rackboot.db'), secretKeyFile: join(dir, 'secret.key'), backgroundCheckpoints: true })
  const log = silentLogger()
  const bus = createEventBus()
  const timeline = attachTimeline({ inventory, bus, log })
  const clock = { now: () => Date.now() }
  const lifecycle = createLifecycle({ inventory, bus, log, clock })
  const registry = createMetricsRegistry()
  const linter = createConfigLinter({ registry })
  const secrets = await generateSecretsBundle({ talosVersion: 'v1.13.9', rsaBits: 2048 })
  const bases = new Map<string, string>()
  for (const p of PROFILES) {
    const base = generateConfig({ secrets, clusterName: 'storm', endpoint: 'https://198.18.0.10:6443', talosVersion: p.talosVersion, role: p.role }).yaml
    bases.set(p.name, base)
    const own = 'cluster' in p ? null : base
    await inventory.profiles.put({ name: p.name, description: null, talosVersion: p.talosVersion, arch: 'amd64', schematic: null, kernelArgs: [], baseConfig: own, patches: p.patches, installDisk: { type: 'nvme' }, managedBy: null }, 1)
  }
  await inventory.clusters.create({ name: 'storm', endpoint: 'https://198.18.0.10:6443', talosVersion: 'v1.13.9', kubernetesVersion: null }, secretsBundleToYaml(secrets), Date.now())
  await inventory.classes.put({ name: 'tuned', description: null, selectors: ['serial =~ "^T"'], profile: null, patches: [{ machine: { sysctls: { 'kernel.pid_max': '4194304' } } }], managedBy: null }, 1)
  const machines: Machine[] = []
  for (let i = 0; i < count; i++) {
    const p = PROFILES[i % PROFILES.length]!
    const mac = `3c:ec:ef:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`
    const network = i % 2 === 0
      ? { addresses: [{ link: 'eno1', addresses: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/16`], gateway: '10.0.0.1' }], nameservers: ['10.0.0.53'] }
      : null
    const m = await inventory.machines.create({ name: `node-${String(i).padStart(5, '0')}`, serial: `${i % 3 === 0 ? 'T' : 'S'}${i}`, state: 'provisioning', profile: p.name, network, nics: [{ mac, name: 'eno1', boot: true }] }, 1)
    await inventory.machines.setHardware(m.id, { disks: DISKS(i) }, 1)
    machines.push({ id: m.id, index: i })
  }
  const clustered = machines.filter((m) => 'cluster' in PROFILES[m.index % PROFILES.length]!)
  if (clustered.length) {
    await inventory.allocations.create(
      { id: 'bench-allocation', idempotencyKey: null, requestHash: 'bench', class: null, selector: null, count: clustered.length, cluster: 'storm', role: 'worker', profile: 'api113', patches: [], machines: [], createdAt: Date.now() },
      clustered.map((m) => ({ machineId: m.id, class: null, cluster: 'storm', role: 'worker' as const, profile: 'api113', previousProfile: 'api113', patches: [] })),
    )
  }
  const configs = createConfigService({ inventory, lifecycle, log, clock, linter })
  const app = await buildApp({ inventory, lifecycle, log, registry, version: 'bench', boot: { service: createBootService({ inventory, lifecycle, log, clock, policy: { holdMode: 'retry', autoAccept: false } }), gate: createDownloadGate({ limit: 10, holdMs: 60_000 }), assetsDir: dir, publicUrl: '', hold: { seconds: 30, maxSeconds: 300 }, agent: { after: 'reboot', kernelArgs: { amd64: [], arm64: [] } }, configs } })
  return { inventory, timeline, linter, configs, app, machines, bases }
}

export async function issueTokens(inventory: Inventory, machines: Machine[]): Promise<string[]> {
  const out: string[] = []
  for (const m of machines) out.push(await inventory.bootTokens.issue({ machineId: m.id, purpose: 'config', clientIp: '127.0.0.1', ttlMs: 3_600_000 }, Date.now()))
  return out
}

// The load client, in its own process: GET /talos/config?t=... for each token, `concurrency` at a time.
// With fresh: a new TCP connection per request (node:http, agent: false), as iPXE and Talos fetch.
export const CLIENT = `
import { Agent, request } from 'undici'
import { get } from 'node:http'
const { base, tokens, concurrency, fresh } = JSON.parse(await new Promise((r) => { let s = ''; process.stdin.on('data', (d) => s += d); process.stdin.on('end', () => r(s)) }))
const agent = new Agent({ connections: concurrency, keepAliveTimeout: 30_000, pipelining: 1 })
const once = (url) => new Promise((resolve, reject) => {
  get(url, { agent: false }, (res) => {
    let body = ''
    res.setEncoding('utf8')
    res.on('data', (d) => body += d)
    res.on('end', () => resolve({ statusCode: res.statusCode, body }))
    res.on('error', reject)
  }).on('error', reject)
})
const lat = []
let next = 0, failed = 0, bytes = 0
const t0 = performance.now()
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (next < tokens.length) {
    const t = tokens[next++]
    const s = performance.now()
    const url = base + '/talos/config?t=' + t
    let status, body
    if (fresh) ({ statusCode: status, body } = await once(url))
    else {
      const r = await request(url, { dispatcher: agent })
      status = r.statusCode
      body = await r.body.text()
    }
    if (status !== 200) { failed++; if (failed < 3) console.error(status, body.slice(0, 300)) }
    bytes += body.length
    lat.push(performance.now() - s)
  }
}))
const secs = (performance.now() - t0) / 1000
await agent.close()
process.stdout.write(JSON.stringify({ secs, lat, failed, bytes }))
`

export async function httpRound(base: string, tokens: string[], concurrency: number, clientFile: string, fresh = false) {
  const child = spawn(process.execPath, [clientFile], { stdio: ['pipe', 'pipe', 'inherit'], cwd: process.cwd() })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  const c0 = cpuMs()
  child.stdin.end(JSON.stringify({ base, tokens, concurrency, fresh }))
  await new Promise<void>((resolve, reject) => child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`load client exited ${code}`)))))
  const serverCpu = cpuMs() - c0
  const r = JSON.parse(out) as { secs: number; lat: number[]; failed: number; bytes: number }
  if (r.failed) throw new Error(`${r.failed} of ${tokens.length} config fetches failed`)
  const lat = r.lat.sort((a, b) => a - b)
  return { rate: tokens.length / r.secs, cpuPer: serverCpu / tokens.length, p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), bytes: r.bytes / tokens.length }
}

type Bench = Awaited<ReturnType<typeof setup>>

// Each round starts with nothing cached (no profile prepared, no machine rendered), as a storm's first fetches do.
// (clearRenderCache is absent from code without the cache: the bench then measures that code as it is.)
const clearCaches = (): void => (renderCache as { clearRenderCache?: () => void }).clearRenderCache?.()

/** Layer 1: what src/talos does per machine, with the inputs lifecycle/config.ts gives it. */
async function renderLayer(s: Bench, rounds: number): Promise<void> {
  const inputs = await Promise.all(s.machines.map(async (m) => {
    const machine = (await s.inventory.machines.get(m.id))!
    const profile = (await s.inventory.profiles.get(machine.profile!))!
    const disk = installDiskOf(machine, profile)
    // (A cluster's machines: the base config generated from its secrets, as the service gets it.)
    const base = profile.baseConfig ?? s.bases.get(profile.name)!
    const cls = m.index % 3 === 0 ? await s.inventory.classes.get('tuned') : null
    return {
      talosVersion: profile.talosVersion!,
      input: {
        base, talosVersion: profile.talosVersion!,
        ...(cls ? { classPatches: cls.patches as never } : {}),
        profilePatches: profile.patches as never,
        values: {
          hostname: machine.name!,
          ...(disk?.ok ? { installDisk: disk.path } : {}),
          ...(machine.network?.addresses.length ? { addresses: machine.network.addresses } : {}),
          ...(machine.network?.nameservers?.length ? { nameservers: machine.network.nameservers } : {}),
        },
      },
    }
  }))
  const round = (clear: boolean): { cpuPer: number; renderPer: number } => {
    if (clear) clearCaches()
    const c0 = cpuMs()
    let renderMs = 0
    for (const { input, talosVersion } of inputs) {
      const r0 = performance.now()
      const { yaml } = renderMachineConfig(input)
      renderMs += performance.now() - r0
      const lint = s.linter.lint(yaml, { talosVersion })
      if (!lint.ok) throw new Error(`lint failed: ${JSON.stringify(lint.errors.slice(0, 2))}`)
    }
    return { cpuPer: (cpuMs() - c0) / inputs.length, renderPer: renderMs / inputs.length }
  }
  round(true) // warm-up: schema compile, JIT
  const cold = Array.from({ length: rounds }, () => round(true))
  const again = Array.from({ length: rounds }, () => round(false))
  const cpu = median(cold.map((r) => r.cpuPer))
  console.log(`\nrender+lint (src/talos only), ${inputs.length} machines, ${rounds} rounds, load ${load()}:`)
  console.log(`  CPU per machine  median ${cpu.toFixed(3)} ms   (rounds: ${cold.map((r) => r.cpuPer.toFixed(3)).join(', ')}; render alone ${median(cold.map((r) => r.renderPer)).toFixed(3)} ms wall)`)
  console.log(`  again, same machines (a boot's retry): median ${median(again.map((r) => r.cpuPer)).toFixed(3)} ms`)
  console.log(`  goal < ${GOAL_CPU_MS} ms: ${cpu < GOAL_CPU_MS ? 'met' : 'NOT met'}`)
}

/** Layer 2: the config service in process (SQLite + render + lint + timeline). */
async function serviceLayer(s: Bench, rounds: number): Promise<void> {
  const svc: number[] = []
  // Round 0 warms up (JIT, the linter's schemas), as the render layer's does: it cost twice the others and, of
  // three rounds, made the median the slower of the other two.
  for (let r = 0; r <= rounds; r++) {
    const tokens = await issueTokens(s.inventory, s.machines)
    await s.timeline.flush()
    clearCaches()
    const c0 = cpuMs()
    for (const t of tokens) await s.configs.configFor(t, '127.0.0.1')
    if (r > 0) svc.push((cpuMs() - c0) / tokens.length)
    await s.timeline.flush()
  }
  console.log(`\nconfigs.configFor in process (SQLite + render + lint), ${rounds} rounds after a warm-up round, load ${load()}:`)
  console.log(`  CPU per machine  median ${median(svc).toFixed(3)} ms   (rounds: ${svc.map((v) => v.toFixed(3)).join(', ')}) = ${(1000 / median(svc)).toFixed(0)} machines/s per core`)
}

/** Layer 3: GET /talos/config over loopback, the first fetch of each machine and the boot's retry. */
async function httpLayer(s: Bench, rounds: number, concurrency: number, clientFile: string, fresh: boolean): Promise<void> {
  const base = await s.app.listen({ host: '127.0.0.1', port: 0 })
  const first: Awaited<ReturnType<typeof httpRound>>[] = []
  const retry: Awaited<ReturnType<typeof httpRound>>[] = []
  for (let r = 0; r < rounds; r++) {
    const tokens = await issueTokens(s.inventory, s.machines)
    await s.timeline.flush()
    clearCaches()
    first.push(await httpRound(base, tokens, concurrency, clientFile, fresh))
    await s.timeline.flush()
    retry.push(await httpRound(base, tokens, concurrency, clientFile, fresh))
    await s.timeline.flush()
  }
  const show = (label: string, xs: typeof first): number => {
    const rate = median(xs.map((x) => x.rate))
    console.log(`  ${label.padEnd(22)} median ${rate.toFixed(0).padStart(6)} machines/s  server CPU ${median(xs.map((x) => x.cpuPer)).toFixed(3)} ms/machine  p50 ${median(xs.map((x) => x.p50)).toFixed(1)} ms  p99 ${median(xs.map((x) => x.p99)).toFixed(1)} ms  (${(median(xs.map((x) => x.bytes)) / 1024).toFixed(1)} KiB each; rounds ${xs.map((x) => x.rate.toFixed(0)).join(', ')}/s)`)
    return rate
  }
  console.log(`\nGET /talos/config over loopback, client in a child process, ${concurrency} ${fresh ? 'at a time, a new connection per request' : 'keep-alive connections'}, ${rounds} rounds, load ${load()}:`)
  const rate = show('first fetch', first)
  show('retry (same token)', retry)
  console.log(`  goal >= ${GOAL_RATE} machines/s: ${rate >= GOAL_RATE ? 'met' : 'NOT met'} (rackboot ${rate.toFixed(0)} / goal ${GOAL_RATE} = ${(rate / GOAL_RATE).toFixed(2)})`)
}

/** With --cpu-prof=FILE: a V8 CPU profile of the measured layers only (not the setup), for `--cpu-prof` tooling. */
async function profiled(file: string | undefined, fn: () => Promise<void>): Promise<void> {
  if (!file) return fn()
  const session = new Session()
  session.connect()
  await session.post('Profiler.enable')
  await session.post('Profiler.start')
  try {
    await fn()
  } finally {
    const { profile } = await session.post('Profiler.stop')
    writeFileSync(file, JSON.stringify(profile))
    session.disconnect()
    console.log(`CPU profile of the layers written to ${file}`)
  }
}

export async function run(args: string[]): Promise<void> {
  const count = flag(args, 'machines', 2000)
  const rounds = flag(args, 'rounds', 3)
  const concurrency = flag(args, 'concurrency', 32)
  const only = args.find((a) => a.startsWith('--only='))?.slice(7).split(',') ?? ['render', 'service', 'http']
  const dir = mkdtempSync(join(tmpdir(), 'rb-bench-config-'))
  const clientFile = join(process.cwd(), `.bench-config-client-${process.pid}.mjs`)
  writeFileSync(clientFile, CLIENT)
  console.log(`load average before setup: ${load()} (${cpus().length} CPUs)`)
  const s = await setup(dir, count)
  try {
    console.log(`${count} machines across ${PROFILES.length} profiles (${PROFILES.map((p) => `${p.name} ${p.talosVersion} ${p.role}, ${p.patches.length} patches`).join('; ')}), a class patch on a third, static addresses on half`)
    await profiled(args.find((a) => a.startsWith('--cpu-prof='))?.slice(11), async () => {
      if (only.includes('render')) await renderLayer(s, rounds)
      if (only.includes('service')) await serviceLayer(s, rounds)
      if (only.includes('http')) await httpLayer(s, rounds, concurrency, clientFile, args.includes('--fresh'))
    })
    console.log(`\n(load average after the run: ${load()}; figures are noisy on shared machines)`)
  } finally {
    await s.app.close()
    await s.timeline.flush()
    s.timeline.detach()
    await s.inventory.close()
    rmSync(dir, { recursive: true, force: true })
    rmSync(clientFile, { force: true })
  }
}
