import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isRackbootError } from '../../src/errors.js'
import { openSqliteInventory, readKeyFile, SECRET_KEY_CHECK, secretKeyCheck, type Inventory } from '../../src/inventory/index.js'
import { redactUrl } from '../../src/inventory/postgres/connect.js'
import { createSecretBox } from '../../src/inventory/secret-box.js'
import type { Database } from '../../src/inventory/sql/schema.js'
import type { Kysely } from 'kysely'
import { eachBackend, inventoryBackends, pgCluster, skipped, type Backend } from '../support/backends.js'

// Issue 13, secrets at rest: owner-only files, and a secrets key that is checked against its database, never
// silently replaced (a lost key used to be swapped for a new one: sealed secrets then failed as "internal error").

const NOW = 1_700_000_000_000
/** The last migration before the key check existed: a database from an older rackboot. */
const BEFORE_CHECK = '0005-install-disk-network'

const mode = (file: string) => statSync(file).mode & 0o777

function paths() {
  const dir = mkdtempSync(join(tmpdir(), 'rb-secrets-'))
  return { dir, data: join(dir, 'data'), db: join(dir, 'data', 'rackboot.db'), key: join(dir, 'data', 'secret.key') }
}

const backends = inventoryBackends()


/** An inventory with a Kysely handle, on either backend. */
type Opened = Inventory & { db: Kysely<Database> }

/**
 * One database and its key file on `backend`: SQLite's file in a data directory, or a fresh PostgreSQL database (its
 * URL, without a password, is what refusals name). `p.db` is that name, so `refused` checks both backends alike.
 */
async function place(backend: Backend) {
  const p = paths()
  if (backend.name === 'sqlite') {
    return { ...p, open: (o: { migrateTo?: string; warn?: (m: string) => void } = {}): Promise<Opened> => openSqliteInventory({ file: p.db, secretKeyFile: p.key, ...o }) }
  }
  const cluster = await pgCluster()
  if ('skip' in cluster) throw new Error(cluster.skip)
  const url = await cluster.createDatabase()
  return { ...p, db: redactUrl(url), open: (o: { migrateTo?: string; warn?: (m: string) => void } = {}): Promise<Opened> => backend.open({ url, secretKeyFile: p.key, ...o }) }
}

async function withBmcPassword(inv: Inventory, name: string, password: string): Promise<string> {
  const m = await inv.machines.create({ name }, NOW)
  await inv.bmcs.put(m.id, { type: 'redfish', address: '198.18.5.6', username: 'root', password })
  return m.id
}

/** The same for a database at an older migration: the BMC row as that schema has it, sealed with the key file's key. */
async function withLegacyBmcPassword(inv: Opened, keyFile: string, name: string, password: string): Promise<string> {
  const m = await inv.machines.create({ name }, NOW)
  await inv.db.insertInto('bmcs').values({
    machine_id: m.id, type: 'redfish', address: '198.18.5.6', port: null, username: 'root', credentials_ref: null, insecure: 0,
    fingerprint: null, password_sealed: createSecretBox(readKeyFile(keyFile)).seal(password),
  } as never).execute()
  return m.id
}

async function storedCheck(inv: Opened): Promise<string | null> {
  return (await inv.db.selectFrom('meta').select('value').where('key', '=', SECRET_KEY_CHECK).executeTakeFirst())?.value ?? null
}

/** Expects the open to be refused with RB_ERR_CRYPTO naming both files; returns the message. */
async function refused(open: Promise<Opened>, p: { key: string; db: string }, pattern: RegExp): Promise<string> {
  let message = ''
  await assert.rejects(open, (err) => {
    assert.ok(isRackbootError(err, 'RB_ERR_CRYPTO'), String(err))
    message = err.message
    return true
  })
  assert.match(message, pattern)
  assert.ok(message.includes(p.key), `names the key file: ${message}`)
  assert.ok(message.includes(p.db), `names the database: ${message}`)
  assert.doesNotMatch(message, /\n/, 'one line')
  return message
}

test('the data directory is made 0700 and the database, -wal and -shm 0600; older 0644 files are tightened', async (t) => {
  const p = paths()
  t.after(() => rmSync(p.dir, { recursive: true, force: true }))
  const inv = await openSqliteInventory({ file: p.db, secretKeyFile: p.key })
  await inv.machines.create({ name: 'a' }, NOW) // a write: WAL mode now has its -wal and -shm
  assert.equal(mode(p.data), 0o700)
  for (const f of [p.db, `${p.db}-wal`, `${p.db}-shm`, p.key]) assert.equal(mode(f), 0o600, f)
  await inv.close()

  // A database from before this change: world-readable files (umask 022).
  chmodSync(p.db, 0o644)
  writeFileSync(`${p.db}-wal`, '')
  chmodSync(`${p.db}-wal`, 0o644)
  const warnings: string[] = []
  const again = await openSqliteInventory({ file: p.db, secretKeyFile: p.key, warn: (m) => warnings.push(m) })
  t.after(() => again.close())
  await again.machines.create({ name: 'b' }, NOW)
  for (const f of [p.db, `${p.db}-wal`, `${p.db}-shm`]) assert.equal(mode(f), 0o600, f)
  assert.deepEqual(warnings, [])
})

eachBackend('a new database stores the check of its new key; reopening with that key works', async (t, backend) => {
  const p = await place(backend)
  t.after(() => rmSync(p.dir, { recursive: true, force: true }))
  const inv = await p.open()
  assert.equal(await storedCheck(inv), secretKeyCheck(readKeyFile(p.key)))
  const id = await withBmcPassword(inv, 'a', 'S3cr3t')
  await inv.close()
  const again = await p.open()
  t.after(() => again.close())
  assert.equal((await again.bmcs.credentials(id))?.password, 'S3cr3t')
})

eachBackend('a missing key file is refused, naming the file and the database, and no new key is made', async (t, backend) => {
  const p = await place(backend)
  t.after(() => rmSync(p.dir, { recursive: true, force: true }))
  const inv = await p.open()
  await withBmcPassword(inv, 'a', 'S3cr3t')
  await inv.close()
  rmSync(p.key)
  await refused(p.open(), p, /is missing.*restore/)
  assert.equal(existsSync(p.key), false, 'no replacement key was written')

  // Also when the database holds no secret any more: it was sealed with that key, and the check says so.
  const q = await place(backend)
  t.after(() => rmSync(q.dir, { recursive: true, force: true }))
  await (await q.open()).close()
  rmSync(q.key)
  await refused(q.open(), q, /is missing/)
  assert.equal(existsSync(q.key), false)
})

eachBackend('a different key file is refused', async (t, backend) => {
  const p = await place(backend)
  t.after(() => rmSync(p.dir, { recursive: true, force: true }))
  const inv = await p.open()
  await withBmcPassword(inv, 'a', 'S3cr3t')
  await inv.close()
  const original = readKeyFile(p.key)
  writeFileSync(p.key, randomBytes(32).toString('base64') + '\n', { mode: 0o600 })
  await refused(p.open(), p, /does not match the key the database .* was sealed with/)
  // The right one still opens.
  writeFileSync(p.key, original.toString('base64') + '\n')
  await (await p.open()).close()
})

eachBackend('a database from before the check: the key that opens its sealed secrets is adopted, another refused', async (t, backend) => {
  const p = await place(backend)
  t.after(() => rmSync(p.dir, { recursive: true, force: true }))
  const legacy = await p.open({ migrateTo: BEFORE_CHECK })
  const id = await withLegacyBmcPassword(legacy, p.key, 'a', 'S3cr3t')
  await legacy.close()
  const right = readKeyFile(p.key)

  // A wrong key (say, a new one a lost key was replaced with) opens none of them: refused, and nothing stored.
  writeFileSync(p.key, randomBytes(32).toString('base64') + '\n', { mode: 0o600 })
  await refused(p.open(), p, /cannot open any of the 1 secrets sealed/)
  // Missing: refused too, and no key is made up.
  rmSync(p.key)
  await refused(p.open(), p, /is missing.*holds secrets sealed with it/)
  assert.equal(existsSync(p.key), false)

  // The right key: adopted (its check stored), the secret opens, and from now on the check decides.
  writeFileSync(p.key, right.toString('base64') + '\n', { mode: 0o600 })
  const upgraded = await p.open()
  assert.equal(await storedCheck(upgraded), secretKeyCheck(right))
  assert.equal((await upgraded.bmcs.credentials(id))?.password, 'S3cr3t')
  await upgraded.close()
  writeFileSync(p.key, randomBytes(32).toString('base64') + '\n')
  await refused(p.open(), p, /does not match/)
})

eachBackend('a database from before the check with cluster secrets only: they decide too', async (t, backend) => {
  const p = await place(backend)
  t.after(() => rmSync(p.dir, { recursive: true, force: true }))
  const legacy = await p.open({ migrateTo: BEFORE_CHECK })
  await legacy.clusters.create({ name: 'c1', endpoint: 'https://10.0.0.10:6443', talosVersion: 'v1.13.9', kubernetesVersion: null }, 'bundle: yes', NOW)
  await legacy.close()
  writeFileSync(p.key, randomBytes(32).toString('base64') + '\n')
  await refused(p.open(), p, /cannot open any of the 1 secrets/)
})

eachBackend('a database from before the check whose lost key was replaced silently: the key that opens some is kept, with a warning', async (t, backend) => {
  const p = await place(backend)
  t.after(() => rmSync(p.dir, { recursive: true, force: true }))
  const legacy = await p.open({ migrateTo: BEFORE_CHECK })
  const old = await withLegacyBmcPassword(legacy, p.key, 'old', 'from-the-lost-key')
  await legacy.close()
  // What older versions did: the key file went missing, a new one was made, and a new secret was sealed with it.
  rmSync(p.key)
  const replaced = await p.open({ migrateTo: BEFORE_CHECK })
  const fresh = await withLegacyBmcPassword(replaced, p.key, 'new', 'from-the-new-key')
  await replaced.close()

  const warnings: string[] = []
  const inv = await p.open({ warn: (m) => warnings.push(m) })
  t.after(() => inv.close())
  assert.equal(warnings.length, 1, warnings.join('\n'))
  assert.match(warnings[0]!, /opens 1 of the 2 secrets sealed in .*; the other 1 \(BMC password\) were sealed with another key: set them again/)
  assert.equal((await inv.bmcs.credentials(fresh))?.password, 'from-the-new-key')
  await assert.rejects(inv.bmcs.credentials(old), (e) => isRackbootError(e, 'RB_ERR_CRYPTO'))
})

eachBackend('without a key file (tests) a throwaway key seals and opens, and nothing is checked or stored', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const id = await withBmcPassword(inv, 'a', 'S3cr3t')
  assert.equal((await inv.bmcs.credentials(id))?.password, 'S3cr3t')
  assert.equal(await storedCheck(inv), null)
})
