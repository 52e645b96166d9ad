import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startApi } from '../support/cli.js'

// `rackboot inventory import DIR` through the API: BMC passwords named by env:/file: references are read where the
// user runs the command and sent with the files; the server reads nothing of its own for them.

test('inventory import sends the BMC secrets its files name, read from the caller\'s environment and files', async (t) => {
  const api = await startApi()
  t.after(() => api.close())
  const dir = join(api.dir, 'inv')
  mkdirSync(join(dir, 'racks'), { recursive: true })
  const pwFile = join(api.dir, 'bmc-pw.txt')
  writeFileSync(pwFile, 'from-a-file\n')
  writeFileSync(join(dir, 'racks', 'r1.yaml'), [
    'machines:',
    '  - name: a1',
    '    serial: A1',
    '    bmc: { type: ipmi, address: 192.0.2.11, username: u, passwordFrom: env:RB_CLI_TEST_BMC_PW }',
    '  - name: a2',
    '    serial: A2',
    '    bmc:',
    '      type: ipmi',
    '      address: 192.0.2.12',
    '      username: u',
    `      passwordFrom: "file:${pwFile}"`,
    '',
  ].join('\n'))
  const r = await api.cli(['inventory', 'import', dir], { env: { RB_CLI_TEST_BMC_PW: 'from-the-env' } })
  assert.equal(r.code, 0, r.stderr)
  assert.doesNotMatch(r.stdout + r.stderr, /from-the-env|from-a-file/, 'secrets are never printed')
  const password = async (name: string) => (await api.inventory.bmcs.credentials((await api.inventory.machines.byName(name))!.id))?.password
  assert.equal(await password('a1'), 'from-the-env')
  assert.equal(await password('a2'), 'from-a-file')
})
