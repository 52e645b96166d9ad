import type { Migration, MigrationProvider } from 'kysely'
import * as m0001 from './0001-initial.js'
import * as m0002 from './0002-hardware-summary.js'
import * as m0003 from './0003-boot-tokens.js'
import * as m0004 from './0004-allocations-clusters.js'
import * as m0005 from './0005-install-disk-network.js'
import * as m0006 from './0006-boot-trust.js'
import * as m0007 from './0007-profile-deadlines.js'
import * as m0008 from './0008-bmc-options.js'
import * as m0009 from './0009-machine-sort-indexes.js'
import * as m0010 from './0010-event-notify.js'
import * as m0011 from './0011-bmc-leases.js'
import * as m0012 from './0012-postgres-search-paths.js'
import * as m0013 from './0013-definitions-notify.js'
import * as m0014 from './0014-leader-leases.js'
import * as m0015 from './0015-install-slots.js'
import * as m0016 from './0016-allocation-machine-index.js'
import * as m0017 from './0017-install-slots-backfill.js'

// Numbered migrations, applied in name order at start-up. Never edit one that has shipped: add the next number.
export const MIGRATIONS: Record<string, Migration> = {
  '0001-initial': m0001,
  '0002-hardware-summary': m0002,
  '0003-boot-tokens': m0003,
  '0004-allocations-clusters': m0004,
  '0005-install-disk-network': m0005,
  '0006-boot-trust': m0006,
  '0007-profile-deadlines': m0007,
  '0008-bmc-options': m0008,
  '0009-machine-sort-indexes': m0009,
  '0010-event-notify': m0010,
  '0011-bmc-leases': m0011,
  '0012-postgres-search-paths': m0012,
  '0013-definitions-notify': m0013,
  '0014-leader-leases': m0014,
  '0015-install-slots': m0015,
  '0016-allocation-machine-index': m0016,
  '0017-install-slots-backfill': m0017,
}

export const migrationProvider: MigrationProvider = {
  async getMigrations() {
    return MIGRATIONS
  },
}
