import { sql, type Kysely } from 'kysely'

// Hardware facts arrive as JSON; lists filter on cores, memory and disks over 100,000 machines, so keep
// those few numbers in columns and fill them in for rows written before this migration.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('hardware').addColumn('cpu_cores', 'integer').execute()
  await db.schema.alterTable('hardware').addColumn('memory_bytes', 'bigint').execute()
  await db.schema.alterTable('hardware').addColumn('disk_count', 'integer').execute()
  await db.schema.alterTable('hardware').addColumn('nvme_count', 'integer').execute()
  const rows = await db.selectFrom('hardware').select(['machine_id', 'facts']).execute()
  for (const row of rows) {
    const s = summarizeFacts(JSON.parse(row.facts as string))
    await db.updateTable('hardware').set(s).where('machine_id', '=', row.machine_id).execute()
  }
  await db.schema.createIndex('hardware_cores').on('hardware').column('cpu_cores').execute()
  await db.schema.createIndex('hardware_memory').on('hardware').column('memory_bytes').execute()
  void sql
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('hardware_cores').execute()
  await db.schema.dropIndex('hardware_memory').execute()
  for (const c of ['cpu_cores', 'memory_bytes', 'disk_count', 'nvme_count']) {
    await db.schema.alterTable('hardware').dropColumn(c).execute()
  }
}

export function summarizeFacts(facts: any): { cpu_cores: number | null; memory_bytes: number | null; disk_count: number | null; nvme_count: number | null } {
  const disks = Array.isArray(facts?.disks) ? facts.disks : null
  return {
    cpu_cores: typeof facts?.cpu?.cores === 'number' ? facts.cpu.cores : null,
    memory_bytes: typeof facts?.memory?.totalBytes === 'number' ? facts.memory.totalBytes : null,
    disk_count: disks ? disks.length : null,
    nvme_count: disks ? disks.filter((d: any) => d?.type === 'nvme').length : null,
  }
}
