import { test } from 'node:test'
import assert from 'node:assert/strict'
import { cpSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { rackboot, REPO, startServe, tempCwd } from '../support/cli.js'

const EXAMPLE = join(REPO, 'inventory')

test('serve starts with no settings file and answers /healthz; SIGTERM stops it cleanly', async (t) => {
  const cwd = tempCwd()
  const port = 20000 + Math.floor(Math.random() * 20000)
  const server = await startServe(['--set', `http.port=${port}`, '--set', 'http.listen=127.0.0.1', '--set', 'tftp.port=0', '--set', 'tftp.listen=127.0.0.1', '--set', 'talos.eventsSinkPort=0', '--set', 'talos.kernelLogPort=0'], { cwd })
  t.after(() => server.stop())
  const res = await fetch(`http://127.0.0.1:${port}/healthz`)
  assert.equal(res.status, 200)
  const body = (await res.json()) as { status: string; checks: Record<string, string>; warnings?: string[] }
  // A fresh checkout has no boot files yet: up (200), but degraded, saying what is missing and what fetches it.
  assert.equal(body.status, 'degraded')
  assert.equal(body.checks.database, 'ok')
  assert.equal(body.checks.tftp, 'ok')
  assert.ok(body.warnings?.some((w) => /iPXE loaders missing .*run rackboot assets fetch ipxe/.test(w)), JSON.stringify(body.warnings))
  assert.ok(body.warnings?.some((w) => /discovery agent missing .*run rackboot assets build agent/.test(w)), JSON.stringify(body.warnings))
  // With the files in place it is ok.
  for (const f of ['ipxe/undionly.kpxe', 'ipxe/ipxe.efi', 'agent/vmlinuz', 'agent/agent.img']) {
    mkdirSync(join(cwd, 'assets', dirname(f)), { recursive: true })
    writeFileSync(join(cwd, 'assets', f), 'x')
  }
  assert.equal(((await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { status: string }).status, 'ok')
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  assert.match(metrics, /rackboot_http_request_duration_seconds_count\{method="GET",route="\/healthz",status="200"\} 2/)
  assert.ok(existsSync(join(cwd, 'data', 'rackboot.db')), 'the database lives in ./data')
  assert.equal(statSync(join(cwd, 'data', 'secret.key')).mode & 0o777, 0o600)
  assert.equal(await server.stop(), 0)
})

test('inventory import of the example twice: the second changes nothing; machines list and show', () => {
  const cwd = tempCwd()
  const first = rackboot(['inventory', 'import', EXAMPLE], { cwd })
  assert.equal(first.code, 0, first.stderr)
  assert.match(first.stdout, /9 created, 0 updated, 0 deleted, 0 unchanged/)
  const second = rackboot(['inventory', 'import', EXAMPLE], { cwd })
  assert.equal(second.code, 0, second.stderr)
  assert.match(second.stdout, /0 created, 0 updated, 0 deleted, 9 unchanged/)
  const list = rackboot(['machines', 'list'], { cwd })
  assert.match(list.stdout, /r12-u07\s+new\s+7XK4Q93\s+b0:7b:25:de:07:10\s+r12\/u7/)
  assert.match(list.stdout, /4 of 4 machines/)
  const json = JSON.parse(rackboot(['machines', 'list', '--state', 'new', '--label', 'role=controlplane', '--json'], { cwd }).stdout)
  assert.deepEqual(json.items.map((m: { name: string }) => m.name).sort(), ['r12-u02', 'r12-u03'])
  const show = rackboot(['machines', 'show', 'b0:7b:25:de:07:11'], { cwd })
  assert.equal(show.code, 0, show.stderr)
  assert.match(show.stdout, /name\s+r12-u07/)
  assert.match(show.stdout, /bmc\s+redfish 10\.30\.12\.7 user root \(no password\)/)
  assert.match(show.stdout, /machine\.created\s+created by inventory import/)
  assert.match(show.stdout, /network\s+DHCP/)
  assert.match(show.stdout, /install disk\s+none: chosen once the machine reports its disks \(profile talos-worker: type=nvme size=">= 400GB" prefer=smallest\)/)
  const fixed = rackboot(['machines', 'show', 'r12-u03'], { cwd })
  assert.match(fixed.stdout, /network\s+static: 10\.20\.12\.3\/24/)
  assert.match(fixed.stdout, /mac 3c:ec:ef:12:30:03\s+10\.20\.12\.3\/24\s+10\.20\.12\.1\s+9000/)
  assert.match(fixed.stdout, /nameservers: 10\.20\.0\.53, 10\.20\.0\.54/)
  assert.match(fixed.stdout, /profile\s+talos-controlplane \(class control-plane gives profile talos-controlplane\)/)
  const fixedJson = JSON.parse(rackboot(['machines', 'show', 'r12-u02', '--json'], { cwd }).stdout)
  assert.deepEqual(fixedJson.network, { addresses: [{ link: 'eno1', addresses: ['10.20.12.2/24'], gateway: '10.20.12.1' }], nameservers: ['10.20.0.53', '10.20.0.54'] })
  assert.deepEqual(fixedJson.installDisk.selector, { type: 'ssd', size: '<= 1TB', model: 'SAMSUNG MZ7L*' })
})

test('a malformed inventory file: precise error, exit 2, database untouched', () => {
  const cwd = tempCwd()
  assert.equal(rackboot(['inventory', 'import', EXAMPLE], { cwd }).code, 0)
  const db = readFileSync(join(cwd, 'data', 'rackboot.db'))
  const bad = tempCwd('rb-inv-')
  cpSync(EXAMPLE, bad, { recursive: true })
  writeFileSync(join(bad, 'racks', 'r12.yaml'), readFileSync(join(bad, 'racks', 'r12.yaml'), 'utf8').replace('unit: 7', 'unit: seven').replace('name: r12-u09', 'name: r12-u09\n    colour: blue'))
  const res = rackboot(['inventory', 'import', bad], { cwd })
  assert.equal(res.code, 2)
  assert.match(res.stderr, /r12\.yaml:\d+:\d+: machines\[2\]\.unit: must be integer/)
  assert.match(res.stderr, /r12\.yaml:\d+:\d+: machines\[3\]\.colour: unknown field 'colour'/)
  assert.equal(readFileSync(join(cwd, 'data', 'rackboot.db')).equals(db), true, 'the database file is byte for byte the same')
  const list = JSON.parse(rackboot(['machines', 'list', '--json'], { cwd }).stdout)
  assert.equal(list.items.find((m: { name: string }) => m.name === 'r12-u07').rackUnit, 7)
})

test('a malformed settings file: one clear message, exit 2, no database created', () => {
  const cwd = tempCwd()
  writeFileSync(join(cwd, 'rackboot.yaml'), 'http:\n  port: 8080\ndhcp:\n  mode: maybe\n')
  for (const args of [['serve'], ['machines', 'list']]) {
    const res = rackboot(args, { cwd })
    assert.equal(res.code, 2, res.stderr)
    assert.match(res.stderr, /invalid settings in .*rackboot\.yaml: 'dhcp\.mode' must be one of: "off", "full", "proxy"/)
  }
  assert.equal(existsSync(join(cwd, 'data')), false)
})

test('accept, label, delete and tokens through the CLI', () => {
  const cwd = tempCwd()
  rackboot(['inventory', 'import', EXAMPLE], { cwd })
  const accept = rackboot(['machines', 'accept', 'r12-u02'], { cwd })
  assert.equal(accept.code, 1, 'a new machine cannot be accepted before it is discovered')
  assert.match(accept.stderr, /is new, not discovered/)
  const label = rackboot(['machines', 'label', 'r12-u02', 'pool=blue', 'zone-'], { cwd })
  assert.equal(label.code, 0, label.stderr)
  assert.match(label.stdout, /pool=blue, role=controlplane/)
  assert.equal(rackboot(['machines', 'delete', 'r12-u09'], { cwd }).code, 2, 'delete asks for --yes')
  assert.equal(rackboot(['machines', 'delete', 'r12-u09', '--yes'], { cwd }).code, 0)
  assert.equal(rackboot(['machines', 'show', 'r12-u09'], { cwd }).code, 1)
  const created = JSON.parse(rackboot(['tokens', 'create', 'capi', '--scope', 'read,provision', '--json'], { cwd }).stdout)
  assert.match(created.secret, /^rbk_/)
  assert.match(rackboot(['tokens', 'list'], { cwd }).stdout, /capi\s+read,provision.*active/)
  assert.equal(rackboot(['tokens', 'create', 'x', '--scope', 'root'], { cwd }).code, 2)
  assert.equal(rackboot(['tokens', 'revoke', 'capi'], { cwd }).code, 0)
  assert.match(rackboot(['tokens', 'list'], { cwd }).stdout, /revoked/)
  assert.equal(rackboot(['bogus'], { cwd }).code, 2)
})
