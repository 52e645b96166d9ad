import type { Kysely } from 'kysely'
import { textType } from '../dialect.js'

// Issue 18: a BMC's own settings (Redfish system and CA, auth, IPMI suites, privilege, K_G, read-back strictness,
// how the lifecycle boots the machine), its last power state as read, and a "clear the override after the boot"
// mark for BMCs that keep only Continuous overrides.
const COLUMNS: [string, 'text' | 'integer' | 'bigint', ((c: any) => any)?][] = [
  ['system_id', 'text'],
  ['ca_pem', 'text'],
  ['auth', 'text', (c) => c.notNull().defaultTo('auto')],
  ['cipher_suites', 'text'],
  ['privilege', 'text'],
  ['kg_sealed', 'text'],
  ['kg_ref', 'text'],
  ['boot_verify', 'text'],
  ['boot_method', 'text', (c) => c.notNull().defaultTo('pxe')],
  ['power_state', 'text'],
  ['power_checked_at', 'bigint'],
  ['power_error', 'text'],
  ['clear_override_after_boot', 'integer', (c) => c.notNull().defaultTo(0)],
]

export async function up(db: Kysely<any>): Promise<void> {
  for (const [name, type, build] of COLUMNS) {
    await db.schema.alterTable('bmcs').addColumn(name, type === 'text' ? textType(db) : type, build ?? ((c) => c)).execute()
  }
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const [name] of [...COLUMNS].reverse()) await db.schema.alterTable('bmcs').dropColumn(name).execute()
}
