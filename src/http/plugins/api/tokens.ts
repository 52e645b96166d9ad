import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { NotFoundError, RackbootError } from '../../../errors.js'
import { TOKEN_SCOPES, type ApiToken, type TokenScope } from '../../../inventory/index.js'
import type { ApiDeps } from './context.js'
import { errors, Named, Nullable, StringEnum } from './schemas.js'

// API tokens through the API (what `rackboot tokens` did on the database): list without secrets, create (the secret
// is answered once, only its hash is kept), revoke by id or name. Admin scope throughout.

const Time = Type.String({ format: 'date-time', description: 'RFC 3339 time' })
const ScopeSchema = StringEnum(TOKEN_SCOPES, { description: 'read ⊂ provision ⊂ admin' })
/** Longest lifetime a new token may be given: ten years. */
const MAX_EXPIRES_S = 10 * 366 * 86_400

const TokenFields = {
  id: Type.String(),
  name: Type.String(),
  scopes: Type.Array(ScopeSchema),
  createdAt: Time,
  lastUsedAt: Nullable(Type.String({ format: 'date-time', description: 'Last request made with it (recorded at most every few seconds); null: never used' })),
  expiresAt: Nullable(Type.String({ format: 'date-time', description: 'null: never expires' })),
  revokedAt: Nullable(Type.String({ format: 'date-time' })),
  status: StringEnum(['active', 'expired', 'revoked']),
}

const ApiTokenSchema = Named('ApiToken', Type.Object(TokenFields, { description: 'An API token as listed: never its secret or hash' }))

const TokenList = Named('ApiTokenList', Type.Object({ items: Type.Array(ApiTokenSchema) }, { description: 'Every API token, oldest first, revoked and expired ones included' }))

const NewToken = Named('NewApiToken', Type.Object({
  ...TokenFields,
  secret: Type.String({ description: 'The bearer secret. Shown this once: only its hash is stored, it cannot be read again' }),
}, { description: 'A token just created, with its secret' }))

const Revocation = Named('ApiTokenRevocation', Type.Object({
  token: ApiTokenSchema,
  revoked: Type.Boolean({ description: 'false when it was already revoked (nothing changed)' }),
  self: Type.Boolean({ description: 'true when the token revoked is the one this request was made with: later requests with it are refused' }),
  message: Type.String(),
}, { description: 'What a revocation did' }))

const CreateBody = Type.Object({
  name: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$', description: 'Unique among tokens (revoked ones too); letters, digits, . _ @ -; up to 64 characters' }),
  scopes: Type.Array(ScopeSchema, { minItems: 1, maxItems: 3, uniqueItems: true }),
  expiresIn: Type.Optional(Type.Union([
    Type.Integer({ minimum: 1, maximum: MAX_EXPIRES_S, description: 'Seconds' }),
    Type.String({ pattern: '^[1-9][0-9]{0,5}[smhdw]$', description: 'A duration: 3600s, 90m, 12h, 30d, 8w' }),
  ], { description: 'Lifetime from now: seconds, or a duration such as 30d; left out: never expires' })),
}, { additionalProperties: false })

const TokenParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128, description: 'Token id (t-...) or name' }) })

const UNIT_S: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 7 * 86_400 }

/** expiresIn as seconds; RB_ERR_VALIDATION beyond ten years. */
export function expiresInSeconds(value: number | string): number {
  const seconds = typeof value === 'number' ? value : Number(value.slice(0, -1)) * UNIT_S[value.slice(-1)]!
  if (seconds > MAX_EXPIRES_S) {
    throw new RackbootError('RB_ERR_VALIDATION', `expiresIn: at most ten years (${MAX_EXPIRES_S} s), not ${value}`, { details: { field: 'expiresIn' } })
  }
  return seconds
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString())

export function tokenView(t: ApiToken, now: number) {
  return {
    id: t.id, name: t.name, scopes: t.scopes, createdAt: iso(t.createdAt)!, lastUsedAt: iso(t.lastUsedAt), expiresAt: iso(t.expiresAt), revokedAt: iso(t.revokedAt),
    status: t.revokedAt !== null ? 'revoked' as const : t.expiresAt !== null && t.expiresAt <= now ? 'expired' as const : 'active' as const,
  }
}

export const tokenRoutes: FastifyPluginAsync<ApiDeps> = async (base, deps) => {
  const app = base.withTypeProvider<TypeBoxTypeProvider>()
  const { inventory } = deps

  app.get('/tokens', {
    config: { scope: 'admin' },
    schema: {
      tags: ['tokens'], operationId: 'listTokens', summary: 'API tokens (never their secrets)',
      response: { 200: TokenList, ...errors() },
    },
  }, async () => {
    const now = Date.now()
    return { items: (await inventory.tokens.list()).map((t) => tokenView(t, now)) }
  })

  app.post('/tokens', {
    config: { scope: 'admin' },
    schema: {
      tags: ['tokens'], operationId: 'createToken', summary: 'Create an API token; its secret is in this answer only',
      description: 'A token may be given any scope, admin included: only an admin token can create one. 409 when the name is taken (revoked tokens keep theirs).',
      body: CreateBody, response: { 201: NewToken, ...errors(400, 409) },
    },
  }, async (request, reply) => {
    const now = Date.now()
    const b = request.body
    const expiresAt = b.expiresIn === undefined ? null : now + expiresInSeconds(b.expiresIn) * 1000
    // Revocation takes an id or a name: a name that looks like an id would make the two ambiguous.
    if (/^t-[0-9a-f]+$/.test(b.name)) {
      throw new RackbootError('RB_ERR_VALIDATION', `name: '${b.name}' looks like a token id (t-...); choose another`, { details: { field: 'name' } })
    }
    if ((await inventory.tokens.list()).some((t) => t.name === b.name)) {
      throw new RackbootError('RB_ERR_CONFLICT', `a token named '${b.name}' already exists (revoked tokens keep their names)`, { details: { name: b.name } })
    }
    const { token, secret } = await inventory.tokens.create({ name: b.name, scopes: b.scopes as TokenScope[], expiresAt }, now)
    reply.status(201).header('location', `/api/v1/tokens/${token.id}`)
    return { ...tokenView(token, now), secret }
  })

  app.delete('/tokens/:id', {
    config: { scope: 'admin' },
    schema: {
      tags: ['tokens'], operationId: 'revokeToken', summary: 'Revoke an API token, by id or name',
      description: 'Revoked at once on this server, and within 5 s (the time a verification is cached) on others sharing the database. '
        + 'A token may revoke itself: that is allowed, and the answer says so (`self: true`); the request that did it is the last it makes. '
        + 'Revoking a revoked token changes nothing (`revoked: false`). The record stays, listed as revoked.',
      params: TokenParams, response: { 200: Revocation, ...errors(400, 404) },
    },
  }, async (request) => {
    const ref = request.params.id
    const tokens = await inventory.tokens.list()
    // An id first, then a name: a token named like another's id is still reachable by its own id.
    const token = tokens.find((t) => t.id === ref) ?? tokens.find((t) => t.name === ref)
    if (!token) throw new NotFoundError('token', ref)
    const now = Date.now()
    const self = request.apiToken?.id === token.id
    if (token.revokedAt !== null) {
      return { token: tokenView(token, now), revoked: false, self, message: `token ${token.id} (${token.name}) was already revoked` }
    }
    await inventory.tokens.revoke(token.id, now)
    // Cached verifications would let it work a few seconds more here.
    deps.auth.clear()
    const after = (await inventory.tokens.list()).find((t) => t.id === token.id) ?? { ...token, revokedAt: now }
    return {
      token: tokenView(after, now), revoked: true, self,
      message: self
        ? `token ${token.id} (${token.name}) revoked: it is the token this request was made with, so later requests with it are refused`
        : `token ${token.id} (${token.name}) revoked`,
    }
  })
}
