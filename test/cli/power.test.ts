import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { mkdirSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { openSqliteInventory, type Inventory } from '../../src/inventory/index.js'
import { silentLogger } from '../../src/log.js'
import { createPowerManager, powerResultLine } from '../../src/power/index.js'
import { rackbootAsync, startApi, tempCwd, type ApiServer } from '../support/cli.js'
import { missing, startIpmiSim } from '../power/fixtures/bmc-sims.js'
import { startRedfishServer } from '../power/fixtures/redfish-server.js'

// `rackboot power` through the API (the server drives the BMCs; each failed attempt it retries is a line as it
// happens) and with --data-dir (this process drives them), against ipmi_sim, a Redfish fake, and a BMC that never
// answers.

const POWER = { ipmiBootVerify: 'device' as const, timeoutMs: 1500, attempts: 2, backoffBaseMs: 600, backoffMaxMs: 800, poll: false, verifyIntervalMs: 200 }
const SECRETS = ['calvin-Secret9', 'password-sim']

/** A UDP port that takes IPMI datagrams and never answers (a BMC behind a dead link). */
async function silentBmc(t: { after(fn: () => unknown): void }): Promise<number> {
  const sock = createSocket('udp4')
  sock.on('message', () => {})
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r))
  t.after(() => sock.close())
  return sock.address().port
}

/** A TCP port nothing listens on: a Redfish BMC there is unreachable (connection refused), which is retried. */
async function closedPort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as { port: number }).port
  await new Promise((r) => s.close(r))
  return port
}

async function seed(inv: Inventory, ports: { sim: number; silent: number; refused: number }, redfishUrl: string): Promise<void> {
  const now = Date.now()
  const sim = await inv.machines.create({ name: 'sim-1', serial: 'SIM1', firmware: 'bios' }, now)
  await inv.bmcs.put(sim.id, { type: 'ipmi', address: '127.0.0.1', port: ports.sim, username: 'admin', password: 'password-sim' })
  const rf = await inv.machines.create({ name: 'rf-1', serial: 'RF1' }, now)
  await inv.bmcs.put(rf.id, { type: 'redfish', address: redfishUrl, username: 'root', password: 'calvin-Secret9' })
  const dead = await inv.machines.create({ name: 'dead-1', serial: 'DEAD1' }, now)
  await inv.bmcs.put(dead.id, { type: 'redfish', address: `http://127.0.0.1:${ports.refused}`, username: 'root', password: 'calvin-Secret9' })
  const silent = await inv.machines.create({ name: 'silent-1', serial: 'SILENT1' }, now)
  await inv.bmcs.put(silent.id, { type: 'ipmi', address: '127.0.0.1', port: ports.silent, username: 'admin', password: 'password-sim' })
  await inv.machines.create({ name: 'no-bmc', serial: 'NOBMC' }, now)
}

test('rackboot power through the API: ipmi_sim and Redfish at once, a table, retries of a dead BMC as lines, identify; and with --data-dir', async (t) => {
  const why = missing('ipmi_sim', 'ipmitool')
  if (why) return t.skip(why)
  // ipmi_sim's admin password is "password"; the harness's lan.conf is used as is.
  const sim = await startIpmiSim(t)
  const redfish = await startRedfishServer({ username: 'root', password: 'calvin-Secret9' })
  t.after(() => redfish.close())
  const silent = await silentBmc(t)
  const refused = await closedPort()
  let api: ApiServer | null = null
  api = await startApi({
    powerManager: (inventory) => createPowerManager({
      bmcs: inventory.bmcs, log: silentLogger(), settings: POWER, driverOptions: { ipmi: { bootVerify: 'device' } },
      // As serve records them: every attempt on the machine's timeline, where the event stream finds it.
      observer: { result: (r) => api?.lifecycle.record(r.machineId, 'power', powerResultLine(r), { ...r }) },
    }),
  })
  t.after(() => api!.close())
  await seed(api.inventory, { sim: sim.port, silent, refused }, redfish.url)
  // ipmi_sim's admin password.
  await api.inventory.bmcs.put((await api.inventory.machines.byName('sim-1'))!.id, { type: 'ipmi', address: '127.0.0.1', port: sim.port, username: 'admin', password: 'password' })

  const on = await api.cli(['power', 'on', 'sim-1', 'rf-1'], { scope: 'provision' })
  assert.equal(on.code, 0, on.stdout + on.stderr)
  assert.match(on.stdout, /^MACHINE\s+OK\s+RESULT\s+MS$/m)
  assert.match(on.stdout, /rf-1\s+yes\s+on: done, on \(verified\)/)
  assert.match(on.stdout, /sim-1\s+yes\s+on: done, on \(verified\)/)
  assert.match(on.stderr, /power on: 2\/2 done/)
  assert.ok(sim.calls().some((c) => /power 1/.test(c)), `ipmi_sim was asked to power on: ${sim.calls().join(' | ')}`)
  assert.equal(redfish.state.power, 'On')

  const [status, dead, boot] = await Promise.all([
    api.cli(['power', 'status', 'sim-1', 'rf-1', '--json'], { scope: 'read' }),
    // A BMC that refuses connections: the server tries again, and the failed attempt is a line as it happens.
    api.cli(['power', 'status', 'dead-1', 'no-bmc', 'nosuch'], { scope: 'read' }),
    api.cli(['power', 'boot-device', 'rf-1'], { scope: 'read' }),
  ])
  assert.equal(status.code, 0, status.stderr)
  assert.deepEqual(JSON.parse(status.stdout).map((o: { machine: string; result: string }) => `${o.machine}=${o.result}`), ['rf-1=on', 'sim-1=on'])
  assert.equal(dead.code, 1)
  assert.match(dead.stderr, /^dead-1: power status failed: .*; trying again$/m)
  assert.match(dead.stdout, /dead-1\s+FAILED\s+\S/)
  assert.match(dead.stdout, /no-bmc\s+FAILED\s+.*no BMC/)
  assert.match(dead.stdout, /nosuch\s+FAILED\s+machine not found: nosuch/)
  assert.match(dead.stderr, /power status: 3\/3 done, 3 failed/)
  assert.equal(boot.code, 0, boot.stderr)

  const [pxe, identify] = await Promise.all([
    api.cli(['power', 'pxe', 'rf-1', '--uefi'], { scope: 'provision' }),
    api.cli(['machines', 'identify', 'rf-1', '--seconds', '30'], { scope: 'provision' }),
  ])
  assert.equal(pxe.code, 0, pxe.stdout + pxe.stderr)
  assert.match(pxe.stdout, /rf-1\s+yes\s+next boot pxe uefi verified \(pxe\); was on, power cycled/)
  assert.equal(redfish.state.boot.BootSourceOverrideTarget, 'Pxe')
  assert.equal(identify.code, 0, identify.stderr)
  assert.match(identify.stdout, /^rf-1: identify light on until turned off \(redfish .*\); Redfish has no identify timer/)
  // A BMC that never answers: at most --timeout for each machine.
  const short = await api.cli(['power', 'status', 'silent-1', '--timeout', '0.5'], { scope: 'read' })
  assert.equal(short.code, 1)
  assert.match(short.stdout, /silent-1\s+FAILED\s+gave up after 0\.5 s \(--timeout\); anything already sent to the BMC was not recalled/)
  for (const r of [on, status, dead, pxe, identify, short]) for (const s of SECRETS) assert.ok(!(r.stdout + r.stderr).includes(s), 'no password in output')

  // --data-dir: this process drives the BMCs, with the credentials from the database; attempts on the timeline.
  const cwd = tempCwd()
  const dataDir = join(cwd, 'data')
  mkdirSync(dataDir, { mode: 0o700 })
  const inv = await openSqliteInventory({ file: join(dataDir, 'rackboot.db'), secretKeyFile: join(dataDir, 'secret.key') })
  await seed(inv, { sim: sim.port, silent, refused }, redfish.url)
  await inv.bmcs.put((await inv.machines.byName('sim-1'))!.id, { type: 'ipmi', address: '127.0.0.1', port: sim.port, username: 'admin', password: 'password' })
  await inv.close()
  const set = Object.entries(POWER).flatMap(([k, v]) => ['--set', `power.${k}=${v}`])
  const local = await rackbootAsync(['power', 'off', 'sim-1', 'rf-1', 'dead-1', '--data-dir', dataDir, ...set], { cwd })
  assert.equal(local.code, 1, local.stdout + local.stderr)
  assert.match(local.stdout, /rf-1\s+yes\s+off: done, off \(verified\)/)
  assert.match(local.stdout, /sim-1\s+yes\s+off: done/)
  assert.match(local.stdout, /dead-1\s+FAILED/)
  assert.match(local.stderr, /^dead-1: power off \(CLI\) failed: .*(trying again|not re-sent)/m)
  assert.equal(redfish.state.power, 'Off')
  const check = await openSqliteInventory({ file: join(dataDir, 'rackboot.db'), secretKeyFile: join(dataDir, 'secret.key') })
  const events = await check.events.list({ machineId: (await check.machines.byName('rf-1'))!.id })
  await check.close()
  assert.ok(events.some((e) => e.type === 'power' && /power off \(CLI\): done/.test(e.message)), JSON.stringify(events.map((e) => e.message)))
  for (const s of SECRETS) assert.ok(!(local.stdout + local.stderr).includes(s))
})
