// `rackboot classes list|test` through the API (GET /api/v1/classes, GET /api/v1/machines/{ref}/class-match), or a
// data directory's database with --data-dir.
import { connect, machinePath } from './client.js'
import { palette, printJson, terminalWidth, type GlobalOptions } from './common.js'
import { printable, renderTable } from './table.js'

const local = () => import('./local/classes.js')

export interface ClassRow {
  name: string
  profile: string | null
  selectors: string[]
  patches: unknown[]
}

export function printClasses(classes: readonly ClassRow[]): void {
  const p = palette()
  console.log(renderTable(classes, [
    { header: 'name', value: (c) => c.name, keep: true },
    { header: 'profile', value: (c) => c.profile },
    { header: 'selectors', value: (c) => c.selectors.join(' AND ') },
    { header: 'patches', value: (c) => c.patches.length || '' },
  ], { maxWidth: terminalWidth(), palette: p }))
}

/** Which classes match a machine and why: the server's answer (GET /machines/{ref}/class-match), or the same worked out locally. */
export interface ClassTestView {
  machineId: string
  machineName: string | null
  state: string
  chosen: string | null
  tiedWith: string[]
  profile: string | null
  reason: string
  installDisk: { selector: unknown; disk: string | null; reason: string | null } | null
  classes: { name: string; matched: boolean; specificity: number; selectors: { source: string; ok: boolean; error?: string | null }[] }[]
}

/** `type=nvme size=">= 400GB" prefer=smallest`; "smallest fixed disk" for no selector. */
export function describeDiskSelector(selector: unknown): string {
  if (!selector || typeof selector !== 'object' || Object.keys(selector).length === 0) return 'smallest fixed disk'
  return Object.entries(selector as Record<string, unknown>)
    .map(([k, v]) => {
      if (Array.isArray(v)) return `${k}=${v.join(',')}`
      if (typeof v === 'object' && v !== null) {
        const r = v as { min?: unknown; max?: unknown }
        return `${k}=${[r.min ?? '', r.max ?? ''].join('..')}`
      }
      return `${k}=${/[\s<>=,]/.test(String(v)) ? JSON.stringify(v) : v}`
    })
    .join(' ')
}

export function printClassTest(v: ClassTestView): void {
  const p = palette()
  console.log(`machine ${printable(v.machineName ?? v.machineId)} (${v.state})\n`)
  const rows = v.classes.flatMap((c) => c.selectors.length === 0
    ? [{ cls: c.name, result: 'no selectors: never matches', selector: '' }]
    : c.selectors.map((s, i) => ({ cls: i === 0 ? c.name : '', result: s.error ? `error: ${s.error}` : s.ok ? 'yes' : 'no', selector: s.source })))
  console.log(renderTable(rows, [
    { header: 'class', value: (r) => r.cls },
    { header: 'selector', value: (r) => r.selector },
    { header: 'holds', value: (r) => r.result, colour: (cell, r, pal) => (r.result === 'yes' ? pal.green(cell) : r.result === 'no' ? cell : pal.red(cell)) },
  ], { palette: p }))
  const matched = v.classes.filter((c) => c.matched).map((c) => `${c.name} (${c.specificity})`)
  console.log(`\nmatching classes (specificity): ${matched.join(', ') || 'none'}`)
  console.log(`chosen: ${v.chosen ?? 'none'}${v.tiedWith.length ? ` (tied with ${v.tiedWith.join(', ')}; the first by name wins)` : ''}`)
  console.log(`profile: ${v.profile ?? 'none'} (${v.reason})`)
  if (v.installDisk) {
    const d = v.installDisk
    console.log(`install disk: ${describeDiskSelector(d.selector)}${d.disk ? ` -> ${d.disk}` : d.reason ? ` (${d.reason})` : ''}`)
  }
}

export async function list(o: GlobalOptions): Promise<number> {
  if (o.dataDir) return (await local()).list(o)
  const api = await connect(o)
  const { items } = await api.get<{ items: ClassRow[] }>('/classes')
  if (o.json) printJson(items)
  else printClasses(items)
  return 0
}

export async function test(ref: string, o: GlobalOptions): Promise<number> {
  if (o.dataDir) return (await local()).test(ref, o)
  const api = await connect(o)
  const view = await api.get<ClassTestView>(machinePath(ref, '/class-match'))
  if (o.json) printJson(view)
  else printClassTest(view)
  return 0
}
