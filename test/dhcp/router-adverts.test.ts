import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { createRouterAdverts, findRadvd, radvdConfig } from '../../src/dhcp/index.js'
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
  const ra = createRouterAdverts({ interface: 'eth0', runDir: dir, log: silentLogger(), program: findRadvd()!, wrap: ['ip', 'netns', 'exec', srv.name] })
  await ra.start()
  t.after(() => ra.stop())
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
  const ra = createRouterAdverts({
    interface: 'eth0', runDir: dir, log: silentLogger(), program: findRadvd()!, wrap: ['ip', 'netns', 'exec', srv.name],
    managed: { prefix: '2001:db8:7::/64' },
  })
  await ra.start()
  t.after(() => ra.stop())
  const answer = await askRouter(cli)
  assert.match(answer, /Stateful address conf\.\s*:\s*Yes/, answer)
  assert.match(answer, /Stateful other conf\.\s*:\s*Yes/)
  assert.match(answer, /Router lifetime\s*:\s*0\b/)
  assert.match(answer, /Prefix\s*:\s*2001:db8:7::\/64/)
  assert.match(answer, /Autonomous address conf\.\s*:\s*No/)
  await ra.stop()
})
