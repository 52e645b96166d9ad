#!/usr/bin/env node
// Runs node:test over test/**/*.test.ts (Node 20's --test does not expand globs). Arguments narrow the set:
// `npm test -- dhcp tftp` runs only the files whose path contains one of the words.
import { spawn } from 'node:child_process'
import { chmodSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
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
// Every temporary file and directory the tests make goes under one directory of this run, removed at the end:
// nothing is left in /tmp whatever a test forgets. RACKBOOT_KEEP_TEST_TMP=1 keeps it (screenshots, databases).
const scratch = mkdtempSync(join(tmpdir(), 'rb-test-run-'))
chmodSync(scratch, 0o755) // as /tmp lets them: peers that drop root (in.tftpd, dnsmasq) reach their test's files
const keep = process.env.RACKBOOT_KEEP_TEST_TMP === '1'
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=900000', ...flags, ...files],
  { cwd: root, stdio: 'inherit', env: { ...process.env, TMPDIR: scratch } },
)
const finish = (code) => {
  if (keep) console.error(`test files kept in ${scratch}`)
  else rmSync(scratch, { recursive: true, force: true })
  process.exit(code)
}
child.on('exit', (code, signal) => finish(code ?? (signal ? 1 : 0)))
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig))
