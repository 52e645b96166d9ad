import type { Kysely } from 'kysely'

// Issue 16: several instances on one database share each BMC. A lease row per machine says which instance is
// running an operation on its BMC now (and until when: a crashed holder's lease runs out and is taken over); a
// reboot row per machine says when it was last rebooted, by any instance, for the minimum reboot interval.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createTable('bmc_leases')
    .addColumn('machine_id', 'text', (c) => c.primaryKey().references('machines.id').onDelete('cascade'))
    .addColumn('holder', 'text', (c) => c.notNull())
    .addColumn('operation', 'text')
    .addColumn('acquired_at', 'bigint')
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .execute()
  await db.schema.createTable('machine_reboots')
    .addColumn('machine_id', 'text', (c) => c.primaryKey().references('machines.id').onDelete('cascade'))
    .addColumn('rebooted_at', 'bigint', (c) => c.notNull())
    .addColumn('holder', 'text')
    .execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('machine_reboots').execute()
  await db.schema.dropTable('bmc_leases').execute()
}
