import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import type { FastifyPluginAsync } from 'fastify'
import { API_PREFIX } from '../openapi.js'

// GET /docs: Swagger UI over the API's own OpenAPI document, with "try it out". Everything it loads comes from
// this server: the UI's scripts and styles are served from the @fastify/swagger-ui package (no CDN), the CSP allows
// nothing else, and the schema validator badge (validator.swagger.io) is off. Appliances are often offline.
//
// The document is the one GET /api/v1/openapi.json serves: /docs/json redirects there, so the docs page shows
// exactly what that route shows, to whom it shows it (today: anyone; the document is no secret, tokens are). The
// page itself needs no token; a user pastes one into "Authorize" (the bearer scheme) to run requests, and it is kept
// in the page only (persistAuthorization off: nothing in localStorage).

export interface DocsRoutesOptions {
  /** The API document's URL (default /api/v1/openapi.json). */
  specUrl?: string
  /** The API's version, for the placeholder document @fastify/swagger-ui's dependency check wants (never served). */
  version?: string
}

export const DOCS_PREFIX = '/docs'

/** Only this server's own files; no framing; requests from "try it out" go to this server only. */
export const DOCS_CSP = [
  "default-src 'self'", "script-src 'self'", "script-src-attr 'none'", "style-src 'self'", "img-src 'self' data:",
  "font-src 'self' data:", "connect-src 'self'", "object-src 'none'", "base-uri 'none'", "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ')

export const docsRoutes: FastifyPluginAsync<DocsRoutesOptions> = async (app, options) => {
  const specUrl = options.specUrl ?? `${API_PREFIX}/openapi.json`
  // @fastify/swagger-ui declares @fastify/swagger as a dependency of its context, and the API's generator lives in
  // the API's own (encapsulated) context. A static document here satisfies the check; the page never sees it,
  // since /docs/json redirects to the API's document below.
  await app.register(fastifySwagger, {
    mode: 'static',
    specification: { document: { openapi: '3.1.0', info: { title: 'rackboot API', version: options.version ?? '0' }, paths: {} } },
  })
  app.addHook('onRequest', async (request, reply) => {
    const path = request.url.split('?')[0]
    if (path === `${DOCS_PREFIX}/json`) return reply.redirect(specUrl, 302)
    if (path === `${DOCS_PREFIX}/yaml`) {
      return reply.status(404).send({ error: 'RB_ERR_NOT_FOUND', message: `the API document is JSON, at ${specUrl}`, details: null })
    }
  })
  app.addHook('onSend', async (_request, reply, payload) => {
    reply.header('x-content-type-options', 'nosniff')
    reply.header('referrer-policy', 'no-referrer')
    reply.header('x-frame-options', 'DENY')
    return payload
  })
  await app.register(fastifySwaggerUi, {
    routePrefix: DOCS_PREFIX,
    staticCSP: DOCS_CSP,
    theme: { title: 'rackboot API' },
    uiConfig: {
      // No top bar: its "Explore" box would load any URL; this page documents this server's API only.
      layout: 'BaseLayout',
      deepLinking: true,
      docExpansion: 'list',
      defaultModelsExpandDepth: 0,
      filter: true,
      tryItOutEnabled: true,
      persistAuthorization: false,
      displayRequestDuration: true,
      withCredentials: false,
    },
  })
}
