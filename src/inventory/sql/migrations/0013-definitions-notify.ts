import { sql, type Kysely } from 'kysely'
import { dialectOf } from '../dialect.js'

// Issue 16: each instance on a shared PostgreSQL database keeps the classes and profiles it read (every boot decision
// and machine page needs them; they change a few times a day) until any instance changes them. Every statement that
// writes either table notifies channel `rackboot_definitions` with the table's name, delivered when (and only if) its
// transaction commits (src/inventory/postgres/definitions-cache.ts). SQLite has PRAGMA data_version instead.

export async function up(db: Kysely<any>): Promise<void> {
  if (dialectOf(db) !== 'postgres') return
  await sql.raw(`CREATE FUNCTION rackboot_definitions_notify() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    PERFORM pg_notify('rackboot_definitions', TG_TABLE_NAME);
    RETURN NULL;
  END $$`).execute(db)
  for (const table of ['classes', 'profiles']) {
    // Per statement, not per row: an import of a thousand classes sends one notification, not a thousand.
    await sql.raw(`CREATE TRIGGER ${table}_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ${table} FOR EACH STATEMENT EXECUTE FUNCTION rackboot_definitions_notify()`).execute(db)
  }
}

export async function down(db: Kysely<any>): Promise<void> {
  if (dialectOf(db) !== 'postgres') return
  for (const table of ['classes', 'profiles']) await sql.raw(`DROP TRIGGER ${table}_notify ON ${table}`).execute(db)
  await sql.raw('DROP FUNCTION rackboot_definitions_notify()').execute(db)
}
