// Leases survive a restart. First a crash: rackboot's DHCP server as a child process on the SQLite inventory, many
// relayed clients doing DORA against it, kill -9 in the middle of the load, several times over; every ACK a client
// received must still be a lease after each kill (in the store, and to the client coming back), and no address may
// go to a second client. Then a graceful restart with real clients (udhcpc in network namespaces).
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import { MessageType } from '../../src/dhcp/options.js'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { createNetLab, netnsSkipReason, type Netns } from '../support/netns.js'
import { dora, eachLimit, openRelay, stallWrites, startChildServer, type Relay, type Reply } from './fixtures/dora-load.js'
import { envDumpScript, readEnv, scratch, startServerIn } from './netns-server.js'

const SUBNET = '198.18.64.0/20'
const LINK = '198.18.64.0'
/** Clients doing DORA at once, all the time. */
const CONCURRENCY = 64
/** Clients whose REQUESTs go out together just before the kill. */
const BURST = 64
/** How long the disk stalls before a kill that comes during a stall. */
const STALL_MS = 500

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

function clientMac(run: number, n: number): string {
  const hex = (v: number) => v.toString(16).padStart(2, '0')
  return ['02', 'cc', hex(run), hex((n >> 16) & 255), hex((n >> 8) & 255), hex(n & 255)].join(':')
}

// How each run ends. Both with the load going on and BURST clients' REQUESTs sent back to back (the server answers
// them in one or two turns, with one commit):
// - 'ack': kill -9 from the socket handler the moment the first ACK of the burst is read, while the server is still
//   answering the rest. A real crash, but whether it lands between a reply and its commit is a matter of timing.
// - 'stall': the disk stalls first (this process holds the database's write lock, so the server's next commit
//   waits, as on a disk that hangs), the burst goes out, and kill -9 comes at the end of the stall, once every reply
//   sent meanwhile has been read. A server that replies only after the commit sent nothing during the stall and
//   loses nothing; one that replies first has sent ACKs whose commit is still waiting, every time.
const ENDINGS = ['stall', 'ack'] as const
/** The run after the last kill. */
const LAST = ENDINGS.length

test('kill -9 under DORA load: every ACK a client received survives, and no address goes to two clients (SQLite)', { timeout: 90_000 }, async (t) => {
  const dir = scratch(t)
  const db = join(dir, 'rackboot.db')
  const config = {
    store: { kind: 'sqlite', file: db },
    settings: {
      serverAddress: '127.0.0.1',
      port: 0,
      subnets: [{ subnet: SUBNET, rangeStart: '198.18.64.10', rangeEnd: '198.18.79.250', routers: [], dnsServers: [], leaseSeconds: 3600 }],
    },
  }
  // Every ACK any client received, from any run of the server: chaddr → yiaddr, and who was given each address.
  const acked = new Map<string, string>()
  const holder = new Map<string, string>()
  const problems: string[] = []
  const record = (r: Reply, run: number): boolean => {
    if (r.type === MessageType.Nak) problems.push(`run ${run}: NAK to ${r.mac}`)
    if (r.type !== MessageType.Ack) return false
    const other = holder.get(r.yiaddr)
    if (other !== undefined && other !== r.mac) problems.push(`run ${run}: ${r.yiaddr} ACKed to ${r.mac}, but ${other} was ACKed it before`)
    const had = acked.get(r.mac)
    if (had !== undefined && had !== r.yiaddr) problems.push(`run ${run}: ${r.mac} was ACKed ${had}, now ${r.yiaddr}`)
    acked.set(r.mac, r.yiaddr)
    holder.set(r.yiaddr, r.mac)
    return true
  }
  const noProblems = (what: string) => assert.equal(problems.length, 0, `${what}:\n${problems.slice(0, 20).join('\n')}`)

  // Every client ACKed before the kills comes back (DISCOVER, then REQUEST) and gets its own address again.
  const comeBack = async (relay: Relay, run: number) => {
    await eachLimit([...acked], CONCURRENCY, async ([mac, ip]) => {
      const { offer, ack } = await dora(relay, mac, 5_000)
      if (offer?.yiaddr !== ip) problems.push(`run ${run}: ${mac} (ACKed ${ip} before a kill) was offered ${offer?.yiaddr ?? 'nothing'}`)
      else if (ack?.type !== MessageType.Ack || ack.yiaddr !== ip) problems.push(`run ${run}: ${mac} (ACKed ${ip} before a kill) got no ACK for it again`)
    })
  }

  let clients = 0
  for (const [run, ending] of ENDINGS.entries()) {
    const server = await startChildServer(t, config)
    const relay = await openRelay(server.info.port, LINK)
    relay.onReply = (r) => void record(r, run)
    if (run > 0) {
      await comeBack(relay, run)
      noProblems(`after kill -9 number ${run}, clients came back to other addresses`)
    }

    const killAfter = 100 + Math.floor(Math.random() * 100)
    let acks = 0
    let killed: Promise<void> | null = null
    let onKilled = () => {}
    const killSent = new Promise<void>((resolve) => (onKilled = resolve))
    const kill = () => {
      if (killed) return
      killed = server.kill9()
      onKilled()
    }
    const burst = new Set<string>()
    let unstall = () => {}
    relay.onReply = (r) => {
      if (!record(r, run)) return
      acks++
      if (ending === 'ack' && burst.has(r.mac)) kill()
    }
    const started = Date.now()
    // The load: CONCURRENCY clients at a time, each a new chaddr doing DORA, until the server dies under them.
    const workers = Array.from({ length: CONCURRENCY }, async () => {
      while (!killed) await dora(relay, clientMac(run, clients++))
    })
    const ends = (async () => {
      while (acks < killAfter && !killed) await sleep(5)
      const offers = await Promise.all(Array.from({ length: BURST }, async () => {
        const mac = clientMac(run, clients++)
        burst.add(mac)
        return relay.exchange({ type: MessageType.Discover, mac })
      }))
      if (killed) return
      if (ending === 'stall') unstall = stallWrites(db).release
      const requests = offers.flatMap((o) => (o?.type === MessageType.Offer ? [relay.exchange({ type: MessageType.Request, mac: o.mac, requestedIp: o.yiaddr, serverId: o.serverId ?? '127.0.0.1' })] : []))
      if (ending === 'stall') {
        await sleep(STALL_MS)
        await relay.barrier()
        kill()
      }
      await Promise.all(requests)
    })()
    const slow = setTimeout(() => {
      problems.push(`run ${run}: the server was not killed after 30 s (${acks} ACKs)`)
      kill()
    }, 30_000)
    await killSent
    clearTimeout(slow)
    await killed
    unstall()
    // The process is gone: whatever it sent is in our socket's buffer. Read it all, then give up on the rest.
    await sleep(200)
    const unanswered = relay.pending()
    relay.abandon()
    await Promise.all([...workers, ends])
    await relay.close()
    noProblems(`run ${run} under load`)
    t.diagnostic(`run ${run} (${ending}): kill -9 after ${acks} ACKs (${[...burst].filter((m) => acked.has(m)).length} of the burst) in ${Date.now() - started} ms, ${unanswered} exchanges in flight`)
    assert.ok(unanswered > 0, 'the server was killed with exchanges in flight')

    // What is on disk, through the inventory's own interface: every ACKed lease, bound to its client.
    const inv = await openSqliteInventory({ file: db })
    const stored = new Map((await inv.leases.list({ subnet: SUBNET, state: 'bound' })).map((l) => [l.ip, l.mac]))
    await inv.close()
    const lost = [...acked].filter(([mac, ip]) => stored.get(ip) !== mac)
    assert.deepEqual(
      lost.slice(0, 10).map(([mac, ip]) => `${mac} ${ip}: stored ${stored.has(ip) ? `for ${stored.get(ip)}` : 'nothing'}`),
      [],
      `after kill -9 number ${run + 1} (${ending}), ${lost.length} of ${acked.size} ACKed leases are not in the store`,
    )
  }

  // After the last kill: everyone comes back to their address, and fresh clients get none of the ACKed ones.
  const server = await startChildServer(t, config)
  const relay = await openRelay(server.info.port, LINK)
  relay.onReply = (r) => void record(r, LAST)
  await comeBack(relay, LAST)
  const before = acked.size
  await eachLimit(Array.from({ length: 200 }, (_, i) => clientMac(LAST, i)), CONCURRENCY, async (mac) => {
    const { ack } = await dora(relay, mac, 5_000)
    if (ack?.type !== MessageType.Ack) problems.push(`fresh client ${mac} got no lease`)
  })
  await relay.close()
  noProblems('after the last kill -9')
  assert.equal(acked.size, before + 200)
  const metrics = await server.stop()
  assert.doesNotMatch(metrics, /rackboot_dhcp_lease_store_failures_total [1-9]/)
})

const skip = netnsSkipReason(['busybox'])

async function lease(cli: Netns, dir: string, mac: string, args: string[] = []): Promise<Record<string, string>> {
  await cli.ip(['link', 'set', 'dev', 'eth0', 'address', mac])
  const script = envDumpScript(dir)
  await cli.exec(['rm', '-f', join(dir, 'bound.env')])
  const r = await cli.exec(['busybox', 'udhcpc', '-i', 'eth0', '-f', '-q', '-n', '-t', '6', '-T', '2', '-s', script, ...args], { timeoutMs: 60_000, check: false })
  const env = readEnv(join(dir, 'bound.env'))
  assert.ok(env, `udhcpc (${mac}) got no lease (code ${r.code}): ${r.stderr}`)
  return env
}

test('graceful restart keeps leases (SQLite): a known client keeps its address, nobody else gets it (udhcpc)', { skip: skip ?? false, timeout: 180_000 }, async (t) => {
  const dir = scratch(t)
  const db = join(dir, 'rackboot.db')
  const lab = await createNetLab(t)
  const srv = await lab.ns('ksrv')
  const cli = await lab.ns('kcli')
  await lab.veth({ ns: srv, name: 'eth0', cidr: '198.18.12.1/24' }, { ns: cli, name: 'eth0' })
  const config = {
    store: { kind: 'sqlite', file: db },
    settings: { mode: 'full', serverAddress: '198.18.12.1', subnets: [{ subnet: '198.18.12.0/24', rangeStart: '198.18.12.100', rangeEnd: '198.18.12.120', routers: [], dnsServers: [], leaseSeconds: 3600 }] },
    reservations: [{ ip: '198.18.12.50', mac: '52:54:00:12:00:09', clientId: null, hostname: 'reserved-node', machineId: null }],
  }

  let server = await startServerIn(srv, config)
  const a = await lease(cli, dir, '52:54:00:12:00:01')
  const b = await lease(cli, dir, '52:54:00:12:00:02')
  const r = await lease(cli, dir, '52:54:00:12:00:09')
  assert.equal(r.ip, '198.18.12.50')
  assert.equal(r.hostname, 'reserved-node')
  await server.stop()

  // What is on disk, through the inventory's own interface.
  const inv = await openSqliteInventory({ file: db })
  const stored = await inv.leases.list({ subnet: '198.18.12.0/24', state: 'bound' })
  await inv.close()
  assert.deepEqual(stored.map((l) => [l.ip, l.mac]).sort(), [[a.ip, '52:54:00:12:00:01'], [b.ip, '52:54:00:12:00:02'], ['198.18.12.50', '52:54:00:12:00:09']].sort())

  server = await startServerIn(srv, config)
  // A new client asking for A's address gets another one.
  const c = await lease(cli, dir, '52:54:00:12:00:03', ['-r', a.ip!])
  assert.notEqual(c.ip, a.ip)
  assert.notEqual(c.ip, b.ip)
  // A and B come back (A asking for its address, B asking for nothing) and get their own addresses.
  assert.equal((await lease(cli, dir, '52:54:00:12:00:01', ['-r', a.ip!])).ip, a.ip)
  assert.equal((await lease(cli, dir, '52:54:00:12:00:02')).ip, b.ip)
  const metrics = await server.stop()
  assert.doesNotMatch(metrics, /rackboot_dhcp_lease_store_failures_total [1-9]/)
})
