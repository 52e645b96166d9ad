import { timingSafeEqual } from 'node:crypto'
import { existsSync } from 'node:fs'
import { sql, type Kysely } from 'kysely'
import { RackbootError } from '../../errors.js'
import { createKeyFile, createSecretBox, readKeyFile, secretKeyCheck, type SecretBox } from '../secret-box.js'
import type { Database } from './schema.js'
import { hasTable } from './dialect.js'

// The secrets key is checked against the database it seals, never silently replaced (DESIGN "Trust on the
// provisioning network"). The database keeps secretKeyCheck(key) in `meta`; at open:
//   check stored, key file missing   → refuse (restore the file: a new key would open none of the sealed secrets)
//   check stored, key file differs    → refuse
//   no check yet (a database from before migration 0006, or a new one): the key must open the sealed secrets there
//   are (BMC passwords, cluster secrets), then its check is stored; with none sealed yet, the current key's is.

export const SECRET_KEY_CHECK = 'secretKeyCheck'

/** Where a sealed secret lives: every column that holds box.seal() output. */
const SEALED_COLUMNS = [
  { table: 'bmcs', column: 'password_sealed', what: 'BMC password' },
  { table: 'clusters', column: 'secrets_sealed', what: 'cluster secrets' },
] as const

export interface SecretKeyOptions {
  keyFile: string
  /** The database file, named in refusals. */
  dbFile: string
  warn?: (message: string) => void
}

/** Every sealed secret in the database, with what it is. */
async function sealedSecrets(db: Kysely<Database>): Promise<{ what: string; sealed: string }[]> {
  const out: { what: string; sealed: string }[] = []
  for (const { table, column, what } of SEALED_COLUMNS) {
    if (!(await hasTable(db, table))) continue
    const rows = await sql<{ sealed: string }>`select ${sql.ref(column)} as sealed from ${sql.table(table)} where ${sql.ref(column)} is not null`.execute(db)
    for (const r of rows.rows) out.push({ what, sealed: r.sealed })
  }
  return out
}

function sameCheck(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8')
  const y = Buffer.from(b, 'utf8')
  return x.length === y.length && timingSafeEqual(x, y)
}

/**
 * The secret box for this database with the key in `keyFile`, checked as above; creates the key file only when
 * the database has never been sealed with one. Throws RB_ERR_CRYPTO naming the key file and the database.
 */
export async function openCheckedSecretBox(db: Kysely<Database>, options: SecretKeyOptions): Promise<SecretBox> {
  const { keyFile, dbFile } = options
  // Upgrade tests stop before migration 0006: there is no meta table to keep a check in.
  if (!(await hasTable(db, 'meta'))) return createSecretBox(existsSync(keyFile) ? readKeyFile(keyFile) : createKeyFile(keyFile))

  const stored = (await db.selectFrom('meta').select('value').where('key', '=', SECRET_KEY_CHECK).executeTakeFirst())?.value ?? null
  const restore = 'restore that file from a backup (a new key cannot open the sealed BMC passwords and cluster secrets); rackboot will not make a new one'
  if (stored !== null) {
    if (!existsSync(keyFile)) {
      throw new RackbootError('RB_ERR_CRYPTO', `secret key file ${keyFile} is missing, but the database ${dbFile} was sealed with it: ${restore}`)
    }
    const key = readKeyFile(keyFile)
    if (!sameCheck(secretKeyCheck(key), stored)) {
      throw new RackbootError('RB_ERR_CRYPTO', `secret key file ${keyFile} does not match the key the database ${dbFile} was sealed with: ${restore}`)
    }
    return createSecretBox(key)
  }

  // No check yet: the sealed secrets, if any, say which key is right.
  const secrets = await sealedSecrets(db)
  if (secrets.length > 0 && !existsSync(keyFile)) {
    throw new RackbootError('RB_ERR_CRYPTO', `secret key file ${keyFile} is missing, but the database ${dbFile} holds secrets sealed with it (${secrets.length}): ${restore}`)
  }
  const key = existsSync(keyFile) ? readKeyFile(keyFile) : createKeyFile(keyFile)
  const box = createSecretBox(key)
  const failed = secrets.filter((s) => {
    try {
      box.open(s.sealed)
      return false
    } catch {
      return true
    }
  })
  if (secrets.length > 0 && failed.length === secrets.length) {
    throw new RackbootError('RB_ERR_CRYPTO', `secret key file ${keyFile} cannot open any of the ${secrets.length} secrets sealed in the database ${dbFile}: it is not the key they were sealed with; ${restore}`)
  }
  if (failed.length > 0) {
    // Before the check existed a lost key was replaced silently, and secrets written after that used the new key:
    // this key is one the database used (it opens the rest), and the ones it cannot open must be entered again.
    const kinds = [...new Set(failed.map((f) => f.what))].join(', ')
    options.warn?.(`secret key file ${keyFile} opens ${secrets.length - failed.length} of the ${secrets.length} secrets sealed in ${dbFile}; `
      + `the other ${failed.length} (${kinds}) were sealed with another key: set them again`)
  }
  // Two processes opening a new database at once agree on one key file (createKeyFile), so on one check.
  await db.insertInto('meta').values({ key: SECRET_KEY_CHECK, value: secretKeyCheck(key) }).onConflict((oc) => oc.column('key').doNothing()).execute()
  const now = (await db.selectFrom('meta').select('value').where('key', '=', SECRET_KEY_CHECK).executeTakeFirstOrThrow()).value
  if (!sameCheck(now, secretKeyCheck(key))) {
    throw new RackbootError('RB_ERR_CRYPTO', `secret key file ${keyFile} does not match the key the database ${dbFile} was sealed with: ${restore}`)
  }
  return box
}
