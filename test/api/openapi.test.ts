import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Ajv2020 } from 'ajv/dist/2020.js'
import YAML from 'yaml'
import { apiSetup } from './support/app.js'

// Ajv resolves `$dynamicRef: '#meta'` to the wrong anchor in this schema; here the anchor can only mean
// `$defs/schema` (no schema-base.yaml extends it), so point at it directly.
const OAS_SCHEMA = JSON.parse(JSON.stringify(YAML.parse(readFileSync(join(import.meta.dirname, 'fixtures', 'openapi-3.1-schema.yaml'), 'utf8')))
  .replaceAll('"$dynamicRef":"#meta"', '"$ref":"#/$defs/schema"'))
const METHODS = ['get', 'put', 'post', 'delete', 'patch']

/** Routes from fastify's printRoutes({ commonPrefix: false }) tree: "│   └── /:id (GET, HEAD)". */
function routeTable(tree: string): { method: string; url: string }[] {
  const stack: string[] = []
  const out: { method: string; url: string }[] = []
  for (const line of tree.split('\n')) {
    const m = /^([│ ]*)[├└]── (\S+)(?: \(([A-Z, ]+)\))?$/.exec(line)
    if (!m) continue
    const depth = m[1]!.length / 4
    stack.length = depth
    stack.push(m[2]!)
    for (const method of (m[3] ?? '').split(', ').filter(Boolean)) out.push({ method, url: stack.join('') })
  }
  return out
}

test('the OpenAPI document validates against the OpenAPI 3.1 schema, and each of its schemas compiles as JSON Schema 2020-12', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  const res = await s.app.inject({ url: '/api/v1/openapi.json' })
  assert.equal(res.statusCode, 200)
  assert.match(String(res.headers['content-type']), /application\/json/)
  const doc = res.json() as any
  assert.equal(doc.openapi, '3.1.0')

  // Formats the OAS schema uses are documentation there; this checks structure.
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false })
  const compiledOas = ajv.compile(OAS_SCHEMA)
  const validate = Object.assign((d: unknown): boolean => compiledOas(d), { get errors() { return compiledOas.errors } })
  assert.ok(validate(doc), JSON.stringify(validate.errors?.slice(0, 5), null, 2))

  // And a broken document does not pass (the oracle can fail).
  const broken = structuredClone(doc)
  broken.paths['/api/v1/machines'].get.responses = { 200: { content: {} } }
  assert.equal(validate(broken), false)

  const schemas = new Ajv2020({ strict: false, validateFormats: false })
  let compiled = 0
  // Route schemas refer to the named ones as #/components/schemas/<name>: compiled with the document's components
  // beside them, so those references resolve (and a dangling one fails to compile).
  const withComponents = (schema: object) => ({ ...schema, components: doc.components })
  for (const schema of Object.values<object>(doc.components.schemas)) {
    schemas.compile(withComponents(schema))
    compiled++
  }
  for (const [path, item] of Object.entries<any>(doc.paths)) {
    for (const [method, op] of Object.entries<any>(item)) {
      for (const p of op.parameters ?? []) {
        schemas.compile(withComponents(p.schema))
        compiled++
      }
      for (const media of Object.values<any>(op.requestBody?.content ?? {})) {
        schemas.compile(withComponents(media.schema))
        compiled++
      }
      for (const [code, r] of Object.entries<any>(op.responses ?? {})) {
        assert.ok(r.description, `${method} ${path} ${code} has a description`)
        for (const media of Object.values<any>(r.content ?? {})) {
          schemas.compile(withComponents(media.schema))
          compiled++
        }
      }
    }
  }
  assert.ok(compiled > 60, `compiled ${compiled} schemas`)

  // The per-machine Talos values are documented where they are read and written.
  const deref = (schema: any): any => {
    const named = /^#\/components\/schemas\/(.+)$/.exec(schema?.$ref ?? '')?.[1]
    if (named) return deref(doc.components.schemas[named])
    const nonNull = schema?.anyOf?.filter((s: any) => s.type !== 'null')
    return nonNull?.length === 1 ? deref(nonNull[0]) : schema
  }
  const body = (path: string, method: string) => deref(doc.paths[path][method].requestBody.content['application/json'].schema)
  const ok = (path: string, method: string) => deref(doc.paths[path][method].responses['200'].content['application/json'].schema)
  assert.deepEqual(Object.keys(body('/api/v1/profiles/{name}', 'put').properties.installDisk.properties).sort(), ['model', 'name', 'prefer', 'serial', 'size', 'type', 'wwn'])
  assert.deepEqual(Object.keys(deref(ok('/api/v1/profiles/{name}', 'get').properties.installDisk).properties).sort(), ['model', 'name', 'prefer', 'serial', 'size', 'type', 'wwn'])
  assert.deepEqual(body('/api/v1/machines/{id}', 'patch').properties.network.properties.addresses.items.required, ['addresses'])
  assert.deepEqual(deref(ok('/api/v1/machines/{id}', 'get').properties.network).properties.addresses.items.required, ['addresses'])
})

test('the document lists exactly the /api/v1 routes the server has, with their scopes; the docs page is public', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  const doc = (await s.app.inject({ url: '/api/v1/openapi.json' })).json()
  const documented = new Set<string>()
  for (const [path, item] of Object.entries<any>(doc.paths)) {
    for (const method of Object.keys(item)) if (METHODS.includes(method)) documented.add(`${method.toUpperCase()} ${path}`)
  }
  // The server's own route table, from fastify's printRoutes tree (HEAD routes are implicit).
  const routes = new Set<string>()
  for (const r of routeTable(s.app.printRoutes({ commonPrefix: false }))) {
    if (r.url.startsWith('/api/v1/') && r.method !== 'HEAD' && r.url !== '/api/v1/agent/report') {
      routes.add(`${r.method} ${r.url.replace(/:(\w+)/g, '{$1}')}`)
    }
  }
  assert.deepEqual([...documented].sort(), [...routes].sort())
  assert.ok(routes.size >= 25, `${routes.size} routes`)

  // Every operation names its scope; only the document and its page are public.
  for (const [path, item] of Object.entries<any>(doc.paths)) {
    for (const [method, op] of Object.entries<any>(item)) {
      const scope = op.security?.[0]?.bearer?.[0] ?? 'public'
      if (path === '/api/v1/openapi.json' || path === '/api/v1/docs') assert.equal(scope, 'public')
      else assert.ok(['read', 'provision', 'admin'].includes(scope), `${method} ${path}: ${scope}`)
      // Reads are read scope, but for a cluster's talosconfig and the token list (admin secrets and credentials).
      if (method === 'get' && scope !== 'public') assert.equal(scope, path.endsWith('/talosconfig') || path === '/api/v1/tokens' ? 'admin' : 'read', `${method} ${path}`)
      assert.ok(op.operationId, `${method} ${path} has an operationId`)
    }
  }
  const page = await s.app.inject({ url: '/api/v1/docs' })
  assert.equal(page.statusCode, 200)
  assert.match(String(page.headers['content-type']), /text\/html/)
  assert.match(page.body, /fetch\('openapi\.json'\)/)
})
