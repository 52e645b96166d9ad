// The OpenAPI document as a client generator sees it (issue 17): named component schemas the routes refer to, plain
// enums, servers; and a TypeScript client generated from it (openapi-typescript) that a small strict program
// (fixtures/openapi-client) type-checks against.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import openapiTS, { astToString } from 'openapi-typescript'
import type { PowerManager } from '../../src/power/index.js'
import { apiSetup } from './support/app.js'

const ROOT = join(import.meta.dirname, '..', '..')
const FIXTURE = join(import.meta.dirname, 'fixtures', 'openapi-client')
const NAMED = [
  'Machine', 'MachinePage', 'MachineDetail', 'MachineState', 'Bmc', 'BmcSummary', 'PowerState', 'PowerActionResult', 'BootOverride',
  'Allocation', 'AllocatedMachine', 'AllocationPage', 'Event', 'Error', 'Class', 'Profile', 'Cluster', 'Token', 'Role',
  'ApiToken', 'ApiTokenList', 'NewApiToken', 'ApiTokenRevocation', 'InventoryImportReport', 'InventoryChange', 'InventoryExport',
  'ClassMatch', 'ClassEvaluation', 'SelectorResult', 'Asset', 'AssetList', 'IdentifyResult',
]

/** The document of an app that serves the power routes too (they are only routed with a power manager). */
async function documentOf(t: { after(fn: () => unknown): void }) {
  // The routes only need a power manager to exist; no request reaches it here.
  const s = await apiSetup({ powerManager: () => ({ stop: async () => {} }) as unknown as PowerManager })
  t.after(() => s.close())
  const res = await s.app.inject({ url: '/api/v1/openapi.json', headers: { host: 'rackboot.example:8080' } })
  assert.equal(res.statusCode, 200)
  return res.json() as any
}

/** Every node of a JSON value, with its path. */
function* nodes(value: unknown, path = '#'): Generator<[string, Record<string, any>]> {
  if (Array.isArray(value)) {
    for (const [i, v] of value.entries()) yield * nodes(v, `${path}/${i}`)
  } else if (typeof value === 'object' && value !== null) {
    yield [path, value as Record<string, any>]
    for (const [k, v] of Object.entries(value)) yield * nodes(v, `${path}/${k}`)
  }
}

/** A union whose members are each one constant (or null): what a generator turns into `'a' | 'b'` at best. */
function isConstUnion(members: unknown): boolean {
  if (!Array.isArray(members) || members.length === 0) return false
  const constant = (m: any) => m.const !== undefined || (Array.isArray(m.enum) && m.enum.length === 1 && m.enum[0] !== null)
  return members.some(constant) && members.every((m: any) => constant(m) || m.type === 'null')
}

/** The problems of a document a client generator would trip on (empty when none). */
export function clientProblems(doc: any): string[] {
  const problems: string[] = []
  const schemas = doc.components?.schemas ?? {}
  for (const name of NAMED) if (!schemas[name]) problems.push(`components.schemas has no ${name}`)
  for (const name of Object.keys(schemas)) if (/^def-\d+$/.test(name)) problems.push(`components.schemas.${name}: an unnamed shared schema`)
  for (const [path, node] of nodes(doc)) {
    if (typeof node.$ref === 'string') {
      const m = /^#\/components\/schemas\/([^/]+)$/.exec(node.$ref)
      if (!m) problems.push(`${path}: $ref ${node.$ref} is not a component schema`)
      else if (!schemas[m[1]!]) problems.push(`${path}: $ref to ${m[1]}, which components.schemas does not have`)
    }
    if (isConstUnion(node.anyOf) || isConstUnion(node.oneOf)) problems.push(`${path}: an anyOf/oneOf of constants rather than an enum`)
  }
  if (!Array.isArray(doc.servers) || doc.servers.length === 0) problems.push('no servers')
  return problems
}

test('the document has named schemas the routes refer to, plain enums and servers', async (t) => {
  const doc = await documentOf(t)
  assert.deepEqual(clientProblems(doc), [])

  const json = (path: string, method: string, code: string) => doc.paths[path][method].responses[code].content['application/json'].schema
  assert.deepEqual(json('/api/v1/machines', 'get', '200'), { $ref: '#/components/schemas/MachinePage' })
  assert.deepEqual(doc.components.schemas.MachinePage.properties.items.items, { $ref: '#/components/schemas/Machine' })
  assert.deepEqual(json('/api/v1/allocations', 'post', '201'), { $ref: '#/components/schemas/Allocation' })
  assert.deepEqual(json('/api/v1/machines/{id}/power', 'post', '200'), { $ref: '#/components/schemas/PowerActionResult' })
  // Errors share one schema; each answer keeps its own description.
  assert.deepEqual(json('/api/v1/machines/{id}', 'get', '404'), { $ref: '#/components/schemas/Error' })
  assert.equal(doc.paths['/api/v1/machines/{id}'].get.responses['404'].description, 'Not found')
  // Enums: one `enum`, null among the values where null is allowed.
  assert.deepEqual(doc.components.schemas.MachineState.enum, ['new', 'discovered', 'ready', 'provisioning', 'installed', 'released', 'maintenance', 'failed'])
  assert.deepEqual(doc.components.schemas.PowerState.properties.state, { type: ['string', 'null'], enum: ['on', 'off', null] })
  const action = doc.paths['/api/v1/machines/{id}/power'].post.requestBody.content['application/json'].schema.properties.action
  assert.equal(action.type, 'string')
  assert.ok(action.enum.includes('clear-override'))
  // The inventory's own unions of literals (disk selector) come out as enums as well.
  assert.deepEqual(doc.components.schemas.DiskSelector.properties.prefer.enum, ['smallest', 'largest'])
  // Servers: where the request reached the server, then relative to the document.
  assert.deepEqual(doc.servers.map((s: { url: string }) => s.url), ['http://rackboot.example:8080', '/'])

  // The checks can fail: a dangling $ref, an unnamed schema and an anyOf of constants are each found.
  const broken = structuredClone(doc)
  broken.components.schemas.MachinePage.properties.items.items = { $ref: '#/components/schemas/Machin' }
  broken.components.schemas['def-0'] = broken.components.schemas.Cluster
  broken.components.schemas.Role = { anyOf: [{ enum: ['controlplane'] }, { enum: ['worker'] }] }
  delete broken.components.schemas.Token
  assert.deepEqual(clientProblems(broken).map((p) => p.replace(/:.*/, '')).sort(), [
    '#/components/schemas/MachinePage/properties/items/items', '#/components/schemas/Role',
    '#/paths//api/v1/whoami/get/responses/200/content/application/json/schema', 'components.schemas has no Token', 'components.schemas.def-0',
  ])
})

test('openapi-typescript generates a client from the document that a strict TypeScript program type-checks against', async (t) => {
  const doc = await documentOf(t)
  const dir = mkdtempSync(join(tmpdir(), 'rb-openapi-client-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))

  const generated = astToString(await openapiTS(doc))
  // Named types, not `schemas: never` and copies inline.
  assert.match(generated, /\n\s+Machine: \{/)
  assert.doesNotMatch(generated, /schemas: never/)
  writeFileSync(join(dir, 'schema.ts'), generated)
  copyFileSync(join(FIXTURE, 'client.ts.in'), join(dir, 'client.ts'))
  copyFileSync(join(FIXTURE, 'tsconfig.json'), join(dir, 'tsconfig.json'))

  const tsc = async () => {
    try {
      await promisify(execFile)(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(dir, 'tsconfig.json')], { cwd: dir, timeout: 120_000 })
      return ''
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string }
      return `${e.stdout ?? ''}${e.stderr ?? ''}` || e.message
    }
  }
  assert.equal(await tsc(), '', 'the client program type-checks against the generated types')

  // And the check can fail: with Machine's state widened to any string, the program no longer type-checks.
  writeFileSync(join(dir, 'schema.ts'), generated.replace(/state: components\["schemas"\]\["MachineState"\];/, 'state: string;'))
  assert.notEqual(readFileSync(join(dir, 'schema.ts'), 'utf8'), generated)
  assert.match(await tsc(), /client\.ts.*error TS/)
})
