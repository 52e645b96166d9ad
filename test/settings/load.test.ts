import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadSettings } from '../../src/settings/index.js'
import { isRackbootError } from '../../src/errors.js'

function dir(): string {
  return mkdtempSync(join(tmpdir(), 'rb-settings-'))
}

function settingsError(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    assert.ok(isRackbootError(err, 'RB_ERR_SETTINGS'), String(err))
    return err.message
  }
  assert.fail('expected a settings error')
}

test('defaults start a plain machine: ./data, HTTP 8080, TFTP 69 as root else 6969, DHCP off', () => {
  const cwd = dir()
  const asRoot = loadSettings({ cwd, env: {}, isRoot: true })
  assert.equal(asRoot.dataDir, join(cwd, 'data'))
  assert.equal(asRoot.http.port, 8080)
  assert.equal(asRoot.tftp.port, 69)
  assert.equal(asRoot.dhcp.mode, 'off')
  assert.equal(asRoot.source, null)
  assert.equal(loadSettings({ cwd, env: {}, isRoot: false }).tftp.port, 6969)
})

test('file, then environment, then --set flags; relative paths are relative to the file', () => {
  const cwd = dir()
  const file = join(cwd, 'rackboot.yaml')
  writeFileSync(file, 'dataDir: /var/lib/rackboot\nhttp:\n  port: 9000\ntftp:\n  port: 1069\n')
  const s = loadSettings({ cwd, env: { RACKBOOT_HTTP_PORT: '9001' }, overrides: ['tftp.port=2069', 'log.level=debug'], isRoot: true })
  assert.equal(s.source, file)
  assert.equal(s.dataDir, '/var/lib/rackboot')
  assert.equal(s.http.port, 9001)
  assert.equal(s.tftp.port, 2069)
  assert.equal(s.log.level, 'debug')
  assert.equal(loadSettings({ cwd, env: { RACKBOOT_LOG_FORMAT: 'json' } }).log.format, 'json')
  const other = join(cwd, 'sub')
  writeFileSync(join(cwd, 'x.yaml'), 'dataDir: state\n')
  assert.equal(loadSettings({ cwd: other, file: join(cwd, 'x.yaml'), env: {} }).dataDir, join(cwd, 'state'))
  assert.equal(loadSettings({ cwd, env: { RACKBOOT_CONFIG: join(cwd, 'x.yaml') } }).dataDir, join(cwd, 'state'))
})

test('bad settings: one clear message naming the key and what is allowed', () => {
  const cwd = dir()
  const cases: [string, RegExp][] = [
    ['http:\n  port: 70000\n', /'http\.port' must be <= 65535/],
    ['dhcp:\n  mode: sometimes\n', /'dhcp\.mode' must be one of: "off", "full", "proxy"/],
    ['htp:\n  port: 1\n', /unknown key 'htp'; allowed here: .*http/],
    ['tftp:\n  maxBlockSize: 4\n', /'tftp\.maxBlockSize' must be >= 8/],
    ['dhcp:\n  mode: full\n  serverAddress: 198.18.0.1\n', /'dhcp\.subnets' needs at least one subnet/],
    ['dhcp:\n  mode: full\n  serverAddress: 198.18.0.1\n  subnets:\n    - { subnet: 198.18.0.0/24, rangeStart: 198.18.1.10, rangeEnd: 198.18.0.20 }\n', /'dhcp\.subnets\.0\.rangeStart' \(198\.18\.1\.10\) is outside 198\.18\.0\.0\/24/],
    ['http: [1, 2\n', /rackboot\.yaml:\d+:\d+/],
    ['http:\n  port: 1\nhttp:\n  port: 2\n', /rackboot\.yaml:3:\d+: .*[Uu]nique|duplicate/i],
  ]
  for (const [text, pattern] of cases) {
    writeFileSync(join(cwd, 'rackboot.yaml'), text)
    assert.match(settingsError(() => loadSettings({ cwd, env: {} })), pattern, text)
  }
  assert.match(settingsError(() => loadSettings({ cwd, env: {}, file: 'missing.yaml' })), /settings file not found: .*missing\.yaml/)
  assert.match(settingsError(() => loadSettings({ cwd: dir(), env: {}, overrides: ['http.port'] })), /--set expects key=value/)
  assert.match(settingsError(() => loadSettings({ cwd: dir(), env: { RACKBOOT_HTTP_PORT: 'eighty' } })), /'http\.port' must be integer/)
})
