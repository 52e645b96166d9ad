// A lossy path: the client lives in a network namespace behind a veth whose ingress drops ~5 % of the UDP the
// server sends (nftables; the kernel has no netem). Files must still arrive intact.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { randomInt } from 'node:crypto'
import { createNetLab, netnsSkipReason } from '../support/netns.js'
import { makeFiles, metricValue, sha256File, startServer, tempDir, waitFor } from './support.js'

const skip = netnsSkipReason(['atftp', 'nft'])

test('5 % loss towards the client: windowed and lock-step transfers arrive intact', { skip: skip ?? false, timeout: 600_000 }, async (t) => {
  const lab = await createNetLab(t)
  const cli = await lab.ns('tftpc')
  // A random /30 in 198.19.128.0/17: the server end lives in the root namespace, beside other tests' links.
  const base = `198.19.${randomInt(128, 256)}.${randomInt(0, 64) * 4}`
  const [a, b, c] = base.split('.')
  const d = Number(base.split('.')[3])
  const serverIp = `${a}.${b}.${c}.${d + 1}`
  const clientIp = `${a}.${b}.${c}.${d + 2}`
  const hostIf = lab.ifname('rbtf')
  await lab.veth({ name: hostIf, cidr: `${serverIp}/30` }, { ns: cli, name: 'eth0', cidr: `${clientIp}/30` })
  const ruleset = `table netdev loss {
  chain in {
    type filter hook ingress device eth0 priority 0;
    meta protocol ip ip saddr ${serverIp} ip protocol udp numgen random mod 1000 < 50 counter drop
  }
}
`
  await cli.exec(['nft', '-f', '-'], { input: ruleset })

  const root = await tempDir(t, 'rb-tftp-loss-')
  const sums = await makeFiles(root, { 'f2m.bin': 2 * 1024 * 1024, 'f128k.bin': 128 * 1024 })
  const srv = await startServer(t, { root, settings: { listen: serverIp } })
  const port = String(srv.port)

  const dest = join(root, 'out-w8.bin')
  const t0 = Date.now()
  const r = await cli.exec(
    ['atftp', '--option', 'blksize 1468', '--option', 'windowsize 8', '-g', '-r', 'f2m.bin', '-l', dest, serverIp, port],
    { timeoutMs: 300_000, check: false },
  )
  assert.equal(r.code, 0, `atftp windowsize 8: ${r.stderr}${r.stdout}`)
  assert.equal(await sha256File(dest), sums['f2m.bin'])

  const windowedMs = Date.now() - t0
  const tftp = (await cli.exec(['sh', '-c', 'command -v tftp'], { check: false })).stdout.trim()
  if (tftp) {
    const dest2 = join(root, 'out-hpa.bin')
    const r2 = await cli.exec([tftp, serverIp, port, '-m', 'binary', '-c', 'get', 'f128k.bin', dest2], { timeoutMs: 300_000, check: false })
    assert.equal(r2.code, 0, `tftp-hpa: ${r2.stderr}${r2.stdout}`)
    assert.equal(await sha256File(dest2), sums['f128k.bin'])
  }

  // The path really was lossy, and the server really recovered by retransmitting.
  const listed = (await cli.exec(['nft', 'list', 'table', 'netdev', 'loss'])).stdout
  const dropped = Number(/counter packets (\d+)/.exec(listed)?.[1] ?? '0')
  assert.ok(dropped > 0, `nftables dropped nothing: ${listed}`)
  await waitFor(() => srv.server.stats().activeTransfers === 0)
  assert.ok(srv.server.stats().retransmissions > 0)
  assert.ok((await metricValue(srv.metrics, 'rackboot_tftp_retransmissions_total')) > 0)
  t.diagnostic(`dropped ${dropped} datagrams, retransmitted ${srv.server.stats().retransmissions}; windowed 2 MiB in ${windowedMs} ms`)
})
