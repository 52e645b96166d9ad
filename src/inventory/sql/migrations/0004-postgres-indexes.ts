import { sql, type Kysely } from 'kysely'

// Migration 0004's two machine-list indexes on PostgreSQL: labels as rows and a trigram index for free-text search,
// kept up to date by triggers as on SQLite. The search document is a row per machine (id, name, serial, uuid, MACs,
// lower case) under a pg_trgm GIN index, which answers `doc LIKE '%needle%'` for needles of three characters or more.
// pg_trgm ships with Debian's postgresql package and is a trusted extension: the database's owner may create it.

const STATEMENTS = [
  `CREATE EXTENSION IF NOT EXISTS pg_trgm`,
  `CREATE TABLE machine_labels (
    machine_id TEXT COLLATE "C" NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    key TEXT COLLATE "C" NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (key, value, machine_id))`,
  `CREATE INDEX machine_labels_machine ON machine_labels (machine_id)`,
  `CREATE TABLE machine_search (
    machine_id TEXT COLLATE "C" PRIMARY KEY REFERENCES machines (id) ON DELETE CASCADE,
    doc TEXT COLLATE "C" NOT NULL)`,
  `CREATE INDEX machine_search_doc ON machine_search USING gin (doc gin_trgm_ops)`,
  // Scalar label values only, as SQLite's json_each filter keeps them.
  `CREATE FUNCTION rackboot_machine_labels() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF TG_OP = 'UPDATE' THEN DELETE FROM machine_labels WHERE machine_id = OLD.id; END IF;
    INSERT INTO machine_labels (machine_id, key, value)
      SELECT NEW.id, j.key, j.value #>> '{}' FROM jsonb_each(NEW.labels::jsonb) j
      WHERE jsonb_typeof(j.value) NOT IN ('object', 'array', 'null');
    RETURN NULL;
  END $$`,
  `CREATE FUNCTION rackboot_machine_search_refresh(mid TEXT) RETURNS void LANGUAGE sql AS $$
    INSERT INTO machine_search (machine_id, doc)
      SELECT m.id, lower(m.id || ' ' || coalesce(m.name, '') || ' ' || coalesce(m.serial, '') || ' ' || coalesce(m.uuid, '') || ' ' ||
        coalesce((SELECT string_agg(n.mac, ' ' ORDER BY n.mac) FROM nics n WHERE n.machine_id = m.id), ''))
      FROM machines m WHERE m.id = mid
    ON CONFLICT (machine_id) DO UPDATE SET doc = excluded.doc
  $$`,
  `CREATE FUNCTION rackboot_machine_search() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF TG_TABLE_NAME = 'machines' THEN PERFORM rackboot_machine_search_refresh(NEW.id); RETURN NULL; END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN PERFORM rackboot_machine_search_refresh(OLD.machine_id); END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN PERFORM rackboot_machine_search_refresh(NEW.machine_id); END IF;
    RETURN NULL;
  END $$`,
  `CREATE TRIGGER machine_labels_write AFTER INSERT OR UPDATE OF labels ON machines FOR EACH ROW EXECUTE FUNCTION rackboot_machine_labels()`,
  `CREATE TRIGGER machine_search_write AFTER INSERT OR UPDATE OF name, serial, uuid ON machines FOR EACH ROW EXECUTE FUNCTION rackboot_machine_search()`,
  `CREATE TRIGGER nic_search_write AFTER INSERT OR UPDATE OR DELETE ON nics FOR EACH ROW EXECUTE FUNCTION rackboot_machine_search()`,
  // Rows written before this migration.
  `INSERT INTO machine_labels (machine_id, key, value)
    SELECT m.id, j.key, j.value #>> '{}' FROM machines m, jsonb_each(m.labels::jsonb) j WHERE jsonb_typeof(j.value) NOT IN ('object', 'array', 'null')`,
  `SELECT rackboot_machine_search_refresh(id) FROM machines`,
]

export async function upPostgres(db: Kysely<any>): Promise<void> {
  for (const s of STATEMENTS) await sql.raw(s).execute(db)
}

export async function downPostgres(db: Kysely<any>): Promise<void> {
  for (const s of [
    'DROP TRIGGER nic_search_write ON nics', 'DROP TRIGGER machine_search_write ON machines', 'DROP TRIGGER machine_labels_write ON machines',
    'DROP FUNCTION rackboot_machine_search()', 'DROP FUNCTION rackboot_machine_search_refresh(TEXT)', 'DROP FUNCTION rackboot_machine_labels()',
    'DROP TABLE machine_search', 'DROP TABLE machine_labels',
  ]) await sql.raw(s).execute(db)
}
