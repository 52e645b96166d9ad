import type { Kysely } from 'kysely'

// Issue 16: install admission (provisioning.maxConcurrent, maxPerRack) across several instances on one database. A
// row per machine that was given an install slot, with its rack as it was when admitted and the instance that gave
// it; a slot counts only while its machine is in state provisioning (install-slots.ts), so one left behind by a
// crash never holds a slot. Deleting the machine deletes its slot.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createTable('install_slots')
    .addColumn('machine_id', 'text', (c) => c.primaryKey().references('machines.id').onDelete('cascade'))
    .addColumn('rack', 'text')
    .addColumn('holder', 'text', (c) => c.notNull())
    .addColumn('taken_at', 'bigint', (c) => c.notNull())
    .execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('install_slots').execute()
}
