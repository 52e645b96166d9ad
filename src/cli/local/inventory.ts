import { exportInventory, importInventory, loadInventoryFiles } from '../../inventory/index.js'
import { checkSelector } from '../../matching/index.js'
import { withContext } from '../context.js'
import { printJson, type GlobalOptions } from '../common.js'
import { printImportReport } from '../inventory.js'

// `rackboot inventory import|export --data-dir DIR`: on a data directory's database. An import may make the
// database (a box being prepared); an export never does.

type Options = GlobalOptions & { prune?: boolean; dryRun?: boolean }

export async function importFiles(target: string, o: Options): Promise<number> {
  // Validate the files before touching the database: a bad file changes nothing.
  const desired = loadInventoryFiles(target, { checkSelector })
  return withContext(o, async ({ inventory, lifecycle }) => {
    const dryRun = o.dryRun ?? false
    const report = await importInventory(inventory, desired, { now: Date.now(), prune: o.prune ?? false, dryRun })
    if (!dryRun) {
      for (const c of report.changes) {
        if (c.kind === 'machine' && c.id) lifecycle.record(c.id, c.action === 'created' ? 'machine.created' : c.action === 'deleted' ? 'machine.deleted' : 'machine.updated', `${c.action} by inventory import`, { fields: c.fields ?? [] })
      }
      lifecycle.record(null, 'inventory.imported', `inventory imported from ${target}`, { files: desired.files.length, changes: report.changes.length })
    }
    if (o.json) printJson(report)
    else printImportReport(report, dryRun)
    return 0
  }, { create: !o.dryRun })
}

export async function exportFiles(dir: string, o: Options): Promise<number> {
  return withContext(o, async ({ inventory }) => {
    const res = await exportInventory(inventory, dir)
    if (o.json) printJson(res)
    else console.log(`wrote ${res.machines} machines, ${res.classes} classes, ${res.profiles} profiles to ${res.files.join(', ')}`)
    return 0
  }, { create: false })
}
