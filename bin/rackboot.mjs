#!/usr/bin/env node
// The rackboot command. Runs the compiled JavaScript in dist/ (built by `npm ci` through the `prepare` script, or
// `npm run build`) when it was built from the sources now in src/; otherwise, while a developer edits src/, the
// TypeScript sources through tsx, as before: slower to start, never stale. No rebuild from here: several
// commands start at once (tests, scripts), and a build that writes the tree is `npm run build`'s job.
// The container image ships dist/ without src/: nothing to compare, dist/ runs.
// RACKBOOT_RUN=dist or RACKBOOT_RUN=src forces one (dist/ must exist for the first).
import module from 'node:module'
import { join } from 'node:path'
import { distState } from './freshness.mjs'

// Node 22.1+: V8's compiled code of every module is kept on disk (NODE_COMPILE_CACHE, else the OS temp directory)
// and reused by the next start; Node checks each entry against the file's content and its own version, so an
// edited or rebuilt file is compiled afresh. Node 20 has no such cache: it compiles every start.
module.enableCompileCache?.()

const root = join(import.meta.dirname, '..')
const forced = process.env.RACKBOOT_RUN
if (forced && forced !== 'dist' && forced !== 'src') {
  console.error(`rackboot: RACKBOOT_RUN must be 'dist' or 'src', not '${forced}'`)
  process.exit(2)
}
const useDist = forced ? forced === 'dist' : distState(root) === 'current'
if (useDist) {
  // The server's logged stack traces name src/ files and lines (dist/ carries source maps). Only the server's: with
  // them on, Node reads and parses the map of every module it loads (~0.1 CPU-seconds a start, measured), which a
  // one-shot command (its errors are one line) would pay on every run. NODE_OPTIONS=--enable-source-maps turns them
  // on for any command.
  if (process.argv.slice(2).includes('serve')) process.setSourceMapsEnabled(true)
  await import('../dist/main.js')
} else {
  const { register } = await import('tsx/esm/api')
  register()
  await import('../src/main.ts')
}
