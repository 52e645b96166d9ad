#!/usr/bin/env node
// The rackboot command. Runs the compiled JavaScript in dist/ (built by `npm ci` through the `prepare` script, or
// `npm run build`) when it was built from the sources now in src/; otherwise, while a developer edits src/, the
// TypeScript sources through tsx, as before: slower to start, never stale. No rebuild from here: several
// commands start at once (tests, scripts), and a build that writes the tree is `npm run build`'s job.
// The container image ships dist/ without src/: nothing to compare, dist/ runs.
// RACKBOOT_RUN=dist or RACKBOOT_RUN=src forces one (dist/ must exist for the first).
import { join } from 'node:path'
import { distState } from './freshness.mjs'

const root = join(import.meta.dirname, '..')
const forced = process.env.RACKBOOT_RUN
if (forced && forced !== 'dist' && forced !== 'src') {
  console.error(`rackboot: RACKBOOT_RUN must be 'dist' or 'src', not '${forced}'`)
  process.exit(2)
}
const useDist = forced ? forced === 'dist' : distState(root) === 'current'
if (useDist) {
  // Stack traces name src/ files and lines (dist/ carries source maps).
  process.setSourceMapsEnabled(true)
  await import('../dist/main.js')
} else {
  const { register } = await import('tsx/esm/api')
  register()
  await import('../src/main.ts')
}
