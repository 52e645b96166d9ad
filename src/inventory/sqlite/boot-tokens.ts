import { createHash, randomBytes } from 'node:crypto'
import type { Kysely } from 'kysely'
import type { BootTokenRepository } from '../repositories.js'
import type { BootTokenPurpose } from '../types.js'
import type { Database } from './schema.js'

function hash(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex')
}

export function createSqliteBootTokens(db: Kysely<Database>): BootTokenRepository {
  return {
    async issue(input, now) {
      // URL-safe and free of iPXE's special characters ($, {, }), since it travels in kernel args.
      const secret = randomBytes(24).toString('base64url').replace(/[-_]/g, 'x')
      await db
        .insertInto('boot_tokens')
        .values({ hash: hash(secret), machine_id: input.machineId, purpose: input.purpose, client_ip: input.clientIp, issued_at: now, expires_at: now + input.ttlMs, used_at: null })
        .execute()
      return secret
    },
    async verify(secret, purpose, now) {
      if (!/^[A-Za-z0-9]{16,64}$/.test(secret)) return null
      const row = await db.selectFrom('boot_tokens').selectAll().where('hash', '=', hash(secret)).executeTakeFirst()
      if (!row || row.purpose !== purpose || Number(row.expires_at) <= now) return null
      if (row.used_at === null) await db.updateTable('boot_tokens').set({ used_at: now }).where('hash', '=', row.hash).execute()
      return {
        machineId: row.machine_id,
        purpose: row.purpose as BootTokenPurpose,
        clientIp: row.client_ip,
        issuedAt: Number(row.issued_at),
        expiresAt: Number(row.expires_at),
        usedAt: row.used_at === null ? now : Number(row.used_at),
      }
    },
    async purge(now) {
      const res = await db.deleteFrom('boot_tokens').where('expires_at', '<=', now).executeTakeFirst()
      return Number(res.numDeletedRows)
    },
  }
}
