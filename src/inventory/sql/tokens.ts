import { createHash, randomBytes } from 'node:crypto'
import type { Kysely, Selectable } from 'kysely'
import { RackbootError } from '../../errors.js'
import type { TokenRepository } from '../repositories.js'
import type { ApiToken, TokenScope } from '../types.js'
import { dialectOf } from './dialect.js'
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
  const sqlite = dialectOf(db) === 'sqlite'
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
      // SQLite: read first, so a flood of made-up tokens never takes the write lock (DHCP's lease writes need it).
      if (sqlite) {
        const found = await db.selectFrom('api_tokens').select('id').where('hash', '=', hash(secret)).executeTakeFirst()
        if (!found) return null
      }
      // One statement (one round trip on PostgreSQL): the use is recorded only on a token that is neither revoked
      // nor expired, and that token is what comes back.
      const row = await db.updateTable('api_tokens').set({ last_used_at: now })
        .where('hash', '=', hash(secret)).where('revoked_at', 'is', null)
        .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
        .returningAll().executeTakeFirst()
      return row ? toToken(row) : null
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
