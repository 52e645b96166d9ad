import type { Compilable, CompiledQuery, Kysely, QueryResult } from 'kysely'

/**
 * A hot query compiled once and run with new values. Kysely builds an operation tree and compiles it to SQL on every
 * call, which costs more than SQLite running a one-row statement (a boot storm runs a few of these per request).
 * `build` is given one sentinel per name; where a sentinel landed in the compiled parameters, each call puts that
 * name's value. Compiled on first use with `db`'s dialect; the SQL is the same on a transaction of that database, so
 * a call may pass the transaction to run on.
 */
export function precompile<K extends string, R>(db: Kysely<any>, names: readonly K[], build: (values: Record<K, unknown>) => Compilable<R>) {
  let compiled: { query: CompiledQuery<R>; slots: (K | null)[] } | null = null
  return (values: Record<K, unknown>, on: Kysely<any> = db): Promise<QueryResult<R>> => {
    if (!compiled) {
      const sentinels = Object.fromEntries(names.map((n) => [n, `\u0000precompiled:${n}`])) as Record<K, unknown>
      const query = build(sentinels).compile()
      const byValue = new Map<unknown, K>(names.map((n) => [sentinels[n], n]))
      const slots = query.parameters.map((p) => byValue.get(p) ?? null)
      // A value the query never used would be silently dropped at every call.
      for (const n of names) if (!slots.includes(n)) throw new Error(`precompiled query has no place for ${n}: ${query.sql}`)
      compiled = { query, slots }
    }
    const { query, slots } = compiled
    return on.executeQuery<R>({ ...query, parameters: slots.map((s, i) => (s === null ? query.parameters[i] : values[s])) })
  }
}
