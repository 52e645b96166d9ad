import type { FastifyError, FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { RackbootError } from '../../../errors.js'
import { importInventory, loadInventorySources, renderInventoryFiles, SECRET_REF_PATTERN, type ImportReport } from '../../../inventory/index.js'
import { checkSelector } from '../../../matching/index.js'
import { errorHandler } from '../../error-handler.js'
import { actor, type ApiDeps } from './context.js'
import { errors, Named, Nullable, StringEnum } from './schemas.js'

// The declarative inventory through the API (what `rackboot inventory import|export DIR` did on the database):
// files travel as {path, content}; loading, checks and reconciling are the local command's (inventory/files).

/** The largest import request body (JSON), and the most files one may carry. */
export const IMPORT_BODY_LIMIT = 32 * 1024 * 1024
export const IMPORT_MAX_FILES = 2000

const FileSchema = Type.Object({
  path: Type.String({ minLength: 1, maxLength: 1024, description: 'Relative, / separated (racks/r12.yaml); problems are reported under this name' }),
  content: Type.String({ description: 'The file\'s text (UTF-8)' }),
  kind: Type.Optional(StringEnum(['inventory', 'referenced'], {
    description: 'inventory: a document of machines, classes and profiles; referenced: only read where a document names it (baseConfigFile, caFile, '
      + 'relative to that document). Default: inventory for *.yaml/*.yml outside dot-directories (what a directory import reads), referenced otherwise',
  })),
}, { additionalProperties: false })

// The keys of `secrets`: what a file's passwordFrom/kgFrom may say.
const SECRET_REF = new RegExp(SECRET_REF_PATTERN)

const ImportBody = Type.Object({
  files: Type.Array(FileSchema, { minItems: 1, maxItems: IMPORT_MAX_FILES, description: `At most ${IMPORT_MAX_FILES} files, and ${IMPORT_BODY_LIMIT / 1024 / 1024} MiB of request body in all` }),
  prune: Type.Optional(Type.Boolean({ default: false, description: 'Delete machines, classes and profiles an earlier import made that these files no longer declare (never discovered or API-made ones)' })),
  dryRun: Type.Optional(Type.Boolean({ default: false, description: 'Report what would change; change nothing' })),
  secrets: Type.Optional(Type.Record(Type.String({ maxLength: 1024 }), Type.String({ maxLength: 4096 }), {
    maxProperties: 100_000,
    description: 'The values of the files\' BMC secret references (passwordFrom, kgFrom), read by the caller where it runs: '
      + '`{"env:RACKBOOT_BMC_PASSWORD_R12": "..."}`. The server never reads its own environment or files for an API import; '
      + 'a reference without a value here leaves that BMC secret unchanged, with a warning.',
  })),
}, { additionalProperties: false })

const ChangeSchema = Named('InventoryChange', Type.Object({
  kind: StringEnum(['machine', 'class', 'profile']),
  name: Type.String(),
  action: StringEnum(['created', 'updated', 'deleted'], { description: 'deleted: pruned' }),
  fields: Nullable(Type.Array(Type.String(), { description: 'What changed (updates only)' })),
  id: Nullable(Type.String({ description: 'The machine\'s id (machines only)' })),
}, { description: 'One object an import created, updated or pruned (or, in a dry run, would)' }))

const ImportReportSchema = Named('InventoryImportReport', Type.Object({
  dryRun: Type.Boolean(),
  files: Type.Integer({ description: 'Inventory documents read' }),
  changes: Type.Array(ChangeSchema),
  counts: Type.Object({
    created: Type.Integer(), updated: Type.Integer(), deleted: Type.Integer({ description: 'Pruned' }), unchanged: Type.Integer(),
  }),
  warnings: Type.Array(Type.String({ description: 'e.g. a BMC password reference that could not be read: the rest was imported' })),
  lines: Type.Array(Type.String(), { description: 'One line per change, as `rackboot inventory import` prints them (kind, name, action, fields)' }),
  summary: Type.String({ description: 'The closing line `rackboot inventory import` prints: "3 created, 1 updated, 0 deleted, 12 unchanged"' }),
}, { description: 'What an inventory import changed (or would change, in a dry run)' }))

const ExportSchema = Named('InventoryExport', Type.Object({
  files: Type.Array(Type.Object({ path: Type.String(), content: Type.String() }), { description: 'profiles.yaml, classes.yaml and machines.yaml: an import of them changes nothing' }),
  machines: Type.Integer(),
  classes: Type.Integer(),
  profiles: Type.Integer(),
}, { description: 'The inventory as files (BMC secrets never: only where they come from)' }))

/** The report as the API answers it: the changes, counts, and the CLI's lines. */
export function importReportView(report: ImportReport, dryRun: boolean, files: number) {
  const count = (a: string) => report.changes.filter((c) => c.action === a).length
  const counts = { created: count('created'), updated: count('updated'), deleted: count('deleted'), unchanged: report.unchanged }
  return {
    dryRun, files,
    changes: report.changes.map((c) => ({ kind: c.kind, name: c.name, action: c.action, fields: c.fields ?? null, id: c.id ?? null })),
    counts,
    warnings: report.warnings,
    lines: report.changes.map((c) => `${c.kind} ${c.name} ${dryRun ? `would be ${c.action}` : c.action}${c.fields?.length ? ` (${c.fields.join(', ')})` : ''}`),
    summary: `${dryRun ? '(dry run) ' : ''}${counts.created} created, ${counts.updated} updated, ${counts.deleted} deleted, ${counts.unchanged} unchanged`,
  }
}

export const inventoryRoutes: FastifyPluginAsync<ApiDeps> = async (base, deps) => {
  const app = base.withTypeProvider<TypeBoxTypeProvider>()
  const { inventory, lifecycle } = deps

  app.post('/inventory/import', {
    config: { scope: 'admin' },
    bodyLimit: IMPORT_BODY_LIMIT,
    // A body over the limit is refused before it is read: say which limit, in the API's error shape.
    errorHandler: (err: FastifyError, request, reply) => {
      if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
        return errorHandler(new RackbootError('RB_ERR_VALIDATION', `the import is larger than ${IMPORT_BODY_LIMIT / 1024 / 1024} MiB (the request body, JSON): import the files in parts, or split big ones`, {
          statusCode: 413, details: { limitBytes: IMPORT_BODY_LIMIT, maxFiles: IMPORT_MAX_FILES },
        }), request, reply)
      }
      return errorHandler(err, request, reply)
    },
    schema: {
      tags: ['inventory'], operationId: 'importInventory', summary: 'Reconcile inventory files (machines, classes, profiles) into the database, as `rackboot inventory import` does',
      description: 'All or nothing: the files are checked first, and a bad one changes nothing (400 RB_ERR_INVENTORY_FILE, details: '
        + '[{file, line, column, field, message}], files named by their `path`). BMC secret references (passwordFrom, kgFrom: env:NAME, '
        + 'file:/path) take their values from `secrets`, sent by the caller; the server never reads its own environment or files for them. '
        + `At most ${IMPORT_MAX_FILES} files (400) and ${IMPORT_BODY_LIMIT / 1024 / 1024} MiB of request body (413).`,
      body: ImportBody, response: { 200: ImportReportSchema, ...errors(400, 409, 413) },
    },
  }, async (request) => {
    const { files, prune = false, dryRun = false, secrets = {} } = request.body
    // Checked before the database is touched: a bad file changes nothing.
    const desired = loadInventorySources(files, { checkSelector })
    if (desired.files.length === 0) {
      throw new RackbootError('RB_ERR_VALIDATION', 'none of the files is an inventory document (*.yaml or *.yml, or kind: inventory)', {
        details: files.map((f) => ({ file: f.path, line: 0, column: 0, field: '(path)', message: 'not an inventory document' })),
      })
    }
    const notRefs = Object.keys(secrets).filter((k) => !SECRET_REF.test(k))
    if (notRefs.length > 0) {
      throw new RackbootError('RB_ERR_VALIDATION', `secrets are keyed by reference (env:NAME or file:/path), not ${JSON.stringify(notRefs[0]!.slice(0, 64))}`)
    }
    const resolveSecret = (ref: string) => Object.hasOwn(secrets, ref)
      ? { value: secrets[ref]! }
      : { warning: `${ref} was not sent with the import: set it where you run the import (the CLI reads env: and file: references there, the server never reads its own)` }
    const report = await importInventory(inventory, desired, { now: Date.now(), prune, dryRun, resolveSecret })
    if (!dryRun) {
      const who = actor(request)
      for (const c of report.changes) {
        if (c.kind === 'machine' && c.id) {
          lifecycle.record(c.id, c.action === 'created' ? 'machine.created' : c.action === 'deleted' ? 'machine.deleted' : 'machine.updated', `${c.action} by inventory import (${who})`, { fields: c.fields ?? [] })
        }
      }
      lifecycle.record(null, 'inventory.imported', `inventory imported by ${who}: ${desired.files.length} files`, { files: desired.files.length, changes: report.changes.length })
    }
    return importReportView(report, dryRun, desired.files.length)
  })

  app.get('/inventory/export', {
    config: { scope: 'read' },
    schema: {
      tags: ['inventory'], operationId: 'exportInventory', summary: 'The inventory as files (what `rackboot inventory export DIR` writes)',
      response: { 200: ExportSchema, ...errors() },
    },
  }, async () => renderInventoryFiles(inventory))
}
