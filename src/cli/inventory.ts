import { exportInventory, importInventory, loadInventoryFiles, type ImportReport } from '../inventory/index.js'
import { renderTable } from './table.js'
import { parse, printJson, UsageError, withContext } from './context.js'
import { checkSelector } from '../matching/index.js'

export const INVENTORY_USAGE = `rackboot inventory <command>

  import DIR|FILE [--prune] [--dry-run] [--json]   reconcile declarative files into the database
  export DIR [--json]                              write machines, classes and profiles as files`

export function printImportReport(report: ImportReport, dryRun = false): void {
  for (const w of report.warnings) console.error(`warning: ${w}`)
  if (report.changes.length > 0) {
    console.log(renderTable(report.changes, [
      { header: 'kind', value: (c) => c.kind },
      { header: 'name', value: (c) => c.name },
      { header: 'action', value: (c) => (dryRun ? `would be ${c.action}` : c.action) },
      { header: 'fields', value: (c) => c.fields?.join(', ') },
    ]))
  }
  const count = (a: string) => report.changes.filter((c) => c.action === a).length
  console.log(`${dryRun ? '(dry run) ' : ''}${count('created')} created, ${count('updated')} updated, ${count('deleted')} deleted, ${report.unchanged} unchanged`)
}

export async function inventoryCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args
  const { values, positionals } = parse(rest, { prune: { type: 'boolean' }, 'dry-run': { type: 'boolean' } })
  if (!sub || values.help) {
    console.log(INVENTORY_USAGE)
    return sub ? 0 : 2
  }
  const [target] = positionals
  if (!target) throw new UsageError(`inventory ${sub} needs a directory\n\n${INVENTORY_USAGE}`)
  switch (sub) {
    case 'import': {
      // Validate the files before touching the database: a bad file changes nothing.
      const desired = loadInventoryFiles(target, { checkSelector })
      return withContext(values, async ({ inventory, lifecycle }) => {
        const dryRun = values['dry-run'] ?? false
        const report = await importInventory(inventory, desired, { now: Date.now(), prune: values.prune ?? false, dryRun })
        if (!dryRun) {
          for (const c of report.changes) {
            if (c.kind === 'machine' && c.id) lifecycle.record(c.id, c.action === 'created' ? 'machine.created' : c.action === 'deleted' ? 'machine.deleted' : 'machine.updated', `${c.action} by inventory import`, { fields: c.fields ?? [] })
          }
          lifecycle.record(null, 'inventory.imported', `inventory imported from ${target}`, { files: desired.files.length, changes: report.changes.length })
        }
        if (values.json) printJson(report)
        else printImportReport(report, dryRun)
        return 0
      })
    }
    case 'export':
      return withContext(values, async ({ inventory }) => {
        const res = await exportInventory(inventory, target)
        if (values.json) printJson(res)
        else console.log(`wrote ${res.machines} machines, ${res.classes} classes, ${res.profiles} profiles to ${res.files.join(', ')}`)
        return 0
      })
    default:
      throw new UsageError(`unknown inventory command '${sub}'\n\n${INVENTORY_USAGE}`)
  }
}
