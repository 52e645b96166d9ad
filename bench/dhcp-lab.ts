// The DHCP benchmark's lab (bench/dhcp.bench.ts): the network segments, the four peers as their users run them, and
// the counters read around a perfdhcp run: perfdhcp's own, the server's own, the kernel's socket drops and CPU time.
//
// Segments. A segment is a pair of network namespaces (server, client) joined by a veth. "relay": perfdhcp sits on
// another subnet and relays (giaddr = its address, unicast to the server); "direct": it broadcasts on the server's
// own subnet (perfdhcp still fills giaddr, with an address of that subnet, lab.md). A whole segment gets /16 pools;
// the two halves used by the two-instance PostgreSQL run get a /17 each (its own subnet per instance).
//
// Peers. kea-dhcp4 2.2 (Debian) with raw sockets, as shared/harness/kea configures it: memfile with persist: true on
// disk (lfc-interval left at its default), or its PostgreSQL lease backend; rackboot's DHCP server as a process
// (test/dhcp/fixtures/run-server.ts) on SQLite on disk or on PostgreSQL (shared leases, as `serve` runs with
// database.url). Both PostgreSQL peers use one private cluster on a Unix socket (test/support/postgres.ts): the
// servers run inside network namespaces, where 127.0.0.1 is the namespace's own loopback, so a socket directory is
// the one address both the root namespace and every namespace reach.
//
// Kernel drops. `ss -m` skmem d (sk_drops) of every socket the server process holds: rackboot's UDP sockets; Kea's
// packet socket (raw mode reads DHCP there) and its UDP "fallback" socket, which only receives copies Kea discards
// (its drops lose nothing, so they are shown apart). Also Udp RcvbufErrors of each namespace (/proc/net/snmp):
// the server's, and the client's (datagrams perfdhcp's own sockets dropped: lost on the client side).
import { execFile, execFileSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createConnection } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'
import { waitFor, type NetLab, type Netns } from '../test/support/netns.js'
import { startPostgres, type PgCluster } from '../test/support/postgres.js'
import { startServerIn } from '../test/dhcp/netns-server.js'
import { openPostgresInventory } from '../src/inventory/postgres/open.js'
import { perfdhcpStats, type PerfdhcpStats } from '../test/dhcp/perfdhcp.js'

const execFileP = promisify(execFile)

export type Mode = 'relay' | 'direct'
export type PeerId = 'kea-memfile' | 'rackboot-sqlite' | 'kea-postgresql' | 'rackboot-postgresql'
export const PEER_LABEL: Record<PeerId, string> = {
  'kea-memfile': 'kea-dhcp4 memfile (persist)',
  'rackboot-sqlite': 'rackboot sqlite',
  'kea-postgresql': 'kea-dhcp4 postgresql',
  'rackboot-postgresql': 'rackboot postgresql',
}

interface SubnetPlan {
  subnet: string
  rangeStart: string
  rangeEnd: string
  routers: string[]
  dnsServers: string[]
  leaseSeconds: number
}

export interface Segment {
  label: string
  mode: Mode
  srv: Netns
  cli: Netns
  serverAddress: string
  /** perfdhcp's target arguments. */
  target: string[]
  /** The subnets the server serves (relay: its own /24, then the relayed one the clients are in). */
  subnets: SubnetPlan[]
  /** Addresses in the pool the clients draw from. */
  poolSize: number
}

const ipToInt = (ip: string): number => ip.split('.').reduce((a, b) => a * 256 + Number(b), 0)
const LEASE_SECONDS = 3600

/**
 * A segment: `part` null is the whole /16 (one server), 0 or 1 one half (/17 pools, its own server /24).
 * relay: server 198.18.P.1/24, relay (perfdhcp) in 198.19.0.0/16 or its half; direct: all in 198.18.0.0/16 or its half.
 */
export async function makeSegment(lab: NetLab, label: string, mode: Mode, part: 0 | 1 | null): Promise<Segment> {
  const srv = await lab.ns(`${label}s`)
  const cli = await lab.ns(`${label}c`)
  const k = part ?? 0
  const bits = part === null ? 16 : 17
  const base = part === null ? 0 : 128 * k // third octet where the client subnet starts
  const last = part === null ? 255 : base + 127
  if (mode === 'relay') {
    const serverAddress = `198.18.${k}.1`
    const relayIp = `198.19.${base}.2`
    const relayNet = `198.19.${base}.0/${bits}`
    await lab.veth({ ns: srv, name: 'eth0', cidr: `${serverAddress}/24` }, { ns: cli, name: 'eth0', cidr: `${relayIp}/${bits}` })
    await srv.ip(['route', 'add', relayNet, 'dev', 'eth0'])
    await cli.ip(['route', 'add', `198.18.${k}.0/24`, 'dev', 'eth0'])
    const pool = { rangeStart: `198.19.${base + 1}.0`, rangeEnd: `198.19.${last}.250` }
    return {
      label,
      mode,
      srv,
      cli,
      serverAddress,
      target: ['-l', relayIp, serverAddress],
      subnets: [
        { subnet: `198.18.${k}.0/24`, rangeStart: `198.18.${k}.100`, rangeEnd: `198.18.${k}.200`, routers: [], dnsServers: [], leaseSeconds: LEASE_SECONDS },
        { subnet: relayNet, ...pool, routers: [`198.19.${base}.1`], dnsServers: [], leaseSeconds: LEASE_SECONDS },
      ],
      poolSize: ipToInt(pool.rangeEnd) - ipToInt(pool.rangeStart) + 1,
    }
  }
  const serverAddress = `198.18.${base}.1`
  const net = `198.18.${base}.0/${bits}`
  await lab.veth({ ns: srv, name: 'eth0', cidr: `${serverAddress}/${bits}` }, { ns: cli, name: 'eth0', cidr: `198.18.${base}.2/${bits}` })
  const pool = { rangeStart: `198.18.${base + 1}.0`, rangeEnd: `198.18.${last}.250` }
  return {
    label,
    mode,
    srv,
    cli,
    serverAddress,
    target: ['-l', 'eth0'],
    subnets: [{ subnet: net, ...pool, routers: [serverAddress], dnsServers: [], leaseSeconds: LEASE_SECONDS }],
    poolSize: ipToInt(pool.rangeEnd) - ipToInt(pool.rangeStart) + 1,
  }
}

// ---------------------------------------------------------------------------------------------------------------
// perfdhcp

export interface PerfdhcpRun extends PerfdhcpStats {
  /** Answers perfdhcp could not match to an outstanding request (late: after its 1 s drop time). */
  orphans: number
  /** Average and maximum delay of DISCOVER-OFFER and REQUEST-ACK, ms. */
  offerMs: { avg: number; max: number }
  ackMs: { avg: number; max: number }
  raw: string
}

function perfdhcpExtra(out: string): Pick<PerfdhcpRun, 'orphans' | 'offerMs' | 'ackMs'> {
  const section = (name: string) => out.split(`***Statistics for: ${name}***`)[1]?.split('***')[0] ?? ''
  const num = (text: string, label: string) => Number(new RegExp(`${label}: ([\\d.]+)`).exec(text)?.[1] ?? NaN)
  const d = section('DISCOVER-OFFER')
  const r = section('REQUEST-ACK')
  return {
    orphans: (num(d, 'orphans') || 0) + (num(r, 'orphans') || 0),
    offerMs: { avg: num(d, 'avg delay'), max: num(d, 'max delay') },
    ackMs: { avg: num(r, 'avg delay'), max: num(r, 'max delay') },
  }
}

/** perfdhcp -4 -g single -R CLIENTS -r RATE -p SECONDS -W 1 s: stops sending after SECONDS, waits 1 s for answers. */
export async function perfdhcp(seg: Segment, rate: number, seconds: number, clients: number): Promise<PerfdhcpRun> {
  const argv = ['perfdhcp', '-4', '-g', 'single', '-R', String(clients), '-r', String(rate), '-p', String(seconds), '-W', '1000000', ...seg.target]
  const r = await seg.cli.exec(argv, { check: false, timeoutMs: (seconds + 60) * 1000 })
  return { ...perfdhcpStats(r.stdout), ...perfdhcpExtra(r.stdout), raw: r.stdout + r.stderr }
}

export function perfdhcpCommand(seg: Segment, rate: number | string, seconds: number | string, clients: number | string): string {
  return ['perfdhcp', '-4', '-g', 'single', '-R', String(clients), '-r', String(rate), '-p', String(seconds), '-W', '1000000', ...seg.target].join(' ')
}

// ---------------------------------------------------------------------------------------------------------------
// Counters around a run

/** Kernel drops (sk_drops) per socket of one process, from `ss -m -p` inside its namespace. */
export interface SocketDrops {
  /** Sockets the server reads requests from (rackboot's UDP sockets, Kea's packet socket). */
  read: number
  /** Kea's UDP fallback socket in raw mode: copies it discards; its drops lose nothing. */
  copies: number
  /** Receive buffer of the sockets read, bytes (skmem rb), for the record. */
  rcvbuf: number[]
}

async function socketDrops(ns: Netns, pid: number, raw: boolean): Promise<SocketDrops> {
  const out: SocketDrops = { read: 0, copies: 0, rcvbuf: [] }
  for (const kind of ['-u', '-0']) {
    const r = await ns.exec(['ss', '-H', '-a', '-m', '-p', kind], { check: false, timeoutMs: 10_000 })
    // One socket per entry; its skmem may be on a continuation line (starting with whitespace).
    const entries = r.stdout.split('\n').reduce<string[]>((acc, line) => {
      if (/^\s/.test(line) && acc.length > 0) acc[acc.length - 1] += ` ${line.trim()}`
      else if (line.trim()) acc.push(line)
      return acc
    }, [])
    for (const e of entries) {
      if (!new RegExp(`pid=${pid},`).test(e)) continue
      const d = Number(/skmem:\([^)]*\bd(\d+)/.exec(e)?.[1] ?? 0)
      const rb = Number(/skmem:\([^)]*\brb(\d+)/.exec(e)?.[1] ?? 0)
      const isPacket = kind === '-0'
      if (raw && !isPacket) out.copies += d
      else {
        out.read += d
        out.rcvbuf.push(rb)
      }
    }
  }
  return out
}

/** Udp RcvbufErrors of a namespace's /proc/net/snmp. */
async function rcvbufErrors(ns: Netns): Promise<number> {
  const r = await ns.exec(['cat', '/proc/net/snmp'], { check: false })
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('Udp:'))
  if (lines.length < 2) return 0
  const names = lines[0]!.trim().split(/\s+/)
  const values = lines[1]!.trim().split(/\s+/)
  return Number(values[names.indexOf('RcvbufErrors')] ?? 0)
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100
  } catch {
    return 100
  }
})()

/** utime+stime (and, with children, cutime+cstime) of a process, seconds; 0 when gone. */
function cpuOf(pid: number, withChildren = false): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // After "pid (comm) ": state=0 ppid=1 ... utime=11 stime=12 cutime=13 cstime=14
    const ticks = Number(f[11]) + Number(f[12]) + (withChildren ? Number(f[13]) + Number(f[14]) : 0)
    return ticks / CLK_TCK
  } catch {
    return 0
  }
}

/**
 * CPU seconds of a whole PostgreSQL cluster: the postmaster with its reaped children (cutime: backends that have
 * exited) plus every live child (backends, walwriter, checkpointer...).
 */
function clusterCpu(postmaster: number): number {
  let total = cpuOf(postmaster, true)
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === postmaster) total += cpuOf(Number(entry))
    } catch {
      // gone
    }
  }
  return total
}

// ---------------------------------------------------------------------------------------------------------------
// PostgreSQL

export interface PgLab {
  cluster: PgCluster
  settings: string
  /** A fresh database with rackboot's schema (a copy of one migrated once; start-up finds nothing to do). */
  rackbootDb(): Promise<{ name: string; url: string }>
  /** A fresh database with Kea's schema (a copy of one `kea-admin db-init` made once). */
  keaDb(): Promise<string>
  /** Drops the database later, in sweep() (between rounds: a drop's I/O stays out of the trials). */
  retire(name: string): void
  sweep(): Promise<void>
  /** CHECKPOINT: what a trial's set-up dirtied is written before the measurement starts. */
  checkpoint(): Promise<void>
  postmasterPid(): number
  stop(): Promise<void>
}

let dbSeq = 0

/**
 * The private cluster, made durable as users run PostgreSQL (fsync, synchronous_commit, full_page_writes on, Debian's
 * shared_buffers), unless `fast` (the test suite's settings: fsync off). Kea's schema is made once with
 * `kea-admin db-init pgsql -h <socket dir>` in a template database; each trial gets a copy.
 */
export async function startPgLab(fast: boolean): Promise<PgLab | { skip: string }> {
  const cluster = await startPostgres()
  if ('skip' in cluster) return cluster
  const admin = async <T>(fn: (c: pg.Client) => Promise<T>): Promise<T> => {
    const c = new pg.Client({ connectionString: cluster.url('postgres') })
    await c.connect()
    try {
      return await fn(c)
    } finally {
      await c.end()
    }
  }
  try {
    if (!fast) {
      await admin(async (c) => {
        for (const sql of [
          `ALTER SYSTEM SET fsync = on`,
          `ALTER SYSTEM SET synchronous_commit = on`,
          `ALTER SYSTEM SET full_page_writes = on`,
          `ALTER SYSTEM SET shared_buffers = '128MB'`,
        ]) await c.query(sql)
      })
      await cluster.pause()
      await cluster.resume()
    }
    const settings = await admin(async (c) => {
      const names = ['server_version', 'fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method', 'shared_buffers']
      const r = await c.query<{ v: string[] }>(`SELECT ARRAY[${names.map((n) => `current_setting('${n}')`).join(', ')}] AS v`)
      return names.map((n, i) => `${n}=${r.rows[0]!.v[i]}`).join(' ')
    })
    // Templates: each trial's database is a copy (CREATE DATABASE ... TEMPLATE), seconds cheaper than a migration or
    // a db-init with fsync on, and the same schema.
    await admin((c) => c.query(`CREATE DATABASE rb_template TEMPLATE template0`))
    const inv = await openPostgresInventory({ url: cluster.url('rb_template'), connectTimeoutMs: 30_000 })
    await inv.close()
    await admin((c) => c.query(`CREATE DATABASE kea_template TEMPLATE template0`))
    // kea-admin drives psql: -h takes the socket directory as libpq does. It checks the database is empty first.
    try {
      await execFileP('kea-admin', ['db-init', 'pgsql', '-n', 'kea_template', '-u', 'rackboot', '-h', cluster.socketDir], { timeout: 120_000 })
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string }
      throw new Error(`kea-admin db-init pgsql failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`)
    }
    const retired: string[] = []
    return {
      cluster,
      settings,
      async rackbootDb() {
        const name = `rb_${process.pid}_${++dbSeq}`
        await admin((c) => c.query(`CREATE DATABASE "${name}" TEMPLATE rb_template`))
        return { name, url: cluster.url(name) }
      },
      async keaDb() {
        const name = `kea_${process.pid}_${++dbSeq}`
        await admin((c) => c.query(`CREATE DATABASE "${name}" TEMPLATE kea_template`))
        return name
      },
      retire(name) {
        retired.push(name)
      },
      async sweep() {
        const names = retired.splice(0)
        if (names.length === 0) return
        await admin(async (c) => {
          for (const name of names) await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).catch(() => undefined)
        })
      },
      async checkpoint() {
        await admin((c) => c.query('CHECKPOINT'))
      },
      postmasterPid() {
        return Number(readFileSync(join(cluster.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0])
      },
      stop: () => cluster.stop(),
    }
  } catch (err) {
    await cluster.stop()
    throw err
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Servers

/** What the server itself counted. */
export interface ServerCounts {
  /** DISCOVERs and REQUESTs it received (-1: not known). */
  discovers: number
  requests: number
  offers: number
  acks: number
  naks: number
  /** Its own drop counts by reason (rackboot: rackboot_dhcp_dropped_total, reason "kernel" included; Kea: pkt4-receive-drop, pkt4-parse-failed). */
  dropped: Record<string, number>
}

export interface RunningServer {
  pid: number
  /** What the server wrote to stdout/stderr besides its protocol lines (warnings, errors), last 4000 characters. */
  log(): string
  /** Read before stop (Kea: statistic-get-all over its control socket); rackboot answers at stop. */
  counts(): Promise<ServerCounts | null>
  stop(): Promise<ServerCounts | null>
}

function metricSum(metrics: string, name: string, label?: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of metrics.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue
    const key = label ? (new RegExp(`${label}="([^"]*)"`).exec(line)?.[1] ?? '?') : 'all'
    out.set(key, (out.get(key) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)))
  }
  return out
}

export function rackbootCounts(metrics: string): ServerCounts | null {
  if (!metrics) return null
  const rx = metricSum(metrics, 'rackboot_dhcp_packets_received_total', 'type')
  const tx = metricSum(metrics, 'rackboot_dhcp_replies_sent_total', 'type')
  const dropped = Object.fromEntries(metricSum(metrics, 'rackboot_dhcp_dropped_total', 'reason'))
  const get = (m: Map<string, number>, ...keys: string[]) => keys.reduce((a, k) => a + (m.get(k) ?? m.get(k.toUpperCase()) ?? 0), 0)
  return {
    discovers: get(rx, 'discover'),
    requests: get(rx, 'request'),
    offers: get(tx, 'offer'),
    acks: get(tx, 'ack'),
    naks: get(tx, 'nak'),
    dropped,
  }
}

export async function startRackboot(seg: Segment, store: { kind: 'sqlite'; file: string } | { kind: 'postgres'; url: string }): Promise<RunningServer> {
  const server = await startServerIn(seg.srv, {
    store,
    noPort: true,
    settings: { mode: 'full', serverAddress: seg.serverAddress, subnets: seg.subnets },
  })
  const pid = server.proc.pid!
  let final: ServerCounts | null = null
  // What it said while starting (the capped receive buffer warning, printed once in the header) is not news.
  const startupLog = server.stderr().length
  return {
    pid,
    log: () => server.stderr().slice(startupLog).slice(-4000),
    async counts() {
      return final
    },
    async stop() {
      const metrics = await server.stop()
      final = rackbootCounts(metrics)
      if (!final) process.stderr.write(`rackboot gave no metrics at stop; stderr:\n${server.stderr().slice(-2000)}\n`)
      return final
    },
  }
}

function keaCommand(socket: string, command: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const c = createConnection(socket)
    let buf = ''
    const timer = setTimeout(() => {
      c.destroy()
      reject(new Error(`kea control socket ${socket}: no answer to ${command}`))
    }, 10_000)
    const done = (): boolean => {
      try {
        const v = JSON.parse(buf) as unknown
        clearTimeout(timer)
        c.destroy()
        resolve(v)
        return true
      } catch {
        return false
      }
    }
    c.on('connect', () => c.write(JSON.stringify({ command })))
    c.on('data', (d: Buffer) => {
      buf += d.toString()
      done()
    })
    c.on('end', () => {
      if (!done()) {
        clearTimeout(timer)
        reject(new Error(`kea control socket ${socket}: bad answer ${buf.slice(0, 200)}`))
      }
    })
    c.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

export type KeaLeases = { kind: 'memfile'; file: string } | { kind: 'postgresql'; name: string; socketDir: string }

export async function startKea(seg: Segment, dir: string, leases: KeaLeases): Promise<RunningServer> {
  const conf = join(dir, `kea-${seg.label}.json`)
  const control = join(dir, `kea-${seg.label}.sock`)
  rmSync(control, { force: true })
  const subnet4 = seg.subnets.map((s, i) => ({
    id: i + 1,
    subnet: s.subnet,
    pools: [{ pool: `${s.rangeStart} - ${s.rangeEnd}` }],
    ...(s.routers[0] ? { 'option-data': [{ name: 'routers', data: s.routers[0] }] } : {}),
  }))
  writeFileSync(
    conf,
    JSON.stringify({
      Dhcp4: {
        // Raw sockets: what directly attached clients (no address yet) need, and how shared/harness/kea runs it.
        'interfaces-config': { interfaces: ['eth0'], 'dhcp-socket-type': 'raw' },
        'lease-database':
          leases.kind === 'memfile'
            ? { type: 'memfile', persist: true, name: leases.file }
            // host: the socket directory; libpq (under Kea) takes a path there for a Unix socket.
            : { type: 'postgresql', name: leases.name, user: 'rackboot', host: leases.socketDir },
        'control-socket': { 'socket-type': 'unix', 'socket-name': control },
        'valid-lifetime': LEASE_SECONDS,
        subnet4,
        loggers: [{ name: 'kea-dhcp4', output_options: [{ output: 'stdout' }], severity: 'WARN' }],
      },
    }),
  )
  const env = { ...process.env, KEA_PIDFILE_DIR: dir, KEA_LOCKFILE_DIR: dir }
  const kea = seg.srv.spawn(['kea-dhcp4', '-c', conf], { env })
  let out = ''
  kea.stdout?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)))
  kea.stderr?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)))
  const pid = kea.pid!
  // Ready once it answers on its control socket and holds UDP 67 (it opens the lease database before either).
  await waitFor(
    async () => {
      if (kea.exitCode !== null) throw new Error(`kea-dhcp4 exited (${kea.exitCode}): ${out}`)
      if (!existsSync(control)) return undefined
      const ss = await seg.srv.exec(['ss', '-Hlun', 'sport = :67'], { check: false })
      return ss.stdout.trim().length > 0 || undefined
    },
    { what: `kea-dhcp4 to start: ${out}`, timeoutMs: 60_000 },
  ).catch((err: Error) => {
    kea.kill('SIGKILL')
    throw new Error(`${err.message}\n${out}`)
  })
  const counts = async (): Promise<ServerCounts | null> => {
    try {
      const r = (await keaCommand(control, 'statistic-get-all')) as { arguments?: Record<string, [number, string][]> }
      const v = (name: string) => r.arguments?.[name]?.[0]?.[0] ?? 0
      const dropped: Record<string, number> = {}
      for (const name of ['pkt4-receive-drop', 'pkt4-parse-failed']) if (v(name) > 0) dropped[name] = v(name)
      return {
        discovers: v('pkt4-discover-received'),
        requests: v('pkt4-request-received'),
        offers: v('pkt4-offer-sent'),
        acks: v('pkt4-ack-sent'),
        naks: v('pkt4-nak-sent'),
        dropped,
      }
    } catch (err) {
      process.stderr.write(`kea statistics: ${(err as Error).message}\n`)
      return null
    }
  }
  // Kea's own start-up lines (INFO at start, the multi-threading note) are not news.
  const startupLines = out.split('\n').length - 1
  return {
    pid,
    log: () => out.split('\n').slice(startupLines).filter((l) => !/Failed to find cgroup2 mount/.test(l)).join('\n').slice(-4000),
    counts,
    stop: () =>
      new Promise((resolve) => {
        if (kea.exitCode !== null) return resolve(null)
        const timer = setTimeout(() => kea.kill('SIGKILL'), 15_000)
        kea.once('exit', () => {
          clearTimeout(timer)
          resolve(null)
        })
        kea.kill('SIGTERM')
      }),
  }
}

// ---------------------------------------------------------------------------------------------------------------
// One trial

export interface SegmentResult {
  perf: PerfdhcpRun
  server: ServerCounts | null
  kernel: SocketDrops
  /** Udp RcvbufErrors deltas: the server's namespace, the client's (perfdhcp's own sockets). */
  nsServer: number
  nsClient: number
  /** Server process CPU seconds during the perfdhcp run. */
  cpu: number
  /** The server's warnings and errors during the trial. */
  log: string
}

export interface TrialResult {
  peer: PeerId
  rate: number
  seconds: number
  segments: SegmentResult[]
  /** PostgreSQL cluster CPU seconds during the run (PostgreSQL peers). */
  pgCpu: number
  discovers: number
  acks: number
  /** acks / discovers. */
  ratio: number
  /** perfdhcp sent at least 95 % of rate x seconds DISCOVERs (else the client, not the server, set the pace). */
  clientKeptUp: boolean
  pass: boolean
  /** Wall time of start-up (store + servers), the perfdhcp run, and stop + clean-up, seconds. */
  timing: { setup: number; run: number; teardown: number }
}

export interface TrialContext {
  dir: string
  pg: PgLab | null
  clients: number
}

/**
 * One trial: a fresh lease store and a fresh server on each segment (several: one rackboot each, one database),
 * perfdhcp on every segment at once (rate split evenly), counters read around it, the servers stopped, the store
 * removed. Passes when >= 99 % of the DISCOVERs perfdhcp sent ended in an ACK on every segment.
 */
export async function runTrial(ctx: TrialContext, peer: PeerId, segs: Segment[], rate: number, seconds: number): Promise<TrialResult> {
  const cleanup: (() => Promise<void> | void)[] = []
  const servers: RunningServer[] = []
  const perRate = Math.max(1, Math.round(rate / segs.length))
  const perClients = Math.max(1, Math.floor(ctx.clients / segs.length))
  const t0 = performance.now()
  let t1 = t0
  let t2 = t0
  // Filled in as the trial goes (teardown in `finally`, before the caller sees the result).
  const timing = { setup: 0, run: 0, teardown: 0 }
  try {
    let rbUrl: string | null = null
    if (peer === 'rackboot-postgresql') {
      const db = await ctx.pg!.rackbootDb()
      cleanup.push(() => ctx.pg!.retire(db.name))
      rbUrl = db.url
    }
    // Stores first, then every server at once (the pair's two instances start side by side).
    const starts: (() => Promise<RunningServer>)[] = []
    for (const seg of segs) {
      const tag = `${seg.label}-${++dbSeq}`
      if (peer === 'kea-memfile') {
        const file = join(ctx.dir, `kea-leases4-${tag}.csv`)
        cleanup.push(() => {
          for (const f of readdirSync(ctx.dir)) if (f.startsWith(`kea-leases4-${tag}.csv`)) rmSync(join(ctx.dir, f), { force: true })
        })
        starts.push(() => startKea(seg, ctx.dir, { kind: 'memfile', file }))
      } else if (peer === 'kea-postgresql') {
        const name = await ctx.pg!.keaDb()
        cleanup.push(() => ctx.pg!.retire(name))
        starts.push(() => startKea(seg, ctx.dir, { kind: 'postgresql', name, socketDir: ctx.pg!.cluster.socketDir }))
      } else if (peer === 'rackboot-sqlite') {
        const file = join(ctx.dir, `rackboot-${tag}.db`)
        cleanup.push(() => {
          for (const f of readdirSync(ctx.dir)) if (f.startsWith(`rackboot-${tag}.db`)) rmSync(join(ctx.dir, f), { force: true })
        })
        starts.push(() => startRackboot(seg, { kind: 'sqlite', file }))
      } else {
        starts.push(() => startRackboot(seg, { kind: 'postgres', url: rbUrl! }))
      }
    }
    const started = await Promise.allSettled(starts.map((start) => start()))
    for (const r of started) if (r.status === 'fulfilled') servers.push(r.value)
    const failed = started.find((r) => r.status === 'rejected')
    if (failed) throw (failed as PromiseRejectedResult).reason
    if (peer.endsWith('postgresql')) await ctx.pg!.checkpoint()
    const raw = peer.startsWith('kea')
    const before = await Promise.all(
      segs.map(async (seg, i) => ({
        kernel: await socketDrops(seg.srv, servers[i]!.pid, raw),
        nsServer: await rcvbufErrors(seg.srv),
        nsClient: await rcvbufErrors(seg.cli),
        cpu: cpuOf(servers[i]!.pid),
      })),
    )
    const pgPid = peer.endsWith('postgresql') ? ctx.pg!.postmasterPid() : 0
    const pgBefore = pgPid ? clusterCpu(pgPid) : 0
    t1 = performance.now()
    const perfs = await Promise.all(segs.map((seg) => perfdhcp(seg, perRate, seconds, perClients)))
    t2 = performance.now()
    const cpuAfter = servers.map((s) => cpuOf(s.pid))
    const pgCpu = pgPid ? clusterCpu(pgPid) - pgBefore : 0
    const after = await Promise.all(
      segs.map(async (seg, i) => ({
        kernel: await socketDrops(seg.srv, servers[i]!.pid, raw),
        nsServer: await rcvbufErrors(seg.srv),
        nsClient: await rcvbufErrors(seg.cli),
      })),
    )
    const counted = await Promise.all(servers.map((s) => s.counts()))
    const stopped = await Promise.all(servers.map((s) => s.stop()))
    const logs = servers.map((s) => s.log().trim())
    servers.length = 0
    const segments: SegmentResult[] = segs.map((_, i) => ({
      perf: perfs[i]!,
      server: stopped[i] ?? counted[i] ?? null,
      kernel: {
        read: after[i]!.kernel.read - before[i]!.kernel.read,
        copies: after[i]!.kernel.copies - before[i]!.kernel.copies,
        rcvbuf: after[i]!.kernel.rcvbuf,
      },
      nsServer: after[i]!.nsServer - before[i]!.nsServer,
      nsClient: after[i]!.nsClient - before[i]!.nsClient,
      cpu: cpuAfter[i]! - before[i]!.cpu,
      log: logs[i] ?? '',
    }))
    const discovers = perfs.reduce((a, p) => a + p.discovers, 0)
    const acks = perfs.reduce((a, p) => a + p.acks, 0)
    const clientKeptUp = perfs.every((p) => p.discovers >= 0.95 * perRate * seconds)
    const eachPasses = perfs.every((p) => p.discovers > 0 && p.acks >= 0.99 * p.discovers)
    timing.setup = (t1 - t0) / 1000
    timing.run = (t2 - t1) / 1000
    return {
      peer,
      rate,
      seconds,
      segments,
      pgCpu,
      discovers,
      acks,
      ratio: discovers > 0 ? acks / discovers : 0,
      clientKeptUp,
      pass: eachPasses && clientKeptUp,
      timing,
    }
  } finally {
    // Servers still running (a failed start or run), then the stores.
    await Promise.all(servers.map((s) => s.stop().catch(() => null)))
    for (const fn of cleanup) {
      try {
        await fn()
      } catch {
        // best effort
      }
    }
    timing.teardown = (performance.now() - t2) / 1000
  }
}
