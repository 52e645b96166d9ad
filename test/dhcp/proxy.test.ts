// ProxyDHCP beside a real DHCP server: dnsmasq hands out addresses, rackboot (proxy mode) only boot files. Three
// namespaces on one bridge: the DHCP server, rackboot, and the client.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { writeFileSync } from 'node:fs'
import { test } from 'node:test'
import { createNetLab, netnsSkipReason, waitFor } from '../support/netns.js'
import { REPO, envDumpScript, readEnv, scratch, startServerIn } from './netns-server.js'

const skip = netnsSkipReason(['dnsmasq', 'busybox'])

test('ProxyDHCP: dnsmasq gives the address, rackboot only the boot file (67 and 4011); plain clients untouched', { skip: skip ?? false, timeout: 180_000 }, async (t) => {
  const dir = scratch(t)
  const lab = await createNetLab(t)
  const sw = await lab.ns('xsw')
  const dhcp = await lab.ns('xdhcp')
  const srv = await lab.ns('xsrv')
  const cli = await lab.ns('xcli')
  await lab.veth({ ns: sw, name: 'p-dhcp' }, { ns: dhcp, name: 'eth0', cidr: '198.18.40.1/24' })
  await lab.veth({ ns: sw, name: 'p-srv' }, { ns: srv, name: 'eth0', cidr: '198.18.40.2/24' })
  await lab.veth({ ns: sw, name: 'p-cli' }, { ns: cli, name: 'eth0', mac: '52:54:00:40:00:01' })
  await lab.bridge(sw, 'br0', ['p-dhcp', 'p-srv', 'p-cli'])
  // Lets the address-less client send limited broadcasts (no route otherwise: ENETUNREACH).
  await cli.ip(['route', 'replace', 'default', 'dev', 'eth0'])

  const conf = join(dir, 'dnsmasq.conf')
  writeFileSync(conf, [
    'port=0', 'no-resolv', 'no-hosts', 'interface=eth0', 'bind-interfaces', 'user=root', 'no-ping',
    'dhcp-range=198.18.40.100,198.18.40.150,255.255.255.0,10m', 'dhcp-authoritative', 'log-dhcp',
    `dhcp-leasefile=${join(dir, 'dnsmasq.leases')}`, `pid-file=${join(dir, 'dnsmasq.pid')}`, '',
  ].join('\n'))
  const dnsmasq = dhcp.spawn(['dnsmasq', '-k', `--conf-file=${conf}`, '--log-facility=-'])
  let dnsmasqLog = ''
  dnsmasq.stderr?.on('data', (d: Buffer) => (dnsmasqLog += d.toString()))
  await waitFor(() => dnsmasqLog.includes('DHCP, IP range') || undefined, { what: 'dnsmasq to start', timeoutMs: 30_000 })

  const server = await startServerIn(srv, { settings: { mode: 'proxy', serverAddress: '198.18.40.2', subnets: [] } })

  // A PXE client (BIOS): two offers, the address from dnsmasq, the boot file from rackboot.
  const r = await cli.exec(['node', '--import', 'tsx', join(REPO, 'test/dhcp/fixtures/pxe-client.ts'), JSON.stringify({ iface: 'eth0', mac: '52:54:00:40:00:01', vendorClass: 'PXEClient:Arch:00000:UNDI:002001', arch: 0 })], { cwd: REPO, timeoutMs: 60_000 })
  const report = JSON.parse(r.stdout) as { offers: any[]; acks: any[]; bootAck: any }
  const fromDnsmasq = report.offers.filter((o) => o.serverId === '198.18.40.1')
  const fromRackboot = report.offers.filter((o) => o.serverId === '198.18.40.2')
  assert.equal(fromDnsmasq.length, 1, JSON.stringify(report.offers))
  assert.match(fromDnsmasq[0].yiaddr, /^198\.18\.40\.1[0-5]\d$/)
  assert.equal(fromRackboot.length, 1, JSON.stringify(report.offers))
  const proxy = fromRackboot[0]
  assert.equal(proxy.yiaddr, '0.0.0.0')
  assert.equal(proxy.vendorClass, 'PXEClient')
  assert.equal(proxy.file, 'undionly.kpxe')
  assert.equal(proxy.siaddr, '198.18.40.2')
  assert.equal(proxy.hasVendorOptions, true)
  assert.equal(proxy.leaseTime, undefined)
  // The REQUEST to dnsmasq is acknowledged by dnsmasq alone.
  assert.deepEqual(report.acks.map((a) => a.serverId), ['198.18.40.1'])
  // The boot server answers from 4011 with the boot file.
  assert.ok(report.bootAck, 'no answer from the boot server on 4011')
  assert.equal(report.bootAck.fromPort, 4011)
  assert.equal(report.bootAck.from, '198.18.40.2')
  assert.equal(report.bootAck.file, 'undionly.kpxe')

  // A UEFI PXE client: no option 43 in the proxy offer, the file on 4011.
  await cli.ip(['addr', 'flush', 'dev', 'eth0'])
  await cli.ip(['link', 'set', 'dev', 'eth0', 'address', '52:54:00:40:00:02'])
  await cli.ip(['route', 'replace', 'default', 'dev', 'eth0'])
  const u = JSON.parse((await cli.exec(['node', '--import', 'tsx', join(REPO, 'test/dhcp/fixtures/pxe-client.ts'), JSON.stringify({ iface: 'eth0', mac: '52:54:00:40:00:02', vendorClass: 'PXEClient:Arch:00007:UNDI:003000', arch: 7 })], { cwd: REPO, timeoutMs: 60_000 })).stdout)
  const uproxy = u.offers.find((o: any) => o.serverId === '198.18.40.2')
  assert.equal(uproxy?.hasVendorOptions, false)
  assert.equal(u.bootAck?.file, 'ipxe.efi')

  // A plain client (busybox udhcpc) gets its lease from dnsmasq and never hears from rackboot.
  await cli.ip(['addr', 'flush', 'dev', 'eth0'])
  await cli.ip(['link', 'set', 'dev', 'eth0', 'address', '52:54:00:40:00:03'])
  const plain = await cli.exec(['busybox', 'udhcpc', '-i', 'eth0', '-f', '-q', '-n', '-t', '6', '-T', '2', '-s', envDumpScript(dir)], { timeoutMs: 60_000, check: false })
  const env = readEnv(join(dir, 'bound.env'))
  assert.ok(env, `udhcpc got no lease: ${plain.stderr}`)
  assert.equal(env.serverid, '198.18.40.1')
  assert.equal(env.boot_file ?? '', '')

  const events = server.events.map((e) => `${e.mac} ${e.message}/${e.reply} ${e.mode}`)
  assert.ok(events.includes('52:54:00:40:00:01 discover/offer proxy'), events.join('\n'))
  assert.ok(events.includes('52:54:00:40:00:01 request/ack proxy'), events.join('\n'))
  assert.ok(!events.some((e) => e.startsWith('52:54:00:40:00:03')))
  const metrics = await server.stop()
  assert.match(metrics, /rackboot_dhcp_dropped_total\{reason="not-netboot"\} [1-9]/)
  assert.match(metrics, /rackboot_dhcp_dropped_total\{reason="other-server"\} [1-9]/)
})
