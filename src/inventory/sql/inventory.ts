import type { Kysely } from 'kysely'
import type { Inventory, LeaseRepository } from '../repositories.js'
import type { SecretBox } from '../secret-box.js'
import { createSqlAllocations, createSqlClusters, createSqlQueries } from './allocations.js'
import { createSqlBmcLeases } from './bmc-leases.js'
import { createSqlBmcs } from './bmcs.js'
import { createSqlBootTokens } from './boot-tokens.js'
import { createSqlClasses, createSqlProfiles } from './classes-profiles.js'
import { createSqlEvents } from './events.js'
import { createSqlReservations } from './leases.js'
import { createSqlMachines } from './machines.js'
import type { Database } from './schema.js'
import { createSqlTokens } from './tokens.js'

/**
 * The repositories over one handle (the database, or a transaction), the same for both dialects; only the lease
 * store (SQLite writes leases on its own prepared statement) and the transaction runner differ per backend.
 */
export function sqlRepositories(db: Kysely<Database>, box: SecretBox, parts: { leases: LeaseRepository; transaction: Inventory['transaction']; close: () => Promise<void> }): Inventory {
  return {
    machines: createSqlMachines(db),
    bmcs: createSqlBmcs(db, box),
    classes: createSqlClasses(db),
    profiles: createSqlProfiles(db),
    leases: parts.leases,
    reservations: createSqlReservations(db),
    events: createSqlEvents(db),
    tokens: createSqlTokens(db),
    bootTokens: createSqlBootTokens(db),
    queries: createSqlQueries(db),
    allocations: createSqlAllocations(db),
    clusters: createSqlClusters(db, box),
    bmcLeases: createSqlBmcLeases(db),
    transaction: parts.transaction,
    close: parts.close,
  }
}
