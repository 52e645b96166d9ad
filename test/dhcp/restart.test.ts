// Leases survive a restart: rackboot with the SQLite inventory on disk, stopped and started again between clients.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { createNetLab, netnsSkipReason, type Netns } from '../support/netns.js'
import { envDumpScript, readEnv, scratch, startServerIn } from './netns-server.js'

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

test('restart keeps leases (SQLite): a known client keeps its address, nobody else gets it', { skip: skip ?? false, timeout: 180_000 }, async (t) => {
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
