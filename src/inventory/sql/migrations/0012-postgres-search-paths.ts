import { sql, type Kysely } from 'kysely'
import { dialectOf } from '../dialect.js'

// Issue 16, PostgreSQL only (SQLite's FTS5 trigram index needs none of it): what free-text search by a whole MAC needs
// to stay exact without pg_trgm (sql/search-plan.ts), and a bound on the trigram index's pending list.
// - A whole MAC can be in a document only as a NIC's address or inside a name, serial, uuid or id that has a ':' in
//   it. Two partial indexes list the few rows where it could hide elsewhere: machines with a ':' in one of those
//   fields, NICs whose address is not a normalized 17-character one (normally both empty; every write normalizes).
// - The GIN index collects new entries in a pending list that every search reads whole until it is merged
//   (4 MB by default: after a bulk import, each search scanned thousands of unsorted entries until autovacuum came).
//   256 kB keeps writes batched and bounds that scan.

const STATEMENTS = [
  `CREATE INDEX machines_text_colon ON machines (id)
    WHERE strpos(coalesce(name, '') || coalesce(serial, '') || coalesce(uuid, '') || id, ':') > 0`,
  `CREATE INDEX nics_unnormalized_mac ON nics (machine_id) WHERE (length(mac) <> 17 or mac <> lower(mac))`,
  `ALTER INDEX machine_search_doc SET (gin_pending_list_limit = 256)`,
]

export async function up(db: Kysely<any>): Promise<void> {
  if (dialectOf(db) !== 'postgres') return
  for (const s of STATEMENTS) await sql.raw(s).execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  if (dialectOf(db) !== 'postgres') return
  for (const s of ['DROP INDEX machines_text_colon', 'DROP INDEX nics_unnormalized_mac', 'ALTER INDEX machine_search_doc RESET (gin_pending_list_limit)']) {
    await sql.raw(s).execute(db)
  }
}
