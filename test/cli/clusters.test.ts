import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { X509Certificate } from 'node:crypto'
import { parse } from 'yaml'
import { rackboot, tempCwd } from '../support/cli.js'

test('clusters create seals generated secrets; talosconfig gives an os:admin client certificate signed by the cluster CA', () => {
  const cwd = tempCwd()
  const create = rackboot(['clusters', 'create', 'lab', '--endpoint', 'https://198.18.0.10:6443', '--talos-version', 'v1.13.9'], { cwd, timeoutMs: 120_000 })
  assert.equal(create.code, 0, create.stderr)
  assert.match(create.stdout, /cluster lab: endpoint https:\/\/198\.18\.0\.10:6443, Talos v1\.13\.9/)
  assert.equal(rackboot(['clusters', 'create', 'lab', '--endpoint', 'https://198.18.0.10:6443', '--talos-version', 'v1.13.9'], { cwd }).code, 1, 'a second cluster of that name is a conflict')
  assert.equal(rackboot(['clusters', 'create', 'x', '--endpoint', 'http://nope', '--talos-version', 'v1.13.9'], { cwd }).code, 2)
  assert.match(rackboot(['clusters', 'list'], { cwd }).stdout, /lab\s+https:\/\/198\.18\.0\.10:6443\s+v1\.13\.9/)
  const out = join(cwd, 'talosconfig')
  assert.equal(rackboot(['clusters', 'talosconfig', 'lab', '--out', out], { cwd }).code, 0)
  assert.equal(statSync(out).mode & 0o777, 0o600)
  const tc = parse(readFileSync(out, 'utf8'))
  const ctx = tc.contexts.lab
  assert.deepEqual(ctx.endpoints, ['198.18.0.10'])
  const ca = new X509Certificate(Buffer.from(ctx.ca, 'base64'))
  const crt = new X509Certificate(Buffer.from(ctx.crt, 'base64'))
  assert.ok(crt.verify(ca.publicKey), 'the client certificate is signed by the cluster OS CA')
  assert.match(crt.subject, /O=os:admin/)
  // The secrets never sit in the database in the clear.
  for (const f of ['rackboot.db', 'rackboot.db-wal']) {
    let db: Buffer
    try {
      db = readFileSync(join(cwd, 'data', f))
    } catch {
      continue
    }
    assert.equal(db.includes(Buffer.from('PRIVATE KEY')) || db.includes(Buffer.from('LS0tLS1CRUdJTi')), false, `no key material in ${f}`)
  }
})
