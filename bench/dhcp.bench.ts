// DHCP capacity: the highest DISCOVER rate at which >= 99 % of the DISCOVERs perfdhcp sends end in an ACK, for
// rackboot and for kea-dhcp4 (Debian's Kea 2.2), each with persistent leases as its users run it, in the same run,
// the same network namespaces, the same perfdhcp arguments. Plus CPU per DORA at a moderate fixed rate, and for
// PostgreSQL two rackboot instances on one database (one per segment) against one instance.
//
//   npm run bench -- dhcp [--store=all|sqlite|postgres] [--mode=relay|direct|both] [--rounds=3] [--seconds=5]
//                         [--clients=60000] [--start=1000] [--steps=2] [--max-rate=64000] [--min-rate=25]
//                         [--cpu-rate=1000] [--cpu-seconds=10] [--pair=on|off] [--pg=durable|fast] [--verbose]
// Flags take `=` (`npm run bench` reads a bare word as a benchmark name). The defaults (relay mode, both stores,
// 3 rounds) take roughly 12-15 minutes on an idle 2-core machine; --mode=both runs direct too and doubles that.
// --verbose adds perfdhcp's full report of failed trials and each trial's set-up/run/tear-down times.
//
// Peers (bench/dhcp-lab.ts): --store=sqlite: kea-dhcp4 memfile, persist: true, on disk (lfc-interval default) vs
// rackboot on SQLite on disk; --store=postgres: kea-dhcp4 with its PostgreSQL lease backend (schema by kea-admin
// db-init) vs rackboot on PostgreSQL (shared leases, as `serve` with database.url), on one private cluster reached
// over its Unix socket, durable as PostgreSQL ships (fsync, synchronous_commit on; --pg=fast keeps the test suite's
// fsync=off instead). Kea runs single-threaded (its 2.2 default) with raw sockets; rackboot asks 8 MiB socket
// buffers (capped by net.core.rmem_max, printed at start), Kea keeps the kernel default: each as shipped.
//
// Method. A trial: a fresh lease store and a fresh server (process), then
//   perfdhcp -4 -g single -R CLIENTS -r RATE -p SECONDS -W 1000000 (relay: -l RELAY SERVER; direct: -l eth0)
// (perfdhcp stops sending after SECONDS, then waits 1 s for late answers; an answer later than its 1 s drop time
// counts as lost). It passes when ACKs >= 99 % of the DISCOVERs sent (on every segment), and perfdhcp managed to
// send >= 95 % of RATE x SECONDS (else the client, not the server, set the pace). The search per peer: the CPU
// trial (--cpu-rate for --cpu-seconds) is the first probe, then from --start the rate doubles while trials pass
// (halves while they fail) until one passes and one fails, then --steps bisections; the result is the highest
// passing rate. The per-segment pair search starts at the single instance's result of the same round. CLIENTS
// defaults below the pool size (65,275 addresses, a /16), so no trial fails for want of addresses; each pair
// instance gets CLIENTS/2 and a /17 of its own. Every trial starts a new process, so rackboot's figures include
// Node's JIT warm-up.
// Drops are counted where they happen: perfdhcp's sent/received (and late answers); the server's own counters
// (rackboot_dhcp_* metrics run-server prints at stop, Kea's statistic-get-all over its control socket); the
// kernel's sk_drops of the server's sockets (ss -m) and Udp RcvbufErrors of both namespaces. Per trial:
//   perfdhcp D/O/R/A = DISCOVERs sent, OFFERs received, REQUESTs sent, ACKs received; server rx D/R, tx O/A;
//   late = answers perfdhcp got after its drop time; unseen = sent by perfdhcp, never counted by the server;
//   kernel sock = the kernel drops of the sockets the server reads (Kea: its packet socket; the drops of its UDP
//   fallback socket, which only gets copies, are shown as "fallback copies" and are what ns-srv counts for Kea);
//   ns-srv / ns-cli = Udp RcvbufErrors in the server's / client's namespace (ns-cli: perfdhcp's one socket for all
//   its simulated clients overflowed, e.g. under a burst of batched replies: lost on the client side).
// CPU: server process utime+stime (/proc/PID/stat) over the perfdhcp run divided by the ACKs it sent, and for
// PostgreSQL the whole cluster's CPU (postmaster, backends, walwriter...) divided the same way. Rounds alternate
// the peers' order; the load average is printed at the start and end of each round; medians and ratios close it.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { loadavg, tmpdir, cpus } from 'node:os'
import { join } from 'node:path'
import { createNetLab, netnsSkipReason } from '../test/support/netns.js'
import {
  makeSegment,
  perfdhcpCommand,
  runTrial,
  startPgLab,
  PEER_LABEL,
  type Mode,
  type PeerId,
  type PgLab,
  type Segment,
  type TrialContext,
  type TrialResult,
} from './dhcp-lab.js'
import { median } from './stats.js'

interface Options {
  stores: ('sqlite' | 'postgres')[]
  modes: Mode[]
  rounds: number
  seconds: number
  clients: number
  start: number
  steps: number
  maxRate: number
  minRate: number
  cpuRate: number
  cpuSeconds: number
  pair: boolean
  pgFast: boolean
  verbose: boolean
}

const KNOWN = ['store', 'mode', 'rounds', 'seconds', 'clients', 'start', 'steps', 'max-rate', 'min-rate', 'cpu-rate', 'cpu-seconds', 'pair', 'pg', 'verbose']

function parse(args: string[]): Options {
  for (const a of args.filter((x) => x.startsWith('--'))) {
    const name = a.slice(2).split('=')[0]!
    if (!KNOWN.includes(name)) throw new Error(`dhcp bench: unknown flag ${a} (known: ${KNOWN.map((k) => `--${k}`).join(' ')})`)
  }
  const get = (name: string, dflt: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? dflt
  const num = (name: string, dflt: number, min = 1) => {
    const v = Number(get(name, String(dflt)))
    if (!Number.isFinite(v) || v < min) throw new Error(`--${name} must be a number >= ${min}`)
    return v
  }
  const choice = <T extends string>(name: string, dflt: T, allowed: readonly T[]): T => {
    const v = get(name, dflt) as T
    if (!allowed.includes(v)) throw new Error(`--${name} must be one of ${allowed.join('|')}`)
    return v
  }
  const store = choice('store', 'all', ['all', 'sqlite', 'postgres'] as const)
  const mode = choice('mode', 'relay', ['relay', 'direct', 'both'] as const)
  return {
    stores: store === 'all' ? ['sqlite', 'postgres'] : [store],
    modes: mode === 'both' ? ['relay', 'direct'] : [mode],
    rounds: Math.floor(num('rounds', 3)),
    seconds: num('seconds', 5),
    clients: Math.floor(num('clients', 60_000)),
    start: num('start', 1000),
    steps: Math.floor(num('steps', 2, 0)),
    maxRate: num('max-rate', 64_000),
    minRate: num('min-rate', 25),
    cpuRate: num('cpu-rate', 1000),
    cpuSeconds: num('cpu-seconds', 10),
    pair: choice('pair', 'on', ['on', 'off'] as const) === 'on',
    pgFast: choice('pg', 'durable', ['durable', 'fast'] as const) === 'fast',
    verbose: args.includes('--verbose') || get('verbose', '') === 'on',
  }
}

const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ')
const pct = (x: number) => `${(x * 100).toFixed(1)}%`
const fmtRate = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : 'n/a')
const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? (a / b).toFixed(2) : 'n/a')

let verboseTiming = false

/** One line (per segment) saying what happened to the trial's packets, and where the lost ones went. */
function describe(round: number, mode: Mode, name: string, t: TrialResult): string {
  const head = `  r${round + 1} ${mode.padEnd(6)} ${name.padEnd(30)} ${String(t.rate).padStart(6)}/s x${t.seconds}s ${t.pass ? 'PASS' : 'FAIL'} ack ${pct(t.ratio).padStart(6)}`
  const lines = t.segments.map((s, i) => {
    const p = s.perf
    const sv = s.server
    const server = sv
      ? `server rx D${sv.discovers} R${sv.requests} tx O${sv.offers} A${sv.acks}${sv.naks ? ` N${sv.naks}` : ''} drop ${Object.entries(sv.dropped).map(([k, v]) => `${k}=${v}`).join(',') || '-'}`
      : 'server counts n/a'
    const unseen = sv ? ` unseen D${Math.max(0, p.discovers - sv.discovers)} R${Math.max(0, p.requests - sv.requests)}` : ''
    const kernel = `kernel sock ${s.kernel.read}${s.kernel.copies ? ` (+${s.kernel.copies} fallback copies)` : ''} rb ${[...new Set(s.kernel.rcvbuf)].join('/')} ns-srv ${s.nsServer} ns-cli ${s.nsClient}`
    const cpu = `cpu ${s.cpu.toFixed(2)}s${t.pgCpu && i === 0 ? ` pg ${t.pgCpu.toFixed(2)}s` : ''}`
    const ms = (x: number) => (Number.isFinite(x) ? x.toFixed(x < 10 ? 1 : 0) : '?')
    const perf = `perfdhcp D${p.discovers} O${p.offers} R${p.requests} A${p.acks}${p.orphans ? ` late ${p.orphans}` : ''} ack-ms avg ${ms(p.ackMs.avg)} max ${ms(p.ackMs.max)}`
    const logLines = s.log ? s.log.split('\n').length : 0
    const log = logLines ? ` | log ${logLines} line(s)${verboseTiming ? `:\n        ${s.log.split('\n').slice(-8).join('\n        ')}` : ` (--verbose shows them)`}` : ''
    return `${t.segments.length > 1 ? `      [${i}] ` : '      '}${perf} | ${server}${unseen} | ${kernel} | ${cpu}${log}`
  })
  const tm = `      (setup ${t.timing.setup.toFixed(1)}s run ${t.timing.run.toFixed(1)}s teardown ${t.timing.teardown.toFixed(1)}s)`
  const warn = t.clientKeptUp ? [] : [`      perfdhcp sent fewer than 95 % of ${t.rate} x ${t.seconds} DISCOVERs: the client set the pace (counted as a fail)`]
  return [head, ...lines, ...warn, ...(verboseTiming ? [tm] : [])].join('\n')
}

interface SearchResult {
  best: number
  /** Passed at --max-rate (best is a lower bound) / failed at --min-rate (below it). */
  ceiling: boolean
  floor: boolean
  /** The CPU trial, or when the peer failed it (overloaded at --cpu-rate) its highest passing trial instead. */
  cpu: TrialResult | null
  trials: number
}

async function search(
  probe: (rate: number, seconds: number) => Promise<TrialResult>,
  o: Options,
  start: number,
  cpuFirst: boolean,
): Promise<SearchResult> {
  let lo = 0
  let hi = Infinity
  let trials = 0
  let cpu: TrialResult | null = null
  const tried = new Map<number, boolean>()
  let bestPass: TrialResult | null = null
  const at = async (rate: number, seconds = o.seconds): Promise<boolean> => {
    trials++
    const t = await probe(rate, seconds)
    if (t.pass && (!bestPass || t.rate > bestPass.rate)) bestPass = t
    tried.set(rate, t.pass)
    if (t.pass) lo = Math.max(lo, rate)
    else hi = Math.min(hi, rate)
    return t.pass
  }
  if (cpuFirst) {
    trials++
    cpu = await probe(o.cpuRate, o.cpuSeconds)
    tried.set(o.cpuRate, cpu.pass)
    if (cpu.pass) lo = o.cpuRate
    else hi = o.cpuRate
  }
  let r = Math.round(Math.min(Math.max(start, o.minRate), o.maxRate))
  // Bracket: double while passing, halve while failing.
  let ceiling = false
  let floor = false
  for (;;) {
    const pass = tried.has(r) ? tried.get(r)! : await at(r)
    if (lo > 0 && hi < Infinity && lo < hi) break
    if (pass) {
      if (r >= o.maxRate) {
        ceiling = true
        break
      }
      r = Math.round(Math.min(Math.max(r * 2, lo * 2), o.maxRate))
    } else {
      if (r <= o.minRate) {
        floor = true
        break
      }
      r = Math.round(Math.max(Math.min(r / 2, hi / 2), o.minRate))
    }
  }
  // Bisect between the highest pass and the lowest fail.
  for (let i = 0; i < o.steps && lo > 0 && hi < Infinity; i++) {
    const mid = Math.round((lo + hi) / 2 / 10) * 10 || Math.round((lo + hi) / 2)
    if (mid <= lo || mid >= hi) break
    await at(mid)
  }
  return { best: lo, ceiling, floor: floor && lo === 0, cpu: cpu && !cpu.pass && bestPass ? bestPass : cpu, trials }
}

interface Cell {
  best: number[]
  flags: string[]
  cpuServer: number[]
  cpuPg: number[]
  /** The rate of the trial each CPU figure comes from (--cpu-rate, or lower when the peer was overloaded there). */
  cpuRate: number[]
  cpuPassed: boolean[]
}

export async function run(args: string[]): Promise<void> {
  const o = parse(args)
  verboseTiming = o.verbose
  const skip = netnsSkipReason(['perfdhcp', 'kea-dhcp4', 'ss', ...(o.stores.includes('postgres') ? ['kea-admin', 'psql'] : [])])
  if (skip) {
    console.log(`dhcp bench skipped: ${skip}`)
    return
  }
  const t0 = Date.now()
  const dir = mkdtempSync(join(tmpdir(), 'rb-dhcp-bench-'))
  const lab = await createNetLab()
  let pg: PgLab | null = null
  const teardown = async (): Promise<void> => {
    await lab.destroy()
    await pg?.stop()
    rmSync(dir, { recursive: true, force: true })
  }
  // Ctrl-C mid-run still removes the namespaces, the servers and the PostgreSQL cluster.
  const interrupted = (signal: NodeJS.Signals) => {
    console.log(`\ndhcp bench: ${signal}, cleaning up`)
    void teardown().finally(() => process.exit(130))
  }
  process.once('SIGINT', interrupted)
  process.once('SIGTERM', interrupted)
  try {
    if (o.stores.includes('postgres')) {
      const started = await startPgLab(o.pgFast)
      if ('skip' in started) {
        console.log(`dhcp bench: PostgreSQL peers skipped: ${started.skip}`)
        o.stores = o.stores.filter((s) => s !== 'postgres')
        if (o.stores.length === 0) return
      } else pg = started
    }
    const peers: PeerId[] = [
      ...(o.stores.includes('sqlite') ? (['kea-memfile', 'rackboot-sqlite'] as const) : []),
      ...(o.stores.includes('postgres') ? (['kea-postgresql', 'rackboot-postgresql'] as const) : []),
    ]
    const pair = o.pair && o.stores.includes('postgres')
    // Same namespaces for every peer and round: one segment per mode, two more per mode for the pair.
    const segs = new Map<Mode, { whole: Segment; halves: Segment[] }>()
    for (const mode of o.modes) {
      const m = mode[0]!
      segs.set(mode, {
        whole: await makeSegment(lab, `${m}w`, mode, null),
        halves: pair ? [await makeSegment(lab, `${m}a`, mode, 0), await makeSegment(lab, `${m}b`, mode, 1)] : [],
      })
    }
    const ctx: TrialContext = { dir, pg, clients: o.clients }

    console.log(`dhcp capacity: highest rate with >= 99 % of DISCOVERs ending in ACK; ${o.rounds} round(s), modes ${o.modes.join(', ')}, peers ${peers.map((p) => PEER_LABEL[p]).join(', ')}${pair ? ', rackboot postgresql x2' : ''}`)
    console.log(`machine: ${cpus().length} cpu(s), load ${load()}, net.core.rmem_max ${readSysctl('net/core/rmem_max')} (rackboot asks 8 MiB per socket; Kea keeps the default ${readSysctl('net/core/rmem_default')})`)
    for (const mode of o.modes) {
      const s = segs.get(mode)!
      console.log(`  ${mode}: ${perfdhcpCommand(s.whole, 'RATE', o.seconds, o.clients)}   (pool ${s.whole.poolSize} addresses)`)
      if (s.whole.poolSize < o.clients) console.log(`  warning: --clients=${o.clients} exceeds the pool (${s.whole.poolSize}): fast trials can fail for want of addresses`)
      for (const h of s.halves) console.log(`  ${mode} pair: ${perfdhcpCommand(h, 'RATE/2', o.seconds, Math.floor(o.clients / 2))}   (pool ${h.poolSize})`)
    }
    console.log(`  search: CPU trial ${o.cpuRate}/s x ${o.cpuSeconds}s first, then from ${o.start}/s double/halve until bracketed, ${o.steps} bisection(s); range ${o.minRate}-${o.maxRate}/s`)
    if (pg) console.log(`  PostgreSQL ${o.pgFast ? '(fast: test settings)' : '(durable, as shipped)'}: ${pg.settings}; socket ${pg.cluster.socketDir}`)

    const cells = new Map<string, Cell>()
    const cell = (mode: Mode, name: string): Cell => {
      const k = `${mode}\0${name}`
      let c = cells.get(k)
      if (!c) cells.set(k, (c = { best: [], flags: [], cpuServer: [], cpuPg: [], cpuRate: [], cpuPassed: [] }))
      return c
    }
    const PAIR = 'rackboot postgresql x2, one db'
    for (let round = 0; round < o.rounds; round++) {
      const r0 = Date.now()
      console.log(`\n--- round ${round + 1}/${o.rounds}: load ${load()} (start)`)
      const order = round % 2 === 0 ? peers : [...peers].reverse()
      for (const mode of o.modes) {
        const s = segs.get(mode)!
        const single = new Map<PeerId, number>()
        for (const peer of order) {
          const name = PEER_LABEL[peer]
          const c = cell(mode, name)
          let res: SearchResult
          try {
            res = await search(
              async (rate, seconds) => {
                const t = await runTrial(ctx, peer, [s.whole], rate, seconds)
                console.log(describe(round, mode, name, t))
                if (t.discovers === 0 || (o.verbose && !t.pass)) console.log(t.segments[0]!.perf.raw)
                return t
              },
              o,
              o.start,
              true,
            )
          } catch (err) {
            // One peer's broken trial (a server that would not start) costs its result for this round, not the run.
            console.log(`  !! r${round + 1} ${mode} ${name}: ${(err as Error).message.split('\n').slice(0, 6).join('\n     ')}`)
            c.best.push(NaN)
            continue
          }
          single.set(peer, res.best)
          c.best.push(res.best)
          if (res.ceiling) c.flags.push(`>=${o.maxRate}`)
          if (res.floor) c.flags.push(`<${o.minRate}`)
          // Per ACK the server sent (its own count; perfdhcp's when it has none): the work done, late or not.
          const acks = res.cpu ? (res.cpu.segments[0]!.server?.acks ?? res.cpu.acks) : 0
          if (res.cpu && acks > 0) {
            c.cpuServer.push((res.cpu.segments[0]!.cpu / acks) * 1e6)
            c.cpuPg.push((res.cpu.pgCpu / acks) * 1e6)
            c.cpuRate.push(res.cpu.rate)
            c.cpuPassed.push(res.cpu.pass)
          }
          console.log(`  => r${round + 1} ${mode} ${name}: ${fmtRate(res.best)}/s${res.ceiling ? ' (ceiling)' : ''}${res.floor ? ` (below ${o.minRate}/s)` : ''} in ${res.trials} trials`)
        }
        if (pair) {
          const one = single.get('rackboot-postgresql') ?? o.start
          const c = cell(mode, PAIR)
          try {
            const res = await search(
              async (rate, seconds) => {
                const t = await runTrial(ctx, 'rackboot-postgresql', s.halves, rate, seconds)
                console.log(describe(round, mode, PAIR, t))
                if (o.verbose && !t.pass) for (const seg of t.segments) console.log(seg.perf.raw)
                return t
              },
              o,
              one > 0 ? one : o.start,
              false,
            )
            c.best.push(res.best)
            if (res.ceiling) c.flags.push(`>=${o.maxRate}`)
            console.log(`  => r${round + 1} ${mode} ${PAIR}: ${fmtRate(res.best)}/s total in ${res.trials} trials (one instance: ${fmtRate(one)}/s)`)
          } catch (err) {
            console.log(`  !! r${round + 1} ${mode} ${PAIR}: ${(err as Error).message.split('\n').slice(0, 6).join('\n     ')}`)
            c.best.push(NaN)
          }
        }
      }
      await pg?.sweep()
      console.log(`--- round ${round + 1}/${o.rounds}: load ${load()} (end), ${((Date.now() - r0) / 1000).toFixed(0)} s`)
    }

    // Summary
    console.log(`\n=== dhcp summary: medians of ${o.rounds} round(s); rate = highest DISCOVER/s with >= 99 % ACKed (${o.seconds} s trials)`)
    console.log(`    CPU = CPU time per ACK sent, at ${o.cpuRate}/s for ${o.cpuSeconds} s: the server process, +pg the PostgreSQL cluster's. A peer that`)
    console.log(`    failed that trial (overloaded at ${o.cpuRate}/s) is measured at its highest passing trial instead: "at" says which rate(s);`)
    console.log(`    * = no passing trial at all, the figure is from an overloaded run.`)
    for (const mode of o.modes) {
      console.log(`\n  ${mode}`)
      console.log(
        `  ${'peer'.padEnd(30)} ${'rate/s'.padStart(7)}  ${'rounds'.padEnd(18)} ${'vs kea'.padStart(6)}  ${'CPU us/DORA'.padStart(11)} ${'+pg'.padStart(6)} ${'total'.padStart(6)} ${'vs kea'.padStart(6)}  at/s`,
      )
      const get = (name: string) => cells.get(`${mode}\0${name}`)
      const cpuTotal = (c: Cell | undefined) => (c ? median(c.cpuServer.map((x, i) => x + (c.cpuPg[i] ?? 0))) : NaN)
      const rows: [string, string | null][] = [
        [PEER_LABEL['kea-memfile'], null],
        [PEER_LABEL['rackboot-sqlite'], PEER_LABEL['kea-memfile']],
        [PEER_LABEL['kea-postgresql'], null],
        [PEER_LABEL['rackboot-postgresql'], PEER_LABEL['kea-postgresql']],
      ]
      for (const [name, vs] of rows) {
        const c = get(name)
        if (!c) continue
        const ref = vs ? get(vs) : c
        const m = median(c.best)
        const rounds = c.best.map(fmtRate).join(' ') + (c.flags.length ? ` (${[...new Set(c.flags)].join(',')})` : '')
        const star = c.cpuPassed.some((p) => !p) ? '*' : ' '
        const at = [...new Set(c.cpuRate)].join(',') || '-'
        const tot = cpuTotal(c)
        console.log(
          `  ${name.padEnd(30)} ${fmtRate(m).padStart(7)}  ${rounds.padEnd(18)} ${(ref ? ratio(m, median(ref.best)) : 'n/a').padStart(6)}  ${fmtRate(median(c.cpuServer)).padStart(10)}${star} ${(name.includes('postgres') ? fmtRate(median(c.cpuPg)) : '-').padStart(6)} ${fmtRate(tot).padStart(6)} ${(ref ? ratio(tot, cpuTotal(ref)) : 'n/a').padStart(6)}  ${at}`,
        )
      }
      const p = get(PAIR)
      const one = get(PEER_LABEL['rackboot-postgresql'])
      if (p && one) {
        const m = median(p.best)
        console.log(
          `  ${PAIR.padEnd(30)} ${fmtRate(m).padStart(7)}  ${p.best.map(fmtRate).join(' ').padEnd(18)} ${ratio(m, median(one.best)).padStart(6)}  (total of both segments; ratio vs one instance)`,
        )
      }
    }
    console.log(`\n  (vs kea: rackboot / its Kea peer on the same store kind; rate ratios > 1 and CPU ratios < 1 favour rackboot)`)
    console.log(`  load at end ${load()}; ${((Date.now() - t0) / 60000).toFixed(1)} min`)
  } finally {
    process.off('SIGINT', interrupted)
    process.off('SIGTERM', interrupted)
    await teardown()
  }
}

function readSysctl(path: string): string {
  try {
    return readFileSync(`/proc/sys/${path}`, 'utf8').trim()
  } catch {
    return '?'
  }
}
