import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { rackboot, rackbootAsync, seedToken, startServe, tempCwd } from '../support/cli.js'
import { leaseAddress } from '../support/leases.js'

const port = () => 20000 + Math.floor(Math.random() * 40000)

test('serve: a provisioning machine is marked installed from what Talos reports in its kernel log, not before', async (t) => {
  const cwd = tempCwd()
  mkdirSync(join(cwd, 'inv'))
  writeFileSync(join(cwd, 'inv', 'm.yaml'), `profiles:
  - { name: w, talosVersion: v1.13.9, arch: amd64 }
machines:
  - { name: node-1, serial: N1, profile: w, nics: [{ mac: "02:00:00:00:aa:01", boot: true }] }
`)
  // No server yet: the inventory goes straight into the data directory the server will use.
  const imported = rackboot(['inventory', 'import', join(cwd, 'inv'), '--data-dir', join(cwd, 'data')], { cwd })
  assert.equal(imported.code, 0, imported.stderr)
  // Move it to provisioning the way an allocation does (through the lifecycle's table: new -> ... -> provisioning).
  const { openSqliteInventory } = await import('../../src/inventory/index.js')
  const { generateConfig, generateSecretsBundle } = await import('../../src/talos/index.js')
  const inv = await openSqliteInventory({ file: join(cwd, 'data', 'rackboot.db'), secretKeyFile: join(cwd, 'data', 'secret.key') })
  const m = (await inv.machines.byName('node-1'))!
  await inv.machines.setState(m.id, 'new', 'provisioning', Date.now())
  const secrets = await generateSecretsBundle({ talosVersion: 'v1.13.9', rsaBits: 2048 })
  const baseConfig = generateConfig({ secrets, clusterName: 'lab', endpoint: 'https://198.18.0.10:6443', talosVersion: 'v1.13.9', role: 'worker' }).yaml
  await inv.profiles.put({ ...(await inv.profiles.get('w'))!, baseConfig }, Date.now())
  // rackboot's DHCP bound 127.0.0.1 to the machine's NIC: the network's word that this address is node-1.
  await leaseAddress(inv, '127.0.0.1', '02:00:00:00:aa:01')
  await inv.close()
  const token = await seedToken(join(cwd, 'data'), ['read'], 'reader')

  const http = port()
  const kmsg = port()
  const sink = port()
  const server = await startServe(['--set', `http.port=${http}`, '--set', 'http.listen=127.0.0.1', '--set', 'tftp.port=0', '--set', `talos.kernelLogPort=${kmsg}`, '--set', `talos.eventsSinkPort=${sink}`], { cwd })
  t.after(() => server.stop())
  const script = await (await fetch(`http://127.0.0.1:${http}/boot.ipxe?mac=02-00-00-00-aa-01&arch=x86_64`)).text()
  assert.match(script, new RegExp(`talos\\.events\\.sink=127\\.0\\.0\\.1:${sink} talos\\.logging\\.kernel=tcp://127\\.0\\.0\\.1:${kmsg}/`))
  // Talos fetches its config: from now on this address speaks for node-1 in this boot.
  const configUrl = /talos\.config=(\S+)/.exec(script)![1]!
  assert.equal((await fetch(configUrl)).status, 200)

  const send = (lines: object[]) => new Promise<void>((resolve, reject) => {
    const sock = connect(kmsg, '127.0.0.1', () => sock.end(lines.map((l) => JSON.stringify(l)).join('\n') + '\n'))
    sock.on('close', () => resolve())
    sock.on('error', reject)
  })
  await send([{ msg: '[talos] task install (1/1): starting', facility: 'user', priority: 'info', seq: 1, clock: 1 }])
  const api = (path: string) => fetch(`http://127.0.0.1:${http}/api/v1${path}`, { headers: { authorization: `Bearer ${token}` } })
  const state = async () => ((await (await api('/machines/node-1')).json()) as { state: string }).state
  await new Promise((r) => setTimeout(r, 1000))
  assert.equal(await state(), 'provisioning')
  await send([{ msg: '[talos] install successful', facility: 'user', priority: 'info', seq: 2, clock: 2 }])
  for (let i = 0; i < 40 && (await state()) !== 'installed'; i++) await new Promise((r) => setTimeout(r, 250))
  const env = { RACKBOOT_URL: `http://127.0.0.1:${http}`, RACKBOOT_TOKEN: token }
  const [shown, cli, noToken] = await Promise.all([
    rackbootAsync(['machines', 'show', 'node-1'], { cwd, env }),
    // The kernel log Talos sent is kept for the machine and readable through the API.
    rackbootAsync(['machines', 'logs', 'node-1'], { cwd, env }),
    rackbootAsync(['machines', 'logs', 'node-1'], { cwd, env: { RACKBOOT_URL: env.RACKBOOT_URL } }),
  ])
  assert.match(shown.stdout, /state\s+installed/)
  assert.match(shown.stdout, /provisioning → installed: Talos reported: kernel log: \[talos\] install successful/)
  const logs = await api('/machines/node-1/logs')
  assert.equal(logs.status, 200)
  const body = (await logs.json()) as { peers: string[]; lines: { msg: string }[] }
  assert.deepEqual(body.peers, ['127.0.0.1'])
  assert.deepEqual(body.lines.map((l) => l.msg), ['[talos] task install (1/1): starting', '[talos] install successful'])
  assert.equal((await fetch(`http://127.0.0.1:${http}/api/v1/machines/node-1/logs`)).status, 401)
  assert.equal(cli.code, 0, cli.stderr)
  assert.match(cli.stdout, /\[talos\] install successful/)
  assert.equal(noToken.code, 1)
  assert.match(noToken.stderr, /^rackboot machines logs: no API token given; this needs an API token with the 'read' scope: run `rackboot login http:\/\/127\.0\.0\.1:\d+ --token TOKEN` or set RACKBOOT_TOKEN/)
  // Installed: the next boot goes to disk.
  assert.match(await (await fetch(`http://127.0.0.1:${http}/boot.ipxe?mac=02-00-00-00-aa-01&arch=x86_64`)).text(), /installed: boot from disk\nexit/)
})
