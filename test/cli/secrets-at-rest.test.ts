import { test } from 'node:test'
import assert from 'node:assert/strict'
import { chmodSync, mkdirSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { prepareDataDir } from '../../src/cli/context.js'
import { printable } from '../../src/cli/table.js'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { rackboot, rackbootAsync, startApi, tempCwd } from '../support/cli.js'

// Issue 13 at the command line: an owner-only data directory, a lost or wrong secrets key refused in one line
// (exit 1, no stack trace) by serve and by every command given --data-dir, and machine-supplied strings never
// reaching the operator's terminal raw, whether they come from the API or the database.

const mode = (path: string) => statSync(path).mode & 0o777
/** What an unauthenticated report can put in an SMBIOS string: set the terminal title (OSC 0, BEL), clear it. */
const EVIL = '\x1b]0;pwned\x07\x1b[2J'
/** Every control character a terminal acts on, except the newlines between lines. */
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/
const SERVE_ARGS = ['--set', 'http.listen=127.0.0.1', '--set', 'http.port=0', '--set', 'tftp.enabled=false', '--set', 'talos.eventsSinkPort=0', '--set', 'talos.kernelLogPort=0']

async function seed(cwd: string, fn: (inv: Awaited<ReturnType<typeof openSqliteInventory>>) => Promise<void>): Promise<void> {
  const inv = await openSqliteInventory({ file: join(cwd, 'data', 'rackboot.db'), secretKeyFile: join(cwd, 'data', 'secret.key') })
  try {
    await fn(inv)
  } finally {
    await inv.close()
  }
}

test('prepareDataDir: made 0700; a wider one tightened with a warning; a private one left alone', () => {
  const cwd = tempCwd()
  const dir = join(cwd, 'srv', 'data')
  const warnings: string[] = []
  assert.equal(prepareDataDir(dir, (m) => warnings.push(m)), null)
  assert.equal(mode(dir), 0o700)
  assert.equal(mode(join(cwd, 'srv')), 0o755, 'parents as usual')
  chmodSync(dir, 0o755)
  assert.equal(prepareDataDir(dir, (m) => warnings.push(m)), 0o755)
  assert.equal(mode(dir), 0o700)
  assert.equal(warnings.length, 1)
  assert.match(warnings[0]!, /data directory .*srv\/data was mode 0755 .*now 0700/)
  assert.equal(prepareDataDir(dir, (m) => warnings.push(m)), 0o700)
  assert.equal(warnings.length, 1, 'no warning for a private directory')
})

test('--data-dir: a bootstrap token makes the data directory 0700 and the database 0600; an older 0755 one is tightened, with a warning', () => {
  const cwd = tempCwd()
  const dataDir = join(cwd, 'data')
  const first = rackboot(['tokens', 'create', 'admin', '--scope', 'admin', '--data-dir', dataDir], { cwd })
  assert.equal(first.code, 0, first.stderr)
  assert.equal(first.stderr, '')
  assert.equal(mode(dataDir), 0o700)
  for (const f of ['rackboot.db', 'secret.key']) assert.equal(mode(join(dataDir, f)), 0o600, f)
  chmodSync(dataDir, 0o755)
  chmodSync(join(dataDir, 'rackboot.db'), 0o644)
  const again = rackboot(['tokens', 'list', '--data-dir', dataDir], { cwd })
  assert.equal(again.code, 0, again.stderr)
  assert.match(again.stdout, /admin\s+admin/)
  assert.match(again.stderr, /^rackboot: warning: data directory \S+ was mode 0755 .*now 0700\n$/)
  assert.equal(mode(dataDir), 0o700)
  assert.equal(mode(join(dataDir, 'rackboot.db')), 0o600)
})

test('serve makes its data directory 0700', () => {
  const cwd = tempCwd()
  mkdirSync(join(cwd, 'data'), { mode: 0o755 })
  chmodSync(join(cwd, 'data'), 0o755)
  // An address not on this host makes serve stop after opening the database: what it did to ./data is what counts.
  const res = rackboot(['serve', ...SERVE_ARGS.slice(2), '--set', 'http.listen=192.0.2.1'], { cwd, timeoutMs: 30_000 })
  assert.notEqual(res.code, null, 'serve exited')
  assert.equal(mode(join(cwd, 'data')), 0o700, res.stderr + res.stdout)
})

test('a missing secrets key: serve and the other commands refuse in one line naming the file, exit 1, no key made', async () => {
  const cwd = tempCwd()
  await seed(cwd, async (inv) => {
    const m = await inv.machines.create({ name: 'n1' }, Date.now())
    await inv.bmcs.put(m.id, { type: 'ipmi', address: '198.18.5.6', username: 'admin', password: 'S3cr3t' })
  })
  const key = join(cwd, 'data', 'secret.key')
  rmSync(key)
  for (const args of [['machines', 'list', '--data-dir', join(cwd, 'data')], ['serve', ...SERVE_ARGS]]) {
    const res = rackboot(args, { cwd, timeoutMs: 30_000 })
    const command = args[0] === 'serve' ? 'serve' : 'machines list'
    assert.equal(res.code, 1, `${command}: ${res.stderr}${res.stdout}`)
    const lines = res.stderr.trimEnd().split('\n')
    assert.equal(lines.length, 1, `one line, no stack trace:\n${res.stderr}`)
    assert.match(lines[0]!, new RegExp(`^rackboot ${command}: secret key file ${key} is missing, but the database ${join(cwd, 'data', 'rackboot.db')} .*restore`))
    assert.equal(statSync(key, { throwIfNoEntry: false }), undefined, 'no new key file')
  }
})

test('machine-supplied strings: escaped in machines list and show (through the API and --data-dir), exact in --json', async (t) => {
  const api = await startApi()
  t.after(() => api.close())
  const now = Date.now()
  const inv = api.inventory
  const m = await inv.machines.create({ serial: EVIL, manufacturer: EVIL, product: `R6625${EVIL}`, nics: [{ mac: '02:00:00:00:00:01', name: null, boot: true }] }, now)
  await inv.machines.setHardware(m.id, { cpu: { cores: 8 }, disks: [{ name: 'sda', model: EVIL, serial: 'D1\u202eevil', sizeBytes: 1e12, type: 'ssd' }] }, now)
  await inv.events.append({ machineId: m.id, type: 'boot.agent', at: now, message: `hardware report from ${EVIL}`, data: {} })
  const shown = printable(EVIL)
  assert.equal(shown, '\\x1b]0;pwned\\x07\\x1b[2J')

  const [list, show, json, listJson, local] = await Promise.all([
    api.cli(['machines', 'list'], { scope: 'read' }),
    api.cli(['machines', 'show', m.id], { scope: 'read' }),
    api.cli(['machines', 'show', m.id, '--json'], { scope: 'read' }),
    api.cli(['machines', 'list', '--json'], { scope: 'read' }),
    rackbootAsync(['machines', 'show', m.id, '--data-dir', api.dir], { cwd: api.dir }),
  ])
  assert.equal(list.code, 0, list.stderr)
  assert.doesNotMatch(list.stdout, RAW_CONTROL)
  assert.ok(list.stdout.includes(shown), list.stdout)

  for (const r of [show, local]) {
    assert.equal(r.code, 0, r.stderr)
    assert.doesNotMatch(r.stdout, RAW_CONTROL)
    assert.doesNotMatch(r.stdout, /\u202e/, 'no bidi override')
    assert.match(r.stdout, /^serial\s+\\x1b\]0;pwned\\x07\\x1b\[2J$/m)
    assert.ok(r.stdout.includes(`manufacturer  ${shown}`), r.stdout)
    assert.ok(r.stdout.includes(`R6625${shown}`))
    assert.ok(r.stdout.includes('D1\\u202eevil'), 'the disk serial, escaped in the table')
    assert.ok(r.stdout.includes(`hardware report from ${shown}`), 'the timeline message')
  }

  // JSON escapes control characters itself, and must keep the exact value.
  const view = JSON.parse(json.stdout)
  assert.equal(view.serial, EVIL)
  assert.equal(view.manufacturer, EVIL)
  assert.equal(view.facts.disks[0].model, EVIL)
  assert.equal(JSON.parse(listJson.stdout).items[0].serial, EVIL)
})
