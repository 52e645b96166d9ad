// Whether dist/ (compiled by scripts/build.mjs) still matches src/: a fingerprint of every source file's path, size
// and modification time, taken by the build before it reads the sources and written to dist/.build-stamp.json.
// An edit, a new, deleted or renamed file, or a checkout of other content changes it. Costs one readdir per
// directory and one stat per file (~250 files: a few milliseconds), so bin/rackboot.mjs runs it on every start.
import { createHash } from 'node:crypto'
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'

export const STAMP_FILE = '.build-stamp.json'

/** The files under `dir` (relative paths, '/'-separated, sorted) with their size and mtime in a hash. */
export function sourceFingerprint(dir) {
  const lines = []
  // Paths joined by hand: path.join's normalising, once per file, was a third of this function's time (profiled).
  const walk = (rel) => {
    for (const e of readdirSync(`${dir}/${rel}`, { withFileTypes: true })) {
      const path = rel ? `${rel}/${e.name}` : e.name
      if (e.isDirectory()) walk(path)
      else {
        const st = statSync(`${dir}/${path}`, { bigint: true })
        lines.push(`${path}\0${st.size}\0${st.mtimeNs}`)
      }
    }
  }
  walk('')
  lines.sort()
  return { files: lines.length, hash: createHash('sha256').update(lines.join('\n')).digest('hex') }
}

/** The stamp the build wrote, or null. */
export function readStamp(distDir) {
  try {
    return JSON.parse(readFileSync(join(distDir, STAMP_FILE), 'utf8'))
  } catch {
    return null
  }
}

/**
 * 'current' when dist/ was built from exactly the files now in src/ (or there is no src/ to compare with, as in
 * the container image), 'stale' when the sources changed since, 'missing' when there is no complete build.
 */
export function distState(root) {
  const dist = join(root, 'dist')
  const stamp = readStamp(dist)
  if (!stamp) return 'missing'
  const src = join(root, 'src')
  try {
    statSync(src)
  } catch {
    return 'current'
  }
  try {
    return stamp.sources?.hash === sourceFingerprint(src).hash ? 'current' : 'stale'
  } catch {
    return 'stale' // a file went away while we looked: the sources are being changed
  }
}
