import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { X509Certificate } from 'node:crypto'
import { parse } from 'yaml'
import { rackbootAsync, startApi, tempCwd } from '../support/cli.js'

test('clusters create seals generated secrets; talosconfig gives an os:admin client certificate signed by the cluster CA (API and --data-dir)', async (t) => {
  const api = await startApi()
  t.after(() => api.close())
  const cwd = tempCwd()
  const create = await api.cli(['clusters', 'create', 'lab', '--endpoint', 'https://198.18.0.10:6443', '--talos-version', 'v1.13.9'], { timeoutMs: 120_000 })
  assert.equal(create.code, 0, create.stderr)
  assert.match(create.stdout, /cluster lab: endpoint https:\/\/198\.18\.0\.10:6443, Talos v1\.13\.9/)
  const out = join(cwd, 'talosconfig')
  const [again, bad, list, tc, needsAdmin, missingEndpoint] = await Promise.all([
    api.cli(['clusters', 'create', 'lab', '--endpoint', 'https://198.18.0.10:6443', '--talos-version', 'v1.13.9']),
    api.cli(['clusters', 'create', 'x', '--endpoint', 'http://nope', '--talos-version', 'v1.13.9']),
    api.cli(['clusters', 'list'], { scope: 'read' }),
    api.cli(['clusters', 'talosconfig', 'lab', '--out', out]),
    api.cli(['clusters', 'talosconfig', 'lab'], { scope: 'provision' }),
    api.cli(['clusters', 'create', 'y', '--talos-version', 'v1.13.9']),
  ])
  assert.equal(again.code, 1, 'a second cluster of that name is a conflict')
  assert.equal(bad.code, 2)
  assert.match(list.stdout, /lab\s+https:\/\/198\.18\.0\.10:6443\s+v1\.13\.9\s+-\s+0/)
  assert.equal(tc.code, 0, tc.stderr)
  assert.equal(needsAdmin.code, 1)
  assert.match(needsAdmin.stderr, /lacks the 'admin' scope/)
  assert.equal(missingEndpoint.code, 2)
  assert.match(missingEndpoint.stderr, /required option '--endpoint <url>' not specified/)
  assert.equal(statSync(out).mode & 0o777, 0o600)
  const ctx = parse(readFileSync(out, 'utf8')).contexts.lab
  assert.deepEqual(ctx.endpoints, ['198.18.0.10'])
  const ca = new X509Certificate(Buffer.from(ctx.ca, 'base64'))
  const crt = new X509Certificate(Buffer.from(ctx.crt, 'base64'))
  assert.ok(crt.verify(ca.publicKey), 'the client certificate is signed by the cluster OS CA')
  assert.match(crt.subject, /O=os:admin/)

  // With --data-dir, on a data directory's database: create makes it (a box being prepared), talosconfig reads it.
  const dataDir = join(cwd, 'data')
  const made = await rackbootAsync(['clusters', 'create', 'edge', '--endpoint', 'https://10.9.9.1:6443', '--talos-version', 'v1.13.9', '--data-dir', dataDir], { cwd, timeoutMs: 120_000 })
  assert.equal(made.code, 0, made.stderr)
  const local = await rackbootAsync(['clusters', 'talosconfig', 'edge', '--endpoint', '10.9.9.9', '--data-dir', dataDir], { cwd })
  assert.equal(local.code, 0, local.stderr)
  assert.deepEqual(parse(local.stdout).contexts.edge.endpoints, ['10.9.9.9'])
  assert.equal(statSync(join(dataDir, 'secret.key')).mode & 0o777, 0o600)
  // The secrets never sit in the database in the clear.
  for (const f of [join(api.dir, 'rackboot.db'), join(api.dir, 'rackboot.db-wal'), join(dataDir, 'rackboot.db'), join(dataDir, 'rackboot.db-wal')]) {
    let db: Buffer
    try {
      db = readFileSync(f)
    } catch {
      continue
    }
    assert.equal(db.includes(Buffer.from('PRIVATE KEY')) || db.includes(Buffer.from('LS0tLS1CRUdJTi')), false, `no key material in ${f}`)
  }
})
