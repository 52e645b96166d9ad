// `npm run bench -- api [--machines=N] [--requests=N] [--rounds=N] [--allocations=N] [--store=sqlite|postgres|both] [--part=list|allocations|both]`
// The cluster API over real sockets with a 100,000-machine inventory, on each backend: a temporary SQLite file (WAL,
// as served) and a private PostgreSQL cluster (test/support/postgres.ts, Unix socket). List/filter latency p50/p99
// per kind of query (goal: p99 < 20 ms on both), then allocation throughput, sequential and with concurrent
// callers; on PostgreSQL also two instances (two apps, two pools, one database) allocating at once against one.
// There is no reference peer for this one; the figures are compared with the goal.
import { mkdtempSync, rmSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { Agent, request } from 'undici'
import { createEventBus } from '../src/events/bus.js'
import { createApiAuth } from '../src/http/auth.js'
import { buildApp } from '../src/http/index.js'
import { openSqliteInventory, type Inventory } from '../src/inventory/index.js'
import { openPostgresInventory } from '../src/inventory/postgres/open.js'
import { startPostgres, type PgCluster } from '../test/support/postgres.js'
import { attachTimeline, createAllocator, createLifecycle } from '../src/lifecycle/index.js'
import { silentLogger } from '../src/log.js'
import { createMetricsRegistry } from '../src/metrics.js'
import { macFor, seedMachines } from '../test/api/support/seed.js'
import { flag } from './stats.js'

const GOAL_P99_MS = 20

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

function median(values: number[]): number {
  return quantile([...values].sort((a, b) => a - b), 0.5)
}

export async function run(args: string[]): Promise<void> {
  const store = args.find((a) => a.startsWith('--store='))?.slice(8) ?? 'both'
  if (!['sqlite', 'postgres', 'both'].includes(store)) throw new Error('--store must be sqlite, postgres or both')
  const dir = mkdtempSync(join(tmpdir(), 'rb-bench-api-'))
  let cluster: PgCluster | null = null
  try {
    if (store !== 'postgres') {
      console.log('\n=== SQLite ===')
      await runOn(args, await openSqliteInventory({ file: join(dir, 'rackboot.db'), secretKeyFile: join(dir, 'secret.key') }), 'SQLite transaction', null)
    }
    if (store !== 'sqlite') {
      console.log('\n=== PostgreSQL ===')
      const c = await startPostgres()
      if ('skip' in c) {
        console.log(`PostgreSQL part skipped: ${c.skip}`)
        return
      }
      cluster = c
      const url = await c.createDatabase('rbbench')
      const open = () => openPostgresInventory({ url, secretKeyFile: join(dir, 'secret.key'), poolSize: 10 })
      await runOn(args, await open(), 'PostgreSQL READ COMMITTED transaction, machines locked FOR UPDATE SKIP LOCKED', open)
    }
  } finally {
    await cluster?.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Builds an API app over `inventory` (one instance), as serve does for the routes measured here. */
async function instance(inventory: Inventory & { db?: unknown }) {
  const log = silentLogger()
  const bus = createEventBus()
  const timeline = attachTimeline({ inventory, bus, log })
  const lifecycle = createLifecycle({ inventory, bus, log })
  const registry = createMetricsRegistry()
  const app = await buildApp({
    inventory, lifecycle, registry, log, version: 'bench',
    api: {
      bus, flushTimeline: timeline.flush,
      auth: createApiAuth({ tokens: inventory.tokens, registry }),
      allocator: createAllocator({ inventory, lifecycle, log, registry }),
    },
  })
  const base = await app.listen({ host: '127.0.0.1', port: 0 })
  return {
    base,
    flush: timeline.flush,
    async close() {
      await app.close()
      await timeline.flush()
      timeline.detach()
      await inventory.close()
    },
  }
}

async function runOn(args: string[], inventory: Awaited<ReturnType<typeof openSqliteInventory>> | Awaited<ReturnType<typeof openPostgresInventory>>, txLabel: string, second: (() => Promise<Inventory>) | null): Promise<void> {
  const count = flag(args, 'machines', 100_000)
  const part = args.find((a) => a.startsWith('--part='))?.slice(7) ?? 'both'
  if (!['list', 'allocations', 'both'].includes(part)) throw new Error('--part must be list, allocations or both')
  const requests = flag(args, 'requests', 200)
  const allocations = flag(args, 'allocations', 400)
  const first = await instance(inventory)
  const base = first.base
  // Shorter than the server's keep-alive (5 s): else a POST can go out on a connection the server is just closing (ECONNRESET).
  const agent = new Agent({ connections: 32, keepAliveTimeout: 2_000 })
  try {
    let t = performance.now()
    const ids = await seedMachines(inventory, { count })
    // PostgreSQL plans from table statistics, which autovacuum gathers within a minute of a bulk load; a freshly
    // seeded table has none (the NIC lookup of a page then reads every NIC). Gather them now, as a running server has.
    if ('pool' in inventory) await inventory.pool.query('ANALYZE')
    console.log(`seeded ${count} machines (NICs, hardware, labels, search index) in ${((performance.now() - t) / 1000).toFixed(1)} s`)
    await inventory.profiles.put({ name: 'w', description: null, talosVersion: 'v1.13.9', arch: 'amd64', schematic: null, kernelArgs: [], baseConfig: null, patches: [], managedBy: null }, 1)
    await inventory.classes.put({ name: 'big', description: null, selectors: ['cpu.cores >= 64', 'memory.gib >= 512'], profile: 'w', patches: [], managedBy: null }, 1)
    const { secret } = await inventory.tokens.create({ name: 'bench', scopes: ['admin'] }, Date.now())
    const headers = { authorization: `Bearer ${secret}` }

    const get = async (path: string): Promise<number> => {
      const start = performance.now()
      const r = await request(`${base}${path}`, { headers, dispatcher: agent })
      const body = await r.body.text()
      if (r.statusCode !== 200) throw new Error(`${path}: ${r.statusCode} ${body.slice(0, 200)}`)
      return performance.now() - start
    }
    const queries: [string, (i: number) => string][] = [
      ['page of 100, no filter', (i) => `/api/v1/machines?limit=100${i % 2 ? `&cursor=${Buffer.from(ids[(i * 397) % count]!).toString('base64url')}` : ''}`],
      ['state=ready, page of 100', () => '/api/v1/machines?state=ready&limit=100'],
      ['label rack=<one rack> (40 machines)', (i) => `/api/v1/machines?label=rack%3Dr${1 + ((i * 37) % Math.ceil(count / 40))}`],
      ['label zone=z1 (25%), page of 100', () => '/api/v1/machines?label=zone%3Dz1&limit=100'],
      ['free text: a whole serial', (i) => `/api/v1/machines?q=SN${String((i * 7919) % count).padStart(8, '0')}`],
      ['free text: a MAC, other spelling', (i) => `/api/v1/machines?q=${macFor((i * 7919) % count, 0).toUpperCase().replaceAll(':', '-')}`],
      ['free text: a name fragment', (i) => `/api/v1/machines?q=r${1 + (i % 50)}-u7-`],
      ['selector cpu.cores>=64 and memory.gib>=512', () => '/api/v1/machines?selector=cpu.cores%20%3E%3D%2064%20and%20memory.gib%20%3E%3D%20512&limit=100'],
      ['class big (same selectors), ready', () => '/api/v1/machines?class=big&state=ready&limit=100'],
      ['one machine with detail', (i) => `/api/v1/machines/${ids[(i * 7919) % count]}`],
    ]
    // Warm up the connection pool, the statement cache and the page cache.
    for (let i = 0; i < 20; i++) await get(queries[i % queries.length]![1](i))
    if ('pool' in inventory) await countStatements()
    /** PostgreSQL: the statements one request of each kind sends (each a round trip unless sent side by side). */
    async function countStatements() {
      const original = pg.Client.prototype.query
      let n = 0
      pg.Client.prototype.query = function (this: pg.Client, ...a: unknown[]) {
        n++
        return (original as (...x: unknown[]) => unknown).apply(this, a)
      } as typeof original
      try {
        const counts: string[] = []
        for (const [name, path] of queries) {
          n = 0
          await get(path(1))
          counts.push(`${name}: ${n}`)
        }
        console.log(`\nstatements per request (one of each kind): ${counts.join('; ')}`)
      } finally {
        pg.Client.prototype.query = original
      }
    }
    if (part !== 'allocations') await measureList()
    async function measureList() {
      const rounds = flag(args, 'rounds', 3)
      console.log(`\nlist/filter latency over HTTP (127.0.0.1, keep-alive, one request at a time), ${count} machines, ${requests} requests each, ${rounds} rounds (the load moves between them: medians of the rounds, and p99 of all rounds pooled in []):`)
      const runs = new Map<string, { p50: number[]; p99: number[]; times: number[] }>(queries.map(([name]) => [name, { p50: [], p99: [], times: [] }]))
      for (let round = 1; round <= rounds; round++) {
        console.log(`  round ${round}: load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`)
        for (const [name, path] of queries) {
          const times: number[] = []
          for (let i = 0; i < requests; i++) times.push(await get(path(i)))
          times.sort((a, b) => a - b)
          const r = runs.get(name)!
          r.p50.push(quantile(times, 0.5))
          r.p99.push(quantile(times, 0.99))
          r.times.push(...times)
        }
      }
      const all: number[] = []
      for (const [name, r] of runs) {
        r.times.sort((a, b) => a - b)
        all.push(...r.times)
        const p99 = median(r.p99)
        console.log(`  ${name.padEnd(44)} p50 ${median(r.p50).toFixed(2).padStart(7)} ms   p99 ${p99.toFixed(2).padStart(7)} ms [${quantile(r.times, 0.99).toFixed(2)}]${p99 < GOAL_P99_MS ? '' : ' (over goal)'}`)
      }
      all.sort((a, b) => a - b)
      const p99 = quantile(all, 0.99)
      console.log(`  ${'all list/filter requests, pooled'.padEnd(44)} p50 ${quantile(all, 0.5).toFixed(2).padStart(7)} ms   p99 ${p99.toFixed(2).padStart(7)} ms`)
      console.log(`  goal p99 < ${GOAL_P99_MS} ms: ${p99 < GOAL_P99_MS ? 'met' : 'NOT met'} (rackboot ${p99.toFixed(2)} ms / goal ${GOAL_P99_MS} ms = ${(p99 / GOAL_P99_MS).toFixed(2)}); load average after: ${loadavg().map((l) => l.toFixed(1)).join(' ')}`)
    }
    if (part === 'list') return

    console.log(`\nallocation throughput (each request one ${txLabel}), ${count} machines:`)
    const allocate = async (body: object, at = base, dispatcher = agent): Promise<number> => {
      const r = await request(`${at}/api/v1/allocations`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body), dispatcher })
      const text = await r.body.text()
      if (r.statusCode !== 201) throw new Error(`allocation: ${r.statusCode} ${text.slice(0, 200)}`)
      return (JSON.parse(text) as { machines: unknown[] }).machines.length
    }
    const runAllocations = async (label: string, n: number, concurrency: number, body: object, bases: [string, Agent][] = [[base, agent]]) => {
      let next = 0
      let machines = 0
      const lat: number[] = []
      t = performance.now()
      await Promise.all(Array.from({ length: concurrency }, async (_, caller) => {
        while (next < n) {
          next++
          const s = performance.now()
          const [at, dispatcher] = bases[caller % bases.length]!
          const got = await allocate(body, at, dispatcher)
          machines += got
          lat.push(performance.now() - s)
        }
      }))
      const secs = (performance.now() - t) / 1000
      lat.sort((a, b) => a - b)
      console.log(`  ${label.padEnd(44)} ${(n / secs).toFixed(0).padStart(6)} allocations/s  ${(machines / secs).toFixed(0).padStart(6)} machines/s  p50 ${quantile(lat, 0.5).toFixed(1)} ms  p99 ${quantile(lat, 0.99).toFixed(1)} ms`)
    }
    await runAllocations('count=1, selector cpu.cores>=8, 1 caller', allocations, 1, { selector: 'cpu.cores >= 8', profile: 'w', count: 1 })
    await runAllocations('count=1, selector cpu.cores>=8, 16 callers', allocations, 16, { selector: 'cpu.cores >= 8', profile: 'w', count: 1 })
    await runAllocations('count=10, class big (8% of machines), 16 callers', Math.max(1, Math.floor(allocations / 4)), 16, { class: 'big', count: 10 })
    if (second) {
      // Another instance on the same database: callers alternate between the two; no machine may be taken twice.
      const other = await instance(await second())
      const otherAgent = new Agent({ connections: 32, keepAliveTimeout: 2_000 })
      try {
        await runAllocations('count=1, 16 callers, 1 instance', allocations, 16, { selector: 'cpu.cores >= 8', profile: 'w', count: 1 })
        await runAllocations('count=1, 16 callers over 2 instances', allocations, 16, { selector: 'cpu.cores >= 8', profile: 'w', count: 1 }, [[base, agent], [other.base, otherAgent]])
      } finally {
        await otherAgent.close()
        await other.close()
      }
      const taken = await inventory.allocations.list({ limit: 100_000 })
      const machineIds = taken.items.flatMap((a) => a.machines.map((m) => m.id))
      console.log(`  machines allocated ${machineIds.length}, distinct ${new Set(machineIds).size} (must be equal)`)
      if ('retryStats' in inventory) console.log(`  transactions retried on this instance: ${JSON.stringify(inventory.retryStats())}`)
    }
    await first.flush()
    console.log(`\n(load average on this machine during the run: ${loadavg().map((l) => l.toFixed(1)).join(' ')}; figures are noisy on shared machines)`)
  } finally {
    await agent.close()
    await first.close()
  }
}
