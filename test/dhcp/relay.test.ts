// Kea's perfdhcp acts as a relay (giaddr = its own address, replies expected at giaddr:67): rackboot must pick the
// relayed subnet by giaddr and unicast to the relay. perfdhcp sits on 198.18.21.2, rackboot on 198.18.20.1.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createNetLab, netnsSkipReason } from '../support/netns.js'
import { startServerIn } from './netns-server.js'
import { perfdhcpStats } from './perfdhcp.js'

const skip = netnsSkipReason(['perfdhcp'])

test('perfdhcp in relay mode gets offers and acks from the relayed subnet', { skip: skip ?? false, timeout: 180_000 }, async (t) => {
  const lab = await createNetLab(t)
  const srv = await lab.ns('rsrv')
  const relay = await lab.ns('rrly')
  await lab.veth({ ns: srv, name: 'eth0', cidr: '198.18.20.1/24' }, { ns: relay, name: 'eth0', cidr: '198.18.21.2/24' })
  await srv.ip(['route', 'add', '198.18.21.0/24', 'dev', 'eth0'])
  await relay.ip(['route', 'add', '198.18.20.0/24', 'dev', 'eth0'])
  const server = await startServerIn(srv, {
    settings: {
      mode: 'full',
      serverAddress: '198.18.20.1',
      subnets: [
        { subnet: '198.18.20.0/24', rangeStart: '198.18.20.100', rangeEnd: '198.18.20.199', routers: ['198.18.20.1'], dnsServers: [], leaseSeconds: 600 },
        { subnet: '198.18.21.0/24', rangeStart: '198.18.21.10', rangeEnd: '198.18.21.250', routers: ['198.18.21.1'], dnsServers: [], leaseSeconds: 600 },
      ],
    },
  })
  const r = await relay.exec(['perfdhcp', '-4', '-g', 'single', '-l', '198.18.21.2', '-R', '200', '-n', '200', '-r', '100', '-p', '20', '198.18.20.1'], { check: false, timeoutMs: 90_000 })
  const s = perfdhcpStats(r.stdout)
  assert.ok(s.discovers >= 190, `perfdhcp sent ${s.discovers} DISCOVERs: ${r.stdout}${r.stderr}`)
  assert.ok(s.offers >= s.discovers * 0.9, `offers ${s.offers}/${s.discovers}`)
  assert.ok(s.acks >= s.requests * 0.9 && s.acks > 0, `acks ${s.acks}/${s.requests}`)
  const metrics = await server.stop()
  // Every address came from the relayed subnet, none from the directly attached one.
  const used = (subnet: string) => Number(new RegExp(`rackboot_dhcp_pool_addresses\\{subnet="${subnet.replace(/[./]/g, '\\$&')}",state="used"\\} (\\d+)`).exec(metrics)?.[1])
  assert.ok(used('198.18.21.0/24') >= s.acks, metrics)
  assert.equal(used('198.18.20.0/24'), 0)
})
