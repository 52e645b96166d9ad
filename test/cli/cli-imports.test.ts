import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { REPO, startApi } from '../support/cli.js'

// A command that talks to the server loads commander, the API client, node:http and the table printer, and nothing
// else: every other package (fastify, kysely, SQLite, pino, prom-client, typebox, yaml, undici) and fetch (Node's
// bundled undici) cost a one-shot command tenths of a CPU-second at start-up (issue 15: a command < 0.5 s). Checked on
// the modules the real process loads, through dist/ or tsx, whichever bin/rackboot.mjs picks: a static import of a
// heavy module anywhere on the path turns this red.

const TRACE = pathToFileURL(join(import.meta.dirname, 'import-trace.mjs')).href

/** Packages a remote command may load: commander; tsx and its esbuild when it runs the sources. */
const PACKAGES = new Set(['commander', 'tsx', 'esbuild'])

/** rackboot's own modules a remote command may load (paths under src/ or dist/, without the extension). */
function allowedOwn(path: string): boolean {
  if (['main', 'errors', 'version', 'inventory/types'].includes(path)) return true
  // The CLI's modules, not the ones that open a database or run the server.
  return path.startsWith('cli/') && !path.startsWith('cli/local/') && path !== 'cli/serve' && path !== 'cli/context'
}

interface Trace {
  urls: string[]
  builtins: string[]
}

function offending(trace: Trace): string[] {
  const bad = new Set<string>()
  for (const url of trace.urls) {
    if (!url.startsWith('file:')) continue
    const path = fileURLToPath(url.replace(/\?.*$/, ''))
    const pkg = /[\\/]node_modules[\\/]((?:@[^\\/]+[\\/])?[^\\/]+)[\\/]/.exec(path)?.[1]
    if (pkg !== undefined) {
      if (!PACKAGES.has(pkg)) bad.add(`package ${pkg}`)
      continue
    }
    const rel = relative(REPO, path).split('\\').join('/')
    if (rel.startsWith('bin/')) continue
    const own = /^(?:src|dist)\/(.*)\.(?:ts|js)$/.exec(rel)?.[1]
    if (own === undefined || !allowedOwn(own)) bad.add(rel)
  }
  if (trace.builtins.includes('NativeModule internal/deps/undici/undici')) bad.add('fetch (Node\'s bundled undici)')
  return [...bad]
}

test('machines list/show, classes list and tokens list load no server-side package, no database code and no fetch', async (t) => {
  const api = await startApi()
  t.after(() => api.close())
  await api.inventory.machines.create({ name: 'm1', serial: 'S1', rack: 'r1' }, Date.now())
  const commands = [['machines', 'list'], ['machines', 'show', 'm1'], ['classes', 'list'], ['tokens', 'list']]
  const results = await Promise.all(commands.map(async (args, i) => {
    const file = join(api.dir, `trace-${i}.json`)
    const nodeOptions = [process.env.NODE_OPTIONS, `--import=${TRACE}`].filter(Boolean).join(' ')
    const r = await api.cli(args, { env: { NODE_OPTIONS: nodeOptions, RACKBOOT_IMPORT_TRACE: file } })
    return { args, r, trace: JSON.parse(readFileSync(file, 'utf8')) as Trace }
  }))
  for (const { args, r, trace } of results) {
    const name = args.join(' ')
    assert.equal(r.code, 0, `${name}: ${r.stderr}`)
    // The trace saw the command's own modules: a hook that saw nothing would pass anything.
    assert.ok(trace.urls.some((u) => /\/(?:src|dist)\/cli\/client\.(?:ts|js)$/.test(u)), `${name}: the trace has the API client: ${trace.urls.join(' ')}`)
    assert.deepEqual(offending(trace), [], `${name} loaded these`)
  }
  assert.match(results[0]!.r.stdout, /\n1 of 1 machine\n$/)
})
