// Issue 16, failover: two rackboot DHCP servers (full mode, fixtures/run-server.ts children) on one segment and one
// PostgreSQL database, the store deciding who holds an address (shared leases, LeaseRepository.claimMany).
// - kill -9 one of them in the middle of a DORA storm: the other keeps answering new clients, answers the REBINDING
//   requests of every client the dead one granted a lease (same address), and no address is ever ACKed to two clients;
//   every ACK any client received is a bound lease of that client in the database;
// - then the database goes away under load: the survivor hands out nothing it cannot record (no OFFER, no ACK, no
//   NAK while it is down), does not crash, and answers again within seconds once PostgreSQL is back.
// And `rackboot serve` pointed at a PostgreSQL that is not up waits for it, says so, and starts once it is.
// PostgreSQL only: skipped (loudly, with the reason) where no private cluster can be started (test/support/postgres.ts).
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { after, test, type TestContext } from 'node:test'
import pg from 'pg'
import { MessageType } from '../../src/dhcp/options.js'
import { openPostgresInventory } from '../../src/inventory/postgres/open.js'
import { BIN, cliEnv, tempCwd } from '../support/cli.js'
import { startPostgres, type PgCluster } from '../support/postgres.js'
import { eachLimit, startChildServer, type ChildServer } from './fixtures/dora-load.js'
import { multiDora, openMultiRelay, type MultiRelay, type ServerReply } from './fixtures/multi-relay.js'

const SUBNET = '198.18.64.0/18'
const LINK = '198.18.64.0'
/** Clients doing DORA at once, all the time (two servers, PostgreSQL and this process share two busy cores). */
const CONCURRENCY = 32
/** Load time after which A is killed at its next ACK even if it has not reached its random count yet. */
const KILL_BY_MS = 8_000
/** How long the load goes on against the survivor alone before the dead server's clients rebind. */
const AFTER_KILL_MS = 3_000
/** How long PostgreSQL stays down. */
const OUTAGE_MS = 4_000
/**
 * Replies read in this long after PostgreSQL has stopped may answer requests whose claim committed before it went
 * down (the server's event loop is slow on a busy machine); they are reported, and checked against the database with
 * every other ACK. From then on until PostgreSQL is started again, no reply at all may come.
 */
const DRAIN_MS = 1_000

const TYPE_NAMES: Record<number, string> = { [MessageType.Offer]: 'OFFER', [MessageType.Ack]: 'ACK', [MessageType.Nak]: 'NAK' }

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

let cluster: Promise<PgCluster | { skip: string }> | null = null
const pgCluster = () => (cluster ??= startPostgres())
after(async () => {
  if (!cluster) return
  const c = await cluster
  if (!('skip' in c)) await c.stop()
})

/** Whether the cluster is stopped (pause()): a test that fails during the outage leaves it running for the next. */
let down = false
const pause = async (c: PgCluster) => {
  down = true
  await c.pause()
}
const resume = async (c: PgCluster) => {
  await c.resume()
  down = false
}

async function clusterOrSkip(t: TestContext): Promise<PgCluster | null> {
  const c = await pgCluster()
  if (!('skip' in c)) {
    t.after(async () => {
      if (down) await resume(c).catch(() => undefined)
    })
    return c
  }
  const why = `PostgreSQL failover not tested: ${c.skip}`
  t.skip(why)
  console.error(`SKIP: ${why}`)
  return null
}

function clientMac(group: number, n: number): string {
  const hex = (v: number) => v.toString(16).padStart(2, '0')
  return ['02', 'dd', hex(group), hex((n >> 16) & 255), hex((n >> 8) & 255), hex(n & 255)].join(':')
}

/** Asks a runner for its metrics now (it prints them on a `metrics` line on stdin). */
function metricsNow(server: ChildServer, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = ''
    const timer = setTimeout(() => {
      server.proc.stdout?.off('data', onData)
      reject(new Error('no metrics from the DHCP runner'))
    }, timeoutMs)
    const onData = (d: Buffer) => {
      buf += d.toString()
      const m = /^METRICS (.*)$/m.exec(buf)
      if (!m) return
      clearTimeout(timer)
      server.proc.stdout?.off('data', onData)
      resolve(JSON.parse(m[1]!) as string)
    }
    server.proc.stdout?.on('data', onData)
    server.proc.stdin?.once('error', (err) => reject(err))
    server.proc.stdin?.write('metrics\n')
  })
}

const metric = (text: string, name: string, labels = ''): number => {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `))
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0
}

const alive = (s: ChildServer) => s.proc.exitCode === null && s.proc.signalCode === null

test('failover: kill -9 one of two DHCP servers on one PostgreSQL mid-storm; the other rebinds its clients, nothing granted twice; a database outage silences DHCP until it is back', { timeout: 110_000 }, async (t) => {
  const c = await clusterOrSkip(t)
  if (!c) return
  const started = Date.now()
  const url = await c.createDatabase()
  // Migrated once here, before the servers start (two servers migrating one fresh database at once is not the test).
  const setup = await openPostgresInventory({ url, connectTimeoutMs: 30_000 })
  await setup.close()

  // Both pools start at the same address (poolStartAt): the two servers offer the same addresses to different clients
  // all the time, and only the database's claims keep them from granting one twice. (Left to chance, their random
  // starts are far apart in a range this size and they would hardly ever contend.)
  const config = (serverAddress: string) => ({
    store: { kind: 'postgres', url, poolSize: 8 },
    noPort: true,
    poolStartAt: 0,
    settings: {
      serverAddress,
      port: 0,
      subnets: [{ subnet: SUBNET, rangeStart: '198.18.64.10', rangeEnd: '198.18.127.250', routers: [], dnsServers: [], leaseSeconds: 3600 }],
    },
  })
  const [a, b] = await Promise.all([startChildServer(t, config('127.0.0.1')), startChildServer(t, config('127.0.0.3'))])
  const relay: MultiRelay = await openMultiRelay([
    { name: 'A', port: a.info.port, address: '127.0.0.1' },
    { name: 'B', port: b.info.port, address: '127.0.0.3' },
  ], LINK)
  // Teardown: the load stops before the relay's sockets close under it.
  const load = { stop: false, workers: [] as Promise<void>[] }
  t.after(async () => {
    load.stop = true
    relay.abandon()
    await Promise.allSettled(load.workers)
    await relay.close()
  })

  // Every ACK any client received, from either server: chaddr → address, and who was given each address.
  const acked = new Map<string, { ip: string; from: string }>()
  const holder = new Map<string, string>()
  const problems: string[] = []
  const count = { ackA: 0, ackB: 0, ackBAfterKill: 0, naks: 0, offers: 0 }
  let phase = 'storm'
  let killedAt = Number.POSITIVE_INFINITY
  /** Replies read while PostgreSQL was stopping or stopped: [from, to) windows, filled in as the outage goes. */
  const outage = { stoppingFrom: Number.POSITIVE_INFINITY, downAt: Number.POSITIVE_INFINITY, resumeAt: Number.POSITIVE_INFINITY }
  const duringStop: ServerReply[] = []
  const duringDrain: ServerReply[] = []
  const duringOutage: ServerReply[] = []
  const seen = { firstAfterResume: null as ServerReply | null }
  let onAck: (r: ServerReply) => void = () => {}
  const history = new Map<string, ServerReply[]>()

  relay.onReply = (r) => {
    if (r.at >= outage.stoppingFrom) {
      if (r.at < outage.downAt) duringStop.push(r)
      else if (r.at < outage.downAt + DRAIN_MS) duringDrain.push(r)
      else if (r.at < outage.resumeAt) duringOutage.push(r)
      else if (!seen.firstAfterResume && (r.type === MessageType.Offer || r.type === MessageType.Ack)) seen.firstAfterResume = r
    }
    if (r.type === MessageType.Offer) count.offers++
    const h = history.get(r.mac)
    if (h) h.push(r)
    else history.set(r.mac, [r])
    if (r.type === MessageType.Nak) {
      count.naks++
      problems.push(`${phase}: NAK from ${r.from} to ${r.mac} (ciaddr ${r.ciaddr})`)
    }
    if (r.type !== MessageType.Ack) return
    if (r.from === 'A') count.ackA++
    else {
      count.ackB++
      if (r.at >= killedAt) count.ackBAfterKill++
    }
    const other = holder.get(r.yiaddr)
    if (other !== undefined && other !== r.mac) problems.push(`${phase}: ${r.yiaddr} ACKed by ${r.from} to ${r.mac}, but ${other} was ACKed it before`)
    const had = acked.get(r.mac)
    if (had !== undefined && had.ip !== r.yiaddr) problems.push(`${phase}: ${r.mac} was ACKed ${had.ip} (by ${had.from}), now ${r.yiaddr} by ${r.from}`)
    if (!had) acked.set(r.mac, { ip: r.yiaddr, from: r.from })
    holder.set(r.yiaddr, r.mac)
    onAck(r)
  }
  const noProblems = (what: string) => assert.equal(problems.length, 0, `${what}:\n${problems.slice(0, 20).join('\n')}`)

  /**
   * The database's word: every ACK any client received is a bound lease of that client, and no client holds two bound
   * leases. A lost one is described with what the store holds for its address and every reply its client was sent.
   */
  const checkStore = async (when: string) => {
    const inv = await openPostgresInventory({ url, connectTimeoutMs: 30_000 })
    try {
      // Every ACK read before the query was committed before it was sent: the store must show all of them.
      const ackedSoFar = [...acked]
      const all = await inv.leases.list({ subnet: SUBNET })
      const stored = new Map(all.map((l) => [l.ip, l]))
      const now = Date.now()
      const ms = (at: number) => `${at - started} ms`
      const lost = ackedSoFar.filter(([mac, { ip }]) => stored.get(ip)?.state !== 'bound' || stored.get(ip)?.mac !== mac)
      const describe = (mac: string, ip: string) => {
        const l = stored.get(ip)
        const held = l ? `${l.state} for ${l.mac} (written at ${ms(l.updatedAt)}, expiring in ${Math.round((l.expiresAt - now) / 1000)} s)` : 'nothing'
        const replies = (history.get(mac) ?? []).map((r) => `${r.from} ${TYPE_NAMES[r.type ?? 0] ?? r.type} ${r.yiaddr} at ${ms(r.at)}`)
        return `${held}; replies to the client: ${replies.join(', ')}`
      }
      assert.deepEqual(
        lost.slice(0, 10).map(([mac, { ip, from }]) => `${mac} ${ip} (ACKed by ${from}): the store holds ${describe(mac, ip)}`),
        [],
        `${when}: ${lost.length} of ${ackedSoFar.length} ACKed leases are not bound to their client in the database (A was killed at ${ms(killedAt)})`,
      )
      const perMac = new Map<string, number>()
      for (const l of all) if (l.state === 'bound') perMac.set(l.mac, (perMac.get(l.mac) ?? 0) + 1)
      assert.deepEqual([...perMac].filter(([, n]) => n > 1), [], `${when}: no client holds two bound leases`)
    } finally {
      await inv.close()
    }
  }

  // The storm: CONCURRENCY clients at a time, each a new chaddr doing DORA through the relay (both servers see every
  // packet; the client takes the first OFFER), until the end of the test.
  let clients = 0
  load.workers = Array.from({ length: CONCURRENCY }, async () => {
    while (!load.stop) {
      const r = await multiDora(relay, clientMac(0, clients++), 3_000)
      // Silence (the database is down) costs the client its timeout, as a real one; nothing else to wait for.
      if (!r.offer && !load.stop) await sleep(50)
    }
  })
  const stopWorkers = async () => {
    load.stop = true
    await Promise.all(load.workers)
  }

  // kill -9 A from the socket handler at an ACK of its own, while both are answering: at its killAfter-th, or at the
  // first after KILL_BY_MS of load once it has ACKed a few (on a busy machine either server may win most races).
  const killAfter = 40 + Math.floor(Math.random() * 40)
  const loadFrom = Date.now()
  const kill = { done: null as Promise<void> | null }
  const killSent = new Promise<void>((resolve) => {
    onAck = (r) => {
      if (kill.done || r.from !== 'A') return
      if (count.ackA < killAfter && (count.ackA < 10 || Date.now() - loadFrom < KILL_BY_MS)) return
      killedAt = Date.now()
      kill.done = a.kill9()
      resolve()
    }
  })
  await Promise.race([killSent, sleep(40_000)])
  noProblems('before the kill')
  assert.ok(kill.done, `A ACKed 10 clients within 40 s (it ACKed ${count.ackA}; B ${count.ackB})`)
  await kill.done
  const atKill = { ackA: count.ackA, ackB: count.ackB, clients }
  t.diagnostic(`kill -9 of A after ${atKill.ackA} ACKs by A and ${atKill.ackB} by B (${atKill.clients} clients started) in ${Date.now() - started} ms`)

  // The load goes on against B alone.
  phase = 'after the kill'
  await sleep(AFTER_KILL_MS)
  noProblems('after the kill')
  assert.ok(alive(b), `B is still running: ${b.stderr().slice(-2000)}`)
  assert.ok(count.ackBAfterKill > 0, `B ACKed new clients after A died (${count.ackBAfterKill})`)

  // Every client A granted a lease sends a REBINDING request (broadcast through the relay, ciaddr its address, no
  // server id), retransmitting as a client does: B must ACK its own address, never NAK it.
  phase = 'rebinding'
  const ofA = [...acked].filter(([, v]) => v.from === 'A')
  let rebound = 0
  const rebind = async (mac: string, ip: string, attempts = 3): Promise<ServerReply | null> => {
    for (let i = 0; i < attempts; i++) {
      const r = await relay.exchange({ type: MessageType.Request, mac, ciaddr: ip }, 3_000)
      if (r) return r
    }
    return null
  }
  await eachLimit(ofA, 16, async ([mac, { ip }]) => {
    const r = await rebind(mac, ip)
    if (r?.type === MessageType.Ack && r.yiaddr === ip && r.from === 'B') rebound++
    else problems.push(`rebinding: ${mac} (ACKed ${ip} by A) got ${r ? `${TYPE_NAMES[r.type ?? 0] ?? r.type} for ${r.yiaddr} from ${r.from}` : 'no answer'}`)
  })
  noProblems('rebinding the leases A granted')
  assert.equal(rebound, ofA.length)
  t.diagnostic(`B answered ${rebound} of ${ofA.length} REBINDING requests of A's clients (same address); B ACKed ${count.ackBAfterKill} clients after the kill so far`)
  await checkStore('after the failover')

  // The database goes away under load. B must stay silent (nothing it cannot record), and keep running.
  phase = 'outage'
  const storageBefore = metric(await metricsNow(b), 'rackboot_dhcp_dropped_total', '{reason="storage-error"}')
  outage.stoppingFrom = Date.now()
  await pause(c)
  outage.downAt = Date.now()
  // Known clients retransmitting their rebinds meanwhile get no answer either: a NAK would be a guess.
  const known = [...acked].slice(0, 16)
  const outageRebinds = Promise.all(known.map(([mac, { ip }]) => relay.exchange({ type: MessageType.Request, mac, ciaddr: ip }, OUTAGE_MS - 500)))
  await sleep(OUTAGE_MS)
  await relay.barrier()
  // Sent after PostgreSQL was down: any answer at all is one B could not have recorded.
  const rebindsInOutage = (await outageRebinds).filter((r) => r !== null)
  assert.ok(alive(b), `B survived the outage: ${b.stderr().slice(-2000)}`)
  const outageMetrics = await metricsNow(b)
  const storageErrors = metric(outageMetrics, 'rackboot_dhcp_dropped_total', '{reason="storage-error"}') - storageBefore
  const failedLines = (b.stderr().match(/dhcp lease (read|write) failed/g) ?? []).length
  outage.resumeAt = Date.now()
  await resume(c)
  const upAt = Date.now()
  const byType = (rs: ServerReply[]) => {
    const n = (type: number) => rs.filter((r) => r.type === type).length
    return `${n(MessageType.Offer)} OFFERs, ${n(MessageType.Ack)} ACKs, ${n(MessageType.Nak)} NAKs`
  }
  t.diagnostic(`PostgreSQL stopping (${outage.downAt - outage.stoppingFrom} ms): ${byType(duringStop)}; first ${DRAIN_MS} ms down: ${byType(duringDrain)}; then ${outage.resumeAt - outage.downAt - DRAIN_MS} ms down: ${byType(duringOutage)}; B dropped ${storageErrors} requests as storage errors, logged ${failedLines} lease read/write failures`)
  assert.deepEqual(duringOutage.map((r) => `${r.from} ${r.type} ${r.mac} ${r.yiaddr}`), [], 'no reply at all while PostgreSQL is down')
  assert.equal(rebindsInOutage.length, 0, 'no answer to rebinding clients while PostgreSQL is down')
  assert.ok(storageErrors > 0, `B counted the requests it could not record (rackboot_dhcp_dropped_total{reason="storage-error"} went up by ${storageErrors})`)
  assert.ok(failedLines > 0, 'B logged that it cannot read or write leases')

  // PostgreSQL is back: B answers again within seconds (its pool reconnects), new clients get leases.
  phase = 'recovery'
  const recoveryDeadline = Date.now() + 20_000
  while (!seen.firstAfterResume && Date.now() < recoveryDeadline) await sleep(50)
  assert.ok(seen.firstAfterResume, `B answered within 20 s of PostgreSQL accepting connections again: ${b.stderr().slice(-2000)}`)
  const recovered = seen.firstAfterResume.at
  const acksBefore = count.ackB
  const ackDeadline = Date.now() + 15_000
  while (count.ackB === acksBefore && Date.now() < ackDeadline) await sleep(50)
  assert.ok(count.ackB > acksBefore, 'B ACKs new clients again after the outage')
  t.diagnostic(`PostgreSQL restart took ${upAt - outage.resumeAt} ms; B's first reply came ${recovered - upAt} ms after it accepted connections (${recovered - outage.resumeAt} ms after the restart began)`)
  await sleep(2_000)

  // After the outage, clients rebind at B once more and get their own address, every time: all of A's, every one
  // ACKed while PostgreSQL was stopping, and a sample of B's others (the full set is checked in the database below).
  phase = 'final rebinding'
  let finalRebound = 0
  const stoppingAcks = new Set(duringStop.filter((r) => r.type === MessageType.Ack).map((r) => r.mac))
  const rest = [...acked].filter(([mac, v]) => v.from !== 'A' && !stoppingAcks.has(mac))
  const stride = Math.max(1, Math.ceil(rest.length / 300))
  const everyone = [...ofA, ...[...acked].filter(([mac]) => stoppingAcks.has(mac)), ...rest.filter((_, i) => i % stride === 0)]
  await eachLimit(everyone, 16, async ([mac, { ip, from }]) => {
    const r = await rebind(mac, ip)
    if (r?.type === MessageType.Ack && r.yiaddr === ip) finalRebound++
    else problems.push(`final rebinding: ${mac} (ACKed ${ip} by ${from}) got ${r ? `${TYPE_NAMES[r.type ?? 0] ?? r.type} for ${r.yiaddr} from ${r.from}` : 'no answer'}`)
  })
  await stopWorkers()
  await relay.barrier()
  noProblems('after the outage')
  assert.equal(finalRebound, everyone.length)
  assert.ok(alive(b), 'B still running')
  const finalMetrics = await b.stop()
  assert.match(finalMetrics, /rackboot_dhcp_replies_sent_total/)

  await checkStore('at the end')
  t.diagnostic(`totals: ${count.ackA} ACKs by A, ${count.ackB} by B (${count.ackBAfterKill} after the kill), ${acked.size} clients leased, ${clients} started, ${count.naks} NAKs; ${finalRebound} of ${everyone.length} final rebinds answered; ${Date.now() - started} ms`)
})

test('serve on a PostgreSQL that is not up waits for it, says so, and starts once it is', { timeout: 90_000 }, async (t) => {
  const c = await clusterOrSkip(t)
  if (!c) return
  const url = await c.createDatabase()
  await pause(c)

  const cwd = tempCwd('rb-pg-serve-')
  const child = spawn(process.execPath, [
    BIN, 'serve',
    '--set', 'http.listen=127.0.0.1', '--set', 'http.port=0', '--set', 'tftp.enabled=false',
    '--set', 'talos.eventsSinkPort=0', '--set', 'talos.kernelLogPort=0', '--set', 'log.format=json',
  ], { cwd, env: cliEnv(cwd, { RACKBOOT_DATABASE_URL: url }), stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (out += d))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  const waitFor = async (re: RegExp, ms: number, what: string) => {
    const deadline = Date.now() + ms
    while (!re.test(out)) {
      if (child.exitCode !== null || child.signalCode !== null) assert.fail(`serve exited (${child.exitCode ?? child.signalCode}) before ${what}:\n${out}`)
      if (Date.now() > deadline) assert.fail(`serve: no ${what} within ${ms} ms:\n${out}`)
      await sleep(50)
    }
  }

  const t0 = Date.now()
  await waitFor(/waiting for PostgreSQL postgres:\/\/rackboot@/, 45_000, '"waiting for PostgreSQL" message')
  const saidAt = Date.now()
  // It waits: still not serving a moment later, and still running.
  await sleep(1_500)
  assert.doesNotMatch(out, /rackboot is serving/)
  assert.ok(child.exitCode === null && child.signalCode === null, `serve still waiting, not exited:\n${out}`)
  const resumeAt = Date.now()
  await resume(c)
  await waitFor(/rackboot is serving/, 45_000, '"rackboot is serving"')
  const servingAt = Date.now()
  assert.match(out, /PostgreSQL postgres:\/\/rackboot@\S* is up after \d+ s/)
  assert.match(out, /"database":"postgres postgres:\/\/rackboot@/)
  // It did migrate the database it waited for.
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const r = await client.query<{ n: string }>(`select count(*) as n from information_schema.tables where table_name = 'leases'`)
    assert.equal(Number(r.rows[0]!.n), 1, 'the leases table exists')
  } finally {
    await client.end()
  }
  child.kill('SIGTERM')
  assert.equal(await exited, 0, `serve stopped cleanly:\n${out.slice(-3000)}`)
  t.diagnostic(`serve said it was waiting ${saidAt - t0} ms after start; serving ${servingAt - resumeAt} ms after PostgreSQL was started again (${join(cwd, 'data')})`)
})
