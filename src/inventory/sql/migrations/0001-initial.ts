import { sql, type Kysely } from 'kysely'
import { dialectOf, textType } from '../dialect.js'

// The first schema. Written with Kysely's schema builder so the same migration runs on PostgreSQL later.
export async function up(db: Kysely<any>): Promise<void> {
  const postgres = dialectOf(db) === 'postgres'
  // Text sorts by code point on both dialects (dialect.ts textType).
  const text = textType(db)
  await db.schema
    .createTable('machines')
    .addColumn('id', text, (c) => c.primaryKey())
    .addColumn('name', text, (c) => c.unique())
    .addColumn('uuid', text, (c) => c.unique())
    .addColumn('serial', text)
    .addColumn('manufacturer', text)
    .addColumn('product', text)
    .addColumn('arch', text)
    .addColumn('firmware', text)
    .addColumn('state', text, (c) => c.notNull())
    .addColumn('labels', text, (c) => c.notNull().defaultTo('{}'))
    .addColumn('rack', text)
    .addColumn('rack_unit', 'integer')
    .addColumn('always_pxe', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('profile', text)
    .addColumn('managed_by', text)
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addColumn('state_changed_at', 'bigint', (c) => c.notNull())
    .execute()
  await db.schema.createIndex('machines_serial').on('machines').column('serial').execute()
  await db.schema.createIndex('machines_state').on('machines').columns(['state', 'id']).execute()

  await db.schema
    .createTable('nics')
    .addColumn('mac', text, (c) => c.primaryKey())
    .addColumn('machine_id', text, (c) => c.notNull().references('machines.id').onDelete('cascade'))
    .addColumn('name', text)
    .addColumn('boot', 'integer', (c) => c.notNull().defaultTo(0))
    .execute()
  await db.schema.createIndex('nics_machine').on('nics').column('machine_id').execute()

  await db.schema
    .createTable('hardware')
    .addColumn('machine_id', text, (c) => c.primaryKey().references('machines.id').onDelete('cascade'))
    .addColumn('facts', text, (c) => c.notNull())
    .addColumn('reported_at', 'bigint', (c) => c.notNull())
    .execute()

  await db.schema
    .createTable('bmcs')
    .addColumn('machine_id', text, (c) => c.primaryKey().references('machines.id').onDelete('cascade'))
    .addColumn('type', text, (c) => c.notNull())
    .addColumn('address', text, (c) => c.notNull())
    .addColumn('port', 'integer')
    .addColumn('username', text)
    .addColumn('password_sealed', text)
    .addColumn('credentials_ref', text)
    .addColumn('insecure', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('fingerprint', text)
    .execute()

  await db.schema
    .createTable('classes')
    .addColumn('name', text, (c) => c.primaryKey())
    .addColumn('description', text)
    .addColumn('selectors', text, (c) => c.notNull())
    .addColumn('profile', text)
    .addColumn('patches', text, (c) => c.notNull().defaultTo('[]'))
    .addColumn('managed_by', text)
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute()

  await db.schema
    .createTable('profiles')
    .addColumn('name', text, (c) => c.primaryKey())
    .addColumn('description', text)
    .addColumn('talos_version', text)
    .addColumn('arch', text)
    .addColumn('schematic', text)
    .addColumn('kernel_args', text, (c) => c.notNull().defaultTo('[]'))
    .addColumn('base_config', text)
    .addColumn('patches', text, (c) => c.notNull().defaultTo('[]'))
    .addColumn('managed_by', text)
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute()

  await db.schema
    .createTable('leases')
    .addColumn('ip', text, (c) => c.primaryKey())
    .addColumn('mac', text, (c) => c.notNull())
    .addColumn('client_id', text)
    .addColumn('subnet', text, (c) => c.notNull())
    .addColumn('state', text, (c) => c.notNull())
    .addColumn('hostname', text)
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute()
  await db.schema.createIndex('leases_mac').on('leases').column('mac').execute()
  await db.schema.createIndex('leases_client').on('leases').column('client_id').execute()
  await db.schema.createIndex('leases_subnet').on('leases').columns(['subnet', 'state']).execute()

  await db.schema
    .createTable('reservations')
    .addColumn('ip', text, (c) => c.primaryKey())
    .addColumn('mac', text, (c) => c.unique())
    .addColumn('client_id', text, (c) => c.unique())
    .addColumn('hostname', text)
    .addColumn('machine_id', text, (c) => c.references('machines.id').onDelete('cascade'))
    .execute()

  await db.schema
    .createTable('events')
    // PostgreSQL has no AUTOINCREMENT: an identity column (64-bit) does the same there.
    .addColumn('seq', postgres ? 'bigint' : 'integer', (c) => (postgres ? c.primaryKey().generatedByDefaultAsIdentity() : c.primaryKey().autoIncrement()))
    .addColumn('machine_id', text)
    .addColumn('type', text, (c) => c.notNull())
    .addColumn('at', 'bigint', (c) => c.notNull())
    .addColumn('message', text, (c) => c.notNull())
    .addColumn('data', text, (c) => c.notNull().defaultTo('{}'))
    .execute()
  await db.schema.createIndex('events_machine').on('events').columns(['machine_id', 'seq']).execute()

  await db.schema
    .createTable('api_tokens')
    .addColumn('id', text, (c) => c.primaryKey())
    .addColumn('name', text, (c) => c.notNull().unique())
    .addColumn('scopes', text, (c) => c.notNull())
    .addColumn('hash', text, (c) => c.notNull().unique())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('last_used_at', 'bigint')
    .addColumn('expires_at', 'bigint')
    .addColumn('revoked_at', 'bigint')
    .execute()
  void sql
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const t of ['api_tokens', 'events', 'reservations', 'leases', 'profiles', 'classes', 'bmcs', 'hardware', 'nics', 'machines']) {
    await db.schema.dropTable(t).execute()
  }
}
