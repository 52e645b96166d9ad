import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { rackbootAsync, tempCwd } from '../support/cli.js'
import { missing, startIpmiSim } from '../power/fixtures/bmc-sims.js'
import { startRedfishServer } from '../power/fixtures/redfish-server.js'

test('rackboot power drives an ipmi_sim BMC and a Redfish BMC at once, with a table and timeline entries', async (t) => {
  const why = missing('ipmi_sim', 'ipmitool')
  if (why) return t.skip(why)
  const sim = await startIpmiSim(t)
  const redfish = await startRedfishServer({ username: 'root', password: 'calvin-Secret9' })
  t.after(() => redfish.close())
  const cwd = tempCwd()
  mkdirSync(join(cwd, 'inv'))
  writeFileSync(join(cwd, 'inv', 'm.yaml'), `machines:
  - name: sim-1
    serial: SIM1
    firmware: bios
    bmc: { type: ipmi, address: 127.0.0.1, port: ${sim.port}, username: admin, passwordFrom: env:SIM_PW }
  - name: rf-1
    serial: RF1
    bmc: { type: redfish, address: "${redfish.url}", username: root, passwordFrom: env:RF_PW }
  - name: no-bmc
    serial: NOBMC
`)
  const env = { SIM_PW: 'password', RF_PW: 'calvin-Secret9' }
  const imp = await rackbootAsync(['inventory', 'import', join(cwd, 'inv')], { cwd, env })
  assert.equal(imp.code, 0, imp.stderr)
  const set = ['--set', 'power.ipmiBootVerify=device', '--set', 'power.timeoutMs=5000', '--set', 'power.attempts=1']

  const on = await rackbootAsync(['power', 'on', 'sim-1', 'rf-1', ...set], { cwd })
  assert.equal(on.code, 0, on.stdout + on.stderr)
  assert.match(on.stdout, /rf-1\s+yes\s+on: done, on \(verified\)/)
  assert.match(on.stdout, /sim-1\s+yes\s+on: done, on \(verified\)/)
  assert.match(on.stderr, /power on: 2\/2 done/)
  assert.ok(sim.calls().some((c) => /power 1/.test(c)), `ipmi_sim was asked to power on: ${sim.calls().join(' | ')}`)
  assert.equal(redfish.state.power, 'On')

  const status = await rackbootAsync(['power', 'status', 'sim-1', 'rf-1', '--json', ...set], { cwd })
  assert.equal(status.code, 0, status.stderr)
  assert.deepEqual(JSON.parse(status.stdout).map((o: { machine: string; result: string }) => `${o.machine}=${o.result}`), ['rf-1=on', 'sim-1=on'])

  const pxe = await rackbootAsync(['power', 'pxe', 'rf-1', '--uefi', ...set], { cwd })
  assert.equal(pxe.code, 0, pxe.stdout + pxe.stderr)
  assert.match(pxe.stdout, /next boot pxe uefi next boot only, verified; was on, power cycled, on \(verified\)/)
  assert.equal(redfish.state.boot.BootSourceOverrideTarget, 'Pxe')

  const mixed = await rackbootAsync(['power', 'off', 'sim-1', 'no-bmc', ...set], { cwd })
  assert.equal(mixed.code, 1)
  assert.match(mixed.stdout, /no-bmc\s+FAILED\s+.*BMC/i)
  assert.match(mixed.stdout, /sim-1\s+yes\s+off: done/)
  for (const r of [on, status, pxe, mixed]) assert.ok(!(r.stdout + r.stderr).includes('calvin-Secret9'), 'no password in output')

  // The same through the API of a running server.
  const http = 20000 + Math.floor(Math.random() * 40000)
  const { startServe } = await import('../support/cli.js')
  const server = await startServe(['--set', `http.port=${http}`, '--set', 'http.listen=127.0.0.1', '--set', 'tftp.port=0', '--set', 'talos.eventsSinkPort=0', '--set', 'talos.kernelLogPort=0', ...set], { cwd })
  t.after(() => server.stop())
  const token = JSON.parse((await rackbootAsync(['tokens', 'create', 'ops', '--scope', 'provision', '--json'], { cwd })).stdout).secret
  const api = (method: string, path: string, body?: unknown) => fetch(`http://127.0.0.1:${http}/api/v1${path}`, {
    method, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}),
  })
  const off = await api('POST', '/machines/rf-1/power', { action: 'off' })
  assert.equal(off.status, 200, await off.clone().text())
  assert.equal(redfish.state.power, 'Off')
  const got = await api('GET', '/machines/rf-1/power')
  const view = (await got.json()) as { state: string; bootOverride: { device: string } | null }
  assert.equal(view.state, 'off')
  assert.equal(view.bootOverride?.device, 'pxe')
  assert.equal((await api('POST', '/machines/no-bmc/power', { action: 'on' })).status, 422)
  assert.equal((await api('POST', '/machines/rf-1/power', { action: 'dance' })).status, 400)
  const show = await rackbootAsync(['machines', 'show', 'rf-1'], { cwd })
  assert.match(show.stdout, /power cycle \(CLI\): done/)
  assert.equal((await rackbootAsync(['power', 'dance', 'rf-1'], { cwd })).code, 2)
})
