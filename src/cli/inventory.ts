// `rackboot inventory check|import|export`. check validates files here, offline. import reads the files here and
// sends them to the server (POST /api/v1/inventory/import), which validates and reconciles them in one transaction;
// export asks the server for the files (GET /api/v1/inventory/export). With --data-dir, import and export work on a
// data directory's database instead (./local/inventory.ts).
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { basename, dirname, isAbsolute, join, normalize, relative, sep } from 'node:path'
import { RackbootError } from '../errors.js'
import { connect, isApiError } from './client.js'
import { palette, printJson, UsageError, type GlobalOptions } from './common.js'
import { renderTable } from './table.js'

type Options = GlobalOptions & { prune?: boolean; dryRun?: boolean }

const local = () => import('./local/inventory.js')

/** What an import changed (or would change). */
export interface ImportReportView {
  changes: { kind: string; name: string; action: string; fields?: string[] | null }[]
  /** The local report's; the API's is counts.unchanged. */
  unchanged?: number
  counts?: { created: number; updated: number; deleted: number; unchanged: number }
  warnings: string[]
}

export function printImportReport(report: ImportReportView, dryRun = false): void {
  for (const w of report.warnings) console.error(`warning: ${w}`)
  const p = palette()
  if (report.changes.length > 0) {
    console.log(renderTable(report.changes, [
      { header: 'kind', value: (c) => c.kind },
      { header: 'name', value: (c) => c.name },
      { header: 'action', value: (c) => (dryRun ? `would be ${c.action}` : c.action), colour: (cell, c, pal) => (c.action === 'deleted' ? pal.red(cell) : c.action === 'created' ? pal.green(cell) : pal.yellow(cell)) },
      { header: 'fields', value: (c) => c.fields?.join(', ') },
    ], { palette: p }))
  }
  const count = (a: string) => report.changes.filter((c) => c.action === a).length
  console.log(`${dryRun ? '(dry run) ' : ''}${count('created')} created, ${count('updated')} updated, ${count('deleted')} deleted, ${report.counts?.unchanged ?? report.unchanged ?? 0} unchanged`)
}

export interface SentFile {
  path: string
  content: string
  kind?: 'inventory' | 'referenced'
}

/** Files a document names (baseConfigFile, caFile), relative to it. */
const REFERENCE = /^\s*(?:-\s+)?(?:baseConfigFile|caFile):\s*["']?([^"'#\s]+)["']?\s*(?:#.*)?$/gm

/**
 * The *.yaml files the inventory loader reads (dot files skipped), as paths relative to the directory, and the
 * files they name (baseConfigFile, caFile) that lie in the directory and are not documents themselves, as
 * `referenced`: the server reads them where a document names them.
 */
export function inventoryFiles(target: string): { root: string; files: SentFile[] } {
  let stat
  try {
    stat = statSync(target)
  } catch (err) {
    throw new RackbootError('RB_ERR_INVENTORY_FILE', `cannot read inventory ${target}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  const root = stat.isDirectory() ? target : dirname(target)
  const out: SentFile[] = []
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (entry.name.startsWith('.')) continue
      const full = join(dir, entry.name)
      if (entry.isDirectory()) walk(full)
      else if (/\.ya?ml$/.test(entry.name)) out.push({ path: relative(root, full).split(sep).join('/'), content: readFileSync(full, 'utf8') })
    }
  }
  if (stat.isDirectory()) walk(target)
  else out.push({ path: basename(target), content: readFileSync(target, 'utf8'), kind: 'inventory' })
  if (out.length === 0) throw new RackbootError('RB_ERR_INVENTORY_FILE', `no *.yaml files in ${target}`)
  const sent = new Set(out.map((f) => f.path))
  for (const doc of [...out]) {
    for (const [, ref] of doc.content.matchAll(REFERENCE)) {
      if (!ref || isAbsolute(ref)) continue
      const rel = normalize(join(dirname(doc.path), ref)).split(sep).join('/')
      if (rel.startsWith('../') || sent.has(rel)) continue
      try {
        out.push({ path: rel, content: readFileSync(join(root, rel), 'utf8'), kind: 'referenced' })
        sent.add(rel)
      } catch {
        // Not there: the server says so, naming the document and field.
      }
    }
  }
  return { root, files: out }
}

interface Problem {
  file?: string
  line?: number
  column?: number
  field?: string
  message?: string
}

export async function check(target: string, o: GlobalOptions): Promise<number> {
  const [{ loadInventoryFiles, InventoryFileError }, { checkSelector }] = await Promise.all([import('../inventory/files/load.js'), import('../matching/index.js')])
  try {
    const d = loadInventoryFiles(target, { checkSelector })
    const summary = { ok: true, files: d.files.length, machines: d.machines.length, classes: d.classes.length, profiles: d.profiles.length, problems: [] }
    if (o.json) printJson(summary)
    else console.log(`${target}: ${summary.files} file${summary.files === 1 ? '' : 's'}, ${summary.machines} machines, ${summary.classes} classes, ${summary.profiles} profiles: valid`)
    return 0
  } catch (err) {
    if (o.json && err instanceof InventoryFileError) {
      printJson({ ok: false, problems: err.problems })
      return 2
    }
    throw err
  }
}

// A BMC secret reference as inventory files write it (passwordFrom/kgFrom: env:NAME or file:/path).
const SECRET_REF_IN_YAML = /\b(?:passwordFrom|kgFrom)\s*:\s*["']?(env:[A-Za-z_][A-Za-z0-9_]*|file:[^\s"',}#]+)/g

/**
 * The values of the files' BMC secret references, read here where the user runs the command (their environment,
 * their files): the server never reads its own for an API import. One unreadable is left out; the server warns.
 */
export async function secretsFor(files: SentFile[]): Promise<Record<string, string>> {
  const refs = new Set(files.flatMap((f) => [...f.content.matchAll(SECRET_REF_IN_YAML)].map((m) => m[1]!)))
  if (refs.size === 0) return {}
  const { resolveSecretRef } = await import('../inventory/files/bmc-settings.js')
  const out: Record<string, string> = {}
  for (const ref of refs) {
    const { value } = resolveSecretRef(ref, process.env)
    if (value !== undefined) out[ref] = value
  }
  return out
}

export async function importFiles(target: string, o: Options): Promise<number> {
  if (o.dataDir) return (await local()).importFiles(target, o)
  const { root, files } = inventoryFiles(target)

  const api = await connect(o)
  const dryRun = o.dryRun === true
  let report: ImportReportView
  try {
    const secrets = await secretsFor(files)
    report = await api.post<ImportReportView>('/inventory/import', { files, prune: o.prune === true, dryRun, secrets }, { scope: 'admin', timeoutMs: 300_000 })
  } catch (err) {
    // The server names the files as they were sent (relative to the directory): named here as the user gave them.
    if (isApiError(err) && Array.isArray(err.details)) {
      const shown = (f: string) => (root === '.' ? f : join(root, f))
      const problems = (err.details as Problem[]).map((p) => (p.file ? { ...p, file: shown(p.file) } : p))
      const first = problems[0]
      const message = first?.file ? `${first.file}:${first.line}:${first.column}: ${first.field}: ${first.message}${problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? 's' : ''})` : ''}` : err.message
      throw new RackbootError(err.code, message, { statusCode: err.status, details: problems })
    }
    throw err
  }
  if (o.json) printJson(report)
  else printImportReport(report, dryRun)
  return 0
}

/** A path the server gave, safe to write under `dir` (relative, no `..`). */
function safePath(dir: string, path: string): string {
  const n = normalize(path)
  if (isAbsolute(n) || n === '..' || n.startsWith(`..${sep}`) || n === '.') throw new RackbootError('RB_ERR_INTERNAL', `the server named an export file outside the directory: '${path}'`)
  return join(dir, n)
}

export async function exportFiles(dir: string | undefined, o: Options): Promise<number> {
  if (o.dataDir) {
    if (!dir) throw new UsageError('inventory export --data-dir writes files: give a DIR')
    return (await local()).exportFiles(dir, o)
  }
  const api = await connect(o)
  const body = await api.get<{ files: { path: string; content: string }[] }>('/inventory/export', { scope: 'read', timeoutMs: 300_000 })
  if (o.json) {
    printJson(body)
    return 0
  }
  if (!dir) {
    body.files.forEach((f, i) => process.stdout.write(`${i > 0 ? '---\n' : ''}# ${f.path}\n${f.content}${f.content.endsWith('\n') ? '' : '\n'}`))
    return 0
  }
  const written: string[] = []
  for (const f of body.files) {
    const to = safePath(dir, f.path)
    mkdirSync(dirname(to), { recursive: true })
    writeFileSync(to, f.content)
    written.push(to)
  }
  console.log(`wrote ${written.length} file${written.length === 1 ? '' : 's'}: ${written.join(', ')}`)
  return 0
}
