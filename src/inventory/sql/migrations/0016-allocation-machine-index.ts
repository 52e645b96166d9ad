import type { Kysely } from 'kysely'

// Issue 15: every config fetch looks up the machine's open allocation, the newest first (allocations.ts, current).
// The index 0004 made on (machine_id, released_at) finds the rows but leaves them to be sorted (SQLite: "USE TEMP
// B-TREE FOR ORDER BY"); with allocated_at after them the first row is the answer. It takes the old one's place,
// whose columns it starts with.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createIndex('allocation_machines_machine_open').on('allocation_machines').columns(['machine_id', 'released_at', 'allocated_at']).execute()
  await db.schema.dropIndex('allocation_machines_machine').execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.createIndex('allocation_machines_machine').on('allocation_machines').columns(['machine_id', 'released_at']).execute()
  await db.schema.dropIndex('allocation_machines_machine_open').execute()
}
