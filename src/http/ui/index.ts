import { join } from 'node:path'
import fastifyStatic from '@fastify/static'
import type { FastifyPluginAsync } from 'fastify'

/** Where the page, its styles and its ES modules live: served as they are, no build step. */
export const UI_ROOT = join(import.meta.dirname, 'static')

// Only our own files may run or be fetched, and nothing may frame the page: machine names and labels come from
// users and machines, so this is the second wall behind the page never putting API strings in as HTML.
const CSP = [
  "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self'", "connect-src 'self'",
  "object-src 'none'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'",
].join('; ')

/**
 * The web UI at `/ui/` (`/` redirects there): static HTML, CSS and ES modules that read /api/v1 with the
 * bearer token the user gives the page. Nothing here reads the inventory; the page only uses the API.
 */
export const uiRoutes: FastifyPluginAsync = async (app) => {
  app.addHook('onSend', async (request, reply, payload) => {
    if (!request.url.startsWith('/ui')) return payload
    reply.header('content-security-policy', CSP)
    reply.header('x-content-type-options', 'nosniff')
    reply.header('referrer-policy', 'no-referrer')
    reply.header('x-frame-options', 'DENY')
    return payload
  })
  await app.register(fastifyStatic, {
    root: UI_ROOT,
    prefix: '/ui/',
    index: 'index.html',
    list: false,
    dotfiles: 'deny',
    decorateReply: false,
    // Revalidate on every load (ETag): an upgraded server's page is never mixed with cached modules.
    cacheControl: false,
    setHeaders: (res) => res.setHeader('cache-control', 'no-cache'),
  })
  app.get('/', async (_request, reply) => reply.redirect('/ui/', 302))
  app.get('/ui', async (_request, reply) => reply.redirect('/ui/', 301))
}
