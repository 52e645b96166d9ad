// The shared namespace helper (test/support/netns.ts): what it builds works, and teardown leaves nothing behind.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createNetLab, netnsSkipReason, run, waitFor } from '../support/netns.js'

const skip = netnsSkipReason(['busybox'])

test('netns helper: veth, bridge, exec, spawn; teardown removes namespaces, links and processes, and never throws', { skip: skip ?? false, timeout: 60_000 }, async () => {
  const lab = await createNetLab()
  const a = await lab.ns('ha')
  const b = await lab.ns('hb')
  const sw = await lab.ns('hsw')
  await lab.veth({ ns: sw, name: 'p-a' }, { ns: a, name: 'eth0', cidr: '198.18.251.1/24' })
  await lab.veth({ ns: sw, name: 'p-b' }, { ns: b, name: 'eth0', cidr: '198.18.251.2/24', mac: '02:00:00:00:fb:02' })
  await lab.bridge(sw, 'br0', ['p-a', 'p-b'])
  const rootEnd = lab.ifname('rbt')
  await lab.veth({ name: rootEnd }, { ns: a, name: 'eth1', cidr: '198.18.252.2/24' })
  assert.ok(rootEnd.length <= 15)
  const ping = await waitFor(async () => {
    const r = await a.exec(['busybox', 'ping', '-c', '1', '-W', '1', '198.18.251.2'], { check: false })
    return r.code === 0 ? r : undefined
  }, { what: 'ping across the bridge', timeoutMs: 20_000 })
  assert.match(ping.stdout, /1 packets received/)
  assert.match((await b.ip(['link', 'show', 'dev', 'eth0'])).stdout, /02:00:00:00:fb:02/)
  const sleeper = b.spawn(['sleep', '300'])
  const pid = sleeper.pid!
  await assert.rejects(a.exec(['false']), /failed/)
  assert.equal((await a.exec(['false'], { check: false })).code, 1)

  await lab.destroy()
  await lab.destroy()
  const list = (await run(['ip', 'netns', 'list'])).stdout
  assert.ok(!list.includes(lab.tag), list)
  assert.equal((await run(['ip', 'link', 'show', 'dev', rootEnd], { check: false })).code !== 0, true)
  assert.throws(() => process.kill(pid, 0))
  await assert.rejects(lab.ns('late'), /destroyed/)
})
