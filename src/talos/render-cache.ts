import type { ConfigDocument } from './documents.js'

// The memory of config rendering (render.ts), bounded in entries and in bytes:
//   prepared  a profile's base config with its class, profile and machine patches applied, deep-frozen, keyed by
//             a hash of everything that goes into it (Talos version, base text or documents, each patch list);
//   rendered  one machine's config (prepared key + the machine's own values): a boot's retries, and the next
//             boot of an unchanged machine, are served without rendering again. The key is the content, not a
//             token or a row version, so a changed profile, class, patch or machine value is a new key and a stale
//             entry is never served; it ages out;
//   recent    the documents behind the YAML text of the last configs rendered, so that linting that exact text
//             (lint.ts) checks those documents instead of parsing the text again.

export interface LruLimits {
  maxEntries: number
  maxBytes: number
}

export class Lru<V> {
  private readonly map = new Map<string, { value: V; bytes: number }>()
  private total = 0
  hits = 0
  misses = 0

  constructor(private limits: LruLimits) {}

  get(key: string): V | undefined {
    const e = this.map.get(key)
    if (!e) {
      this.misses++
      return undefined
    }
    this.hits++
    this.map.delete(key)
    this.map.set(key, e)
    return e.value
  }

  set(key: string, value: V, bytes: number): void {
    const old = this.map.get(key)
    if (old) {
      this.total -= old.bytes
      this.map.delete(key)
    }
    // An entry larger than the whole budget is not kept.
    if (bytes > this.limits.maxBytes || this.limits.maxEntries <= 0) return
    this.map.set(key, { value, bytes })
    this.total += bytes
    this.evict()
  }

  setLimits(limits: LruLimits): void {
    this.limits = limits
    this.evict()
  }

  clear(): void {
    this.map.clear()
    this.total = 0
    this.hits = 0
    this.misses = 0
  }

  get size(): number {
    return this.map.size
  }

  get bytes(): number {
    return this.total
  }

  private evict(): void {
    // (Most calls are within bounds: no iterator for them.)
    if (this.map.size <= this.limits.maxEntries && this.total <= this.limits.maxBytes) return
    for (const [k, e] of this.map) {
      if (this.map.size <= this.limits.maxEntries && this.total <= this.limits.maxBytes) break
      this.map.delete(k)
      this.total -= e.bytes
    }
  }
}

export interface PreparedConfig {
  key: string
  /** Base + patches, deep-frozen: shared by every machine rendered from it, never changed. */
  documents: readonly ConfigDocument[]
}

export interface RenderedEntry {
  yaml: string
  /** Deep-frozen; the documents the YAML text was written from. */
  documents: readonly ConfigDocument[]
}

/** Rough size of a cache entry: its YAML text (the documents share most of their objects with the prepared entry). */
export function entryBytes(yaml: string): number {
  return 2 * yaml.length + 512
}

export const DEFAULT_RENDER_CACHE_LIMITS = {
  prepared: { maxEntries: 256, maxBytes: 32 * 1024 * 1024 },
  rendered: { maxEntries: 20_000, maxBytes: 64 * 1024 * 1024 },
  recent: { maxEntries: 256, maxBytes: 8 * 1024 * 1024 },
} as const satisfies Record<string, LruLimits>

export const preparedConfigs = new Lru<PreparedConfig>(DEFAULT_RENDER_CACHE_LIMITS.prepared)
export const renderedConfigs = new Lru<RenderedEntry>(DEFAULT_RENDER_CACHE_LIMITS.rendered)
const recentTexts = new Lru<readonly ConfigDocument[]>(DEFAULT_RENDER_CACHE_LIMITS.recent)

/** Records that `yaml` is the text of these (deep-frozen) documents. */
export function rememberRendered(entry: RenderedEntry): void {
  recentTexts.set(entry.yaml, entry.documents, entryBytes(entry.yaml))
}

/** The deep-frozen documents `yaml` was written from, when it is the text of a recently rendered config. */
export function renderedDocumentsOf(yaml: string): readonly ConfigDocument[] | undefined {
  return recentTexts.get(yaml)
}

export interface RenderCacheStats {
  prepared: { entries: number; bytes: number; hits: number; misses: number }
  rendered: { entries: number; bytes: number; hits: number; misses: number }
}

export function renderCacheStats(): RenderCacheStats {
  const of = (l: Lru<unknown>) => ({ entries: l.size, bytes: l.bytes, hits: l.hits, misses: l.misses })
  return { prepared: of(preparedConfigs as Lru<unknown>), rendered: of(renderedConfigs as Lru<unknown>) }
}

/** Sets the bounds (a bound of 0 entries turns that cache off). */
export function configureRenderCache(limits: Partial<Record<'prepared' | 'rendered' | 'recent', LruLimits>>): void {
  if (limits.prepared) preparedConfigs.setLimits(limits.prepared)
  if (limits.rendered) renderedConfigs.setLimits(limits.rendered)
  if (limits.recent) recentTexts.setLimits(limits.recent)
}

/** Forgets everything (tests, and a server that reloads its profiles wholesale). */
export function clearRenderCache(): void {
  preparedConfigs.clear()
  renderedConfigs.clear()
  recentTexts.clear()
}
