#!/usr/bin/env node
// Compiles src/**/*.ts to dist/**/*.js (ESM, one output file per source, external source maps) and copies every
// other file under src/ (the web UI's static files, the Talos .proto files, the agent's shell scripts) beside them,
// so code that finds its files through import.meta.url finds them in dist/ too. dist/ sits at the same depth as
// src/, so '../package.json' and '../../talos-schemas' resolve the same from both.
//
// Run by `npm ci` / `npm install` (the `prepare` script) and `npm run build`. It transpiles only: the type check is
// `npm run typecheck` (part of `npm test`). esbuild does the work: it is tsx's own compiler, so it is installed
// with the production dependencies too (`npm ci --omit=dev` can build) and it compiles exactly as tsx does when
// it runs the sources. The output is built in a temporary directory and swapped in whole, so a process starting
// meanwhile sees the old build or the new one, never half of one.
//
// Without src/ (an install of a packed tree) there is nothing to build: it says so and succeeds.
// --if-stale builds only when dist/ does not match src/ (see bin/freshness.mjs); --quiet prints nothing on success;
// --out DIR writes the build there instead of dist/.
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { basename, dirname, join, relative, resolve } from 'node:path'
import { STAMP_FILE, distState, sourceFingerprint } from '../bin/freshness.mjs'

const root = join(import.meta.dirname, '..')
const srcDir = join(root, 'src')
const quiet = process.argv.includes('--quiet')
// --out DIR: build elsewhere (tests lay out an image-like tree); it should sit at the depth of src/, as dist/ does.
const outArg = process.argv.indexOf('--out')
const distDir = outArg > 0 && process.argv[outArg + 1] ? resolve(process.argv[outArg + 1]) : join(root, 'dist')

function loadEsbuild() {
  const require = createRequire(join(root, 'package.json'))
  try {
    return require('esbuild')
  } catch {
    // Not hoisted: take the one tsx depends on.
    return createRequire(require.resolve('tsx/package.json'))('esbuild')
  }
}

function walk(dir, rel = '') {
  return readdirSync(join(dir, rel), { withFileTypes: true }).flatMap((e) => {
    const path = rel ? `${rel}/${e.name}` : e.name
    return e.isDirectory() ? walk(dir, path) : [path]
  })
}

// Packages whose ESM builds are hundreds of small files: Node loads those file by file, which cost more at start-up
// than every other package `serve` imports (measured here: kysely ~200 ms, typebox ~400 ms; bundled, ~30 ms each).
// They are bundled into dist/vendor/ (one module per import path, shared code split into chunks, so each package is
// still one instance) and the compiled imports point there. Only packages that nothing in node_modules loads at run
// time (kysely and typebox are imported by rackboot alone; the fastify type provider's import is types only).
const VENDORED = ['kysely', 'typebox']
const VENDOR_IMPORT = new RegExp(`(\\bfrom\\s*|\\bimport\\s*\\(?\\s*)"((?:${VENDORED.join('|')})(?:/[^"]*)?)"`, 'g')
const vendorFile = (specifier) => `${specifier.replace(/[^A-Za-z0-9]+/g, '_')}.js`

async function compile(esbuild, rel) {
  const from = join(srcDir, rel)
  const result = await esbuild.transform(await readFile(from, 'utf8'), {
    loader: 'ts',
    format: 'esm',
    platform: 'node',
    target: 'node20',
    sourcemap: 'external',
    sourcesContent: false,
    // The map names the source as seen from the output, so stack traces (--enable-source-maps) point at src/.
    sourcefile: relative(dirname(join(distDir, rel)), from),
    // As tsconfig.json (target ES2022): class fields are defined, and imports are kept as written.
    tsconfigRaw: { compilerOptions: { target: 'ES2022', useDefineForClassFields: true, verbatimModuleSyntax: true } },
    logLevel: 'silent',
  }).catch((err) => {
    const e = err.errors?.[0]
    throw new Error(e ? `src/${rel}:${e.location?.line ?? '?'}:${e.location?.column ?? '?'}: ${e.text}` : `src/${rel}: ${err.message}`)
  })
  for (const w of result.warnings) console.warn(`src/${rel}: ${w.text}`)
  return result
}

export async function build() {
  const started = performance.now()
  // Taken before any source is read: an edit made while we build leaves dist/ stale, never wrongly current.
  const sources = sourceFingerprint(srcDir)
  const esbuild = loadEsbuild()
  const files = walk(srcDir)
  const tmp = join(dirname(distDir), `${basename(distDir)}.tmp-${process.pid}`)
  rmSync(tmp, { recursive: true, force: true })
  let copied = 0
  try {
    for (const d of new Set(files.map((f) => dirname(f)))) mkdirSync(join(tmp, d), { recursive: true })
    const outputs = await Promise.all(
      files.map(async (rel) => {
        if (!rel.endsWith('.ts') || rel.endsWith('.d.ts')) {
          if (!rel.endsWith('.d.ts')) {
            copyFileSync(join(srcDir, rel), join(tmp, rel))
            copied++
          }
          return null
        }
        return { rel: rel.replace(/\.ts$/, '.js'), ...(await compile(esbuild, rel)) }
      }),
    )
    const compiled = outputs.filter((o) => o !== null)
    const vendored = new Set(compiled.flatMap((o) => [...o.code.matchAll(VENDOR_IMPORT)].map((m) => m[2])))
    if (vendored.size) {
      await esbuild.build({
        entryPoints: Object.fromEntries([...vendored].map((spec) => [vendorFile(spec).replace(/\.js$/, ''), spec])),
        absWorkingDir: root,
        bundle: true,
        splitting: true,
        format: 'esm',
        platform: 'node',
        target: 'node20',
        outdir: join(tmp, 'vendor'),
        chunkNames: 'chunk-[hash]',
        legalComments: 'eof',
        logLevel: 'silent',
      })
    }
    await Promise.all(
      compiled.map(async ({ rel, code, map }) => {
        const out = join(tmp, rel)
        const toVendor = relative(dirname(out), join(tmp, 'vendor'))
        const rewritten = code.replace(VENDOR_IMPORT, (_m, lead, spec) => `${lead}"${toVendor.startsWith('.') ? '' : './'}${toVendor}/${vendorFile(spec)}"`)
        await writeFile(out, `${rewritten}//# sourceMappingURL=${basename(out)}.map\n`)
        await writeFile(`${out}.map`, map)
      }),
    )
    writeFileSync(join(tmp, STAMP_FILE), JSON.stringify({ builtAt: new Date().toISOString(), esbuild: esbuild.version, vendored: [...vendored].sort(), sources }, null, 2) + '\n')
    // Swap: the old build moves aside, the new one takes its name, the old one goes.
    const old = join(dirname(distDir), `${basename(distDir)}.old-${process.pid}`)
    if (existsSync(distDir)) renameSync(distDir, old)
    renameSync(tmp, distDir)
    rmSync(old, { recursive: true, force: true })
    return { compiled: compiled.length, copied, vendored: vendored.size, ms: Math.round(performance.now() - started) }
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true })
    throw err
  }
}

if (import.meta.filename === process.argv[1] || process.argv[1] === join(root, 'scripts', 'build.mjs')) {
  // --if-stale (npm start's prestart): build only when dist/ does not match src/, and a failure is no reason not to
  // start, since bin/rackboot.mjs then runs the sources through tsx.
  const ifStale = process.argv.includes('--if-stale')
  if (!existsSync(srcDir)) {
    if (!ifStale) console.log('rackboot build: no src/ here, nothing to build')
  } else if (!ifStale || distDir !== join(root, 'dist') || distState(root) !== 'current') {
    try {
      const r = await build()
      if (!quiet) console.log(`rackboot build: ${r.compiled} files compiled, ${r.copied} copied, ${r.vendored} packages bundled to ${distDir.startsWith(root + '/') ? relative(root, distDir) : distDir} in ${r.ms} ms`)
    } catch (err) {
      console.error(`rackboot build failed: ${err.message}${ifStale ? ' (running the TypeScript sources instead)' : ''}`)
      if (!ifStale) process.exitCode = 1
    }
  }
}
