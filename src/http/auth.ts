import { createHash } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Counter, type Registry } from 'prom-client'
import { RackbootError } from '../errors.js'
import type { ApiToken, TokenRepository, TokenScope } from '../inventory/index.js'

// Bearer tokens for /api/v1 (made by `rackboot tokens create`, stored hashed). Each route names the scope it
// needs in its config (`config: { scope: 'provision' }`); scopes nest: admin ⊇ provision ⊇ read. A route that
// names none needs admin (fail closed); 'public' routes (the OpenAPI document, its docs page) need nothing.

export type RouteScope = TokenScope | 'public'

declare module 'fastify' {
  interface FastifyContextConfig {
    scope?: RouteScope
  }
  interface FastifyRequest {
    /** The API token the request was made with (set by the auth hook). */
    apiToken?: ApiToken
  }
}

const IMPLIED: Readonly<Record<TokenScope, readonly TokenScope[]>> = {
  read: ['read'],
  provision: ['provision', 'read'],
  admin: ['admin', 'provision', 'read'],
}

/** Every scope a token holds, its own and the ones they imply. */
export function effectiveScopes(scopes: readonly TokenScope[]): Set<TokenScope> {
  return new Set(scopes.flatMap((s) => IMPLIED[s] ?? []))
}

export interface ApiAuthDeps {
  tokens: Pick<TokenRepository, 'verify'>
  now?: () => number
  /**
   * How long a verified token is trusted without asking the database again (verify() writes last-use, and an API
   * call should not cost a write). Default 5 s. A token revoked elsewhere (another instance, the CLI) keeps working
   * at most this long after the revocation commits; one revoked through this instance's API stops at once (clear()).
   * 0 disables the cache.
   */
  cacheMs?: number
  registry?: Registry
}

export interface ApiAuth {
  /** fastify onRequest hook for the API's routes. */
  hook(request: FastifyRequest, reply: FastifyReply): Promise<void>
  /** Forgets cached verifications (tests; after a revocation). */
  clear(): void
}

const CACHE_ENTRIES = 1024

export function createApiAuth(deps: ApiAuthDeps): ApiAuth {
  const now = deps.now ?? Date.now
  const cacheMs = deps.cacheMs ?? 5_000
  // Keyed by the secret's sha256; `until` is when the database was asked plus cacheMs, never extended: that is
  // what bounds how long a token revoked elsewhere (another instance, the CLI) keeps working.
  const cache = new Map<string, { token: ApiToken; until: number }>()
  // One database lookup per secret at a time: the requests that arrive meanwhile wait for it.
  const pending = new Map<string, Promise<ApiToken | null>>()
  // Bumped by clear(): a lookup that started before a revocation must not put its answer back in the cache.
  let generation = 0
  const denied = deps.registry
    ? new Counter({ name: 'rackboot_api_auth_denied_total', help: 'API requests refused by authentication or scope', labelNames: ['reason'] as const, registers: [deps.registry] })
    : null

  function remember(key: string, token: ApiToken | null, askedAt: number): void {
    cache.delete(key)
    if (!token || cacheMs <= 0) return
    if (cache.size >= CACHE_ENTRIES) cache.delete(cache.keys().next().value!)
    cache.set(key, { token, until: askedAt + cacheMs })
  }

  function lookup(key: string, secret: string): Promise<ApiToken | null> {
    const running = pending.get(key)
    if (running) return running
    const askedAt = now()
    const mine = generation
    const p = deps.tokens.verify(secret, askedAt).then((token) => {
      if (mine === generation) remember(key, token, askedAt)
      return token
    }).finally(() => {
      if (pending.get(key) === p) pending.delete(key)
    })
    pending.set(key, p)
    return p
  }

  async function verify(secret: string): Promise<ApiToken | null> {
    const key = createHash('sha256').update(secret).digest('hex')
    const t = now()
    const hit = cache.get(key)
    if (hit && hit.until > t && (hit.token.expiresAt === null || hit.token.expiresAt > t)) {
      // Past half its time, asked again in the background: a token in steady use never waits for the database
      // (a failed refresh just lets the entry run out).
      if (t >= hit.until - cacheMs / 2) void lookup(key, secret).catch(() => {})
      return hit.token
    }
    return lookup(key, secret)
  }

  return {
    clear() {
      generation++
      cache.clear()
      pending.clear()
    },
    async hook(request, reply) {
      const needed = request.routeOptions.config?.scope ?? 'admin'
      if (needed === 'public') return
      const header = request.headers.authorization ?? ''
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header)
      if (!match) {
        denied?.inc({ reason: header ? 'malformed' : 'missing' })
        reply.header('www-authenticate', 'Bearer realm="rackboot"')
        throw new RackbootError('RB_ERR_UNAUTHORIZED', header
          ? 'the Authorization header must be "Bearer <token>"'
          : 'this endpoint needs an API token: Authorization: Bearer <token> (create one with `rackboot tokens create`)')
      }
      const token = await verify(match[1]!)
      if (!token) {
        denied?.inc({ reason: 'invalid' })
        reply.header('www-authenticate', 'Bearer realm="rackboot", error="invalid_token"')
        throw new RackbootError('RB_ERR_UNAUTHORIZED', 'the API token is unknown, revoked or expired')
      }
      request.apiToken = token
      if (!effectiveScopes(token.scopes).has(needed)) {
        denied?.inc({ reason: 'scope' })
        reply.header('www-authenticate', `Bearer realm="rackboot", error="insufficient_scope", scope="${needed}"`)
        throw new RackbootError('RB_ERR_FORBIDDEN', `token '${token.name}' lacks the '${needed}' scope this needs (it has: ${token.scopes.join(', ') || 'none'})`, {
          details: { required: needed, granted: token.scopes },
        })
      }
    },
  }
}
