#!/usr/bin/env node
// Runs node:test over test/**/*.test.ts (Node 20's --test does not expand globs). Arguments narrow the set:
// `npm test -- dhcp tftp` runs only the files whose path contains one of the words.
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { join, relative } from 'node:path'

const root = join(import.meta.dirname, '..')
function find(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? find(join(dir, e.name)) : e.name.endsWith('.test.ts') ? [join(dir, e.name)] : [],
  )
}
const words = process.argv.slice(2).filter((a) => !a.startsWith('-'))
const flags = process.argv.slice(2).filter((a) => a.startsWith('-'))
const files = find(join(root, 'test'))
  .map((f) => relative(root, f))
  .filter((f) => words.length === 0 || words.some((w) => f.includes(w)))
  .sort()
if (files.length === 0) {
  console.error(`no test files match ${words.join(' ')}`)
  process.exit(2)
}
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=900000', ...flags, ...files],
  { cwd: root, stdio: 'inherit' },
)
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)))
