// iPXE's gap between its DHCP lease and its script request: a slow one (IPv6 autoconfiguration on a segment
// without router advertisements) is a warning step on the machine's timeline, with the fix for that kind of segment.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createEventBus } from '../../src/events/bus.js'
import type { RequestFacts } from '../../src/dhcp/facts.js'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { attachTimeline, createBootService, createDhcpBootPort, createIpxeWait, createLifecycle, IPXE_SLOW_MS } from '../../src/lifecycle/index.js'
import { silentLogger } from '../../src/log.js'
import { leaseAddress } from '../support/leases.js'

const MAC = '52:54:00:1a:b0:01'

function ipxeAck(giaddr: string | null): RequestFacts {
  return {
    message: 'request', xid: 1, mac: MAC, clientId: null, hostname: null, arch: null, vendorClass: null, clientType: null,
    undi: null, userClass: ['iPXE'], isIpxe: true, ipxe: null, uuid: null, giaddr, ciaddr: null, requestedIp: null,
  } as unknown as RequestFacts
}

async function setup() {
  const inventory = await openSqliteInventory({ file: ':memory:' })
  await leaseAddress(inventory, '127.0.0.1', MAC)
  const log = silentLogger()
  const bus = createEventBus()
  const timeline = attachTimeline({ inventory, bus, log })
  let now = Date.now()
  const clock = { now: () => now }
  const lifecycle = createLifecycle({ inventory, bus, log, clock })
  const ipxeWait = createIpxeWait()
  const boot = createBootService({ inventory, lifecycle, log, clock, ipxeWait, policy: { holdMode: 'retry', autoAccept: false } })
  const port = createDhcpBootPort({ lifecycle, log, ipxeWait, clock })
  return {
    advance: (ms: number) => { now += ms },
    ack: (giaddr: string | null) => port.inspect(ipxeAck(giaddr), { reply: 'ack', mode: 'full', ip: '127.0.0.1' } as never),
    script: () => boot.plan({ mac: MAC, uuid: null, serial: null, manufacturer: null, product: null, buildArch: 'x86_64', platform: 'pcbios' }, '127.0.0.1'),
    steps: async () => {
      await timeline.flush()
      const m = await inventory.machines.byMac(MAC)
      return (await inventory.events.list({ machineId: m!.id })).filter((e) => e.type === 'boot.script')
    },
    close: async () => {
      await timeline.flush()
      timeline.detach()
      await inventory.close()
    },
  }
}

test('a script 16 s after iPXE\'s relayed lease is a warning naming the relay\'s router advertisements', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  await s.ack('198.51.100.1')
  s.advance(16_000)
  await s.script()
  const steps = await s.steps()
  const slow = steps.filter((e) => (e.data as { slow?: boolean }).slow)
  assert.equal(slow.length, 1, JSON.stringify(steps.map((e) => e.message)))
  assert.match(slow[0]!.message, /16\.0 s after its DHCP lease \(relayed segment\)/)
  assert.match(slow[0]!.message, /router send router advertisements/)
  assert.equal((slow[0]!.data as { ipxeWaitMs: number }).ipxeWaitMs, 16_000)
})

test('on rackboot\'s own segment the fix is dhcp.routerAdverts; a quick script and a hold loop\'s repeats say nothing', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  await s.ack(null)
  s.advance(IPXE_SLOW_MS + 1000)
  await s.script()
  // The hold loop asks again 30 s later: not iPXE's wait (one script per lease).
  s.advance(30_000)
  await s.script()
  await s.ack(null)
  s.advance(900)
  await s.script()
  const slow = (await s.steps()).filter((e) => (e.data as { slow?: boolean }).slow)
  assert.equal(slow.length, 1)
  assert.match(slow[0]!.message, /dhcp\.routerAdverts: on/)
})

test('the leases remembered are bounded: the oldest is forgotten first', () => {
  const w = createIpxeWait({ maxMachines: 2 })
  w.leased('a', 0, false)
  w.leased('b', 0, false)
  w.leased('c', 0, false)
  assert.equal(w.scriptAsked('a', 20_000), null)
  assert.ok(w.scriptAsked('b', 20_000))
  assert.ok(w.scriptAsked('c', 20_000))
})
