import type SQLite from 'better-sqlite3'
import type { ClassRepository, Inventory, ProfileRepository } from '../repositories.js'
import type { MachineClass, Profile } from '../types.js'

// Every config fetch and boot decision lists the classes (lifecycle/profiles.ts) and reads a profile; both change a
// few times a day. What was read is kept while nothing could have changed it:
// - a put or delete through this process (any repository over the connection, in a transaction or not) moves the
//   table's own counter;
// - a commit by another connection (the CLI importing an inventory while `serve` runs) moves SQLite's data_version,
//   which one prepared statement reads, cheaply, on every read.
// A change either way is seen by the very next read; a read that raced a write is stale at once.

/**
 * What a cached read of a table is kept under: equal versions, nothing changed it in between. null: nothing can be
 * vouched for now (PostgreSQL while it is not listening for other instances' changes): every read reads.
 */
export interface DefinitionVersion {
  /** Called before and after each write: a read that overlapped the write is not kept as current. */
  bump(): void
  current(): string | null
}

/** What a table was read under: this process's writes to it and other connections' commits. */
export class TableVersion implements DefinitionVersion {
  #local = 0
  readonly #dataVersion: SQLite.Statement
  constructor(db: SQLite.Database) {
    this.#dataVersion = db.prepare('pragma data_version').pluck()
  }
  /** Called before and after each write: a read that overlapped the write is not kept as current. */
  bump(): void {
    this.#local++
  }
  current(): string {
    return `${this.#local}:${this.#dataVersion.get() as number}`
  }
}

/** The versions of the tables cached here, one set per connection. */
export interface DefinitionVersions {
  classes: TableVersion
  profiles: TableVersion
}

export function definitionVersions(db: SQLite.Database): DefinitionVersions {
  return { classes: new TableVersion(db), profiles: new TableVersion(db) }
}

/** Profiles kept per version (a profile is a few KiB of base config). */
export const PROFILES_KEPT = 256

function deepFreeze<T>(value: T): T {
  if (typeof value !== 'object' || value === null || Object.isFrozen(value)) return value
  for (const child of Object.values(value)) deepFreeze(child)
  return Object.freeze(value)
}

interface Writes<T> {
  put(value: T, now: number): Promise<unknown>
  delete(name: string): Promise<boolean>
}

/** Writes through `repo` (a transaction's repository too) make the next cached read read again. */
export function countingWrites<T, R extends Writes<T>>(repo: R, version: DefinitionVersion): R {
  const around = async <V>(write: () => Promise<V>): Promise<V> => {
    version.bump()
    try {
      return await write()
    } finally {
      version.bump()
    }
  }
  return { ...repo, put: (value: T, now: number) => around(() => repo.put(value, now)), delete: (name: string) => around(() => repo.delete(name)) }
}

/**
 * The classes, listed once per version. Cached classes are frozen (callers share them: one that changed a class
 * would change every later fetch's); each list is a new array.
 */
export function cachingClasses(classes: ClassRepository, version: DefinitionVersion): ClassRepository {
  let cached: { version: string; list: readonly MachineClass[] } | null = null
  return {
    ...countingWrites(classes, version),
    async list() {
      const at = version.current()
      if (at === null) return classes.list()
      if (cached?.version !== at) cached = { version: at, list: deepFreeze(await classes.list()) }
      return [...cached.list]
    },
  }
}

/** Profiles by name, read once per version (a missing one too), frozen as the classes are. */
export function cachingProfiles(profiles: ProfileRepository, version: DefinitionVersion): ProfileRepository {
  let cached: { version: string; byName: Map<string, Profile | null> } = { version: '', byName: new Map() }
  return {
    ...countingWrites(profiles, version),
    async get(name) {
      const at = version.current()
      if (at === null) return profiles.get(name)
      if (cached.version !== at || cached.byName.size >= PROFILES_KEPT) cached = { version: at, byName: new Map() }
      const hit = cached.byName.get(name)
      if (hit !== undefined) return hit
      const profile = deepFreeze(await profiles.get(name))
      if (cached.version === at) cached.byName.set(name, profile)
      return profile
    },
  }
}

/**
 * The classes and profiles of a backend's repositories, cached outside a transaction; inside one (which reads its own
 * writes) not cached, but its writes move the versions, so the cache outside is void. Both backends wire it so.
 */
export function withDefinitionCaches(inventory: Inventory, versions: { classes: DefinitionVersion; profiles: DefinitionVersion }, inTransaction: boolean): Inventory {
  if (inTransaction) {
    inventory.classes = countingWrites(inventory.classes, versions.classes)
    inventory.profiles = countingWrites(inventory.profiles, versions.profiles)
  } else {
    inventory.classes = cachingClasses(inventory.classes, versions.classes)
    inventory.profiles = cachingProfiles(inventory.profiles, versions.profiles)
  }
  return inventory
}
