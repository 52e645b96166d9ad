// The identity rules one by one, in process: what vouches for a claim, what a disagreeing claim gets, how new
// machines are bounded, and that a config token binds to exactly one address even when two race for it.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { createEventBus } from '../../src/events/bus.js'
import { openSqliteInventory, type Inventory } from '../../src/inventory/index.js'
import {
  attachTimeline, createBootService, createIdentityVerifier, createKernelNeighbourTable, createLifecycle, createNewMachineLimit,
  parseIpNeighJson, parseProcArp, type BootRefusal, type BootPlan, type NeighbourTable,
} from '../../src/lifecycle/index.js'
import { silentLogger } from '../../src/log.js'
import { leaseAddress } from '../support/leases.js'
import { createNetLab, skipUnlessNetns } from '../support/netns.js'

async function setup(options: { trustClaims?: boolean; neighbours?: NeighbourTable; perAddress?: number; perMinute?: number; now?: () => number } = {}) {
  const inventory = await openSqliteInventory({ file: ':memory:' })
  const log = silentLogger()
  const bus = createEventBus()
  const timeline = attachTimeline({ inventory, bus, log })
  const clock = { now: options.now ?? (() => Date.now()) }
  const lifecycle = createLifecycle({ inventory, bus, log, clock })
  const identity = createIdentityVerifier({ inventory, clock, trustClaims: options.trustClaims ?? false, ...(options.neighbours ? { neighbours: options.neighbours } : {}) })
  const boot = createBootService({
    inventory, lifecycle, log, clock, identity, policy: { holdMode: 'retry', autoAccept: false },
    newMachines: createNewMachineLimit({ perAddressPerMinute: options.perAddress ?? 5, perMinute: options.perMinute ?? 600 }),
  })
  return { inventory, boot, timeline, identity, async close() { await timeline.flush(); await inventory.close() } }
}

const refused = (p: BootPlan | BootRefusal): p is BootRefusal => 'refused' in p
const macOf = (i: number) => `02:00:00:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`

async function count(inventory: Inventory): Promise<number> {
  return (await inventory.machines.list({ limit: 100_000 })).items.length
}

test('a claim agrees with the inventory or is refused: MAC, serial and uuid of one machine, never of two', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  await s.inventory.machines.create({ name: 'a', serial: 'SER-A', uuid: '8c3f5a7e-1b2d-4c6e-9f01-00000000000a', nics: [{ mac: '02:00:00:00:00:0a', name: null, boot: true }], state: 'ready' }, 1)
  await s.inventory.machines.create({ name: 'b', serial: 'SER-B', nics: [{ mac: '02:00:00:00:00:0b', name: null, boot: true }], state: 'ready' }, 1)
  await leaseAddress(s.inventory, '198.18.0.10', '02:00:00:00:00:0a')
  const ok = await s.boot.plan({ mac: '02-00-00-00-00-0a', serial: 'SER-A' }, '198.18.0.10')
  assert.ok(!refused(ok) && ok.machine.name === 'a')
  const otherSerial = await s.boot.plan({ mac: '02-00-00-00-00-0a', serial: 'SER-B' }, '198.18.0.10')
  assert.ok(refused(otherSerial))
  assert.match(otherSerial.reason, /serial SER-B is not SER-A/)
  const otherUuid = await s.boot.plan({ mac: '02-00-00-00-00-0a', uuid: '8c3f5a7e-1b2d-4c6e-9f01-0000000000ff' }, '198.18.0.10')
  assert.ok(refused(otherUuid))
  // IPv4-mapped IPv6 is the same address.
  assert.ok(!refused(await s.boot.plan({ mac: '02-00-00-00-00-0a' }, '::ffff:198.18.0.10')))
  // An offered (not yet bound) or expired lease vouches for nothing.
  await s.inventory.leases.put({ ip: '198.18.0.11', mac: '02:00:00:00:00:0b', clientId: null, subnet: '198.18.0.0/24', state: 'offered', hostname: null, expiresAt: Date.now() + 60_000, updatedAt: Date.now() })
  assert.ok(refused(await s.boot.plan({ mac: '02-00-00-00-00-0b' }, '198.18.0.11')))
  await leaseAddress(s.inventory, '198.18.0.12', '02:00:00:00:00:0b', { ttlMs: -1 })
  assert.ok(refused(await s.boot.plan({ mac: '02-00-00-00-00-0b' }, '198.18.0.12')))
})

test('a machine registered by serial alone is bound to the MAC of its first vouched boot; a second MAC is refused', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  const m = await s.inventory.machines.create({ name: 'manifest', serial: 'PO-4711', state: 'new' }, 1)
  await leaseAddress(s.inventory, '198.18.0.20', '02:00:00:00:00:20')
  await leaseAddress(s.inventory, '198.18.0.21', '02:00:00:00:00:21')
  const first = await s.boot.plan({ mac: '02-00-00-00-00-20', serial: 'PO-4711' }, '198.18.0.20')
  assert.ok(!refused(first) && first.machine.id === m.id)
  assert.deepEqual((await s.inventory.machines.get(m.id))!.nics.map((n) => n.mac), ['02:00:00:00:00:20'])
  const second = await s.boot.plan({ mac: '02-00-00-00-00-21', serial: 'PO-4711' }, '198.18.0.21')
  assert.ok(refused(second))
  assert.match(second.reason, /serial PO-4711 belongs to manifest, whose NICs are 02:00:00:00:00:20/)
  await s.timeline.flush()
  const msgs = (await s.inventory.events.list({ machineId: m.id })).map((e) => e.message)
  assert.ok(msgs.some((x) => /02:00:00:00:00:20 bound to manifest by its first boot/.test(x)), msgs.join('\n'))
  assert.ok(msgs.some((x) => /identity claim from 198\.18\.0\.21 .* refused/.test(x)), msgs.join('\n'))
})

test('a junk flood from /boot.ipxe creates no machines where nothing vouches, and a bounded number where claims are trusted', async (t) => {
  const strict = await setup()
  t.after(() => strict.close())
  for (let i = 0; i < 3000; i++) await strict.boot.plan({ mac: macOf(i) }, `198.18.${(i >> 8) & 255}.${i & 255}`)
  assert.equal(await count(strict.inventory), 0)

  let now = 1_000_000
  const trusting = await setup({ trustClaims: true, perAddress: 5, perMinute: 50, now: () => now })
  t.after(() => trusting.close())
  // The issue's reproduction: 3,000 calls from one address.
  let turnedAway = 0
  for (let i = 0; i < 3000; i++) {
    const p = await trusting.boot.plan({ mac: macOf(i) }, '198.18.0.66')
    if (refused(p)) turnedAway++
  }
  assert.equal(await count(trusting.inventory), 5)
  assert.equal(turnedAway, 2995)
  // From many addresses: the overall bound holds (50 a minute, the 5 above included), and refills with time.
  for (let i = 0; i < 3000; i++) await trusting.boot.plan({ mac: macOf(10_000 + i) }, `198.18.${1 + ((i >> 8) & 127)}.${i & 255}`)
  assert.equal(await count(trusting.inventory), 50)
  now += 60_000
  for (let i = 0; i < 100; i++) await trusting.boot.plan({ mac: macOf(20_000 + i) }, `198.19.0.${i}`)
  assert.equal(await count(trusting.inventory), 100)
})

test('a config token binds to one address: of two fetches racing from two addresses, exactly one wins', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  const m = await s.inventory.machines.create({ name: 'race', state: 'provisioning' }, 1)
  for (let round = 0; round < 20; round++) {
    const secret = await s.inventory.bootTokens.issue({ machineId: m.id, purpose: 'config', clientIp: '198.18.0.30', ttlMs: 60_000, machineState: 'provisioning' }, Date.now())
    const results = await Promise.all([
      s.inventory.bootTokens.consume(secret, 'config', '198.18.0.30', 5, Date.now()),
      s.inventory.bootTokens.consume(secret, 'config', '198.18.0.31', 5, Date.now()),
    ])
    assert.equal(results.filter((r) => r.ok).length, 1, `round ${round}`)
    assert.equal(results.find((r) => !r.ok)!.ok === false && (results.find((r) => !r.ok) as { reason: string }).reason, 'other-address')
  }
  // A bounded number of fetches, then used up; a newer boot's token voids the old one.
  const secret = await s.inventory.bootTokens.issue({ machineId: m.id, purpose: 'config', clientIp: '198.18.0.30', ttlMs: 60_000 }, Date.now())
  for (let i = 0; i < 3; i++) assert.ok((await s.inventory.bootTokens.consume(secret, 'config', '198.18.0.30', 3, Date.now())).ok)
  const fourth = await s.inventory.bootTokens.consume(secret, 'config', '198.18.0.30', 3, Date.now())
  assert.ok(!fourth.ok && fourth.reason === 'used-up')
  const newer = await s.inventory.bootTokens.issue({ machineId: m.id, purpose: 'config', clientIp: '198.18.0.30', ttlMs: 60_000 }, Date.now())
  const old = await s.inventory.bootTokens.check(secret, 'config', Date.now())
  assert.ok(!old.ok && old.reason === 'void')
  assert.ok((await s.inventory.bootTokens.check(newer, 'config', Date.now())).ok)
})

test('neighbour table parsers: complete entries only', () => {
  const arp = parseProcArp(`IP address       HW type     Flags       HW address            Mask     Device
198.18.0.2       0x1         0x2         02:00:00:00:0a:01     *        eth0
198.18.0.3       0x1         0x0         00:00:00:00:00:00     *        eth0
198.18.0.4       0x1         0x6         02:00:00:00:0a:04     *        eth0
`)
  assert.deepEqual([...arp], [['198.18.0.2', '02:00:00:00:0a:01'], ['198.18.0.4', '02:00:00:00:0a:04']])
  const v6 = parseIpNeighJson(JSON.stringify([
    { dst: 'fd00::2', dev: 'eth0', lladdr: '02:00:00:00:0a:01', state: ['REACHABLE'] },
    { dst: 'fd00::3', dev: 'eth0', state: ['FAILED'] },
    { dst: 'fd00::4', dev: 'eth0', lladdr: '02:00:00:00:0a:04', state: ['INCOMPLETE'] },
  ]))
  assert.deepEqual([...v6], [['fd00::2', '02:00:00:00:0a:01']])
  assert.equal(parseIpNeighJson('not json').size, 0)
})

test('neighbour table: a lookup that misses reads the table again unless a read begun after it is cached', async () => {
  const table = new Map<string, string>([['198.18.0.2', '02:00:00:00:0a:02']])
  let reads = 0
  const n = createKernelNeighbourTable({ now: () => 1000, readTable: async () => { reads++; return new Map(table) } })
  assert.equal(await n.macOf('198.18.0.2'), '02:00:00:00:0a:02')
  assert.equal(reads, 1)
  // A new client: its connection made its entry after the cached read, within the same millisecond.
  table.set('198.18.0.3', '02:00:00:00:0a:03')
  assert.equal(await n.macOf('198.18.0.3'), '02:00:00:00:0a:03')
  assert.equal(reads, 2)
  // A miss in a read begun for this very lookup is final; concurrent misses share one read.
  assert.deepEqual(await Promise.all([n.macOf('198.18.0.9'), n.macOf('198.18.0.8')]), [null, null])
  assert.equal(reads, 3)
})

test('without leases (ProxyDHCP), the kernel neighbour table vouches for directly attached clients (netns)', async (t) => {
  if (skipUnlessNetns(t, ['curl'])) return
  const lab = await createNetLab(t)
  const victimNs = await lab.ns('victim')
  const attackerNs = await lab.ns('attacker')
  const vIf = lab.ifname('rbv')
  const aIf = lab.ifname('rba')
  await lab.veth({ name: vIf, cidr: '198.18.77.1/24' }, { ns: victimNs, name: 'eth0', cidr: '198.18.77.2/24', mac: '02:00:00:00:77:02' })
  await lab.veth({ name: aIf, cidr: '198.18.78.1/24' }, { ns: attackerNs, name: 'eth0', cidr: '198.18.78.2/24', mac: '02:00:00:00:78:02' })
  const s = await setup({ neighbours: createKernelNeighbourTable() })
  t.after(() => s.close())
  const m = await s.inventory.machines.create({ name: 'victim', nics: [{ mac: '02:00:00:00:77:02', name: null, boot: true }], state: 'ready' }, 1)
  // A tiny HTTP front for the boot service: the answer is the plan, as JSON.
  const server = createServer((req, res) => {
    const q = new URL(req.url ?? '/', 'http://x').searchParams
    s.boot.plan({ mac: q.get('mac') }, req.socket.remoteAddress ?? null).then(
      (p) => res.end(JSON.stringify(refused(p) ? { refused: p.reason } : { machine: p.machine.name, decision: p.decision.kind })),
      (err) => { res.statusCode = 500; res.end(String(err)) },
    )
  })
  await new Promise<void>((r) => server.listen(0, '0.0.0.0', r))
  t.after(() => new Promise<void>((r) => server.close(() => r())))
  const port = (server.address() as { port: number }).port
  const ask = async (ns: typeof victimNs, at: string, mac: string) => JSON.parse((await ns.exec(['curl', '-sS', '--max-time', '5', `http://${at}:${port}/?mac=${mac}`])).stdout)
  assert.deepEqual(await ask(victimNs, '198.18.77.1', '02-00-00-00-77-02'), { machine: 'victim', decision: 'hold' })
  const spoof = await ask(attackerNs, '198.18.78.1', '02-00-00-00-77-02')
  assert.match(spoof.refused, /identity claim for 02:00:00:00:77:02 from 198\.18\.78\.2 refused: 198\.18\.78\.2 is 02:00:00:00:78:02 in the neighbour table/)
  // The attacker's own MAC is its own machine (a new one), not the victim.
  const own = await ask(attackerNs, '198.18.78.1', '02-00-00-00-78-02')
  assert.equal(own.decision, 'discovery')
  assert.notEqual(own.machine, 'victim')
  assert.equal((await s.inventory.machines.get(m.id))!.nics.length, 1)
})

test("full DHCP: the neighbour table vouches for IPv6 addresses only (SLAAC has no binding); IPv4 stays with rackboot's leases", async (t) => {
  const inventory = await openSqliteInventory({ file: ':memory:' })
  t.after(() => inventory.close())
  const table: Record<string, string> = { '198.18.77.2': '02:00:00:00:77:02', '2001:db8:7::ff:fe00:7702': '02:00:00:00:77:02' }
  const neighbours: NeighbourTable = { macOf: async (ip) => table[ip] ?? null }
  const clock = { now: () => Date.now() }
  const full = createIdentityVerifier({ inventory, clock, trustClaims: false, neighbours, neighboursFor: 'ipv6' })
  assert.equal(await full.attest('198.18.77.2'), null, 'an IPv4 address without a lease vouches for nobody')
  assert.deepEqual(await full.attest('2001:db8:7::ff:fe00:7702'), { mac: '02:00:00:00:77:02', via: 'neighbour' })
  const proxy = createIdentityVerifier({ inventory, clock, trustClaims: false, neighbours })
  assert.deepEqual(await proxy.attest('198.18.77.2'), { mac: '02:00:00:00:77:02', via: 'neighbour' }, 'no DHCP of ours: every family')
})

test('neighbour table: a link-local peer with its zone (fe80::...%eth0, as the agent reports on an IPv6-only link) is found', async () => {
  const n = createKernelNeighbourTable({ now: () => 1000, readTable: async (family) => new Map(family === 6 ? [['fe80::5054:ff:fed6:1101', '52:54:00:d6:11:01']] : []) })
  assert.equal(await n.macOf('fe80::5054:ff:fed6:1101%eth0'), '52:54:00:d6:11:01')
  assert.equal(await n.macOf('fe80::5054:ff:fed6:1101'), '52:54:00:d6:11:01')
  assert.equal(await n.macOf('fe80::1%eth0'), null)
})
