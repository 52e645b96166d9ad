import type { Kysely } from 'kysely'

// Issue 16: a database upgraded to 0015 while machines were installing has no slot rows for them, so the claims of
// install-slots.ts undercount provisioning.maxConcurrent / maxPerRack until those machines leave provisioning. Each
// machine in state provisioning without a slot gets one if it was admitted: as the repair ladder's rebuild decides
// it (repair.ts), an install boot script served since its last move into provisioning (a machine told to wait got
// a 'hold' script). Not every provisioning machine: a claim is granted to a machine that holds a slot, so slots for
// the ones waiting in line would let them all through at once. The rack is the one admission claims with
// (repair.ts rackOf: the machine's rack, else its `rack` label); the holder names this migration, the time is when
// it ran. Rows are read and written here, not in SQL: the timeline's data is JSON text on both backends.

/** The holder of the slots this migration gives (install_slots.holder is an instance's name otherwise). */
export const BACKFILL_HOLDER = 'migration-0017'

/** Events read per machine, newest first: as many as the rebuild reads. */
const TIMELINE = 500

function parse(text: string | null): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(text ?? '')
    return v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : {}
  } catch {
    return {}
  }
}

export async function up(db: Kysely<any>): Promise<void> {
  const machines = await db.selectFrom('machines as m')
    .leftJoin('install_slots as s', 's.machine_id', 'm.id')
    .where('m.state', '=', 'provisioning')
    .where('s.machine_id', 'is', null)
    .select(['m.id', 'm.rack', 'm.labels'])
    .execute() as { id: string; rack: string | null; labels: string | null }[]
  const takenAt = Date.now()
  for (const m of machines) {
    const events = await db.selectFrom('events').select(['type', 'data'])
      .where('machine_id', '=', m.id).where('type', 'in', ['machine.state', 'boot.script'])
      .orderBy('seq', 'desc').limit(TIMELINE)
      .execute() as { type: string; data: string | null }[]
    let admitted = false
    for (const e of events) {
      const d = parse(e.data)
      if (e.type === 'machine.state' && d.to === 'provisioning') break
      if (e.type === 'boot.script' && d.decision === 'install') admitted = true
    }
    if (!admitted) continue
    const label = parse(m.labels).rack
    const rack = m.rack ?? (typeof label === 'string' ? label : null)
    // A claim by an instance still running meanwhile keeps its own row.
    await db.insertInto('install_slots').values({ machine_id: m.id, rack, holder: BACKFILL_HOLDER, taken_at: takenAt })
      .onConflict((oc) => oc.column('machine_id').doNothing())
      .execute()
  }
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.deleteFrom('install_slots').where('holder', '=', BACKFILL_HOLDER).execute()
}
