import type { Kysely, Selectable } from 'kysely'
import type { SecretBox } from '../secret-box.js'
import type { BmcRepository } from '../repositories.js'
import type { Bmc, BmcType } from '../types.js'
import type { BmcsTable, Database } from './schema.js'

function toBmc(r: Selectable<BmcsTable>): Bmc {
  return {
    machineId: r.machine_id,
    type: r.type as BmcType,
    address: r.address,
    port: r.port,
    username: r.username,
    hasPassword: r.password_sealed !== null,
    credentialsRef: r.credentials_ref,
    insecure: r.insecure === 1,
    fingerprint: r.fingerprint,
  }
}

export function createSqliteBmcs(db: Kysely<Database>, box: SecretBox): BmcRepository {
  return {
    async get(machineId) {
      const r = await db.selectFrom('bmcs').selectAll().where('machine_id', '=', machineId).executeTakeFirst()
      return r ? toBmc(r) : null
    },
    async put(machineId, input) {
      const existing = await db.selectFrom('bmcs').select('password_sealed').where('machine_id', '=', machineId).executeTakeFirst()
      const row = {
        type: input.type,
        address: input.address,
        port: input.port ?? null,
        username: input.username ?? null,
        password_sealed:
          input.password === undefined ? existing?.password_sealed ?? null : input.password === null ? null : box.seal(input.password),
        credentials_ref: input.credentialsRef ?? null,
        insecure: input.insecure ? 1 : 0,
        fingerprint: input.fingerprint ?? null,
      }
      await db
        .insertInto('bmcs')
        .values({ machine_id: machineId, ...row })
        .onConflict((oc) => oc.column('machine_id').doUpdateSet(row))
        .execute()
      return (await this.get(machineId))!
    },
    async remove(machineId) {
      const res = await db.deleteFrom('bmcs').where('machine_id', '=', machineId).executeTakeFirst()
      return Number(res.numDeletedRows) === 1
    },
    async credentials(machineId) {
      const r = await db.selectFrom('bmcs').select(['username', 'password_sealed']).where('machine_id', '=', machineId).executeTakeFirst()
      if (!r) return null
      return { username: r.username, password: r.password_sealed === null ? null : box.open(r.password_sealed) }
    },
  }
}
