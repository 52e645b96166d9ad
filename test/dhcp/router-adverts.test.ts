import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { BOOT_CLIENT_TTL_MS, bootRouterConfig, createRouterAdverts, findRadvd, radvdConfig, type ManagedAdverts } from '../../src/dhcp/router-adverts.js'
import { silentLogger } from '../../src/log.js'
import { createNetLab, skipUnlessNetns, waitFor, type Netns } from '../support/netns.js'


/** Two namespaces on one IPv6 segment, past DAD (radvd cannot send from a tentative link-local address, nor rdisc6 ask). */
async function raSegment(t: TestContext, prefix: string) {
  const lab = await createNetLab(t)
  const srv = await lab.ns(`${prefix}-srv`, { ipv6: true })
  const cli = await lab.ns(`${prefix}-cli`, { ipv6: true })
  await lab.veth({ ns: srv, name: 'eth0' }, { ns: cli, name: 'eth0' })
  const dir = mkdtempSync(join(tmpdir(), 'rb-ra-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  for (const ns of [srv, cli]) {
    await waitFor(async () => {
      const out = (await ns.exec(['ip', '-6', 'addr', 'show', 'dev', 'eth0'])).stdout
      return out.includes('inet6') && !out.includes('tentative') ? true : undefined
    }, { what: `IPv6 DAD on ${ns.name}`, timeoutMs: 15_000 })
  }
  return { srv, cli, dir }
}


/** rackboot's router advertisements on `srv`'s eth0 (radvd run inside its namespace), stopped at the test's end. */
async function startAdverts(t: TestContext, srv: Netns, runDir: string, managed?: ManagedAdverts) {
  const ra = createRouterAdverts({
    interface: 'eth0', runDir, log: silentLogger(), program: findRadvd()!, wrap: ['ip', 'netns', 'exec', srv.name],
    ...(managed ? { managed } : {}),
  })
  await ra.start()
  t.after(() => ra.stop())
  return ra
}

/** rdisc6 sends router solicitations, as iPXE does; the advertisement it prints. */
function askRouter(cli: Netns): Promise<string> {
  return waitFor(async () => {
    const r = await cli.exec(['rdisc6', '-1', '-w', '1000', 'eth0'], { check: false, timeoutMs: 10_000 })
    return /Router lifetime/.test(r.stdout) ? r.stdout : undefined
  }, { what: 'a router advertisement answering rdisc6', timeoutMs: 20_000 })
}

test('radvd config: no prefix, router lifetime 0, no DHCPv6 flags; bad interface names refused', () => {
  const conf = radvdConfig('eth1')
  assert.match(conf, /^interface eth1 \{$/m)
  assert.match(conf, /AdvDefaultLifetime 0;/)
  assert.match(conf, /AdvManagedFlag off;/)
  assert.doesNotMatch(conf, /^\s*prefix /m)
  // Long periodic intervals: a firmware's solicitation from :: within 3 s of a multicast advertisement gets none.
  assert.match(conf, /MinRtrAdvInterval 200;\n\s*MaxRtrAdvInterval 600;/)
  assert.throws(() => radvdConfig('eth1; }; interface lo {'), /not an interface name/)
})

test('router advertisements reach a host on the segment (ndisc6 rdisc6 asks), and stop with rackboot', async (t) => {
  if (skipUnlessNetns(t, ['radvd', 'rdisc6'])) return
  const { srv, cli, dir } = await raSegment(t, 'ra')
  const ra = await startAdverts(t, srv, dir)
  const answer = await askRouter(cli)
  assert.match(answer, /Router lifetime\s*:\s*0\b/, answer)
  assert.doesNotMatch(answer, /Prefix\s*:/, 'no prefix advertised')
  assert.match(answer, /Stateful address conf\.\s*:\s*No/)
  assert.equal(ra.running, true)
  await ra.stop()
  assert.equal(ra.running, false)
  const r = await cli.exec(['rdisc6', '-1', '-w', '1000', '-r', '2', 'eth0'], { check: false, timeoutMs: 10_000 })
  assert.doesNotMatch(r.stdout, /Router lifetime/, 'no advertisements once stopped')
})

test('radvd config, managed (DHCPv6): the prefix on-link but not autonomous, M and O flags, still router lifetime 0', () => {
  const conf = radvdConfig('eth1', 200, 600, { prefix: '2001:db8:7::/64' })
  assert.match(conf, /AdvManagedFlag on;/)
  assert.match(conf, /AdvOtherConfigFlag on;/)
  assert.match(conf, /AdvDefaultLifetime 0;/)
  assert.match(conf, /^\s*prefix 2001:db8:7::\/64 \{$/m)
  assert.match(conf, /AdvOnLink on;/)
  assert.match(conf, /AdvAutonomous off;/)
  assert.match(radvdConfig('eth1', 200, 600, { prefix: '2001:db8:7::/64', autonomous: true }), /AdvAutonomous on;/, 'dhcp6.slaac: hosts may form their own address too')
  // The default stays exactly as it was without `managed`.
  assert.equal(radvdConfig('eth1', 200, 600, undefined), radvdConfig('eth1'))
  for (const bad of ['2001:db8::/64; }; interface lo {', '198.18.0.0/24', '2001:db8::/200', 'zz::/64']) {
    assert.throws(() => radvdConfig('eth1', 200, 600, { prefix: bad }), /not an IPv6 prefix/, bad)
  }
  assert.throws(() => radvdConfig('eth1', 200, 600, { prefix: '2001:db8::/64', validSeconds: 10, preferredSeconds: 20 }), /exceeds/)
})

test('managed router advertisements carry the prefix and the stateful (M) flag (rdisc6 asks)', async (t) => {
  if (skipUnlessNetns(t, ['radvd', 'rdisc6'])) return
  const { srv, cli, dir } = await raSegment(t, 'ram')
  const ra = await startAdverts(t, srv, dir, { prefix: '2001:db8:7::/64' })
  const answer = await askRouter(cli)
  assert.match(answer, /Stateful address conf\.\s*:\s*Yes/, answer)
  assert.match(answer, /Stateful other conf\.\s*:\s*Yes/)
  assert.match(answer, /Router lifetime\s*:\s*0\b/)
  assert.match(answer, /Prefix\s*:\s*2001:db8:7::\/64/)
  assert.match(answer, /Autonomous address conf\.\s*:\s*No/)
  await ra.stop()
})

test('boot router config: unicast to the listed link-local clients, router lifetime 30 at low preference, the same prefix and flags; anything else refused', () => {
  const managed = { prefix: '2001:db8:7::/64' }
  const conf = bootRouterConfig('eth1', managed, ['fe80::5054:ff:fe1d:29c3', 'fe80::1'])
  assert.match(conf, /AdvDefaultLifetime 30;\n\s*AdvDefaultPreference low;/)
  assert.match(conf, /clients \{\n\s*fe80::5054:ff:fe1d:29c3;\n\s*fe80::1;\n\s*\};\n\};\n$/)
  assert.match(conf, /^\s*prefix 2001:db8:7::\/64 \{$/m)
  assert.match(conf, /MinRtrAdvInterval 3;\n\s*MaxRtrAdvInterval 4;/)
  // The segment's own advertisement is untouched: no default route for anyone else.
  assert.match(radvdConfig('eth1', 200, 600, managed), /AdvDefaultLifetime 0;/)
  assert.doesNotMatch(radvdConfig('eth1', 200, 600, managed), /clients/)
  for (const bad of ['2001:db8:7::5', 'fe80::1; }; interface lo {', '198.18.0.1', 'fe80::1%eth0', '']) {
    assert.throws(() => bootRouterConfig('eth1', managed, [bad]), /not a link-local/, bad)
  }
})

/** Router advertisements tcpdump sees on `ns`'s eth0, as lines. */
async function watchAdverts(t: TestContext, ns: Netns) {
  const dump = ns.spawn(['tcpdump', '-i', 'eth0', '-n', '-l', '-tt', '-v', 'icmp6 and ip6[40] == 134'])
  t.after(() => { dump.kill() })
  let out = ''
  let err = ''
  dump.stdout?.on('data', (d: Buffer) => (out += d.toString()))
  dump.stderr?.on('data', (d: Buffer) => (err += d.toString()))
  await waitFor(async () => (/listening on/.test(err) ? true : undefined), { what: 'tcpdump listening', timeoutMs: 10_000 })
  // -v prints an advertisement over several lines: one string per advertisement.
  return () => out.split(/\n(?=\d+\.\d+ )/).filter((l) => /router advertisement/.test(l))
}

test('routeFor: the firmware alone gets a default route (unicast, lifetime 30, low), soon; the segment keeps lifetime 0; a final lifetime-0 advertisement ends it', async (t) => {
  if (skipUnlessNetns(t, ['radvd', 'tcpdump'])) return
  const { srv, cli, dir } = await raSegment(t, 'rab')
  const ra = await startAdverts(t, srv, dir, { prefix: '2001:db8:7::/64' })
  const linkLocal = (await cli.exec(['ip', '-6', '-o', 'addr', 'show', 'dev', 'eth0', 'scope', 'link'])).stdout.match(/inet6 (fe80::[0-9a-f:]+)/)![1]!
  // radvd's start-up advertisement, then none for 16 s: whatever is seen below is the boot router's.
  await new Promise((r) => setTimeout(r, 1000))
  const adverts = await watchAdverts(t, cli)
  const t0 = performance.now()
  ra.routeFor(`${linkLocal}%eth0`)
  ra.routeFor('fe80::dead:1') // another firmware: its advertisements go to it, not to this host
  await waitFor(async () => (adverts().length >= 1 ? true : undefined), { what: 'the boot router\'s advertisement', timeoutMs: 3_000 })
  const first = adverts()[0]!
  assert.ok(performance.now() - t0 < 1500, `advertised ${(performance.now() - t0).toFixed(0)} ms after routeFor`)
  assert.match(first, new RegExp(`> ${linkLocal}: `), `unicast to the firmware: ${first}`)
  assert.match(first, /router lifetime 30s/)
  assert.match(first, /pref low/)
  assert.match(first, /2001:db8:7::\/64/)
  assert.equal(adverts().filter((a) => / > ff02::1: /.test(a)).length, 0, 'no multicast advertisement with a lifetime')
  await ra.stop()
  await waitFor(async () => (adverts().some((a) => /router lifetime 0s/.test(a)) ? true : undefined), { what: 'the final advertisement', timeoutMs: 5_000 })
  for (const a of adverts()) {
    assert.match(a, /router lifetime (30|0)s/, a)
    if (/router lifetime 30s/.test(a)) assert.match(a, new RegExp(`> ${linkLocal}: `), a)
  }
})

test('routeFor: addresses that are not link-local are ignored; the boot router stops once its clients expire', async (t) => {
  if (skipUnlessNetns(t, ['radvd'])) return
  const { srv, dir } = await raSegment(t, 'rae')
  const ra = await startAdverts(t, srv, dir, { prefix: '2001:db8:7::/64' })
  const bootRadvd = async () => (await srv.exec(['pgrep', '-f', 'radvd-boot.conf'], { check: false })).stdout.trim()
  ra.routeFor('2001:db8:7::5')
  ra.routeFor('not an address')
  await new Promise((r) => setTimeout(r, 500))
  assert.equal(await bootRadvd(), '', 'no boot router for a global or bogus address')
  ra.routeFor('fe80::dead:2')
  await waitFor(async () => ((await bootRadvd()) ? true : undefined), { what: 'the boot router running', timeoutMs: 3_000 })
  await waitFor(async () => ((await bootRadvd()) === '' ? true : undefined), { what: 'the boot router stopping after its client expired', timeoutMs: BOOT_CLIENT_TTL_MS + 8_000 })
})
