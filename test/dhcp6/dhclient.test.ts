// A real DHCPv6 client against rackboot's DHCPv6 server, in network namespaces: ISC dhclient -6 (Debian package
// isc-dhcp-client) gets a stateful address and, when it asks, the boot-file URL for the architecture it claims
// (option 61, vendor class 16 and user class 15 sent through dhclient.conf option definitions). Hostile datagrams
// to the same server are dropped and counted while it keeps serving.
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { test, type TestContext } from 'node:test'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { createIdentityVerifier } from '../../src/lifecycle/identity.js'
import { createNetLab, skipUnlessNetns, waitFor, type Netns } from '../support/netns.js'

const REPO = resolve(import.meta.dirname, '../..')
const RUNNER = join(REPO, 'test/dhcp6/fixtures/run-server.ts')
const SERVER = '2001:db8:7::1'

function hex(b: Buffer): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':')
}

function vendorClassHex(s: string): string {
  const d = Buffer.from(s)
  const h = Buffer.alloc(6)
  h.writeUInt32BE(343, 0)
  h.writeUInt16BE(d.length, 4)
  return hex(Buffer.concat([h, d]))
}

interface Server {
  stop(): Promise<{ metrics: string; leases: { address: string; mac: string | null; state: string }[]; boots: { message: string; reply: string; mac: string; bootUrl: string | null; addresses: string[] }[] }>
  stderr(): string
}

async function startServer(ns: Netns, dataDir: string, database?: string): Promise<Server> {
  const config = {
    ...(database ? { database } : {}),
    settings: { interface: 'eth0', serverAddress: SERVER, prefix: '2001:db8:7::/64', rangeStart: '2001:db8:7::100', rangeEnd: '2001:db8:7::1ff', dnsServers: ['2001:db8:7::53'] },
    dataDir,
    logLevel: 'debug',
  }
  const proc = ns.spawn(['node', '--import', 'tsx', RUNNER, JSON.stringify(config)], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()))
  proc.stderr?.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-200_000)))
  await waitFor(() => out.includes('READY '), { what: `the DHCPv6 runner to bind (stderr: ${err.slice(-500)})`, timeoutMs: 60_000 })
  return {
    stderr: () => err,
    async stop() {
      proc.kill('SIGTERM')
      await waitFor(() => /^METRICS /m.test(out), { what: 'the runner to print its metrics', timeoutMs: 15_000 })
      const line = (p: string) => out.split('\n').find((l) => l.startsWith(p))!.slice(p.length)
      const boots = out.split('\n').filter((l) => l.startsWith('BOOT ')).map((l) => JSON.parse(l.slice(5)))
      return { metrics: JSON.parse(line('METRICS ')) as string, leases: JSON.parse(line('LEASES ')), boots }
    },
  }
}

function metric(text: string, name: string, labels: string): number {
  const m = new RegExp(`^${name}${labels.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)
  return m ? Number(m[1]) : 0
}

/** Two namespaces on one link (server eth0 with SERVER/64, client eth0 with `mac`), no DAD, and a temp dir. */
async function dhcp6Link(t: TestContext, label: string, mac: string): Promise<{ srv: Netns; cli: Netns; dir: string }> {
  const lab = await createNetLab(t)
  const srv = await lab.ns(`${label}-srv`, { ipv6: true })
  const cli = await lab.ns(`${label}-cli`, { ipv6: true })
  for (const ns of [srv, cli]) {
    await ns.sysctl('net.ipv6.conf.default.accept_dad', '0')
    await ns.sysctl('net.ipv6.conf.all.accept_dad', '0')
  }
  await lab.veth({ ns: srv, name: 'eth0' }, { ns: cli, name: 'eth0', mac })
  await srv.ip(['addr', 'add', `${SERVER}/64`, 'dev', 'eth0', 'nodad'])
  const dir = mkdtempSync(join(tmpdir(), `rb-${label}-`))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return { srv, cli, dir }
}

/** The link-local address dhclient sends from must exist (no DAD here, so at once). */
async function linkLocal(cli: Netns): Promise<void> {
  await waitFor(async () => (await cli.exec(['ip', '-6', 'addr', 'show', 'dev', 'eth0'])).stdout.includes('fe80::') || undefined, { what: 'a link-local address' })
}

test('dhclient -6 gets a stateful address and the boot-file URL for its architecture from rackboot', async (t) => {
  if (skipUnlessNetns(t, ['dhclient'])) return
  const { srv, cli, dir } = await dhcp6Link(t, 'd6', '52:54:00:d6:00:01')
  const server = await startServer(srv, join(dir, 'data'))
  await linkLocal(cli)

  const defs = [
    'timeout 30;',
    'option dhcp6.rb-arch code 61 = unsigned integer 16;',
    'option dhcp6.rb-uclass code 15 = string;',
    'option dhcp6.rb-vclass code 16 = string;',
    'also request dhcp6.bootfile-url, dhcp6.rb-vclass;',
  ]
  const runs = [
    { name: 'pxe', send: ['send dhcp6.rb-arch 7;', `send dhcp6.rb-vclass ${vendorClassHex('PXEClient:Arch:00007:UNDI:003000')};`], url: `tftp://[${SERVER}]/ipxe.efi`, vc: null },
    { name: 'http', send: ['send dhcp6.rb-arch 16;', `send dhcp6.rb-vclass ${vendorClassHex('HTTPClient:Arch:00016:UNDI:003000')};`], url: 'http://[2001:db8:7::1]:8080/assets/ipxe/ipxe.efi', vc: vendorClassHex('HTTPClient').replace(/^00:00:01:57:00:0a:/, '') },
    { name: 'ipxe', send: ['send dhcp6.rb-uclass 00:04:69:50:58:45;'], url: 'http://[2001:db8:7::1]:8080/boot.ipxe?mac=${net0/mac}', vc: null },
    { name: 'plain', send: [], url: null, vc: null },
  ]
  const bound: string[] = []
  for (const run of runs) {
    const conf = join(dir, `${run.name}.conf`)
    // A DUID-LLT per run (dhclient's own would repeat within one second): four distinct clients on one MAC.
    const duid = `00:01:00:01:00:00:00:0${runs.indexOf(run) + 1}:52:54:00:d6:00:01`
    writeFileSync(conf, [...defs, `send dhcp6.client-id ${duid};`, ...run.send, ''].join('\n'))
    const envOut = join(dir, `${run.name}.env`)
    // dhclient runs its script with a clean environment: the output path is written into the script.
    const script = join(dir, `${run.name}.sh`)
    writeFileSync(script, `#!/bin/sh\nenv | grep -E "^(reason|new_)" | sort > "${envOut}.$reason"\n`)
    chmodSync(script, 0o755)
    const lease = join(dir, `${run.name}.leases`)
    const args = ['dhclient', '-6', '-1', '-cf', conf, '-sf', script, '-lf', lease, '-pf', join(dir, `${run.name}.pid`), 'eth0']
    const r = await cli.exec(args, { check: false, timeoutMs: 60_000 })
    assert.equal(r.code, 0, `dhclient (${run.name}) failed: ${r.stderr}\nserver: ${server.stderr().slice(-2000)}`)
    const env = readFileSync(`${envOut}.BOUND6`, 'utf8')
    const get = (k: string) => new RegExp(`^${k}=(.*)$`, 'm').exec(env)?.[1]?.replace(/\\/g, '') ?? null
    const address = get('new_ip6_address')
    assert.ok(address && /^2001:db8:7::1[0-9a-f]{2}$/.test(address), `${run.name}: address ${address} from the range\n${env}`)
    assert.equal(get('new_max_life'), '7200')
    assert.equal(get('new_dhcp6_name_servers'), '2001:db8:7::53')
    assert.equal(get('new_dhcp6_bootfile_url'), run.url, `${run.name}: boot-file URL\n${env}`)
    if (run.name === 'http') assert.match(get('new_dhcp6_rb_vclass') ?? '', /48:54:54:50:43:6c:69:65:6e:74$/, 'vendor class "HTTPClient" echoed')
    bound.push(address)
    // RELEASE from the real client (its own -r): the binding goes.
    if (run.name === 'plain') {
      const rel = await cli.exec(['dhclient', '-6', '-r', '-cf', conf, '-sf', script, '-lf', lease, '-pf', join(dir, `${run.name}.pid`), 'eth0'], { check: false, timeoutMs: 30_000 })
      assert.equal(rel.code, 0, rel.stderr)
      assert.ok(existsSync(`${envOut}.RELEASE6`), 'dhclient ran its RELEASE6 step')
    } else {
      await cli.exec(['sh', '-c', `kill $(cat ${join(dir, `${run.name}.pid`)}) 2>/dev/null; true`], { check: false })
    }
  }

  // Hostile datagrams from the client's namespace to the server's address: each dropped and counted.
  await cli.ip(['addr', 'add', '2001:db8:7::9/64', 'dev', 'eth0', 'nodad'])
  const hostile = `
    const dgram = require('node:dgram')
    const s = dgram.createSocket('udp6')
    const relay = (inner, n) => { let b = inner; for (let i = 0; i < n; i++) { const h = Buffer.alloc(34); h[0] = 12; const o = Buffer.alloc(4); o.writeUInt16BE(9, 0); o.writeUInt16BE(b.length, 2); b = Buffer.concat([h, o, b]) } return b }
    const solicit = Buffer.from([1, 1, 2, 3])
    const many = Buffer.concat([solicit, Buffer.alloc(4 * 500)])
    const packets = [Buffer.from([1]), Buffer.from([1, 0, 0, 1, 0, 1, 0xff, 0xff, 0]), relay(solicit, 20), many, Buffer.alloc(6000, 7)]
    let left = packets.length
    for (const p of packets) s.send(p, 547, '${SERVER}', (err) => { if (err) { console.error(err); process.exitCode = 1 } if (--left === 0) s.close() })
  `
  await cli.exec(['node', '-e', hostile], { timeoutMs: 30_000 })
  await new Promise((r) => setTimeout(r, 500))
  const { metrics, leases, boots } = await server.stop()
  assert.equal(metric(metrics, 'rackboot_dhcp6_dropped_total', '{reason="too-short"}'), 1, metrics)
  // The network-boot clients' exchanges went to the timeline port (ADVERTISE and REPLY each); the plain one's did not.
  const urls = new Set(boots.filter((b) => b.reply === 'reply').map((b) => b.bootUrl))
  assert.deepEqual([...urls].sort(), runs.flatMap((r) => (r.url ? [r.url] : [])).sort(), JSON.stringify(boots))
  assert.ok(boots.every((b) => b.mac === '52:54:00:d6:00:01' && b.addresses.length === 1), JSON.stringify(boots))
  assert.equal(boots.length, 6, 'solicit and request of three netboot clients')
  assert.equal(metric(metrics, 'rackboot_dhcp6_dropped_total', '{reason="option-overrun"}'), 1)
  assert.equal(metric(metrics, 'rackboot_dhcp6_dropped_total', '{reason="relay-too-deep"}'), 1)
  assert.equal(metric(metrics, 'rackboot_dhcp6_dropped_total', '{reason="too-many-options"}'), 1)
  assert.equal(metric(metrics, 'rackboot_dhcp6_dropped_total', '{reason="too-large"}'), 1)
  assert.ok(metric(metrics, 'rackboot_dhcp6_replies_sent_total', '{type="advertise"}') >= 4)
  assert.ok(metric(metrics, 'rackboot_dhcp6_packets_received_total', '{type="solicit"}') >= 4)
  assert.ok(metric(metrics, 'rackboot_dhcp6_packets_received_total', '{type="release"}') >= 1)
  // Three bindings remain (the fourth client released its own), each tagged with the client's MAC from its DUID-LLT.
  assert.equal(leases.filter((l) => l.state === 'bound').length, 3, JSON.stringify(leases))
  assert.ok(leases.every((l) => l.mac === '52:54:00:d6:00:01'), JSON.stringify(leases))
  assert.ok(!leases.some((l) => l.address === bound[3]), 'the released address is free')
  // The DUID survives a restart: the same file, the same identity.
  const duid = readFileSync(join(dir, 'data', 'dhcp6-server-duid'), 'utf8').trim()
  assert.match(duid, /^00010001[0-9a-f]{8}[0-9a-f]{12}$/, 'a DUID-LLT from the interface MAC')
})

test('DHCPv6 bindings are stored before the reply: the address vouches for the MAC (EUI-64 link-local when the DUID has none) and survives a restart', async (t) => {
  if (skipUnlessNetns(t, ['dhclient'])) return
  const MAC = '52:54:00:d6:00:02'
  const { srv, cli, dir } = await dhcp6Link(t, 'd6s', MAC)
  const database = join(dir, 'rackboot.db')
  await (await openSqliteInventory({ file: database })).close()
  let server = await startServer(srv, join(dir, 'data'), database)
  await linkLocal(cli)
  // A DUID-UUID (type 4), as OVMF and iPXE send: no MAC inside, so the server takes it from the EUI-64 source.
  const conf = join(dir, 'c.conf')
  writeFileSync(conf, ['timeout 30;', 'send dhcp6.client-id 00:04:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00;', ''].join('\n'))
  const envOut = join(dir, 'c.env')
  const script = join(dir, 'c.sh')
  writeFileSync(script, `#!/bin/sh\nenv | grep -E "^(reason|new_)" | sort > "${envOut}.$reason"\n`)
  chmodSync(script, 0o755)
  const r = await cli.exec(['dhclient', '-6', '-1', '-cf', conf, '-sf', script, '-lf', join(dir, 'c.leases'), '-pf', join(dir, 'c.pid'), 'eth0'], { check: false, timeoutMs: 60_000 })
  assert.equal(r.code, 0, `dhclient failed: ${r.stderr}\nserver: ${server.stderr().slice(-2000)}`)
  await cli.exec(['sh', '-c', `kill $(cat ${join(dir, 'c.pid')}) 2>/dev/null; true`], { check: false })
  const address = /^new_ip6_address=(.*)$/m.exec(readFileSync(`${envOut}.BOUND6`, 'utf8'))?.[1]
  assert.ok(address, 'an address bound')

  // The inventory has the binding as the reply left; identity checks read it as they read a DHCPv4 lease.
  const inv = await openSqliteInventory({ file: database })
  try {
    const row = await inv.leases.byIp(address)
    assert.ok(row, `a lease row for ${address}`)
    assert.equal(row.mac, MAC, 'the MAC from the EUI-64 link-local source')
    assert.equal(row.state, 'bound')
    assert.equal(row.subnet, '2001:db8:7::/64')
    assert.match(row.clientId ?? '', /^duid:000411223344/)
    const identity = createIdentityVerifier({ inventory: inv, clock: { now: () => Date.now() }, trustClaims: false })
    assert.deepEqual(await identity.attest(address), { mac: MAC, via: 'lease' })
    assert.equal(await identity.attest('2001:db8:7::1fe'), null, 'an address never bound vouches for nobody')
  } finally {
    await inv.close()
  }

  // A restart keeps the binding: the new process has it before any client renews.
  await server.stop()
  server = await startServer(srv, join(dir, 'data'), database)
  const { leases } = await server.stop()
  assert.deepEqual(leases.map((l) => [l.address, l.mac, l.state]), [[address, MAC, 'bound']])
})
