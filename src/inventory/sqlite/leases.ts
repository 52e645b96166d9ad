import { CompiledQuery, type Kysely, type Selectable } from 'kysely'
import { RackbootError } from '../../errors.js'
import type { LeaseRepository, ReservationRepository } from '../repositories.js'
import type { Lease, LeaseState, Reservation } from '../types.js'
import type { Database, LeasesTable, ReservationsTable } from './schema.js'

function toLease(r: Selectable<LeasesTable>): Lease {
  return {
    ip: r.ip,
    mac: r.mac,
    clientId: r.client_id,
    subnet: r.subnet,
    state: r.state as LeaseState,
    hostname: r.hostname,
    expiresAt: Number(r.expires_at),
    updatedAt: Number(r.updated_at),
  }
}

/** Leases plus a batch write: DHCP commits the leases of a burst of ACKs in one statement (the boot-storm path). */
export type SqliteLeaseRepository = LeaseRepository & { putMany(leases: Lease[]): Promise<void> }

const BATCH = 500

function leaseRow(l: Lease) {
  return { ip: l.ip, mac: l.mac, client_id: l.clientId, subnet: l.subnet, state: l.state, hostname: l.hostname, expires_at: l.expiresAt, updated_at: l.updatedAt }
}

export function createSqliteLeases(db: Kysely<Database>): SqliteLeaseRepository {
  // The one-row upsert is DHCP's hot path (every ACK): compile it once and run it with new parameters, instead of
  // building and compiling the query per lease. It still goes through Kysely, so it waits for (and joins) the
  // connection like every other query, transactions included.
  let single: CompiledQuery | null = null
  const singleUpsert = (l: Lease) => {
    single ??= upsertQuery([l]).compile()
    const r = leaseRow(l)
    return CompiledQuery.raw(single.sql, [r.ip, r.mac, r.client_id, r.subnet, r.state, r.hostname, r.expires_at, r.updated_at])
  }
  function upsertQuery(list: Lease[]) {
    return db
      .insertInto('leases')
      .values(list.map(leaseRow))
      .onConflict((oc) =>
        oc.column('ip').doUpdateSet((eb) => ({
          mac: eb.ref('excluded.mac'),
          client_id: eb.ref('excluded.client_id'),
          subnet: eb.ref('excluded.subnet'),
          state: eb.ref('excluded.state'),
          hostname: eb.ref('excluded.hostname'),
          expires_at: eb.ref('excluded.expires_at'),
          updated_at: eb.ref('excluded.updated_at'),
        })),
      )
  }
  async function upsert(list: Lease[]): Promise<void> {
    if (list.length === 1) {
      await db.executeQuery(singleUpsert(list[0]!))
      return
    }
    // One multi-row upsert per batch: per-statement overhead, not the commit, is what lease writes pay.
    for (let i = 0; i < list.length; i += BATCH) await upsertQuery(list.slice(i, i + BATCH)).execute()
  }
  return {
    putMany: upsert,
    async byIp(ip) {
      const r = await db.selectFrom('leases').selectAll().where('ip', '=', ip).executeTakeFirst()
      return r ? toLease(r) : null
    },
    async byClient(mac, clientId) {
      let q = db.selectFrom('leases').selectAll()
      q = clientId ? q.where('client_id', '=', clientId) : q.where('mac', '=', mac)
      const r = await q.orderBy('updated_at', 'desc').limit(1).executeTakeFirst()
      return r ? toLease(r) : null
    },
    async activeIn(subnet, now) {
      const rows = await db
        .selectFrom('leases')
        .selectAll()
        .where('subnet', '=', subnet)
        .where('state', 'in', ['offered', 'bound'])
        .where('expires_at', '>', now)
        .execute()
      return rows.map(toLease)
    },
    async list(filter = {}) {
      let q = db.selectFrom('leases').selectAll()
      if (filter.subnet) q = q.where('subnet', '=', filter.subnet)
      if (filter.state) q = q.where('state', '=', filter.state)
      if (filter.mac) q = q.where('mac', '=', filter.mac)
      return (await q.orderBy('ip').execute()).map(toLease)
    },
    async put(lease) {
      await upsert([lease])
    },
    async remove(ip) {
      const res = await db.deleteFrom('leases').where('ip', '=', ip).executeTakeFirst()
      return Number(res.numDeletedRows) === 1
    },
    async expire(now) {
      const res = await db
        .updateTable('leases')
        .set({ state: 'expired', updated_at: now })
        .where('state', 'in', ['offered', 'bound'])
        .where('expires_at', '<=', now)
        .executeTakeFirst()
      return Number(res.numUpdatedRows)
    },
  }
}

function toReservation(r: Selectable<ReservationsTable>): Reservation {
  return { ip: r.ip, mac: r.mac, clientId: r.client_id, hostname: r.hostname, machineId: r.machine_id }
}

export function createSqliteReservations(db: Kysely<Database>): ReservationRepository {
  async function insert(rows: Reservation[]): Promise<void> {
    if (rows.length === 0) return
    try {
      await db
        .insertInto('reservations')
        .values(rows.map((r) => ({ ip: r.ip, mac: r.mac, client_id: r.clientId, hostname: r.hostname, machine_id: r.machineId })))
        .execute()
    } catch (cause) {
      throw new RackbootError('RB_ERR_CONFLICT', `a reserved address, MAC or client id is already reserved elsewhere (${rows.map((r) => r.ip).join(', ')})`, { cause })
    }
  }
  return {
    async list() {
      return (await db.selectFrom('reservations').selectAll().orderBy('ip').execute()).map(toReservation)
    },
    async byMac(mac) {
      const r = await db.selectFrom('reservations').selectAll().where('mac', '=', mac).executeTakeFirst()
      return r ? toReservation(r) : null
    },
    async byClientId(clientId) {
      const r = await db.selectFrom('reservations').selectAll().where('client_id', '=', clientId).executeTakeFirst()
      return r ? toReservation(r) : null
    },
    async byIp(ip) {
      const r = await db.selectFrom('reservations').selectAll().where('ip', '=', ip).executeTakeFirst()
      return r ? toReservation(r) : null
    },
    async setForMachine(machineId, reservations) {
      await db.deleteFrom('reservations').where('machine_id', '=', machineId).execute()
      await insert(reservations.map((r) => ({ ...r, machineId })))
    },
    async put(reservation) {
      await db.deleteFrom('reservations').where('ip', '=', reservation.ip).execute()
      await insert([reservation])
    },
    async remove(ip) {
      const res = await db.deleteFrom('reservations').where('ip', '=', ip).executeTakeFirst()
      return Number(res.numDeletedRows) === 1
    },
  }
}
