import { createHash, randomBytes } from 'node:crypto'
import type { Kysely, Selectable } from 'kysely'
import { RackbootError } from '../../errors.js'
import type { TokenRepository } from '../repositories.js'
import type { ApiToken, TokenScope } from '../types.js'
import { parseJson } from './json.js'
import type { ApiTokensTable, Database } from './schema.js'

// Secrets look like `rbk_<40 base64url chars>`: recognisable by secret scanners, and only their sha256 is stored.
const PREFIX = 'rbk_'

function hash(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex')
}

function toToken(r: Selectable<ApiTokensTable>): ApiToken {
  return {
    id: r.id,
    name: r.name,
    scopes: parseJson<TokenScope[]>(r.scopes, []),
    createdAt: Number(r.created_at),
    lastUsedAt: r.last_used_at === null ? null : Number(r.last_used_at),
    expiresAt: r.expires_at === null ? null : Number(r.expires_at),
    revokedAt: r.revoked_at === null ? null : Number(r.revoked_at),
  }
}

export function createSqlTokens(db: Kysely<Database>): TokenRepository {
  return {
    async create(input, now) {
      const secret = PREFIX + randomBytes(30).toString('base64url')
      const id = `t-${randomBytes(4).toString('hex')}`
      try {
        await db
          .insertInto('api_tokens')
          .values({ id, name: input.name, scopes: JSON.stringify([...new Set(input.scopes)]), hash: hash(secret), created_at: now, last_used_at: null, expires_at: input.expiresAt ?? null, revoked_at: null })
          .execute()
      } catch (cause) {
        throw new RackbootError('RB_ERR_CONFLICT', `a token named '${input.name}' already exists`, { cause })
      }
      const row = await db.selectFrom('api_tokens').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
      return { token: toToken(row), secret }
    },
    async list() {
      return (await db.selectFrom('api_tokens').selectAll().orderBy('created_at').execute()).map(toToken)
    },
    async verify(secret, now) {
      if (!secret.startsWith(PREFIX)) return null
      const row = await db.selectFrom('api_tokens').selectAll().where('hash', '=', hash(secret)).executeTakeFirst()
      if (!row || row.revoked_at !== null || (row.expires_at !== null && Number(row.expires_at) <= now)) return null
      await db.updateTable('api_tokens').set({ last_used_at: now }).where('id', '=', row.id).execute()
      return toToken({ ...row, last_used_at: now })
    },
    async revoke(idOrName, now) {
      const res = await db
        .updateTable('api_tokens')
        .set({ revoked_at: now })
        .where((eb) => eb.or([eb('id', '=', idOrName), eb('name', '=', idOrName)]))
        .where('revoked_at', 'is', null)
        .executeTakeFirst()
      return Number(res.numUpdatedRows) > 0
    },
  }
}
