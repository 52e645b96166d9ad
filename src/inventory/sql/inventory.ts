import type { Kysely } from 'kysely'
import type { Inventory, LeaseRepository, RowLocks } from '../repositories.js'
import type { SecretBox } from '../secret-box.js'
import { createSqlAllocations, createSqlClusters, createSqlQueries } from './allocations.js'
import { createSqlBmcLeases } from './bmc-leases.js'
import { createSqlBmcs } from './bmcs.js'
import { createSqlBootTokens } from './boot-tokens.js'
import { createSqlClasses, createSqlProfiles } from './classes-profiles.js'
import { createSqlEvents } from './events.js'
import { createSqlInstallSlots } from './install-slots.js'
import { createSqlReservations } from './leases.js'
import { createSqlMachines } from './machines.js'
import type { Database } from './schema.js'
import type { TrigramSampler } from './search-plan.js'
import { createSqlTokens } from './tokens.js'

/**
 * The repositories over one handle (the database, or a transaction), the same for both dialects; only the lease
 * store (SQLite writes leases on its own prepared statement) and the transaction runner differ per backend. With
 * `rowLocks` (a PostgreSQL transaction opened with them), machine scans asked to lock do so: skipping machines other
 * transactions hold, or waiting for them.
 */
export function sqlRepositories(db: Kysely<Database>, box: SecretBox, parts: {
  leases: LeaseRepository
  transaction: Inventory['transaction']
  close: () => Promise<void>
  rowLocks?: { locks: RowLocks; mode: 'skip' | 'wait' }
  /** PostgreSQL: the inventory's sample of search documents, shared by its transactions. */
  trigramSampler?: TrigramSampler
}): Inventory {
  return {
    ...(parts.rowLocks ? { rowLocks: parts.rowLocks.locks } : {}),
    machines: createSqlMachines(db),
    bmcs: createSqlBmcs(db, box),
    classes: createSqlClasses(db),
    profiles: createSqlProfiles(db),
    leases: parts.leases,
    reservations: createSqlReservations(db),
    events: createSqlEvents(db),
    tokens: createSqlTokens(db),
    bootTokens: createSqlBootTokens(db),
    queries: createSqlQueries(db, parts.rowLocks?.mode ?? null, parts.trigramSampler ?? null),
    allocations: createSqlAllocations(db),
    clusters: createSqlClusters(db, box),
    bmcLeases: createSqlBmcLeases(db),
    installSlots: createSqlInstallSlots(db),
    transaction: parts.transaction,
    close: parts.close,
  }
}
