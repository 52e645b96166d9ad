import { hash as digest, randomBytes } from 'node:crypto'
import type { Kysely, Selectable } from 'kysely'
import type { BootTokenRepository } from '../repositories.js'
import type { BootToken, BootTokenPurpose, BootTokenRefusal, MachineState } from '../types.js'
import { dialectOf } from './dialect.js'
import type { BootTokensTable, Database } from './schema.js'
import { precompile } from './precompiled.js'

// (crypto.hash, one call: twice as fast as createHash for a token, hashed twice for every config served.)
function hash(secret: string): string {
  return digest('sha256', secret, 'hex')
}

const SHAPE = /^[A-Za-z0-9]{16,64}$/

function toToken(row: Selectable<BootTokensTable>): BootToken {
  return {
    machineId: row.machine_id,
    purpose: row.purpose as BootTokenPurpose,
    clientIp: row.client_ip,
    issuedAt: Number(row.issued_at),
    expiresAt: Number(row.expires_at),
    usedAt: row.used_at === null ? null : Number(row.used_at),
    machineState: (row.machine_state as MachineState | null) ?? null,
    fetchIp: row.fetch_ip,
    uses: Number(row.uses ?? 0),
  }
}

type Checked = { ok: true; token: BootToken } | { ok: false; reason: BootTokenRefusal; token: BootToken | null }

function judge(row: Selectable<BootTokensTable> | undefined, purpose: BootTokenPurpose, now: number): Checked {
  if (!row) return { ok: false, reason: 'unknown', token: null }
  const token = toToken(row)
  if (row.purpose !== purpose) return { ok: false, reason: 'wrong-purpose', token: null }
  if (row.revoked_at !== null) return { ok: false, reason: 'void', token }
  if (Number(row.expires_at) <= now) return { ok: false, reason: 'expired', token }
  return { ok: true, token }
}

export function createSqlBootTokens(db: Kysely<Database>): BootTokenRepository {
  const postgres = dialectOf(db) === 'postgres'
  // The statements every boot runs, compiled once (precompiled.ts).
  const byHash = precompile(db, ['hash'] as const, (v) => db.selectFrom('boot_tokens').selectAll().where('hash', '=', v.hash as string))
  const revokeOthers = precompile(db, ['now', 'machineId', 'purpose'] as const, (v) => db.updateTable('boot_tokens').set({ revoked_at: v.now as number })
    .where('machine_id', '=', v.machineId as string).where('purpose', '=', v.purpose as string).where('revoked_at', 'is', null))
  const insert = precompile(db, ['hash', 'machineId', 'purpose', 'clientIp', 'now', 'expiresAt', 'machineState'] as const, (v) => db.insertInto('boot_tokens').values({
    hash: v.hash as string, machine_id: v.machineId as string, purpose: v.purpose as string, client_ip: v.clientIp as string | null, issued_at: v.now as number,
    expires_at: v.expiresAt as number, used_at: null, machine_state: v.machineState as string | null, fetch_ip: null, uses: 0, revoked_at: null,
  }))
  const take = precompile(db, ['clientIp', 'now', 'hash', 'purpose', 'maxUses'] as const, (v) => db.updateTable('boot_tokens')
    .set((eb) => ({ uses: eb('uses', '+', 1), fetch_ip: eb.fn.coalesce('fetch_ip', eb.val(v.clientIp as string)), used_at: eb.fn.coalesce('used_at', eb.val(v.now as number)) }))
    .where('hash', '=', v.hash as string).where('purpose', '=', v.purpose as string).where('revoked_at', 'is', null).where('expires_at', '>', v.now as number).where('uses', '<', v.maxUses as number)
    .where((eb) => eb.or([eb('fetch_ip', 'is', null), eb('fetch_ip', '=', v.clientIp as string)]))
    .returningAll())
  async function load(secret: string): Promise<Selectable<BootTokensTable> | undefined> {
    if (!SHAPE.test(secret)) return undefined
    return (await byHash({ hash: hash(secret) })).rows[0]
  }
  async function revoke(machineId: string, purpose: BootTokenPurpose | null, now: number): Promise<number> {
    let q = db.updateTable('boot_tokens').set({ revoked_at: now }).where('machine_id', '=', machineId).where('revoked_at', 'is', null)
    if (purpose) q = q.where('purpose', '=', purpose)
    const res = await q.executeTakeFirst()
    return Number(res.numUpdatedRows)
  }
  return {
    async issue(input, now) {
      // URL-safe and free of iPXE's special characters ($, {, }), since it travels in kernel args.
      const secret = randomBytes(24).toString('base64url').replace(/[-_]/g, 'x')
      await db.transaction().execute(async (tx) => {
        // SQLite runs one transaction at a time. PostgreSQL runs two issues for one machine side by side, each voiding
        // what was there before either inserted: both tokens would stay good. Locking the machine's row first makes
        // the second wait for the first to commit, and then void its token.
        if (postgres) await tx.selectFrom('machines').select('id').where('id', '=', input.machineId).forUpdate().execute()
        await revokeOthers({ now, machineId: input.machineId, purpose: input.purpose }, tx)
        await insert({
          hash: hash(secret), machineId: input.machineId, purpose: input.purpose, clientIp: input.clientIp, now, expiresAt: now + input.ttlMs, machineState: input.machineState ?? null,
        }, tx)
      })
      return secret
    },
    async verify(secret, purpose, now) {
      const c = judge(await load(secret), purpose, now)
      return c.ok ? c.token : null
    },
    async check(secret, purpose, now) {
      return judge(await load(secret), purpose, now)
    },
    async consume(secret, purpose, clientIp, maxUses, now) {
      if (!SHAPE.test(secret)) return judge(undefined, purpose, now)
      const key = hash(secret)
      // One conditional UPDATE decides, so two fetches racing from two addresses cannot both bind the token. It
      // returns the row it changed: the usual fetch costs this one statement; only a refusal reads the row for why.
      const taken = (await take({ clientIp, now, hash: key, purpose, maxUses })).rows[0]
      if (taken) return { ok: true, token: toToken(taken) }
      const row = (await byHash({ hash: key })).rows[0]
      const c = judge(row, purpose, now)
      if (!c.ok) return c
      const token = c.token
      if (token.fetchIp !== null && token.fetchIp !== clientIp) return { ok: false, reason: 'other-address', token }
      return { ok: false, reason: 'used-up', token }
    },
    revoke,
    async fetchedFrom(ip, now) {
      const row = await db.selectFrom('boot_tokens').select(['machine_id', 'issued_at'])
        .where('fetch_ip', '=', ip).where('purpose', '=', 'config').where('revoked_at', 'is', null).where('expires_at', '>', now)
        .orderBy('issued_at', 'desc').limit(1).executeTakeFirst()
      return row ? { machineId: row.machine_id, issuedAt: Number(row.issued_at) } : null
    },
    async purge(now) {
      const res = await db.deleteFrom('boot_tokens').where((eb) => eb.or([eb('expires_at', '<=', now), eb('revoked_at', 'is not', null)])).executeTakeFirst()
      return Number(res.numDeletedRows)
    },
  }
}
