import { randomBytes } from 'node:crypto'
import { sql, type Kysely } from 'kysely'
import { dialectOf } from '../../../src/inventory/sql/dialect.js'
import { summarizeFacts } from '../../../src/inventory/sql/migrations/0002-hardware-summary.js'
import type { Database } from '../../../src/inventory/sql/schema.js'
import type { HardwareFacts } from '../../../src/inventory/index.js'

export interface SeedOptions {
  count: number
  /** State of every machine (default ready). */
  state?: string
  /** First index (names r-<index>), so several seeds can add up. */
  offset?: number
  now?: number
}

/** The hardware of machine i: a spread of sizes so selectors and filters have something to separate. */
export function factsFor(i: number): HardwareFacts {
  const cores = [8, 16, 32, 64, 96][i % 5]!
  const memGiB = [64, 128, 256, 512, 1024][(i >> 1) % 5]!
  const nvme = i % 4
  const disks = [
    ...Array.from({ length: nvme }, (_, d) => ({ name: `nvme${d}n1`, sizeBytes: 3.84e12, type: 'nvme' as const, serial: `NV${i}-${d}` })),
    { name: 'sda', sizeBytes: 480e9, type: 'ssd' as const, rotational: false, serial: `SD${i}` },
  ]
  return {
    cpu: { model: 'Xeon Gold', sockets: 2, cores, threads: cores * 2 },
    memory: { totalBytes: memGiB * 2 ** 30 },
    disks,
    nics: [
      { mac: macFor(i, 0), name: 'eno1', speedMbps: 25000, link: true },
      { mac: macFor(i, 1), name: 'eno2', speedMbps: 1000, link: false },
    ],
    smbios: { manufacturer: i % 3 === 0 ? 'Dell Inc.' : 'Supermicro', product: 'R650' },
  }
}

export function macFor(i: number, nic: number): string {
  const hex = (i * 4 + nic).toString(16).padStart(8, '0')
  return `02:00:${hex.match(/../g)!.join(':')}`
}

/**
 * Writes `count` machines with NICs and hardware straight through the Kysely handle, in one transaction and in
 * batches (100,000 machines take a few seconds). Returns their ids in order. Either backend (SQLite or PostgreSQL).
 */
export async function seedMachines(inv: { readonly db: Kysely<Database> }, options: SeedOptions): Promise<string[]> {
  const postgres = dialectOf(inv.db) === 'postgres'
  const now = options.now ?? Date.now()
  const offset = options.offset ?? 0
  const ids: string[] = []
  const BATCH = 400
  await inv.db.transaction().execute(async (trx) => {
    // NICs before their machines (foreign keys checked at commit): the machine's insert trigger then indexes its
    // MACs once, instead of once per NIC. PostgreSQL's foreign keys are not deferrable: machines first there.
    if (!postgres) await sql`PRAGMA defer_foreign_keys = ON`.execute(trx)
    for (let start = 0; start < options.count; start += BATCH) {
      const machines = []
      const nics = []
      const hardware = []
      for (let i = offset + start; i < offset + Math.min(options.count, start + BATCH); i++) {
        const id = `m-${i.toString(16).padStart(6, '0')}${randomBytes(3).toString('hex')}`
        ids.push(id)
        const facts = factsFor(i)
        machines.push({
          id, name: `r${Math.floor(i / 40) + 1}-u${(i % 40) + 1}-${i}`, uuid: null, serial: `SN${String(i).padStart(8, '0')}`,
          manufacturer: facts.smbios!.manufacturer!, product: 'R650', arch: 'amd64', firmware: 'uefi',
          state: options.state ?? 'ready',
          labels: JSON.stringify({ rack: `r${Math.floor(i / 40) + 1}`, tier: String(i % 3), zone: `z${i % 4}` }),
          rack: `r${Math.floor(i / 40) + 1}`, rack_unit: (i % 40) + 1, always_pxe: 0, profile: null, managed_by: null,
          created_at: now, updated_at: now, state_changed_at: now,
        })
        nics.push({ mac: macFor(i, 0), machine_id: id, name: 'eno1', boot: 1 }, { mac: macFor(i, 1), machine_id: id, name: 'eno2', boot: 0 })
        hardware.push({ machine_id: id, facts: JSON.stringify(facts), reported_at: now, ...summarizeFacts(facts) })
      }
      if (postgres) {
        await trx.insertInto('machines').values(machines).execute()
        await trx.insertInto('nics').values(nics).execute()
      } else {
        await trx.insertInto('nics').values(nics).execute()
        await trx.insertInto('machines').values(machines).execute()
      }
      await trx.insertInto('hardware').values(hardware).execute()
    }
  })
  return ids
}
