import { sql, type Kysely } from 'kysely'

// How PostgreSQL looks up the machines whose search document (migration 0004: id, name, serial, uuid and MACs, lower
// case) contains a needle, exactly as `doc LIKE '%needle%'` would answer, without paying pg_trgm's worst cases:
//
// - pg_trgm reads, for each trigram of the needle, every document that has it. A whole serial shares most of its
//   trigrams with thousands of others ('sn0', '000', a vendor's prefix): measured at 100,000 machines, 'sn00054321'
//   reads ~130 index pages (15-20 ms) where its rare part '054321' reads 13 (0.7 ms). So the index is asked for the
//   needle's rarest trigrams only (found in a sample of the documents) and every hit is checked against the whole
//   needle: the same rows, a fraction of the work.
// - pg_trgm makes trigrams of letters and digits only: a MAC ('02:00:00:03:12:a4') is six two-character words, each
//   in nearly every document, so the index helps nothing. A whole MAC can only be a NIC's address (they are all
//   17 characters, normalized) or sit inside a name, serial, uuid or id that has a ':' in it, which migration 0012
//   indexes (partially: normally none): two index lookups, whatever the inventory's size.

/** The trigrams pg_trgm indexes inside a word (letters and digits, as in a database in the C locale). */
function innerTrigrams(text: string): Set<string> {
  const out = new Set<string>()
  for (const word of text.match(/[a-z0-9]{3,}/g) ?? []) {
    for (let i = 0; i + 3 <= word.length; i++) out.add(word.slice(i, i + 3))
  }
  return out
}

/** How many sampled documents have each trigram, and how many were sampled. */
interface Sample {
  counts: Map<string, number>
  size: number
  takenAt: number
}

export interface TrigramSampler {
  /**
   * Up to `max` trigrams of `needle` that few documents have (at most `maxShare` of the sample), rarest first; empty
   * when the needle has none (then the whole needle is the best the index can be asked).
   */
  rarest(db: Kysely<any>, needle: string, max?: number, maxShare?: number): Promise<string[]>
}

/**
 * A sample of the search documents (about `size`, taken again when older than `maxAgeMs`, in the background), shared
 * by one inventory's queries.
 */
export function createTrigramSampler(options: { size?: number; maxAgeMs?: number; now?: () => number } = {}): TrigramSampler {
  const size = options.size ?? 2000
  const maxAgeMs = options.maxAgeMs ?? 5 * 60_000
  const now = options.now ?? Date.now
  let sample: Sample | null = null
  let taking: Promise<Sample> | null = null

  async function take(db: Kysely<any>): Promise<Sample> {
    // Pages at random (TABLESAMPLE SYSTEM) rather than a sort of the whole table; a small table is read whole.
    const est = await sql<{ n: number }>`select reltuples::float8 as n from pg_class where oid = 'machine_search'::regclass`.execute(db)
    const rows = Number(est.rows[0]?.n ?? -1)
    const percent = rows > size * 2 ? Math.min(100, (100 * size) / rows) : 100
    const docs = await sql<{ doc: string }>`select doc from machine_search tablesample system (${sql.lit(percent)}) limit ${size * 2}`.execute(db)
    const counts = new Map<string, number>()
    for (const { doc } of docs.rows) for (const t of innerTrigrams(doc)) counts.set(t, (counts.get(t) ?? 0) + 1)
    return { counts, size: docs.rows.length, takenAt: now() }
  }

  function refresh(db: Kysely<any>): Promise<Sample> {
    taking ??= take(db).then((s) => (sample = s)).finally(() => {
      taking = null
    })
    return taking
  }

  return {
    async rarest(db, needle, max = 3, maxShare = 0.05) {
      const trigrams = [...innerTrigrams(needle)]
      if (trigrams.length === 0) return []
      let s = sample
      if (!s) s = await refresh(db)
      else if (now() - s.takenAt > maxAgeMs) void refresh(db).catch(() => {})
      // Too few documents to tell the rare from the common: the whole needle.
      if (s.size < 50) return []
      const limit = Math.floor(maxShare * s.size)
      return trigrams
        .map((t, i) => ({ t, n: s.counts.get(t) ?? 0, i }))
        .filter((x) => x.n <= limit)
        .sort((a, b) => a.n - b.n || b.i - a.i)
        .slice(0, max)
        .map((x) => x.t)
    },
  }
}

const WHOLE_MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/

/** `%text%` for LIKE ... ESCAPE '\', the user's own %, _ and \ taken literally. */
export function containsPattern(text: string): string {
  return `%${text.replace(/[%_\\]/g, (ch) => `\\${ch}`)}%`
}

/**
 * Ids of machines whose search document contains `needle` (lower case, a MAC normalized), at most `cap`, on
 * PostgreSQL: the same set as `doc LIKE '%needle%'` over machine_search.
 */
export async function postgresSearchIds(db: Kysely<any>, needle: string, cap: number, sampler: TrigramSampler | null): Promise<string[]> {
  const like = containsPattern(needle)
  if (WHOLE_MAC.test(needle)) {
    // Where 17 characters with colons can be in a document: a NIC's address, equal to it (as every address written
    // is, normalized), any other address (none: migration 0012's partial index), or a name, serial, uuid or id with a
    // ':' in it (the same).
    const rows = await sql<{ id: string }>`
      select machine_id as id from nics where mac = ${needle}
      union
      select machine_id from nics where (length(mac) <> 17 or mac <> lower(mac)) and lower(mac) like ${like} escape '\\'
      union
      select id from machines
        where strpos(coalesce(name, '') || coalesce(serial, '') || coalesce(uuid, '') || id, ':') > 0
          and (lower(name) like ${like} escape '\\' or lower(serial) like ${like} escape '\\'
            or lower(uuid) like ${like} escape '\\' or lower(id) like ${like} escape '\\')
      limit ${cap}`.execute(db)
    return rows.rows.map((r) => r.id)
  }
  const rare = sampler ? await sampler.rarest(db, needle) : []
  if (rare.length > 0) {
    // The index is asked for the rare trigrams only; `doc || ''` keeps the whole needle out of the index condition
    // (else the planner hands all its trigrams to the index again) and checks each hit against it.
    const rows = await sql<{ machine_id: string }>`
      select machine_id from machine_search
      where ${sql.join(rare.map((t) => sql`doc like ${`%${t}%`}`), sql` and `)} and (doc || '') like ${like} escape '\\'
      limit ${cap}`.execute(db)
    return rows.rows.map((r) => r.machine_id)
  }
  const rows = await sql<{ machine_id: string }>`select machine_id from machine_search where doc like ${like} escape '\\' limit ${cap}`.execute(db)
  return rows.rows.map((r) => r.machine_id)
}

/**
 * Ids of machines whose search document (id, name, serial, uuid, MACs; migration 0004) contains `needle`, at most
 * `cap`: SQLite's FTS5 trigram index, PostgreSQL's pg_trgm index asked as above.
 */
export async function searchMachineIds(db: Kysely<any>, dialect: 'sqlite' | 'postgres', needle: string, cap: number, sampler: TrigramSampler | null): Promise<string[]> {
  if (dialect === 'postgres') return postgresSearchIds(db, needle, cap, sampler)
  const rows = await db.selectFrom('machine_search_ids').select('machine_id')
    .where('key', 'in', (eb: any) => eb.selectFrom('machine_search').select(sql<number>`rowid`.as('key'))
      .where(sql`machine_search`, 'match', `"${needle.replaceAll('"', '""')}"`).limit(cap))
    .execute()
  return rows.map((r: { machine_id: string }) => r.machine_id)
}
