// DHCPv6 exchanges of network-boot clients on the machine's timeline, as DHCPv4's are: the machine created as new
// with the arch its firmware names, one boot.dhcp step per exchange saying what was asked and answered, and iPXE's
// binding starting the clock that times its script (ipxe-wait.ts).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { clientArch } from '../../src/dhcp/client-arch.js'
import { createEventBus } from '../../src/events/bus.js'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { attachTimeline, createDhcp6BootPort, createIpxeWait, createLifecycle } from '../../src/lifecycle/index.js'
import { silentLogger } from '../../src/log.js'

const MAC = '52:54:00:d6:00:10'

test('a DHCPv6 HTTP boot exchange creates the machine and lands on its timeline; an iPXE binding is timed', async (t) => {
  const inventory = await openSqliteInventory({ file: ':memory:' })
  const log = silentLogger()
  const bus = createEventBus()
  const timeline = attachTimeline({ inventory, bus, log })
  t.after(async () => {
    await timeline.flush()
    timeline.detach()
    await inventory.close()
  })
  const lifecycle = createLifecycle({ inventory, bus, log })
  const ipxeWait = createIpxeWait()
  const port = createDhcp6BootPort({ lifecycle, log, ipxeWait, clock: { now: () => 1_000 } })
  port.seen({
    message: 'solicit', reply: 'advertise', mac: MAC, duid: '0004aa', addresses: ['2001:db8:7::123'], arch: clientArch(16),
    clientType: 'HTTPClient', ipxe: false, bootUrl: 'http://[2001:db8:7::1]:8080/assets/ipxe/ipxe.efi', relayLink: null,
  })
  port.seen({
    message: 'request', reply: 'reply', mac: MAC, duid: '0004bb', addresses: ['2001:db8:7::124'], arch: null,
    clientType: null, ipxe: true, bootUrl: 'http://[2001:db8:7::1]:8080/boot.ipxe', relayLink: '2001:db8:9::1',
  })
  let machine = null
  for (let i = 0; i < 100 && !machine; i++) {
    await new Promise((r) => setTimeout(r, 10))
    machine = await inventory.machines.byMac(MAC)
  }
  assert.ok(machine, 'the machine is created')
  assert.equal(machine.state, 'new')
  assert.equal(machine.arch, 'amd64', 'from the HTTP boot arch (16: x64 UEFI HTTP)')
  let steps: { message: string; data: Record<string, unknown> }[] = []
  for (let i = 0; i < 100 && steps.length < 2; i++) {
    await timeline.flush()
    steps = (await inventory.events.list({ machineId: machine.id })).filter((e) => e.type === 'boot.dhcp')
    if (steps.length < 2) await new Promise((r) => setTimeout(r, 10))
  }
  assert.deepEqual(steps.map((e) => e.message), [
    'DHCPv6 SOLICIT (HTTPClient x64 UEFI HTTP) → ADVERTISE 2001:db8:7::123, boot http://[2001:db8:7::1]:8080/assets/ipxe/ipxe.efi',
    'DHCPv6 REQUEST (iPXE) → REPLY 2001:db8:7::124, boot http://[2001:db8:7::1]:8080/boot.ipxe',
  ])
  assert.equal(steps[1]!.data.protocol, 'dhcp6')
  assert.equal(steps[1]!.data.relay, '2001:db8:9::1')
  const slow = ipxeWait.scriptAsked(machine.id, 1_000 + 16_000)
  assert.equal(slow?.waitedMs, 16_000, "iPXE's binding starts the script clock")
  assert.equal(slow?.relayed, true)
})

test('DHCPv6 advice: a machine in maintenance keeps its address but is offered nothing to boot, as over DHCPv4', async (t) => {
  const inventory = await openSqliteInventory({ file: ':memory:' })
  const log = silentLogger()
  const bus = createEventBus()
  t.after(() => inventory.close())
  const lifecycle = createLifecycle({ inventory, bus, log })
  const port = createDhcp6BootPort({ lifecycle, log })
  const ask = () => port.advise!({ mac: MAC, duid: '0004aa', message: 'solicit', facts: { arch: clientArch(16) } as never, planned: {} as never })
  assert.deepEqual(await ask(), {}, 'a new machine boots')
  const machine = (await inventory.machines.byMac(MAC))!
  assert.equal(machine.arch, 'amd64', 'advice identifies (and creates) the machine as the timeline step does')
  await lifecycle.transition(machine.id, 'maintenance', 'test', { from: machine.state })
  assert.deepEqual(await ask(), { ignore: true, reason: 'machine is in maintenance' })
})
