import fastifySwagger from '@fastify/swagger'
import type { FastifyInstance, FastifyPluginAsync } from 'fastify'
import type { RouteScope } from './auth.js'
import { namedSchemas } from './plugins/api/schemas.js'

// The OpenAPI 3.1 document is generated from the route schemas of the API context (@fastify/swagger's onRoute
// hook), so it cannot drift from what the server validates. Served at /api/v1/openapi.json with a small docs page
// that renders it in the browser without anything from the internet (appliances are often offline).

export const API_PREFIX = '/api/v1'

/**
 * Registers the generator in `app` (the API's encapsulated context), and the named schemas the routes refer to
 * (schemas.ts: Machine, Allocation, Error, ...); call before the routes.
 */
export async function registerOpenApi(app: FastifyInstance, options: { version: string }): Promise<void> {
  for (const schema of namedSchemas()) app.addSchema(schema)
  await app.register(fastifySwagger, {
    // A shared schema becomes components.schemas.<its $id> (the default names them def-0, def-1, ...).
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
    openapi: {
      openapi: '3.1.0',
      // Relative: the server that served the document; GET /openapi.json puts the origin it was reached at first.
      servers: [{ url: '/', description: 'The server this document came from' }],
      info: {
        title: 'rackboot API',
        version: options.version,
        description: 'Inventory, allocation and events for a control plane (Cluster API provider, managed Kubernetes). '
          + 'Authenticate with `Authorization: Bearer <token>` (tokens come from `rackboot tokens create`). '
          + 'Scopes nest: admin includes provision, provision includes read. Errors are `{error, message, details}`.',
        license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
      },
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'An API token from `rackboot tokens create`' } },
      },
      tags: [
        { name: 'machines', description: 'The hardware inventory' },
        { name: 'power', description: 'Power and next boot through the BMC: sent once, verified by reading the BMC back' },
        { name: 'bmc', description: "A machine's BMC: address, credentials (write-only) and its own settings" },
        { name: 'allocations', description: 'Taking machines for clusters, and giving them back' },
        { name: 'events', description: 'What happens, as it happens' },
        { name: 'classes', description: 'Which machines are which' },
        { name: 'profiles', description: 'What machines install' },
        { name: 'clusters', description: 'Talos clusters whose configs rackboot generates' },
        { name: 'meta', description: 'This document and the caller' },
      ],
    },
    transform: ({ schema, url, route }) => {
      const scope = (route.config as { scope?: RouteScope } | undefined)?.scope ?? 'admin'
      const s = { ...(schema as Record<string, unknown>) }
      if (!url.startsWith(API_PREFIX)) return { schema: { ...s, hide: true }, url }
      s.security = scope === 'public' ? [] : [{ bearer: [scope] }]
      if (scope !== 'public') s.description = `${s.description ? `${s.description as string}\n\n` : ''}Scope: \`${scope}\`.`
      // Headers are documented in the descriptions; the OpenAPI generator would list Authorization otherwise.
      return { schema: s, url }
    },
    transformObject: (documentObject) => plainEnums((documentObject as { openapiObject: Record<string, unknown> }).openapiObject),
  })
}

/**
 * Rewrites each union of constants (`anyOf: [{enum: ['a']}, {enum: ['b']}, {type: 'null'}]`, as TypeBox unions of
 * literals come out, here or in the inventory's schemas) as one `{type, enum}`: client generators make that a plain
 * enum. Accepts the same values; only the document changes, not what the server validates.
 */
export function plainEnums<T>(node: T): T {
  if (Array.isArray(node)) return node.map((n) => plainEnums(n)) as T
  if (typeof node !== 'object' || node === null) return node
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(node)) out[k] = plainEnums(v)
  const members = out.anyOf ?? out.oneOf
  const values = Array.isArray(members) ? constantsOf(members as unknown[]) : null
  if (!values) return out as T
  delete out.anyOf
  delete out.oneOf
  const types = [...new Set(values.map((v) => (v === null ? 'null' : typeof v)))]
  return { ...out, type: types.length === 1 ? types[0] : types, enum: values } as T
}

/** The values of union members that are each one constant (or null), or null when any member is more than that. */
function constantsOf(members: unknown[]): unknown[] | null {
  const values: unknown[] = []
  for (const m of members) {
    if (typeof m !== 'object' || m === null) return null
    const { enum: e, const: c, type, description: _d, ...rest } = m as Record<string, unknown>
    if (Object.keys(rest).length > 0) return null
    if (Array.isArray(e) && e.length === 1 && ['string', 'number', 'boolean'].includes(typeof e[0])) values.push(e[0])
    else if (c !== undefined && ['string', 'number', 'boolean'].includes(typeof c)) values.push(c)
    else if (type === 'null' && e === undefined && c === undefined) values.push(null)
    else return null
  }
  // Only a union with at least one constant besides null: `string | null` stays as it is.
  return values.some((v) => v !== null) ? values : null
}

/** GET /api/v1/openapi.json and GET /api/v1/docs (public). */
export const openApiRoutes: FastifyPluginAsync = async (app) => {
  app.get('/openapi.json', {
    config: { scope: 'public' },
    schema: { tags: ['meta'], operationId: 'openapi', summary: 'This API as an OpenAPI 3.1 document', security: [] },
  }, async (request, reply) => {
    reply.type('application/json')
    // The origin this request reached first (what a client generator fills in as its base URL), then '/'.
    const doc = app.swagger() as { servers?: unknown[] }
    return JSON.stringify({ ...doc, servers: [{ url: `${request.protocol}://${request.host}`, description: 'This server, as the request reached it' }, ...(doc.servers ?? [])] })
  })
  app.get('/docs', {
    config: { scope: 'public' },
    schema: { tags: ['meta'], operationId: 'docs', summary: 'Human-readable API documentation (renders openapi.json)', security: [] },
  }, async (_request, reply) => {
    reply.type('text/html; charset=utf-8').header('content-security-policy', "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'")
    return DOCS_PAGE
  })
}

const DOCS_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rackboot API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#1d232a;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
main{max-width:1100px;margin:0 auto;padding:16px 24px}
h2{margin:28px 0 8px;text-transform:capitalize}
details{background:#fff;border:1px solid #d9dde3;border-radius:6px;margin:6px 0}
summary{cursor:pointer;padding:8px 12px;display:flex;gap:10px;align-items:baseline}
.m{font:bold 12px monospace;padding:2px 6px;border-radius:4px;color:#fff;min-width:52px;text-align:center}
.get{background:#2d7d46}.post{background:#1f5fbf}.put{background:#9a6700}.patch{background:#6f42c1}.delete{background:#b42318}
.p{font-family:monospace}.s{color:#57606a}.scope{margin-left:auto;font-size:12px;color:#57606a}
.body{padding:4px 16px 12px}pre{background:#f3f4f6;padding:8px;border-radius:4px;overflow:auto;font-size:12px;max-height:360px}
table{border-collapse:collapse}td,th{border:1px solid #d9dde3;padding:3px 8px;text-align:left;font-size:13px}
</style></head><body><header><h1>rackboot API</h1><div id="info"></div></header><main id="ops">Loading openapi.json…</main>
<script>
const esc = (s) => String(s ?? '').replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
fetch('openapi.json').then((r) => r.json()).then((doc) => {
  document.getElementById('info').innerHTML = esc(doc.info.description) + ' <a style="color:#9cf" href="openapi.json">openapi.json</a> · version ' + esc(doc.info.version);
  const byTag = {};
  for (const [path, item] of Object.entries(doc.paths)) for (const [method, op] of Object.entries(item)) {
    (byTag[(op.tags || ['other'])[0]] ||= []).push({ path, method, op });
  }
  let html = '';
  for (const tag of (doc.tags || []).map((t) => t.name).concat(Object.keys(byTag)).filter((t, i, a) => a.indexOf(t) === i && byTag[t])) {
    html += '<h2>' + esc(tag) + '</h2>';
    for (const { path, method, op } of byTag[tag]) {
      const scope = (op.security && op.security[0] && Object.values(op.security[0])[0][0]) || 'public';
      html += '<details><summary><span class="m ' + method + '">' + method.toUpperCase() + '</span><span class="p">' + esc(path) + '</span><span class="s">' + esc(op.summary) + '</span><span class="scope">' + esc(scope) + '</span></summary><div class="body">';
      if (op.description) html += '<p>' + esc(op.description) + '</p>';
      if (op.parameters && op.parameters.length) html += '<table><tr><th>parameter</th><th>in</th><th>schema</th><th>description</th></tr>' + op.parameters.map((p) => '<tr><td class="p">' + esc(p.name) + (p.required ? ' *' : '') + '</td><td>' + esc(p.in) + '</td><td class="p">' + esc(JSON.stringify(p.schema)) + '</td><td>' + esc(p.description || (p.schema && p.schema.description)) + '</td></tr>').join('') + '</table>';
      if (op.requestBody) html += '<h4>Request body</h4><pre>' + esc(JSON.stringify(Object.values(op.requestBody.content)[0].schema, null, 2)) + '</pre>';
      for (const [code, r] of Object.entries(op.responses || {})) {
        const c = r.content && Object.values(r.content)[0];
        html += '<h4>' + esc(code) + ' ' + esc(r.description) + '</h4>' + (c && c.schema ? '<pre>' + esc(JSON.stringify(c.schema, null, 2)) + '</pre>' : '');
      }
      html += '</div></details>';
    }
  }
  // The shapes the operations refer to ($ref #/components/schemas/<name>).
  const schemas = Object.entries((doc.components && doc.components.schemas) || {});
  if (schemas.length) html += '<h2>schemas</h2>';
  for (const [name, schema] of schemas) {
    html += '<details id="schema-' + esc(name) + '"><summary><span class="p">' + esc(name) + '</span><span class="s">' + esc(schema.description) + '</span></summary><div class="body"><pre>' + esc(JSON.stringify(schema, null, 2)) + '</pre></div></details>';
  }
  document.getElementById('ops').innerHTML = html;
}).catch((e) => { document.getElementById('ops').textContent = 'Cannot load openapi.json: ' + e; });
</script></body></html>
`
