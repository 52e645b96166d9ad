// Real DHCP clients (busybox udhcpc, ISC dhclient) against rackboot in full mode, inside namespaces the test makes:
// rackboot in one namespace, the clients in another, joined by a veth pair (198.18.10.0/24).
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import { writeFileSync } from 'node:fs'
import { createNetLab, netnsSkipReason, type Netns } from '../support/netns.js'
import { envDumpScript, readEnv, scratch, startServerIn, type RunningServer } from './netns-server.js'

const SUBNET = { subnet: '198.18.10.0/24', rangeStart: '198.18.10.100', rangeEnd: '198.18.10.199', routers: ['198.18.10.1'], dnsServers: ['198.18.10.1'], leaseSeconds: 600 }
const skip = netnsSkipReason(['busybox', 'dhclient'])

interface Lab {
  srv: Netns
  cli: Netns
  server: RunningServer
}

async function lab(t: Parameters<typeof createNetLab>[0]): Promise<Lab> {
  const l = await createNetLab(t)
  const srv = await l.ns('dsrv')
  const cli = await l.ns('dcli')
  await l.veth({ ns: srv, name: 'eth0', cidr: '198.18.10.1/24' }, { ns: cli, name: 'eth0', mac: '52:54:00:10:00:01' })
  const server = await startServerIn(srv, { settings: { mode: 'full', serverAddress: '198.18.10.1', interface: 'eth0', subnets: [SUBNET] } })
  return { srv, cli, server }
}

async function udhcpc(cli: Netns, dir: string, args: string[]): Promise<Record<string, string>> {
  const script = envDumpScript(dir)
  const r = await cli.exec(['busybox', 'udhcpc', '-i', 'eth0', '-f', '-q', '-n', '-t', '6', '-T', '2', '-s', script, ...args], { timeoutMs: 60_000, check: false })
  const env = readEnv(join(dir, 'bound.env'))
  assert.ok(env, `udhcpc got no lease (code ${r.code}): ${r.stderr}`)
  return env
}

test('busybox udhcpc: lease and boot file for BIOS and UEFI vendor classes, events on the timeline', { skip: skip ?? false, timeout: 180_000 }, async (t) => {
  const { cli, server } = await lab(t)
  const dir = scratch(t)

  // Option 97 as firmware sends it: the SMBIOS UUID with its first three fields little-endian.
  const bios = await udhcpc(cli, dir, ['-V', 'PXEClient:Arch:00000:UNDI:002001', '-x', '93:0000', '-x', '97:007e5a3f8c2d1b6e4c9f0123456789abcd'])
  assert.match(bios.ip ?? '', /^198\.18\.10\.1\d\d$/)
  assert.equal(bios.serverid, '198.18.10.1')
  assert.equal(bios.siaddr, '198.18.10.1')
  assert.equal(bios.boot_file, 'undionly.kpxe')
  assert.equal(bios.subnet, '255.255.255.0')
  assert.equal(bios.router, '198.18.10.1')
  assert.equal(bios.lease, '600')

  await cli.ip(['link', 'set', 'dev', 'eth0', 'address', '52:54:00:10:00:02'])
  const uefi = await udhcpc(cli, dir, ['-V', 'PXEClient:Arch:00007:UNDI:003000', '-x', '93:0007'])
  assert.equal(uefi.boot_file, 'ipxe.efi')
  assert.notEqual(uefi.ip, bios.ip)

  await cli.ip(['link', 'set', 'dev', 'eth0', 'address', '52:54:00:10:00:03'])
  const arm = await udhcpc(cli, dir, ['-V', 'PXEClient:Arch:00011:UNDI:003000', '-x', '93:000b'])
  assert.equal(arm.boot_file, 'ipxe-arm64.efi')

  // iPXE (user class "iPXE", sent in iPXE's plain form) gets its script URL, never a binary.
  await cli.ip(['link', 'set', 'dev', 'eth0', 'address', '52:54:00:10:00:04'])
  const ipxe = await udhcpc(cli, dir, ['-V', 'PXEClient:Arch:00000:UNDI:002001', '-x', '93:0000', '-x', '77:69505845', '-O', '67'])
  assert.equal(ipxe.bootfile, 'http://198.18.0.1:8080/boot.ipxe?mac=${net0/mac}&uuid=${uuid}&serial=${serial}&arch=${buildarch}&platform=${platform}&manufacturer=${manufacturer}&product=${product}')
  // Longer than the 128-byte file field: only option 67 carries it.
  assert.equal(ipxe.boot_file ?? '', '')

  // UEFI HTTP boot: http:// URL (option 67).
  await cli.ip(['link', 'set', 'dev', 'eth0', 'address', '52:54:00:10:00:05'])
  const http = await udhcpc(cli, dir, ['-V', 'HTTPClient:Arch:00016:UNDI:003000', '-x', '93:0010', '-O', '67'])
  assert.equal(http.bootfile, 'http://198.18.0.1:8080/assets/uefiX64/ipxe.efi')

  // A plain client: an address, no boot file.
  await cli.ip(['link', 'set', 'dev', 'eth0', 'address', '52:54:00:10:00:06'])
  const plain = await udhcpc(cli, dir, [])
  assert.ok(plain.ip)
  assert.equal(plain.boot_file ?? '', '')

  const byMac = (mac: string) => server.events.filter((e) => e.mac === mac).map((e) => `${e.message}/${e.reply}/${e.ip}`)
  assert.deepEqual(byMac('52:54:00:10:00:01'), [`discover/offer/${bios.ip}`, `request/ack/${bios.ip}`])
  assert.equal(server.events.find((e) => e.mac === '52:54:00:10:00:01')?.uuid, '8c3f5a7e-1b2d-4c6e-9f01-23456789abcd')
  assert.deepEqual(byMac('52:54:00:10:00:02'), [`discover/offer/${uefi.ip}`, `request/ack/${uefi.ip}`])
  assert.equal(byMac('52:54:00:10:00:06').length, 0)
  const metrics = await server.stop()
  assert.match(metrics, /rackboot_dhcp_replies_sent_total\{type="ack"\} 6/)
})

test('ISC dhclient: lease and boot file for BIOS and UEFI vendor classes', { skip: skip ?? false, timeout: 180_000 }, async (t) => {
  const { cli, server } = await lab(t)
  const dir = scratch(t)
  const script = envDumpScript(dir)
  const run = async (name: string, vendor: string, arch: number) => {
    const conf = join(dir, `${name}.conf`)
    writeFileSync(
      conf,
      [
        'option pxe-system-type code 93 = unsigned integer 16;',
        `send vendor-class-identifier "${vendor}";`,
        `send pxe-system-type ${arch};`,
        'request subnet-mask, routers, domain-name-servers, bootfile-name, tftp-server-name;',
        'timeout 60;',
        'retry 1;',
        '',
      ].join('\n'),
    )
    const r = await cli.exec(['dhclient', '-4', '-1', '-v', '-cf', conf, '-sf', script, '-lf', join(dir, `${name}.leases`), '-pf', join(dir, `${name}.pid`), 'eth0'], { timeoutMs: 90_000, check: false })
    const env = readEnv(join(dir, 'BOUND.env'))
    assert.ok(env, `dhclient got no lease (code ${r.code}): ${r.stderr}`)
    // dhclient stays in the background to renew: stop it (the lab would, at teardown).
    await cli.exec(['dhclient', '-x', '-pf', join(dir, `${name}.pid`), '-lf', join(dir, `${name}.leases`), '-sf', script, 'eth0'], { check: false, timeoutMs: 30_000 })
    await cli.exec(['rm', '-f', join(dir, 'BOUND.env')], { check: false })
    return env
  }
  const bios = await run('bios', 'PXEClient:Arch:00000:UNDI:002001', 0)
  assert.match(bios.new_ip_address ?? '', /^198\.18\.10\.1\d\d$/)
  assert.equal(bios.new_filename, 'undionly.kpxe')
  assert.equal(bios.new_next_server, '198.18.10.1')
  assert.equal(bios.new_dhcp_server_identifier, '198.18.10.1')
  assert.equal(bios.new_subnet_mask, '255.255.255.0')

  await cli.ip(['link', 'set', 'dev', 'eth0', 'address', '52:54:00:10:00:22'])
  const uefi = await run('uefi', 'PXEClient:Arch:00007:UNDI:003000', 7)
  assert.equal(uefi.new_filename, 'ipxe.efi')
  assert.notEqual(uefi.new_ip_address, bios.new_ip_address)
  assert.ok(server.events.some((e) => e.mac === '52:54:00:10:00:22' && e.message === 'request' && e.reply === 'ack' && e.arch === 7))
})
