// rackboot backup / restore (src/cli/backup.ts): an online, consistent copy while another process writes; a restore
// that refuses without --yes, over a database in use, a damaged backup, or one from a newer rackboot.
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import SQLite from 'better-sqlite3'
import { backupCommand, restoreCommand } from '../../src/cli/backup.js'
import { openSqliteInventory } from '../../src/inventory/index.js'

const WRITER = join(import.meta.dirname, 'fixtures', 'writer.ts')

/** Runs fn with console.log/error captured. */
async function captured<T>(fn: () => Promise<T>): Promise<{ result: T; out: string; err: string }> {
  const out: string[] = []
  const err: string[] = []
  const log = console.log
  const error = console.error
  console.log = (...a: unknown[]) => void out.push(a.join(' '))
  console.error = (...a: unknown[]) => void err.push(a.join(' '))
  try {
    const result = await fn()
    return { result, out: out.join('\n'), err: err.join('\n') }
  } finally {
    console.log = log
    console.error = error
  }
}

function startWriter(db: string, key: string, start = 0): Promise<{ child: ChildProcess; stop: () => Promise<number> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', WRITER, db, key], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, WRITER_START: String(start) } })
  let output = ''
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (output += d))
  const exited = new Promise<number>((resolve) => child.on('exit', () => resolve(Number(/wrote (\d+)/.exec(output)?.[1] ?? -1))))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`writer did not start: ${output}`)), 30_000)
    child.stdout!.on('data', () => {
      if (output.includes('ready')) {
        clearTimeout(timer)
        resolve({ child, stop: () => (child.kill('SIGTERM'), exited) })
      }
    })
    child.on('exit', () => reject(new Error(`writer exited early: ${output}`)))
  })
}

/** Counts in a database file, read-only: machines, 'test.boot' events, and machines without exactly one. */
function counts(file: string): { machines: number; boots: number; orphans: number } {
  const db = new SQLite(file, { readonly: true, fileMustExist: true })
  try {
    const machines = (db.prepare('select count(*) as n from machines').get() as { n: number }).n
    const boots = (db.prepare(`select count(*) as n from events where type = 'test.boot'`).get() as { n: number }).n
    const orphans = (db.prepare(`select count(*) as n from machines m where (select count(*) from events e where e.machine_id = m.id and e.type = 'test.boot') != 1`).get() as { n: number }).n
    return { machines, boots, orphans }
  } finally {
    db.close()
  }
}

function setup(t: { after(fn: () => unknown): void }) {
  const root = mkdtempSync(join(tmpdir(), 'rb-backup-'))
  t.after(() => rmSync(root, { recursive: true, force: true }))
  const dataDir = join(root, 'data')
  return { root, dataDir, db: join(dataDir, 'rackboot.db'), key: join(dataDir, 'secret.key') }
}

test('backup of a data directory without a database fails, naming the file, and creates nothing', async (t) => {
  const { root, dataDir, db } = setup(t)
  await assert.rejects(captured(() => backupCommand(join(root, 'b.db'), { dataDir })), (err: Error) => err.message.includes(db))
  assert.equal(existsSync(db), false, 'no database was created')
  assert.equal(existsSync(join(root, 'b.db')), false)
})

test('backup while another process writes steadily: each copy is one consistent snapshot, checked, standalone', { timeout: 120_000 }, async (t) => {
  const { root, dataDir, db, key } = setup(t)
  const writer = await startWriter(db, key)
  let stopped = false
  t.after(() => (stopped ? undefined : writer.stop()))

  const copies: { file: string; machines: number }[] = []
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, 700))
    const file = join(root, `backup-${i}.db`)
    const { result, out } = await captured(() => backupCommand(file, { dataDir }))
    assert.equal(result, 0)
    assert.match(out, /integrity: ok/)
    assert.match(out, /rows: machines \d+, events \d+/)
    assert.match(out, /secret\.key is NOT in the backup/, 'the output says the key must be backed up separately')
    const c = counts(file)
    assert.ok(c.machines > 0, 'the copy holds the writes so far')
    assert.equal(c.orphans, 0, `every machine in the copy has exactly its one event (${JSON.stringify(c)})`)
    assert.equal(c.boots, c.machines)
    const copy = new SQLite(file, { readonly: true })
    assert.equal(copy.pragma('journal_mode', { simple: true }), 'delete', 'a standalone file')
    assert.deepEqual(copy.pragma('integrity_check'), [{ integrity_check: 'ok' }])
    copy.close()
    assert.deepEqual(readdirSync(root).filter((f) => f.startsWith(`backup-${i}.db`)), [`backup-${i}.db`], 'no -wal, -shm or .tmp beside it')
    assert.equal(statSync(file).mode & 0o777, 0o600)
    copies.push({ file, machines: c.machines })
  }
  stopped = true
  const wrote = await writer.stop()
  assert.ok(copies[0]!.machines < copies[2]!.machines, 'the writer kept writing while the backups ran')
  assert.ok(wrote >= copies[2]!.machines - 0, `the writer's count (${wrote}) covers what the copies hold`)
  assert.equal(counts(db).machines, wrote, 'nothing the writer committed was lost')

  // The backup opened the database read-only: a second backup over the first replaces it whole.
  const again = await captured(() => backupCommand(copies[0]!.file, { dataDir }))
  assert.equal(again.result, 0)
  assert.equal(counts(copies[0]!.file).machines, wrote)
})

test('restore: refuses without --yes and while a process has the database open; then replaces it, keeping the old one aside', { timeout: 120_000 }, async (t) => {
  const { root, dataDir, db, key } = setup(t)
  // A database with some machines, and its backup.
  let writer = await startWriter(db, key)
  await new Promise((r) => setTimeout(r, 300))
  const backup = join(root, 'good.db')
  assert.equal((await captured(() => backupCommand(backup, { dataDir }))).result, 0)
  const inBackup = counts(backup).machines
  await new Promise((r) => setTimeout(r, 300))

  // Without --yes: nothing happens, and it says what would.
  const dry = await captured(() => restoreCommand(backup, { dataDir }))
  assert.equal(dry.result, 2)
  assert.match(dry.err, /--yes/)

  // While the writer (serve's stand-in) has it open: refused, nothing changed.
  await assert.rejects(captured(() => restoreCommand(backup, { dataDir, yes: true })), /in use by another process/)
  let stopped = false
  t.after(() => (stopped ? undefined : writer.stop()))
  const before = await writer.stop()
  stopped = true
  assert.equal(counts(db).machines, before, 'the refused restore changed nothing')
  assert.ok(before > inBackup)

  // An open inventory in this process counts as a holder too.
  const holder = await openSqliteInventory({ file: db, secretKeyFile: key })
  await assert.rejects(captured(() => restoreCommand(backup, { dataDir, yes: true })), /in use by another process/)
  await holder.close()

  // Now it runs.
  const done = await captured(() => restoreCommand(backup, { dataDir, yes: true }))
  assert.equal(done.result, 0, done.err)
  assert.match(done.out, /is the one the backup was sealed with/)
  assert.equal(counts(db).machines, inBackup, 'the database is the backup')
  const aside = readdirSync(dataDir).filter((f) => f.startsWith('rackboot.db.before-restore-'))
  assert.equal(aside.length, 1, `the old database is kept (${readdirSync(dataDir).join(', ')})`)
  assert.equal(counts(join(dataDir, aside[0]!)).machines, before, 'whole, with what its WAL held')
  assert.ok(!existsSync(`${db}-wal`) && !existsSync(`${db}-shm`) && !existsSync(`${db}.restore-tmp`), 'no stale WAL or temporary file')
  assert.equal(statSync(db).mode & 0o777, 0o600)

  // serve opens it (with the same key), and writing goes on from there.
  writer = await startWriter(db, key, 1_000_000)
  const after = await writer.stop()
  assert.equal(counts(db).machines, inBackup + after)
})

test('restore refuses a damaged backup and one written by a newer rackboot, and warns about a different key', async (t) => {
  const { root, dataDir, db, key } = setup(t)
  const inv = await openSqliteInventory({ file: db, secretKeyFile: key })
  await inv.machines.create({ serial: 'ONE' }, Date.now())
  await inv.close()
  const good = join(root, 'good.db')
  assert.equal((await captured(() => backupCommand(good, { dataDir }))).result, 0)

  const junk = join(root, 'junk.db')
  writeFileSync(junk, Buffer.alloc(8192, 7))
  await assert.rejects(captured(() => restoreCommand(junk, { dataDir, yes: true })), /not a readable SQLite database|integrity/)

  const newer = join(root, 'newer.db')
  assert.equal((await captured(() => backupCommand(newer, { dataDir }))).result, 0)
  const n = new SQLite(newer)
  n.prepare('insert into kysely_migration (name, timestamp) values (?, ?)').run('9999-from-the-future', new Date().toISOString())
  n.close()
  await assert.rejects(captured(() => restoreCommand(newer, { dataDir, yes: true })), /newer rackboot \(schema 9999-from-the-future/)
  assert.equal(counts(db).machines, 1, 'the refusals changed nothing')
  assert.equal(readdirSync(dataDir).filter((f) => f.includes('before-restore')).length, 0)

  // Restored into a data directory whose key is another one: done, with a warning that serve will refuse it.
  const other = join(root, 'other')
  const otherInv = await openSqliteInventory({ file: join(other, 'rackboot.db'), secretKeyFile: join(other, 'secret.key') })
  await otherInv.close()
  const restored = await captured(() => restoreCommand(good, { dataDir: other, yes: true }))
  assert.equal(restored.result, 0)
  assert.match(restored.out, /warning: .*secret\.key is not the key the backup was sealed with/)
  await assert.rejects(openSqliteInventory({ file: join(other, 'rackboot.db'), secretKeyFile: join(other, 'secret.key') }), /does not match/)

  // Into a data directory that does not exist yet (a new machine): made, and the missing key is named.
  const fresh = join(root, 'fresh', 'data')
  const first = await captured(() => restoreCommand(good, { dataDir: fresh, yes: true }))
  assert.equal(first.result, 0, first.err)
  assert.match(first.out, /there is no .*fresh\/data\/secret\.key: put back the secret\.key/)
  assert.equal(counts(join(fresh, 'rackboot.db')).machines, 1)
  assert.equal(statSync(fresh).mode & 0o777, 0o700)
})
