import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { rackboot, startServe, tempCwd } from '../support/cli.js'
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
  assert.equal(rackboot(['inventory', 'import', join(cwd, 'inv')], { cwd }).code, 0)
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
  await new Promise((r) => setTimeout(r, 1000))
  assert.match(rackboot(['machines', 'show', 'node-1'], { cwd }).stdout, /state\s+provisioning/)
  await send([{ msg: '[talos] install successful', facility: 'user', priority: 'info', seq: 2, clock: 2 }])
  let shown = ''
  for (let i = 0; i < 20 && !/state\s+installed/.test(shown); i++) {
    await new Promise((r) => setTimeout(r, 500))
    shown = rackboot(['machines', 'show', 'node-1'], { cwd }).stdout
  }
  assert.match(shown, /state\s+installed/)
  assert.match(shown, /provisioning → installed: Talos reported: kernel log: \[talos\] install successful/)
  // The kernel log Talos sent is kept for the machine and readable through the API.
  const token = JSON.parse(rackboot(['tokens', 'create', 'reader', '--scope', 'read', '--json'], { cwd }).stdout).secret
  const logs = await fetch(`http://127.0.0.1:${http}/api/v1/machines/node-1/logs`, { headers: { authorization: `Bearer ${token}` } })
  assert.equal(logs.status, 200)
  const body = (await logs.json()) as { peers: string[]; lines: { msg: string }[] }
  assert.deepEqual(body.peers, ['127.0.0.1'])
  assert.deepEqual(body.lines.map((l) => l.msg), ['[talos] task install (1/1): starting', '[talos] install successful'])
  assert.equal((await fetch(`http://127.0.0.1:${http}/api/v1/machines/node-1/logs`)).status, 401)
  const { rackbootAsync } = await import('../support/cli.js')
  const cli = await rackbootAsync(['machines', 'logs', 'node-1', '--set', `http.port=${http}`], { cwd, env: { RACKBOOT_TOKEN: token } })
  assert.equal(cli.code, 0, cli.stderr)
  assert.match(cli.stdout, /\[talos\] install successful/)
  assert.equal((await rackbootAsync(['machines', 'logs', 'node-1', '--set', `http.port=${http}`], { cwd, env: { RACKBOOT_TOKEN: '' } })).code, 2)
  // Installed: the next boot goes to disk.
  assert.match(await (await fetch(`http://127.0.0.1:${http}/boot.ipxe?mac=02-00-00-00-aa-01&arch=x86_64`)).text(), /installed: boot from disk\nexit/)
})
