import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { FastifyInstance } from 'fastify'

// Header names are case-insensitive (RFC 9110 §5.1), but boot loaders are not: GRUB 2.06's HTTP client
// (grub-core/net/http.c) matches "Content-Length: " byte for byte and fails with "out of memory" without it, and some
// UEFI HTTP boot stacks are as strict. Fastify writes every name lowercase; we write them as RFC 9110 spells them.

const SPECIAL: Record<string, string> = {
  etag: 'ETag',
  'www-authenticate': 'WWW-Authenticate',
  'content-md5': 'Content-MD5',
  'x-xss-protection': 'X-XSS-Protection',
}

const cache = new Map<string, string>()

/** `content-length` → `Content-Length`; names a server sends are few, so the answers are kept. */
export function canonicalHeaderName(name: string): string {
  let out = cache.get(name)
  if (out !== undefined) return out
  const lower = name.toLowerCase()
  out = SPECIAL[lower] ?? lower.replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase())
  // Bounded: only names a route of ours set (never a client's) reach here, but stay safe regardless.
  if (cache.size < 512) cache.set(name, out)
  return out
}

function recased(headers: OutgoingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {}
  for (const [k, v] of Object.entries(headers)) out[canonicalHeaderName(k)] = v
  return out
}

type WriteHead = ServerResponse['writeHead']

/** Rewrites the names of every header a response carries, whoever set them, just before they are written. */
export function canonicalizeResponseHeaders(res: ServerResponse<IncomingMessage>): void {
  const original = res.writeHead as (...args: unknown[]) => ServerResponse
  res.writeHead = function writeHead(this: ServerResponse, statusCode: number, ...rest: unknown[]) {
    // Headers set earlier with setHeader keep the spelling given; set them again under the canonical one.
    for (const name of this.getHeaderNames()) {
      const canonical = canonicalHeaderName(name)
      const value = this.getHeader(name)
      if (value === undefined) continue
      this.removeHeader(name)
      this.setHeader(canonical, value)
    }
    const last = rest.length - 1
    const headers = rest[last]
    if (last >= 0 && headers && typeof headers === 'object' && !Array.isArray(headers)) rest[last] = recased(headers as OutgoingHttpHeaders)
    return original.call(this, statusCode, ...rest)
  } as WriteHead
}

export function registerCanonicalHeaders(app: FastifyInstance): void {
  app.addHook('onRequest', (_request, reply, done) => {
    canonicalizeResponseHeaders(reply.raw)
    done()
  })
}
