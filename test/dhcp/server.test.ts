import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { test } from 'node:test'
import { decode, encode, type DhcpPacket } from '../../src/dhcp/codec.js'
import { MessageType, getMessageType, getServerId } from '../../src/dhcp/options.js'
import { replyDestination } from '../../src/dhcp/server.js'
import { replyTo, withMessageType } from '../../src/dhcp/modifiers.js'
import { FIRMWARE, meta, request } from './packets.js'
import { startLoopbackServer } from './loopback.js'

const O = { relayPort: 67, clientPort: 68, bootServerRequest: false }

function dest(reqSpec: Parameters<typeof request>[0], replyType: number, o = O, m = meta()) {
  const req = request(reqSpec)
  const reply = replyTo(req, withMessageType(replyType))
  return replyDestination(req, reply, m, o)
}

test('reply destinations follow RFC 2131 §4.1', () => {
  const mac = '02:00:00:00:00:01'
  assert.deepEqual(dest({ type: 1, mac, giaddr: '198.18.2.1' }, MessageType.Offer), { address: '198.18.2.1', port: 67, broadcast: false })
  assert.deepEqual(dest({ type: 3, mac, giaddr: '198.18.2.1', ciaddr: '198.18.2.9' }, MessageType.Nak), { address: '198.18.2.1', port: 67, broadcast: false })
  assert.deepEqual(dest({ type: 3, mac, ciaddr: '198.18.1.9' }, MessageType.Ack), { address: '198.18.1.9', port: 68, broadcast: false })
  assert.deepEqual(dest({ type: 3, mac, ciaddr: '198.18.1.9' }, MessageType.Nak), { address: '255.255.255.255', port: 68, broadcast: true })
  assert.deepEqual(dest({ type: 1, mac, flags: 0x8000 }, MessageType.Offer), { address: '255.255.255.255', port: 68, broadcast: true })
  assert.deepEqual(dest({ type: 1, mac }, MessageType.Offer), { address: '255.255.255.255', port: 68, broadcast: true })
  // Boot server requests are answered where they came from, whatever ciaddr says.
  assert.deepEqual(
    dest({ type: 3, mac, ciaddr: '198.18.1.9' }, MessageType.Ack, { ...O, bootServerRequest: true }, meta({ source: { address: '198.18.1.9', port: 68 }, localPort: 4011 })),
    { address: '198.18.1.9', port: 68, broadcast: false },
  )
})

test('sockets: a relayed DORA over real UDP, with metrics for every step', async (t) => {
  const lb = await startLoopbackServer()
  t.after(() => lb.close())
  const offer = await lb.exchange({ type: MessageType.Discover, mac: '52:54:00:00:10:01', ...FIRMWARE.biosPxe })
  assert.ok(offer, 'no OFFER')
  assert.equal(getMessageType(offer.options), MessageType.Offer)
  assert.equal(offer.yiaddr, '198.18.60.10')
  assert.equal(offer.file, 'undionly.kpxe')
  assert.equal(getServerId(offer.options), '127.0.0.1')
  const ack = await lb.exchange({ type: MessageType.Request, mac: '52:54:00:00:10:01', ...FIRMWARE.biosPxe, requestedIp: offer.yiaddr, serverId: '127.0.0.1' })
  assert.ok(ack)
  assert.equal(getMessageType(ack.options), MessageType.Ack)
  const m = await lb.registry.metrics()
  assert.match(m, /rackboot_dhcp_packets_received_total\{type="discover"\} 1/)
  assert.match(m, /rackboot_dhcp_replies_sent_total\{type="offer"\} 1/)
  assert.match(m, /rackboot_dhcp_replies_sent_total\{type="ack"\} 1/)
  assert.match(m, /rackboot_dhcp_handle_seconds_count\{type="request"\} 1/)
  assert.match(m, /rackboot_dhcp_pool_utilisation_ratio\{subnet="198.18.60.0\/24"\} 0.0041/)
})

test('sockets: ProxyDHCP answers on the boot-server port from that port, to the sender', async (t) => {
  const lb = await startLoopbackServer({ mode: 'proxy', subnets: [] })
  t.after(() => lb.close())
  assert.ok(lb.info.bootServerPort && lb.info.bootServerPort !== lb.info.port)
  const client = createSocket('udp4')
  await new Promise<void>((r) => client.bind({ address: '127.0.0.1', port: 0 }, () => r()))
  t.after(() => client.close())
  const got = new Promise<{ p: DhcpPacket; fromPort: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no reply from the boot-server port')), 10_000)
    client.once('message', (buf, rinfo) => {
      clearTimeout(timer)
      resolve({ p: decode(buf), fromPort: rinfo.port })
    })
  })
  const req = request({ type: MessageType.Request, mac: '52:54:00:00:10:02', ...FIRMWARE.ovmfPxe, ciaddr: '127.0.0.1' })
  client.send(encode(req), lb.info.bootServerPort!, '127.0.0.1')
  const { p, fromPort } = await got
  assert.equal(fromPort, lb.info.bootServerPort, 'iPXE accepts boot-server replies only from port 4011')
  assert.equal(getMessageType(p.options), MessageType.Ack)
  assert.equal(p.file, 'ipxe.efi')
})

test('sockets: mode off binds nothing', async () => {
  const { createDhcpServer } = await import('../../src/dhcp/index.js')
  const { loopbackSettings } = await import('./loopback.js')
  const { memoryLeases, memoryReservations } = await import('./fakes.js')
  const { silentLogger } = await import('../../src/log.js')
  const { Registry } = await import('prom-client')
  const s = createDhcpServer({ settings: loopbackSettings({ mode: 'off' }), leases: memoryLeases(), reservations: memoryReservations(), urls: { scriptUrl: '', httpBootUrl: () => '' }, log: silentLogger(), metrics: new Registry() })
  assert.equal(await s.start(), null)
  await s.stop()
})

test('sockets: under overload, exchanges already begun go first and the oldest DISCOVERs are shed', async (t) => {
  const { Registry } = await import('prom-client')
  const { createDhcpSockets } = await import('../../src/dhcp/server.js')
  const { createDhcpMetrics } = await import('../../src/dhcp/metrics.js')
  const { silentLogger } = await import('../../src/log.js')
  const registry = new Registry()
  const handled: string[] = []
  const sockets = createDhcpSockets({
    handler: {
      mode: 'full',
      async handle(pkt) {
        handled.push(`${getMessageType(pkt.options) === MessageType.Discover ? 'D' : 'R'}${pkt.xid}`)
        return { kind: 'silent', reason: 'test' } as never
      },
    },
    listen: '127.0.0.1',
    port: 0,
    serverAddress: null,
    metrics: createDhcpMetrics(registry, () => []),
    log: silentLogger(),
    maxQueuedDiscovers: 10,
    perTurn: 2,
  })
  const { port } = await sockets.start()
  t.after(() => sockets.stop())
  const client = createSocket('udp4')
  await new Promise<void>((r) => client.bind({ address: '127.0.0.1', port: 0 }, () => r()))
  t.after(() => client.close())
  // One burst, all in the server's socket buffer before it reads any: 20 new exchanges, then one finishing.
  const sendNow = (p: DhcpPacket) => client.send(encode(p), port, '127.0.0.1')
  for (let i = 1; i <= 20; i++) sendNow({ ...request({ type: MessageType.Discover, mac: '52:54:00:00:20:01' }), xid: i })
  sendNow({ ...request({ type: MessageType.Request, mac: '52:54:00:00:20:02', requestedIp: '127.0.0.9' }), xid: 99 })
  const deadline = Date.now() + 5_000
  while (handled.length < 11 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  assert.deepEqual(handled, ['R99', ...Array.from({ length: 10 }, (_, i) => `D${i + 11}`)])
  assert.match(await registry.metrics(), /rackboot_dhcp_dropped_total\{reason="overload"\} 10/)
  assert.match(await registry.metrics(), /rackboot_dhcp_packets_received_total\{type="discover"\} 20/)
})

test('sockets: stop() waits for requests in flight, and a handler that rejects is counted, not fatal', async () => {
  const { Registry } = await import('prom-client')
  const { createDhcpSockets } = await import('../../src/dhcp/server.js')
  const { createDhcpMetrics } = await import('../../src/dhcp/metrics.js')
  const { silentLogger } = await import('../../src/log.js')
  const registry = new Registry()
  let release!: () => void
  const gate = new Promise<void>((r) => (release = r))
  let started = 0
  let finished = 0
  const sockets = createDhcpSockets({
    handler: {
      mode: 'full',
      async handle(pkt) {
        started++
        if (pkt.xid === 1) throw new Error('boom')
        await gate
        finished++
        return { kind: 'silent', reason: 'test' } as never
      },
    },
    listen: '127.0.0.1',
    port: 0,
    serverAddress: null,
    metrics: createDhcpMetrics(registry, () => []),
    log: silentLogger(),
  })
  const { port } = await sockets.start()
  const client = createSocket('udp4')
  await new Promise<void>((r) => client.bind({ address: '127.0.0.1', port: 0 }, () => r()))
  try {
    for (const xid of [1, 2]) client.send(encode({ ...request({ type: MessageType.Discover, mac: '52:54:00:00:30:01' }), xid }), port, '127.0.0.1')
    const deadline = Date.now() + 5_000
    while (started < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    assert.equal(started, 2)
    let stopped = false
    const stopping = sockets.stop().then(() => (stopped = true))
    await new Promise((r) => setTimeout(r, 50))
    assert.equal(stopped, false, 'stop() returned while a request was still being handled')
    release()
    await stopping
    assert.equal(finished, 1)
    assert.match(await registry.metrics(), /rackboot_dhcp_dropped_total\{reason="handler-error"\} 1/)
  } finally {
    release()
    client.close()
  }
})
