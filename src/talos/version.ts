import { RackbootError } from '../errors.js'

/** A Talos release version, parsed tolerantly ("v1.13.9", "1.13", "v1.14.0-rc.1"). */
export interface TalosVersion {
  major: number
  minor: number
  patch: number
  /** "rc.1" for v1.14.0-rc.1; null for a release. */
  prerelease: string | null
}

const VERSION_RE = /^v?(\d+)\.(\d+)(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/

export function parseTalosVersion(input: string | TalosVersion): TalosVersion {
  if (typeof input !== 'string') return input
  const m = VERSION_RE.exec(input.trim())
  if (!m) {
    throw new RackbootError('RB_ERR_VALIDATION', `not a Talos version: '${input}' (expected e.g. v1.13.9)`, {
      details: { talosVersion: input },
    })
  }
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3] ?? 0), prerelease: m[4] ?? null }
}

/** "v1.14.0-rc.1": the tag form used in image references. */
export function formatTalosVersion(v: TalosVersion): string {
  return `v${v.major}.${v.minor}.${v.patch}${v.prerelease ? `-${v.prerelease}` : ''}`
}

/**
 * Release-level comparison ignoring pre-release tags, as Talos's imager quirks do
 * (quirks.New keeps only major.minor.patch, so v1.14.0-rc.1 behaves as 1.14.0).
 */
export function versionAtLeast(v: TalosVersion, major: number, minor: number, patch = 0): boolean {
  if (v.major !== major) return v.major > major
  if (v.minor !== minor) return v.minor > minor
  return v.patch >= patch
}

/**
 * Talos's config "version contract" compares major.minor only: `contract.Greater(TalosVersion1_13)`
 * is true for every 1.14.x. This is that test.
 */
export function contractGreater(v: TalosVersion, major: number, minor: number): boolean {
  return v.major > major || (v.major === major && v.minor > minor)
}

export function minorKey(v: TalosVersion): string {
  return `${v.major}.${v.minor}`
}
