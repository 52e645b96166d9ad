import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { formatCliConfig, readCliConfig, writeCliConfig } from '../../src/cli/cli-config.js'
import { normalizeServer, resolveTarget } from '../../src/cli/client.js'
import { colourEnabled, palette, statusLine } from '../../src/cli/common.js'
import { fitWidths, renderTable } from '../../src/cli/table.js'
import { tempCwd } from '../support/cli.js'

// The CLI's pieces that need no process: tables fitted to a terminal, colour only where it belongs, which server and
// token a command uses, and the contexts file.

test('tables: fitted to a width by shortening the widest columns (never the kept ones), whole when no width is given', () => {
  const rows = [{ id: 'm-0123456789ab', name: 'r12-u07', labels: 'role=worker,zone=a,pool=blue,team=storage,owner=ops' }]
  const columns = [
    { header: 'id', value: (r: typeof rows[0]) => r.id, keep: true },
    { header: 'name', value: (r: typeof rows[0]) => r.name },
    { header: 'labels', value: (r: typeof rows[0]) => r.labels },
  ]
  const whole = renderTable(rows, columns)
  assert.equal(whole.split('\n')[1], 'm-0123456789ab  r12-u07  role=worker,zone=a,pool=blue,team=storage,owner=ops')
  const fitted = renderTable(rows, columns, { maxWidth: 50 }).split('\n')
  for (const line of fitted) assert.ok(line.length <= 50, `${line.length}: ${line}`)
  assert.match(fitted[1]!, /^m-0123456789ab  r12-u07  role=worker,zone=a,pool=…$/)
  assert.deepEqual(fitWidths([10, 40, 5], [10, 6, 5], 30), [10, 11, 5])
  assert.deepEqual(fitWidths([10, 8], [10, 8], 5), [10, 8], 'never below the floors')
})

test('colour only on a terminal, never with NO_COLOR or TERM=dumb; one rewriting status line only on a terminal', () => {
  assert.equal(colourEnabled({ isTTY: true }, {}), true)
  assert.equal(colourEnabled({ isTTY: true }, { NO_COLOR: '1' }), false)
  assert.equal(colourEnabled({ isTTY: true }, { TERM: 'dumb' }), false)
  assert.equal(colourEnabled({ isTTY: false }, {}), false)
  assert.equal(palette({ isTTY: true }, {}).red('x'), '\x1b[31mx\x1b[39m')
  assert.equal(palette({ isTTY: false }, {}).red('x'), 'x')
  const table = renderTable([{ s: 'failed' }], [{ header: 's', value: (r) => r.s, colour: (c, _r, p) => p.red(c) }], { palette: palette({ isTTY: true }, {}) })
  assert.equal(table, '\x1b[1mS\x1b[22m\n\x1b[31mfailed\x1b[39m')

  const written = (tty: boolean) => {
    let out = ''
    const stream = { isTTY: tty, columns: 40, write: (s: string) => ((out += s), true) } as unknown as NodeJS.WriteStream
    const s = statusLine(stream)
    s.draw('power on: 1/2 done (3 s)')
    s.line('dead-1: power on failed: refused; trying again')
    s.draw('power on: 2/2 done (4 s)')
    s.end()
    return out
  }
  assert.equal(written(false), 'dead-1: power on failed: refused; trying again\n', 'a pipe gets the lines that stay, no redraws')
  assert.equal(written(true), '\rpower on: 1/2 done (3 s)\x1b[K\r\x1b[Kdead-1: power on failed: refused; trying again\n\rpower on: 1/2 done (3 s)\x1b[K\rpower on: 2/2 done (4 s)\x1b[K\r\x1b[K')
})

test('which server and token: flags, then --context, then RACKBOOT_URL/RACKBOOT_TOKEN, then the current context, then the settings; a context\'s token goes only to its server', async () => {
  const dir = tempCwd()
  const path = join(dir, 'cli.yaml')
  writeCliConfig(path, { current: 'lab', contexts: { lab: { server: 'http://10.0.0.2:8080', token: 'rbk_lab' }, prod: { server: 'https://rb.prod', token: 'rbk_prod', ca: 'PEM' } } })
  const env = { RACKBOOT_CLI_CONFIG: path }
  const t = (o: Parameters<typeof resolveTarget>[0], e: NodeJS.ProcessEnv = {}) => resolveTarget(o, { ...env, ...e })
  assert.deepEqual(await t({}), { server: 'http://10.0.0.2:8080', token: 'rbk_lab', ca: null, via: 'context lab' })
  assert.deepEqual(await t({ context: 'prod' }), { server: 'https://rb.prod', token: 'rbk_prod', ca: 'PEM', via: 'context prod' })
  assert.deepEqual(await t({ server: 'rb.other:8080/' }), { server: 'http://rb.other:8080', token: null, ca: null, via: '--server' }, 'the current context\'s token stays home')
  assert.deepEqual(await t({ server: 'http://10.0.0.2:8080' }), { server: 'http://10.0.0.2:8080', token: 'rbk_lab', ca: null, via: '--server' }, 'the same server: its context\'s token')
  assert.deepEqual(await t({}, { RACKBOOT_URL: 'http://10.9.9.9:8080', RACKBOOT_TOKEN: 'rbk_env' }), { server: 'http://10.9.9.9:8080', token: 'rbk_env', ca: null, via: 'RACKBOOT_URL' })
  assert.equal((await t({ context: 'prod' }, { RACKBOOT_URL: 'http://10.9.9.9:8080', RACKBOOT_TOKEN: 'rbk_env' })).token, 'rbk_prod', '--context beats the environment')
  assert.equal((await t({ token: 'rbk_flag', context: 'prod' })).token, 'rbk_flag')
  assert.deepEqual(await t({}, { RACKBOOT_SERVER: 'http://old:1' }), { server: 'http://old:1', token: null, ca: null, via: 'RACKBOOT_SERVER' })
  await assert.rejects(t({ context: 'nope' }), /no context 'nope' in .*cli\.yaml \(there are: lab, prod\)/)
  // Nothing saved: the settings, as before (http.listen 0.0.0.0 is asked on 127.0.0.1).
  const none = await resolveTarget({ set: ['http.port=8123'] }, { RACKBOOT_CLI_CONFIG: join(dir, 'missing.yaml') })
  assert.deepEqual(none, { server: 'http://127.0.0.1:8123', token: null, ca: null, via: 'settings (http.listen, http.port)' })
  assert.throws(() => normalizeServer('ftp://x'), /must be http:\/\/ or https:\/\//)
  assert.throws(() => normalizeServer('http://u:p@x'), /not in the URL/)
})

test('the contexts file: written in its own simple form, read back without the YAML library; a hand-edited YAML file is read too', async () => {
  const dir = tempCwd()
  const config = { current: 'a "quoted" name', contexts: { 'a "quoted" name': { server: 'http://x:1', token: 'rbk_1', ca: '-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n' } } }
  const text = formatCliConfig(config)
  assert.match(text, /^# rackboot CLI contexts/)
  assert.match(text, /\n {4}ca: "-----BEGIN CERTIFICATE-----\\nAAA\\n-----END CERTIFICATE-----\\n"\n$/)
  writeFileSync(join(dir, 'own.yaml'), text)
  assert.deepEqual(await readCliConfig(join(dir, 'own.yaml')), config)
  writeFileSync(join(dir, 'hand.yaml'), 'current: lab   # by hand\ncontexts:\n  lab: {server: "http://h:2", token: rbk_2}\n')
  assert.deepEqual(await readCliConfig(join(dir, 'hand.yaml')), { current: 'lab', contexts: { lab: { server: 'http://h:2', token: 'rbk_2' } } })
  writeFileSync(join(dir, 'bad.yaml'), 'contexts:\n  lab: {token: x}\n')
  await assert.rejects(readCliConfig(join(dir, 'bad.yaml')), /context 'lab' needs a server URL/)
  assert.deepEqual(await readCliConfig(join(dir, 'none.yaml')), { current: null, contexts: {} })
})
