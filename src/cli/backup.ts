// `rackboot backup FILE` and `rackboot restore FILE`.
//
// backup takes an online, consistent copy with SQLite's backup API while `serve` keeps running and writing: the whole
// database is copied in one backup step, that is inside one read transaction, so the copy is one snapshot (a copy in
// several steps would start over each time the server commits, and never finish under steady writes). The WAL's
// readers never block its writer, so the server does not wait for the backup either. The copy is written beside FILE,
// made a standalone file (rollback journal, no -wal/-shm), checked (PRAGMA integrity_check), flushed, and only then
// renamed over FILE: an interrupted backup never leaves a half file under the name of a good one.
//
// The secrets key (dataDir/secret.key) is not in the database and not in the backup, on purpose: a database backup
// should not carry the key that opens its sealed BMC passwords and cluster secrets. It must be backed up separately,
// once (it never changes); without it the restored secrets cannot be opened (serve refuses a database whose key is
// missing or different: inventory/sql/secret-key.ts).
//
// restore puts a backup in place of the database: only with `yes`, only when no process has the database open
// (serve, another command), and only a backup that passes integrity_check and whose schema this rackboot knows. The
// database it replaces is kept as rackboot.db.before-restore-<time>.
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, statSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import SQLite from 'better-sqlite3'
import { RackbootError } from '../errors.js'
import { redactUrl } from '../inventory/postgres/url.js'
import { MIGRATIONS, readKeyFile, secretKeyCheck, SECRET_KEY_CHECK } from '../inventory/index.js'
import { loadSettings } from '../settings/index.js'
import { databaseFile, secretKeyFile } from './context.js'

export interface BackupOptions {
  config?: string
  set?: string[]
  /** The data directory, instead of the settings' dataDir. */
  dataDir?: string
}

export interface RestoreOptions extends BackupOptions {
  /** Replace the database: restore refuses without it. */
  yes?: boolean
}

interface Located {
  db: string
  key: string
}

function locate(options: BackupOptions): Located {
  const settings = loadSettings({ ...(options.config ? { file: options.config } : {}), overrides: options.set ?? [] })
  const dataDir = options.dataDir ? resolve(options.dataDir) : resolve(settings.dataDir)
  const s = { ...settings, dataDir }
  if (settings.database.url && !options.dataDir) {
    // These commands copy the SQLite file; PostgreSQL has its own consistent online copy.
    const url = redactUrl(settings.database.url)
    throw new RackbootError('RB_ERR_VALIDATION', `the database is PostgreSQL (${url}), not a file this command copies: use pg_dump -Fc '${url}' > FILE and pg_restore to put it back, and keep ${secretKeyFile(s)} apart from the dumps (the sealed secrets need it)`)
  }
  return { db: databaseFile(s), key: secretKeyFile(s) }
}

function storageError(message: string, cause?: unknown): RackbootError {
  return new RackbootError('RB_ERR_STORAGE', message, cause === undefined ? {} : { cause })
}

/** The database files SQLite may keep beside `file`. */
const SIDE_FILES = ['-wal', '-shm', '-journal']

function removeSideFiles(file: string): void {
  for (const suffix of SIDE_FILES) rmSync(`${file}${suffix}`, { force: true })
}

function fsyncFile(file: string): void {
  const fd = openSync(file, 'r+')
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r')
    try {
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
  } catch {
    // Not every platform lets a directory be opened for fsync; the rename is still atomic.
  }
}

function formatBytes(n: number): string {
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`
  if (n < 1024 * 1024 * 1024) return `${(n / 1048576).toFixed(1)} MiB`
  return `${(n / 1073741824).toFixed(2)} GiB`
}

/** What a database file holds, checked: integrity, applied migrations, rows per table, the stored key check. */
interface Inspection {
  integrity: string[]
  migrations: string[]
  rows: { table: string; count: number }[]
  keyCheck: string | null
}

function inspect(db: SQLite.Database): Inspection {
  const integrity = (db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check)
  const tables = (db.prepare(`select name from sqlite_master where type = 'table' and name not like 'sqlite_%' order by name`).all() as { name: string }[]).map((r) => r.name)
  const migrations = tables.includes('kysely_migration')
    ? (db.prepare('select name from kysely_migration order by name').all() as { name: string }[]).map((r) => r.name)
    : []
  const rows = tables
    .filter((t) => !t.startsWith('kysely_'))
    .map((table) => ({ table, count: (db.prepare(`select count(*) as n from "${table.replace(/"/g, '""')}"`).get() as { n: number }).n }))
  const keyCheck = tables.includes('meta')
    ? ((db.prepare('select value from meta where key = ?').get(SECRET_KEY_CHECK) as { value: string } | undefined)?.value ?? null)
    : null
  return { integrity, migrations, rows, keyCheck }
}

function rowSummary(rows: Inspection['rows']): string {
  const first = ['machines', 'events', 'leases', 'bmcs', 'classes', 'profiles', 'clusters', 'allocations', 'tokens']
  const ordered = [...rows].sort((a, b) => {
    const ia = first.indexOf(a.table)
    const ib = first.indexOf(b.table)
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.table.localeCompare(b.table)
  })
  return ordered.map((r) => `${r.table} ${r.count}`).join(', ')
}

/**
 * Copies `source` (an open connection) to `target` in one backup step (one snapshot), and makes the copy a standalone
 * file in rollback-journal mode, owner-only.
 */
async function copyDatabase(source: SQLite.Database, target: string): Promise<void> {
  rmSync(target, { force: true })
  removeSideFiles(target)
  try {
    // better-sqlite3 first asks for 0 pages (to learn the total), then for what progress() returns: all of them.
    await source.backup(target, { progress: () => 0x7fffffff })
    chmodSync(target, 0o600)
    const copy = new SQLite(target, { fileMustExist: true })
    try {
      copy.pragma('journal_mode = DELETE') // the copy carries the source's WAL flag; one file is easier to keep
    } finally {
      copy.close()
    }
    removeSideFiles(target)
  } catch (err) {
    rmSync(target, { force: true })
    removeSideFiles(target)
    throw err
  }
}

function keyReminder(key: string): string {
  return existsSync(key)
    ? `the secrets key ${key} is NOT in the backup: back it up separately (once; it never changes) and keep it apart from the database backups. Without it the sealed BMC passwords and cluster secrets in the backup cannot be opened, and serve refuses the restored database.`
    : `there is no secrets key at ${key} yet (nothing sealed so far); once there is, back it up separately: the backup does not contain it.`
}

export async function backupCommand(file: string, options: BackupOptions): Promise<number> {
  if (!file) throw new RackbootError('RB_ERR_VALIDATION', 'backup needs a FILE to write')
  const where = locate(options)
  const target = resolve(file)
  if (!existsSync(where.db)) {
    throw storageError(`no rackboot database at ${where.db}: nothing to back up (is --config/--data-dir the server's?)`)
  }
  if (target === where.db || SIDE_FILES.some((s) => target === where.db + s)) {
    throw new RackbootError('RB_ERR_VALIDATION', `the backup must not overwrite the database itself (${where.db})`)
  }
  if (!existsSync(dirname(target))) throw new RackbootError('RB_ERR_VALIDATION', `the directory of ${target} does not exist`)

  const started = Date.now()
  let source: SQLite.Database
  try {
    // Read-only, and never created: a missing file was reported above, and a file that vanished since fails here.
    source = new SQLite(where.db, { readonly: true, fileMustExist: true, timeout: 10_000 })
  } catch (cause) {
    throw storageError(`cannot open the database ${where.db}: ${(cause as Error).message}`, cause)
  }
  const tmp = `${target}.tmp`
  try {
    await copyDatabase(source, tmp)
  } catch (cause) {
    throw storageError(`backup of ${where.db} to ${target} failed: ${(cause as Error).message}`, cause)
  } finally {
    source.close()
  }

  let found: Inspection
  const copy = new SQLite(tmp, { readonly: true, fileMustExist: true })
  try {
    found = inspect(copy)
  } finally {
    copy.close()
  }
  if (found.integrity.join() !== 'ok') {
    rmSync(tmp, { force: true })
    throw storageError(`the copy of ${where.db} failed its integrity check (${found.integrity.slice(0, 3).join('; ')}); nothing was written to ${target}. Check the database: sqlite3 ${where.db} 'pragma integrity_check'`)
  }
  fsyncFile(tmp)
  renameSync(tmp, target)
  fsyncDir(dirname(target))

  const size = statSync(target).size
  console.log(`backup: ${target} (${formatBytes(size)}), a consistent copy of ${where.db} in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  console.log(`  integrity: ok; schema: ${found.migrations.at(-1) ?? 'none'}`)
  console.log(`  rows: ${rowSummary(found.rows)}`)
  console.log(`  note: ${keyReminder(where.key)}`)
  return 0
}

/** Stamp for the name of the database a restore replaces: 20260101T120000Z. */
function stamp(date = new Date()): string {
  return date.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')
}

/**
 * Opens `db` so that no other process can use it while it is replaced: switching it out of WAL mode needs every other
 * connection closed (SQLITE_BUSY otherwise: a running serve or command), and folds its WAL into the file, so the
 * copy kept aside is complete; an exclusive lock then holds it until the swap is done.
 */
function lockForRestore(db: string): SQLite.Database {
  let probe: SQLite.Database
  try {
    probe = new SQLite(db, { fileMustExist: true, timeout: 0 })
  } catch (cause) {
    throw storageError(`cannot open the current database ${db}: ${(cause as Error).message}; move it away by hand to restore over it`, cause)
  }
  try {
    probe.pragma('busy_timeout = 0')
    probe.pragma('journal_mode = DELETE')
    probe.pragma('locking_mode = EXCLUSIVE')
    probe.exec('begin exclusive')
    return probe
  } catch (cause) {
    probe.close()
    const busy = (cause as { code?: string }).code?.startsWith('SQLITE_BUSY')
    if (busy) {
      throw storageError(`the database ${db} is in use by another process (rackboot serve, or another rackboot command): stop it, then restore; nothing was changed`, cause)
    }
    throw storageError(`cannot take the current database ${db} for restore: ${(cause as Error).message}; nothing was changed`, cause)
  }
}

export async function restoreCommand(file: string, options: RestoreOptions): Promise<number> {
  if (!file) throw new RackbootError('RB_ERR_VALIDATION', 'restore needs the backup FILE to restore')
  const where = locate(options)
  const source = resolve(file)
  if (!existsSync(source)) throw storageError(`no backup at ${source}`)
  if (source === where.db) throw new RackbootError('RB_ERR_VALIDATION', `${source} is the database itself`)

  // The backup first: readable, sound, and of a schema this rackboot knows (older ones are migrated at the next start).
  let backup: SQLite.Database
  try {
    backup = new SQLite(source, { readonly: true, fileMustExist: true })
  } catch (cause) {
    throw storageError(`cannot open the backup ${source}: ${(cause as Error).message}`, cause)
  }
  let found: Inspection
  try {
    found = inspect(backup)
  } catch (cause) {
    backup.close()
    throw storageError(`${source} is not a readable SQLite database: ${(cause as Error).message}`, cause)
  }
  if (found.integrity.join() !== 'ok') {
    backup.close()
    throw storageError(`the backup ${source} fails its integrity check (${found.integrity.slice(0, 3).join('; ')}): not restored`)
  }
  if (found.migrations.length === 0) {
    backup.close()
    throw storageError(`${source} is not a rackboot database (no schema migrations in it): not restored`)
  }
  const unknown = found.migrations.filter((m) => !(m in MIGRATIONS))
  if (unknown.length > 0) {
    backup.close()
    throw storageError(`the backup ${source} was written by a newer rackboot (schema ${unknown.join(', ')} unknown to this version): upgrade rackboot, then restore`)
  }

  const aside = `${where.db}.before-restore-${stamp()}`
  const hasCurrent = existsSync(where.db)
  if (!options.yes) {
    backup.close()
    console.error(`restore would replace ${hasCurrent ? where.db : `(no database yet) ${where.db}`} with ${source} (${rowSummary(found.rows)}, schema ${found.migrations.at(-1)}).`)
    if (hasCurrent) console.error(`The current database would be kept as ${aside}.`)
    console.error('Stop rackboot serve first; then run restore again with --yes.')
    return 2
  }

  if (!hasCurrent) mkdirSync(dirname(where.db), { recursive: true, mode: 0o700 })
  const probe = hasCurrent ? lockForRestore(where.db) : null
  const tmp = `${where.db}.restore-tmp`
  try {
    try {
      await copyDatabase(backup, tmp)
    } catch (cause) {
      throw storageError(`copying ${source} to ${where.db} failed: ${(cause as Error).message}; the current database is unchanged`, cause)
    } finally {
      backup.close()
    }
    fsyncFile(tmp)
    if (hasCurrent) renameSync(where.db, aside)
    removeSideFiles(where.db) // stale -wal/-shm/-journal of the old file must never be applied to the restored one
    renameSync(tmp, where.db)
    fsyncDir(dirname(where.db))
  } finally {
    if (probe) {
      try {
        probe.exec('rollback')
      } catch {
        // nothing was written in it
      }
      probe.close()
    }
    rmSync(tmp, { force: true })
  }

  console.log(`restored ${source} into ${where.db} (${rowSummary(found.rows)}, schema ${found.migrations.at(-1)})`)
  if (hasCurrent) console.log(`  the database it replaced is kept as ${aside}`)
  if (found.keyCheck !== null) {
    let keyLine: string
    if (!existsSync(where.key)) keyLine = `warning: the backup's secrets were sealed with a key, and there is no ${where.key}: put back the secret.key backed up with it, or serve refuses to start`
    else {
      let matches = false
      try {
        matches = secretKeyCheck(readKeyFile(where.key)) === found.keyCheck
      } catch {
        matches = false
      }
      keyLine = matches
        ? `the secrets key ${where.key} is the one the backup was sealed with`
        : `warning: ${where.key} is not the key the backup was sealed with: put back the secret.key backed up with it, or serve refuses to start`
    }
    console.log(`  ${keyLine}`)
  }
  return 0
}
