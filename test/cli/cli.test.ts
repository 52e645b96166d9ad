import { test } from 'node:test'
import assert from 'node:assert/strict'
import { cpSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { rackboot, REPO, startApi, startServe, tempCwd } from '../support/cli.js'

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
  // arm64 (served by default) boots GRUB and its own agent: both named with their fix.
  assert.ok(body.warnings?.some((w) => /GRUB loaders missing \(grub\/grubnetaa64\.efi\).*run rackboot assets fetch grub/.test(w)), JSON.stringify(body.warnings))
  assert.ok(body.warnings?.some((w) => /arm64 discovery agent missing .*assets build agent --arch arm64/.test(w)), JSON.stringify(body.warnings))
  // With the files in place it is ok.
  for (const f of ['ipxe/undionly.kpxe', 'ipxe/ipxe.efi', 'agent/vmlinuz', 'agent/agent.img', 'grub/grubnetaa64.efi', 'agent/arm64/vmlinuz', 'agent/arm64/agent.img']) {
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

test('through the API: inventory import twice (the second changes nothing), machines list and show', async (t) => {
  const api = await startApi()
  t.after(() => api.close())
  const first = await api.cli(['inventory', 'import', EXAMPLE])
  assert.equal(first.code, 0, first.stderr)
  assert.match(first.stdout, /9 created, 0 updated, 0 deleted, 0 unchanged/)
  const second = await api.cli(['inventory', 'import', EXAMPLE])
  assert.equal(second.code, 0, second.stderr)
  assert.match(second.stdout, /0 created, 0 updated, 0 deleted, 9 unchanged/)

  const [list, json, show, fixed, fixedJson, classes] = await Promise.all([
    api.cli(['machines', 'list']),
    api.cli(['machines', 'list', '--state', 'new', '--label', 'role=controlplane', '--json']),
    api.cli(['machines', 'show', 'b0:7b:25:de:07:11']),
    api.cli(['machines', 'show', 'r12-u03']),
    api.cli(['machines', 'show', 'r12-u02', '--json']),
    api.cli(['classes', 'test', 'r12-u02', '--json']),
  ])
  // Each ended well, or says why (the output of a command that failed would be empty).
  for (const r of [list, json, show, fixed, fixedJson, classes]) assert.equal(r.code, 0, r.stderr)
  assert.match(list.stdout, /r12-u07\s+new\s+7XK4Q93\s+b0:7b:25:de:07:10\s+r12\/u7/)
  assert.match(list.stdout, /^ID\s+NAME\s+STATE\s+SERIAL/m)
  assert.match(list.stdout, /4 of 4 machines/)
  assert.deepEqual(JSON.parse(json.stdout).items.map((m: { name: string }) => m.name).sort(), ['r12-u02', 'r12-u03'])
  assert.equal(show.code, 0, show.stderr)
  assert.match(show.stdout, /name\s+r12-u07/)
  assert.match(show.stdout, /bmc\s+redfish 198\.51\.100\.7 user root \(no password\)/)
  assert.match(show.stdout, /machine\.created\s+created by inventory import/)
  assert.match(show.stdout, /network\s+DHCP/)
  assert.match(show.stdout, /install disk\s+none: chosen once the machine reports its disks \(profile talos-worker: type=nvme size=">= 400GB" prefer=smallest\)/)
  assert.match(fixed.stdout, /network\s+static: 192\.0\.2\.23\/24/)
  assert.match(fixed.stdout, /mac 3c:ec:ef:12:30:03\s+192\.0\.2\.23\/24\s+192\.0\.2\.1\s+9000/)
  assert.match(fixed.stdout, /nameservers: 192\.0\.2\.53, 192\.0\.2\.54/)
  assert.match(fixed.stdout, /profile\s+talos-controlplane \(class control-plane gives profile talos-controlplane\)/)
  assert.deepEqual(JSON.parse(fixedJson.stdout).network, { addresses: [{ link: 'eno1', addresses: ['192.0.2.22/24'], gateway: '192.0.2.1' }], nameservers: ['192.0.2.53', '192.0.2.54'] })
  assert.deepEqual(JSON.parse(classes.stdout).installDisk.selector, { type: 'ssd', size: '<= 1TB', model: 'SAMSUNG MZ7L*' })
})

test('through the API: a malformed inventory file is refused with file:line:column, exit 2, and changes nothing', async (t) => {
  const api = await startApi()
  t.after(() => api.close())
  assert.equal((await api.cli(['inventory', 'import', EXAMPLE])).code, 0)
  const bad = tempCwd('rb-inv-')
  cpSync(EXAMPLE, bad, { recursive: true })
  writeFileSync(join(bad, 'racks', 'r12.yaml'), readFileSync(join(bad, 'racks', 'r12.yaml'), 'utf8').replace('unit: 7', 'unit: seven').replace('name: r12-u09', 'name: r12-u09\n    colour: blue'))
  const [res, check] = await Promise.all([api.cli(['inventory', 'import', bad]), api.cli(['inventory', 'check', bad])])
  assert.equal(res.code, 2, res.stderr)
  // Named as given on the command line, one problem a line.
  assert.match(res.stderr, new RegExp(`^rackboot inventory import: ${bad}/racks/r12\\.yaml:\\d+:\\d+: machines\\[2\\]\\.unit: must be integer`, 'm'))
  assert.match(res.stderr, /^ {2}\S*r12\.yaml:\d+:\d+: machines\[3\]\.colour: unknown field 'colour'$/m)
  // The same problems offline, without a server or a database.
  assert.equal(check.code, 2)
  assert.match(check.stderr, /r12\.yaml:\d+:\d+: machines\[2\]\.unit: must be integer/)
  const machine = await api.inventory.machines.byName('r12-u07')
  assert.equal(machine?.rackUnit, 7, 'nothing was imported')
  const ok = await api.cli(['inventory', 'check', EXAMPLE])
  assert.equal(ok.code, 0, ok.stderr)
  assert.match(ok.stdout, /3 files, 4 machines, 3 classes, 2 profiles: valid/)
})

test('a malformed settings file: one clear message, exit 2, no database created', () => {
  const cwd = tempCwd()
  writeFileSync(join(cwd, 'rackboot.yaml'), 'http:\n  port: 8080\ndhcp:\n  mode: maybe\n')
  // machines list reads the settings only to find the server (no RACKBOOT_URL, no context).
  for (const args of [['serve'], ['machines', 'list']]) {
    const res = rackboot(args, { cwd })
    assert.equal(res.code, 2, res.stderr)
    assert.match(res.stderr, /invalid settings in .*rackboot\.yaml: 'dhcp\.mode' must be one of: "off", "full", "proxy"/)
  }
  assert.equal(existsSync(join(cwd, 'data')), false)
})

test('through the API: accept, label, delete and tokens', async (t) => {
  const api = await startApi()
  t.after(() => api.close())
  assert.equal((await api.cli(['inventory', 'import', EXAMPLE])).code, 0)
  const [accept, label, unconfirmed, created, badScope, bogus] = await Promise.all([
    api.cli(['machines', 'accept', 'r12-u02']),
    api.cli(['machines', 'label', 'r12-u02', 'pool=blue', 'zone-']),
    api.cli(['machines', 'delete', 'r12-u09']),
    api.cli(['tokens', 'create', 'ops', '--scope', 'read,provision', '--json']),
    api.cli(['tokens', 'create', 'x', '--scope', 'root']),
    api.cli(['bogus']),
  ])
  assert.equal(accept.code, 1, 'a new machine cannot be accepted before it is discovered')
  assert.match(accept.stderr, /^rackboot machines accept: .*is new/m)
  assert.equal(label.code, 0, label.stderr)
  assert.match(label.stdout, /pool=blue, role=controlplane/)
  assert.equal(unconfirmed.code, 2, 'delete asks for --yes')
  assert.match(created.stdout, /"secret": "rbk_/)
  const secret = JSON.parse(created.stdout).secret as string
  assert.equal(badScope.code, 2)
  assert.equal(bogus.code, 2)
  const del = await api.cli(['machines', 'delete', 'r12-u09', '--yes'])
  assert.equal(del.code, 0, del.stderr)
  const [gone, listed, readOnly] = await Promise.all([
    api.cli(['machines', 'show', 'r12-u09']),
    api.cli(['tokens', 'list']),
    // The new token works, with its scopes: reading yes, deleting no (the needed scope is named).
    api.cli(['machines', 'delete', 'r12-u07', '--yes'], { env: { RACKBOOT_TOKEN: secret } }),
  ])
  assert.equal(gone.code, 1)
  assert.match(gone.stderr, /not found: r12-u09/)
  assert.match(listed.stdout, /ops\s+read,provision.*active/)
  assert.equal(readOnly.code, 1)
  assert.match(readOnly.stderr, /lacks the 'admin' scope/)
  assert.ok(!(readOnly.stdout + readOnly.stderr).includes(secret), 'the token is never printed')
  assert.equal((await api.cli(['tokens', 'revoke', 'ops'])).code, 0)
  const after = await api.cli(['tokens', 'list'])
  assert.match(after.stdout, /ops\s+read,provision.*revoked/)
  const refused = await api.cli(['machines', 'list'], { env: { RACKBOOT_TOKEN: secret } })
  assert.equal(refused.code, 1)
  assert.match(refused.stderr, /refused the API token: the API token is unknown, revoked or expired \(this needs an API token with the 'read' scope/)
})
