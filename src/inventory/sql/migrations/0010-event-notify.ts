import { sql, type Kysely } from 'kysely'
import { dialectOf } from '../dialect.js'

// Issue 16: instances sharing a PostgreSQL database learn of each other's events at once instead of at their next
// poll of the events table. Every insert into events notifies channel `rackboot_events` with the row's seq; PostgreSQL
// delivers the notification when (and only if) the inserting transaction commits, so a listener is woken exactly when
// there is a new row to read (src/inventory/postgres/listen.ts, the API's event hub). SQLite has one writer and no
// LISTEN: nothing to do there (other processes' events are still found by polling).

export async function up(db: Kysely<any>): Promise<void> {
  if (dialectOf(db) !== 'postgres') return
  await sql.raw(`CREATE FUNCTION rackboot_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    PERFORM pg_notify('rackboot_events', NEW.seq::text);
    RETURN NULL;
  END $$`).execute(db)
  await sql.raw('CREATE TRIGGER events_notify AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION rackboot_events_notify()').execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  if (dialectOf(db) !== 'postgres') return
  await sql.raw('DROP TRIGGER events_notify ON events').execute(db)
  await sql.raw('DROP FUNCTION rackboot_events_notify()').execute(db)
}
