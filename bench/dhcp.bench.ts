// DHCP DORA rate: Kea's perfdhcp against rackboot and against kea-dhcp4 (memfile, config after
// shared/harness/kea), one after the other in the same run, same namespaces, same perfdhcp arguments.
//   npm run bench -- dhcp [--seconds=15] [--clients=10000] [--rate=N] [--rounds=1] [--mode=relay|direct]
// perfdhcp always acts as a relay (giaddr = its address). "relay" mode puts it on another subnet (rackboot picks the
// subnet by giaddr and unicasts back); "direct" mode broadcasts from the server's own subnet.
// rackboot runs with the SQLite inventory on disk (the real path: leases written in batches by the repository's
// putMany before each ACK) and with in-memory leases (the upper bound of the protocol path).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createNetLab, netnsSkipReason, waitFor, type Netns } from '../test/support/netns.js'
import { startServerIn } from '../test/dhcp/netns-server.js'
import { perfdhcpStats, type PerfdhcpStats } from '../test/dhcp/perfdhcp.js'

interface Options {
  seconds: number
  clients: number
  rate: number
  rounds: number
  mode: 'relay' | 'direct'
}

function parse(args: string[]): Options {
  const get = (name: string, dflt: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? dflt
  return {
    seconds: Number(get('seconds', '15')),
    clients: Number(get('clients', '10000')),
    rate: Number(get('rate', '20000')),
    rounds: Number(get('rounds', '1')),
    mode: get('mode', 'relay') === 'direct' ? 'direct' : 'relay',
  }
}

const SERVER = '198.18.0.1'
const RELAY = '198.19.0.2'
// A pool big enough for every simulated client, in both servers.
const RELAYED = { subnet: '198.19.0.0/16', rangeStart: '198.19.1.0', rangeEnd: '198.19.255.250', routers: ['198.19.0.1'], dnsServers: [], leaseSeconds: 3600 }
const DIRECT = { subnet: '198.18.0.0/16', rangeStart: '198.18.1.0', rangeEnd: '198.18.255.250', routers: ['198.18.0.1'], dnsServers: [], leaseSeconds: 3600 }

async function perfdhcp(cli: Netns, o: Options): Promise<PerfdhcpStats & { raw: string }> {
  const target = o.mode === 'relay' ? ['-l', RELAY, SERVER] : ['-l', 'eth0']
  const r = await cli.exec(
    ['perfdhcp', '-4', '-g', 'single', '-R', String(o.clients), '-r', String(o.rate), '-p', String(o.seconds), ...target],
    { check: false, timeoutMs: (o.seconds + 60) * 1000 },
  )
  return { ...perfdhcpStats(r.stdout), raw: r.stdout + r.stderr }
}

async function runKea(srv: Netns, dir: string, o: Options): Promise<() => Promise<void>> {
  const conf = join(dir, 'kea-dhcp4.json')
  const subnet = o.mode === 'relay' ? RELAYED : DIRECT
  writeFileSync(
    conf,
    JSON.stringify({
      Dhcp4: {
        'interfaces-config': { interfaces: ['eth0'], 'dhcp-socket-type': 'raw' },
        'lease-database': { type: 'memfile', persist: false },
        'valid-lifetime': subnet.leaseSeconds,
        subnet4: [
          ...(o.mode === 'relay' ? [{ id: 2, subnet: '198.18.0.0/24', pools: [{ pool: '198.18.0.100 - 198.18.0.200' }] }] : []),
          { id: 1, subnet: subnet.subnet, pools: [{ pool: `${subnet.rangeStart} - ${subnet.rangeEnd}` }], 'option-data': [{ name: 'routers', data: subnet.routers[0] }] },
        ],
        loggers: [{ name: 'kea-dhcp4', output_options: [{ output: 'stdout' }], severity: 'WARN' }],
      },
    }),
  )
  const env = { ...process.env, KEA_PIDFILE_DIR: dir, KEA_LOCKFILE_DIR: dir }
  const kea = srv.spawn(['kea-dhcp4', '-c', conf], { env })
  let out = ''
  kea.stdout?.on('data', (d: Buffer) => (out += d.toString()))
  kea.stderr?.on('data', (d: Buffer) => (out += d.toString()))
  // Ready once it holds UDP 67.
  await waitFor(async () => (await srv.exec(['ss', '-Hlun', 'sport = :67'], { check: false })).stdout.trim().length > 0 || undefined, {
    what: `kea-dhcp4 to listen: ${out}`,
    timeoutMs: 30_000,
  })
  return () =>
    new Promise((resolve) => {
      if (kea.exitCode !== null) return resolve()
      kea.once('exit', () => resolve())
      kea.kill('SIGTERM')
    })
}

/** What rackboot received, answered and dropped (by reason), from its metrics text: where lost exchanges went. */
function serverCounts(metrics: string): string {
  const sum = (name: string, by?: string) => {
    const out = new Map<string, number>()
    for (const line of metrics.split('\n')) {
      if (!line.startsWith(name)) continue
      const label = by ? (new RegExp(`${by}="([^"]*)"`).exec(line)?.[1] ?? '?') : 'all'
      out.set(label, (out.get(label) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)))
    }
    return out
  }
  const fmt = (m: Map<string, number>) => [...m].map(([k, v]) => `${k}=${v}`).join(' ') || '0'
  return `received ${fmt(sum('rackboot_dhcp_packets_received_total', 'type'))}; sent ${fmt(sum('rackboot_dhcp_replies_sent_total', 'type'))}; dropped ${fmt(sum('rackboot_dhcp_dropped_total', 'reason'))}`
}

export async function run(args: string[]): Promise<void> {
  const o = parse(args)
  const skip = netnsSkipReason(['perfdhcp', 'kea-dhcp4', 'ss'])
  if (skip) {
    console.log(`dhcp bench skipped: ${skip}`)
    return
  }
  const dir = mkdtempSync(join(tmpdir(), 'rb-dhcp-bench-'))
  const lab = await createNetLab()
  try {
    const srv = await lab.ns('bsrv')
    const cli = await lab.ns('bcli')
    if (o.mode === 'relay') {
      await lab.veth({ ns: srv, name: 'eth0', cidr: `${SERVER}/24` }, { ns: cli, name: 'eth0', cidr: `${RELAY}/16` })
      await srv.ip(['route', 'add', '198.19.0.0/16', 'dev', 'eth0'])
      await cli.ip(['route', 'add', '198.18.0.0/24', 'dev', 'eth0'])
    } else {
      await lab.veth({ ns: srv, name: 'eth0', cidr: `${SERVER}/16` }, { ns: cli, name: 'eth0', cidr: '198.18.0.2/16' })
    }
    const subnets = o.mode === 'relay' ? [{ ...DIRECT, subnet: '198.18.0.0/24', rangeStart: '198.18.0.100', rangeEnd: '198.18.0.200' }, RELAYED] : [DIRECT]
    console.log(`perfdhcp -4 -g single -R ${o.clients} -r ${o.rate} -p ${o.seconds} (${o.mode}), ${o.rounds} round(s)`)

    const results: Record<string, number[]> = {
      'rackboot (sqlite)': [],
      'rackboot (memory)': [],
      'kea-dhcp4 (memfile)': [],
    }
    const show = (name: string, s: PerfdhcpStats) =>
      console.log(
        `  ${name.padEnd(26)} ${s.rate.toFixed(0).padStart(6)} DORA/s   offers ${s.offers}/${s.discovers}   acks ${s.acks}/${s.requests}`,
      )
    for (let round = 0; round < o.rounds; round++) {
      for (const store of ['sqlite', 'memory'] as const) {
        const name = `rackboot (${store})`
        const db = join(dir, `round${round}.db`)
        const server = await startServerIn(srv, {
          store: store === 'memory' ? { kind: 'memory' } : { kind: 'sqlite', file: db },
          settings: { mode: 'full', serverAddress: SERVER, subnets },
        })
        const s = await perfdhcp(cli, o)
        const metrics = await server.stop()
        rmSync(db, { force: true })
        rmSync(`${db}-wal`, { force: true })
        rmSync(`${db}-shm`, { force: true })
        results[name]!.push(s.rate)
        show(name, s)
        console.log(`  ${''.padEnd(26)} ${serverCounts(metrics)}`)
        if (s.discovers === 0) console.log(s.raw)
      }
      const stopKea = await runKea(srv, dir, o)
      const k = await perfdhcp(cli, o)
      await stopKea()
      results['kea-dhcp4 (memfile)']!.push(k.rate)
      show('kea-dhcp4 (memfile)', k)
      if (k.discovers === 0) console.log(k.raw)
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0
    const kea = median(results['kea-dhcp4 (memfile)']!)
    console.log('\nmedian DORA/s:')
    for (const [name, rates] of Object.entries(results)) {
      const m = median(rates)
      console.log(`  ${name.padEnd(26)} ${m.toFixed(0).padStart(6)}   ratio to kea ${kea > 0 ? (m / kea).toFixed(2) : 'n/a'}`)
    }
  } finally {
    await lab.destroy()
    rmSync(dir, { recursive: true, force: true })
  }
}
