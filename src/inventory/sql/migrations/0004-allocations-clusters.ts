import { sql, type Kysely } from 'kysely'
import { dialectOf, textType } from '../dialect.js'
import { downPostgres, upPostgres } from './0004-postgres-indexes.js'

// The cluster API (issue 8): allocations (with their idempotency keys and results), each machine's current
// allocation (cluster, role, patches: what its Talos config is made from), and clusters whose secrets bundle is
// sealed at rest. Plus two indexes the machine list needs to stay fast at 100,000 machines, kept up to date by
// triggers so no repository code changes: labels as rows (key, value, machine), and a trigram full-text index
// over id, name, serial, uuid and MACs for free-text search (SQLite FTS5; on PostgreSQL pg_trgm, 0004-postgres-indexes.ts).

/** The search document of machine `id` (an SQL expression over the machines and nics tables). */
const searchDoc = (id: string) => `(SELECT lower(m.id || ' ' || ifnull(m.name, '') || ' ' || ifnull(m.serial, '') || ' ' || ifnull(m.uuid, '') || ' ' ||
    ifnull((SELECT group_concat(n.mac, ' ') FROM nics n WHERE n.machine_id = m.id), '')) FROM machines m WHERE m.id = ${id})`
const searchKey = (id: string) => `(SELECT key FROM machine_search_ids WHERE machine_id = ${id})`
const refresh = (id: string) => `UPDATE machine_search SET doc = ${searchDoc(id)} WHERE rowid = ${searchKey(id)};`
const labelRows = (row: string) =>
  `INSERT INTO machine_labels (machine_id, key, value)
    SELECT ${row}.id, j.key, CAST(j.value AS TEXT) FROM json_each(CASE WHEN json_valid(${row}.labels) THEN ${row}.labels ELSE '{}' END) j
    WHERE j.type NOT IN ('object', 'array');`

const TRIGGERS: Record<string, string> = {
  machine_labels_insert: `AFTER INSERT ON machines BEGIN ${labelRows('new')} END`,
  machine_labels_update: `AFTER UPDATE OF labels ON machines BEGIN DELETE FROM machine_labels WHERE machine_id = old.id; ${labelRows('new')} END`,
  machine_search_insert: `AFTER INSERT ON machines BEGIN
    INSERT INTO machine_search_ids (machine_id) VALUES (new.id);
    INSERT INTO machine_search (rowid, doc) VALUES (${searchKey('new.id')}, ${searchDoc('new.id')}); END`,
  machine_search_update: `AFTER UPDATE OF name, serial, uuid ON machines BEGIN ${refresh('new.id')} END`,
  // BEFORE: the key must still be there to find the document.
  machine_search_delete: `BEFORE DELETE ON machines BEGIN
    DELETE FROM machine_search WHERE rowid = ${searchKey('old.id')};
    DELETE FROM machine_search_ids WHERE machine_id = old.id; END`,
  nic_search_insert: `AFTER INSERT ON nics BEGIN ${refresh('new.machine_id')} END`,
  nic_search_delete: `AFTER DELETE ON nics BEGIN ${refresh('old.machine_id')} END`,
  nic_search_update: `AFTER UPDATE ON nics BEGIN ${refresh('old.machine_id')} ${refresh('new.machine_id')} END`,
}
export async function up(db: Kysely<any>): Promise<void> {
  const text = textType(db)
  await db.schema
    .createTable('allocations')
    .addColumn('id', text, (c) => c.primaryKey())
    .addColumn('idempotency_key', text, (c) => c.unique())
    .addColumn('request_hash', text, (c) => c.notNull())
    .addColumn('class', text)
    .addColumn('selector', text)
    .addColumn('count', 'integer', (c) => c.notNull())
    .addColumn('cluster', text)
    .addColumn('role', text)
    .addColumn('profile', text)
    .addColumn('patches', text, (c) => c.notNull().defaultTo('[]'))
    .addColumn('machines', text, (c) => c.notNull().defaultTo('[]'))
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute()
  await db.schema.createIndex('allocations_cluster').on('allocations').columns(['cluster', 'id']).execute()

  await db.schema
    .createTable('allocation_machines')
    .addColumn('allocation_id', text, (c) => c.notNull().references('allocations.id').onDelete('cascade'))
    .addColumn('machine_id', text, (c) => c.notNull().references('machines.id').onDelete('cascade'))
    .addColumn('class', text)
    .addColumn('cluster', text)
    .addColumn('role', text)
    .addColumn('profile', text)
    .addColumn('previous_profile', text)
    .addColumn('patches', text, (c) => c.notNull().defaultTo('[]'))
    .addColumn('allocated_at', 'bigint', (c) => c.notNull())
    .addColumn('released_at', 'bigint')
    .addPrimaryKeyConstraint('allocation_machines_pk', ['allocation_id', 'machine_id'])
    .execute()
  await db.schema.createIndex('allocation_machines_machine').on('allocation_machines').columns(['machine_id', 'released_at']).execute()
  await db.schema.createIndex('allocation_machines_cluster').on('allocation_machines').columns(['cluster', 'released_at']).execute()

  await db.schema
    .createTable('clusters')
    .addColumn('name', text, (c) => c.primaryKey())
    .addColumn('endpoint', text, (c) => c.notNull())
    .addColumn('talos_version', text, (c) => c.notNull())
    .addColumn('kubernetes_version', text)
    .addColumn('secrets_sealed', text, (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute()

  if (dialectOf(db) === 'postgres') return upPostgres(db)
  await sql`CREATE TABLE machine_labels (
    machine_id TEXT NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (key, value, machine_id)
  ) WITHOUT ROWID`.execute(db)
  await sql`CREATE INDEX machine_labels_machine ON machine_labels (machine_id)`.execute(db)
  await sql`CREATE TABLE machine_search_ids (key INTEGER PRIMARY KEY, machine_id TEXT NOT NULL UNIQUE)`.execute(db)
  await sql`CREATE VIRTUAL TABLE machine_search USING fts5(doc, tokenize = 'trigram')`.execute(db)
  // Rows written before this migration.
  await sql.raw(labelRows('machines').replace('FROM json_each', 'FROM machines, json_each')).execute(db)
  await sql`INSERT INTO machine_search_ids (machine_id) SELECT id FROM machines ORDER BY id`.execute(db)
  await sql.raw(`INSERT INTO machine_search (rowid, doc) SELECT k.key, ${searchDoc('k.machine_id')} FROM machine_search_ids k`).execute(db)
  for (const [name, body] of Object.entries(TRIGGERS)) await sql.raw(`CREATE TRIGGER ${name} ${body}`).execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  if (dialectOf(db) === 'postgres') await downPostgres(db)
  else {
    for (const name of Object.keys(TRIGGERS)) await sql.raw(`DROP TRIGGER ${name}`).execute(db)
    await sql`DROP TABLE machine_search`.execute(db)
    await sql`DROP TABLE machine_search_ids`.execute(db)
    await sql`DROP TABLE machine_labels`.execute(db)
  }
  await db.schema.dropTable('clusters').execute()
  await db.schema.dropTable('allocation_machines').execute()
  await db.schema.dropTable('allocations').execute()
}
