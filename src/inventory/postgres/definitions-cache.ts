import type { Kysely } from 'kysely'
import { sql } from 'kysely'
import type { DefinitionVersion } from '../sqlite/definitions-cache.js'
import { DEFINITIONS_CHANNEL, listenPostgres, type PgListener } from './listen.js'

// What lets one instance keep the classes and profiles it read (sqlite/definitions-cache.ts does the caching) while
// others write them through the same PostgreSQL database:
// - a write through this process moves the table's version (before and after the statement, and again once its
//   transaction commits: a read between its statement and its commit saw the old rows);
// - every commit that wrote classes or profiles, by any instance, notifies DEFINITIONS_CHANNEL (migration 0013), and
//   a notification moves that table's version as it arrives: another instance's change is seen within the
//   notification's delivery time;
// - while the listening connection is not in place (starting, dropped, the trigger missing: a database migrated
//   only part of the way), changes could go unannounced, so nothing is cached: every read reads. Coming back, the
//   listener moves every version (what was kept from before may be stale).

class NotifiedVersion implements DefinitionVersion {
  #n = 0
  constructor(private readonly live: () => boolean) {}
  bump(): void {
    this.#n++
  }
  current(): string | null {
    return this.live() ? String(this.#n) : null
  }
}

export interface DefinitionsWatch {
  classes: DefinitionVersion
  profiles: DefinitionVersion
  /** The versions as one string: changed, something was written through this process meanwhile. */
  local(): string
  /** Moves both versions (a transaction that wrote either committed). */
  bumpAll(): void
  /** Resolves once listening (tests). */
  ready(): Promise<void>
  close(): Promise<void>
}

/** Listens on `url` for definition changes when the database has migration 0013's triggers; else caches nothing. */
export async function watchDefinitions(db: Kysely<any>, options: { url: string; warn?: (message: string) => void }): Promise<DefinitionsWatch> {
  const triggers = await sql<{ n: number }>`select count(*)::int as n from pg_trigger where tgname in ('classes_notify', 'profiles_notify') and not tgisinternal`.execute(db)
  const listener: PgListener | null = Number(triggers.rows[0]?.n) === 2
    ? listenPostgres({ url: options.url, channel: DEFINITIONS_CHANNEL, applicationName: 'rackboot-definitions', ...(options.warn ? { warn: options.warn } : {}) })
    : null
  const live = () => listener?.listening() ?? false
  const classes = new NotifiedVersion(live)
  const profiles = new NotifiedVersion(live)
  let writes = 0
  const counted = (v: NotifiedVersion): DefinitionVersion => ({
    bump: () => {
      writes++
      v.bump()
    },
    current: () => v.current(),
  })
  listener?.onNotify((table) => {
    // null: the listener came back, and what happened meanwhile is unknown.
    if (table !== 'profiles') classes.bump()
    if (table !== 'classes') profiles.bump()
  })
  return {
    classes: counted(classes),
    profiles: counted(profiles),
    local: () => String(writes),
    bumpAll() {
      classes.bump()
      profiles.bump()
    },
    ready: () => listener?.ready() ?? Promise.resolve(),
    close: () => listener?.close() ?? Promise.resolve(),
  }
}
