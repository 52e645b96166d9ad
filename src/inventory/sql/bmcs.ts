import { sql, type Kysely, type Selectable } from 'kysely'
import type { SecretBox } from '../secret-box.js'
import type { BmcRepository } from '../repositories.js'
import type { Bmc, BmcAuth, BmcPrivilege, BmcType, BootMethod, IpmiCipherSuite } from '../types.js'
import { databaseNow, onCallerClock } from './dialect.js'
import type { BmcsTable, Database } from './schema.js'

function suitesOf(text: string | null): IpmiCipherSuite[] | null {
  if (!text) return null
  try {
    const v = JSON.parse(text) as unknown
    return Array.isArray(v) ? v.filter((s): s is IpmiCipherSuite => s === 3 || s === 17) : null
  } catch {
    return null
  }
}

function toBmc(r: Selectable<BmcsTable>, checkedAt: (stored: number | string) => number = Number): Bmc {
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
    systemId: r.system_id,
    caPem: r.ca_pem,
    auth: (r.auth ?? 'auto') as BmcAuth,
    cipherSuites: suitesOf(r.cipher_suites),
    privilege: r.privilege as BmcPrivilege | null,
    bootVerify: r.boot_verify as 'strict' | 'device' | null,
    bootMethod: (r.boot_method ?? 'pxe') as BootMethod,
    hasKg: r.kg_sealed !== null,
    kgRef: r.kg_ref,
    power: r.power_checked_at === null ? null : {
      state: r.power_state as 'on' | 'off' | null, checkedAt: checkedAt(r.power_checked_at), error: r.power_error,
    },
    clearOverrideAfterBoot: r.clear_override_after_boot === 1,
  }
}

// power_checked_at (issue 16): instances sharing a database tell from it whether another one read a BMC's power within
// the poll interval (power/manager.ts, readElsewhere), comparing it with their own now. Recorded with the caller's
// `now`, it holds the database's time (databaseNow: PostgreSQL's clock, not the writing host's) and is read with
// `now` onto the reader's clock, as BMC leases are (bmc-leases.ts); without `now` it is stored and read as given.
// A read this handle recorded reads back as exactly the time it was given: moved onto the clock it would be off by
// the two statements' latencies, and the power manager tells its own reads from other instances' by that time.

export function createSqlBmcs(db: Kysely<Database>, box: SecretBox): BmcRepository {
  /** Per machine, the power_checked_at this handle last recorded with `now`, and the caller's time it was given as. */
  const recorded = new Map<string, { stored: number; checkedAt: number }>()
  return {
    async get(machineId, now) {
      // One read whether or not the caller gives its clock, as bmc-leases.ts reads.
      const r = await db.selectFrom('bmcs').selectAll().select(databaseNow(db, now ?? 0).as('db_now')).where('machine_id', '=', machineId).executeTakeFirst()
      if (!r) return null
      if (now === undefined) return toBmc(r)
      const own = recorded.get(machineId)
      return toBmc(r, (t) => (own && own.stored === Number(t) ? own.checkedAt : onCallerClock(t, { now, dbNow: r.db_now })))
    },
    async put(machineId, input) {
      const existing = await db.selectFrom('bmcs').selectAll().where('machine_id', '=', machineId).executeTakeFirst()
      // Fields the input leaves out keep their stored value (secrets and per-BMC options alike).
      const keep = <T>(given: T | undefined, stored: T): T => (given === undefined ? stored : given)
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
        system_id: keep(input.systemId, existing?.system_id ?? null),
        ca_pem: keep(input.caPem, existing?.ca_pem ?? null),
        auth: keep(input.auth, (existing?.auth ?? 'auto') as BmcAuth),
        cipher_suites: input.cipherSuites === undefined ? existing?.cipher_suites ?? null
          : input.cipherSuites === null ? null : JSON.stringify(input.cipherSuites),
        privilege: keep(input.privilege, (existing?.privilege ?? null) as BmcPrivilege | null),
        kg_sealed: input.kg === undefined ? existing?.kg_sealed ?? null : input.kg === null ? null : box.seal(input.kg),
        kg_ref: input.kgRef ?? null,
        boot_verify: keep(input.bootVerify, (existing?.boot_verify ?? null) as 'strict' | 'device' | null),
        boot_method: keep(input.bootMethod, (existing?.boot_method ?? 'pxe') as BootMethod),
      }
      await db
        .insertInto('bmcs')
        .values({ machine_id: machineId, ...row })
        .onConflict((oc) => oc.column('machine_id').doUpdateSet(row))
        .execute()
      return (await this.get(machineId))!
    },
    async remove(machineId) {
      recorded.delete(machineId)
      const res = await db.deleteFrom('bmcs').where('machine_id', '=', machineId).executeTakeFirst()
      return Number(res.numDeletedRows) === 1
    },
    async credentials(machineId) {
      const r = await db.selectFrom('bmcs').select(['username', 'password_sealed', 'kg_sealed'])
        .where('machine_id', '=', machineId).executeTakeFirst()
      if (!r) return null
      return {
        username: r.username,
        password: r.password_sealed === null ? null : box.open(r.password_sealed),
        kg: r.kg_sealed === null ? null : Buffer.from(box.open(r.kg_sealed), 'hex'),
      }
    },
    async many(machineIds) {
      const out = new Map<string, Bmc>()
      // SQLite binds at most 32766 variables; a page is far below, larger asks go in slices.
      for (let i = 0; i < machineIds.length; i += 1000) {
        const slice = machineIds.slice(i, i + 1000)
        if (slice.length === 0) break
        for (const r of await db.selectFrom('bmcs').selectAll().where('machine_id', 'in', slice).execute()) out.set(r.machine_id, toBmc(r))
      }
      return out
    },
    async machineIds() {
      const rows = await db.selectFrom('bmcs').select('machine_id').orderBy('machine_id').execute()
      return rows.map((r) => r.machine_id)
    },
    async recordPower(machineId, power, now) {
      const checkedAt = now === undefined ? power.checkedAt : sql<number>`${databaseNow(db, now)} - ${Math.round(now - power.checkedAt)}`
      const row = await db.updateTable('bmcs')
        .set({ power_state: power.state, power_checked_at: checkedAt, power_error: power.error })
        .where('machine_id', '=', machineId).returning('power_checked_at').executeTakeFirst()
      if (now !== undefined && row?.power_checked_at != null) recorded.set(machineId, { stored: Number(row.power_checked_at), checkedAt: power.checkedAt })
    },
    async setClearOverrideAfterBoot(machineId, value) {
      await db.updateTable('bmcs').set({ clear_override_after_boot: value ? 1 : 0 }).where('machine_id', '=', machineId).execute()
    },
  }
}
