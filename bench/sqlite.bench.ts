// `npm run bench -- sqlite [--rounds=3] [--seconds=5] [--clients=256]`
// What `database.synchronous: full` costs against the default `normal`, on the inventory as `serve` opens it (a file
// in TMPDIR, WAL, background checkpoints):
//   inserts      a machine and its boot event, one after the other, each its own commit (what /boot.ipxe does for a
//                new machine): commits per second;
//   lease, 1     one DHCP lease per commit (an ACK at a time: an idle server);
//   lease, group DHCP's lease writer (src/dhcp/lease-writer.ts) with --clients ACKs in flight at once, as in a boot
//                storm: leases stored per second, several per commit.
// normal fsyncs the WAL only at checkpoints; full fsyncs it at every commit, so the ratio is mostly the disk's flush
// latency (printed first, measured on the same filesystem). Rounds alternate the order of the two modes; medians and
// the full/normal ratio are printed with the load average (shared machines are noisy).
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLeaseWriter } from '../src/dhcp/lease-writer.js'
import { openSqliteInventory, type Lease } from '../src/inventory/index.js'
import { flag, median } from './stats.js'

type Mode = 'normal' | 'full'

const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ')
const mac = (k: number, prefix: string) => `${prefix}:${[3, 2, 1, 0].map((b) => ((k >>> (8 * b)) & 255).toString(16).padStart(2, '0')).join(':')}`

/** fdatasync latency of a 4 KiB append on the filesystem the databases live on (what a FULL commit adds), ms. */
function flushLatency(dir: string, count = 200): { median: number; p90: number } {
  const file = join(dir, 'fsync-probe')
  const fd = openSync(file, 'w')
  const page = Buffer.alloc(4096, 1)
  const times: number[] = []
  try {
    for (let i = 0; i < count; i++) {
      writeSync(fd, page)
      const t = performance.now()
      fdatasyncSync(fd)
      times.push(performance.now() - t)
    }
  } finally {
    closeSync(fd)
    rmSync(file, { force: true })
  }
  times.sort((a, b) => a - b)
  return { median: median(times), p90: times[Math.floor(times.length * 0.9)]! }
}

interface Round {
  inserts: number
  leaseSingle: number
  leaseGroup: number
  groupCommits: number
}

async function round(root: string, mode: Mode, seconds: number, clients: number, n: number): Promise<Round> {
  const dir = mkdtempSync(join(root, `${mode}-`))
  const inv = await openSqliteInventory({ file: join(dir, 'rackboot.db'), backgroundCheckpoints: true, database: { synchronous: mode } })
  try {
    // Inserts: a machine (one transaction) and its event (another commit), sequentially.
    let k = 0
    let t0 = performance.now()
    while (performance.now() - t0 < seconds * 1000) {
      const m = await inv.machines.create({ serial: `S${n}-${k}`, nics: [{ mac: mac(k, '02:0d'), name: 'eth0', boot: true }] }, Date.now())
      await inv.events.append({ machineId: m.id, type: 'boot.script', at: Date.now(), message: 'served /boot.ipxe', data: { k } })
      k++
    }
    const inserts = (2 * k) / ((performance.now() - t0) / 1000)

    const lease = (i: number): Lease => {
      const a = i % 65_000
      return { ip: `10.${20 + ((i / 65_000) | 0) % 200}.${a >> 8}.${a & 255}`, mac: mac(i, '0a:0d'), clientId: null, subnet: '10.0.0.0/8', state: 'bound', hostname: null, expiresAt: Date.now() + 3_600_000, updatedAt: Date.now() }
    }
    // One lease per commit.
    let i = 0
    t0 = performance.now()
    while (performance.now() - t0 < seconds * 1000) await inv.leases.put(lease(i++))
    const leaseSingle = i / ((performance.now() - t0) / 1000)

    // Group commit, `clients` ACKs waiting at once (each client asks again as soon as its lease is stored).
    let commits = 0
    const leases = inv.leases as typeof inv.leases & { putMany(l: Lease[]): Promise<void> }
    const counted = { ...leases, putMany: (l: Lease[]) => (commits++, leases.putMany(l)), put: (l: Lease) => (commits++, leases.put(l)) }
    const writer = createLeaseWriter({ leases: counted })
    let stored = 0
    let j = 1_000_000
    const end = performance.now() + seconds * 1000
    t0 = performance.now()
    await Promise.all(Array.from({ length: clients }, async () => {
      while (performance.now() < end) {
        await writer.write(lease(j++))
        stored++
      }
    }))
    const leaseGroup = stored / ((performance.now() - t0) / 1000)
    return { inserts, leaseSingle, leaseGroup, groupCommits: commits / ((performance.now() - t0) / 1000) }
  } finally {
    await inv.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

export async function run(args: string[]): Promise<void> {
  const rounds = flag(args, 'rounds', 3)
  const seconds = flag(args, 'seconds', 5)
  const clients = flag(args, 'clients', 256)
  const root = mkdtempSync(join(tmpdir(), 'rb-bench-sqlite-'))
  try {
    console.log(`${cpus().length} CPUs, load average ${load()}; databases in ${root}`)
    const flush = flushLatency(root)
    console.log(`fdatasync of a 4 KiB append there: median ${flush.median.toFixed(2)} ms, p90 ${flush.p90.toFixed(2)} ms (what a FULL commit adds)`)
    const results: Record<Mode, Round[]> = { normal: [], full: [] }
    for (let r = 0; r < rounds; r++) {
      const order: Mode[] = r % 2 === 0 ? ['normal', 'full'] : ['full', 'normal']
      for (const mode of order) {
        const res = await round(root, mode, seconds, clients, r)
        results[mode].push(res)
        console.log(`round ${r + 1} ${mode.padEnd(6)}: inserts ${res.inserts.toFixed(0)} commits/s; lease, 1 per commit ${res.leaseSingle.toFixed(0)}/s; `
          + `lease, group commit ${res.leaseGroup.toFixed(0)}/s (${res.groupCommits.toFixed(0)} commits/s); load ${load()}`)
      }
    }
    console.log(`\n${'medians'.padEnd(34)}   normal       full  full/normal`)
    const row = (label: string, pick: (r: Round) => number) => {
      const n = median(results.normal.map(pick))
      const f = median(results.full.map(pick))
      console.log(`  ${label.padEnd(32)} ${n.toFixed(0).padStart(7)}/s ${f.toFixed(0).padStart(8)}/s   ${(f / n).toFixed(2)}x`)
    }
    row('inserts (machine, event: commits)', (r) => r.inserts)
    row('lease, 1 per commit', (r) => r.leaseSingle)
    row(`lease, group (${clients} in flight)`, (r) => r.leaseGroup)
    console.log(`\n(load average at the end: ${load()}; ${rounds} rounds of ${seconds} s per figure; figures are noisy on shared machines)`)
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
}
