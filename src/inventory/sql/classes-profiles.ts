import type { Kysely } from 'kysely'
import type { ClassRepository, ProfileRepository } from '../repositories.js'
import type { Arch, InstallDiskSelector, PhaseDeadlineOverrides, Profile } from '../types.js'
import { parseJson } from './json.js'
import type { Database } from './schema.js'

export function createSqlClasses(db: Kysely<Database>): ClassRepository {
  const read = (r: any) => ({
    name: r.name as string,
    description: r.description as string | null,
    selectors: parseJson<string[]>(r.selectors, []),
    profile: r.profile as string | null,
    patches: parseJson<unknown[]>(r.patches, []),
    managedBy: r.managed_by as string | null,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  })
  return {
    async get(name) {
      const r = await db.selectFrom('classes').selectAll().where('name', '=', name).executeTakeFirst()
      return r ? read(r) : null
    },
    async list() {
      return (await db.selectFrom('classes').selectAll().orderBy('name').execute()).map(read)
    },
    async put(cls, now) {
      const row = {
        description: cls.description,
        selectors: JSON.stringify(cls.selectors),
        profile: cls.profile,
        patches: JSON.stringify(cls.patches),
        managed_by: cls.managedBy,
        updated_at: now,
      }
      await db
        .insertInto('classes')
        .values({ name: cls.name, ...row, created_at: now })
        .onConflict((oc) => oc.column('name').doUpdateSet(row))
        .execute()
      return (await this.get(cls.name))!
    },
    async delete(name) {
      const res = await db.deleteFrom('classes').where('name', '=', name).executeTakeFirst()
      return Number(res.numDeletedRows) === 1
    },
  }
}

export function createSqlProfiles(db: Kysely<Database>): ProfileRepository {
  const read = (r: any): Profile => ({
    name: r.name as string,
    description: r.description as string | null,
    talosVersion: r.talos_version as string | null,
    arch: r.arch as Arch | null,
    schematic: r.schematic as string | null,
    kernelArgs: parseJson<string[]>(r.kernel_args, []),
    baseConfig: r.base_config as string | null,
    patches: parseJson<unknown[]>(r.patches, []),
    installDisk: parseJson<InstallDiskSelector | null>(r.install_disk, null),
    deadlines: parseJson<PhaseDeadlineOverrides | null>(r.deadlines, null),
    managedBy: r.managed_by as string | null,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  })
  return {
    async get(name) {
      const r = await db.selectFrom('profiles').selectAll().where('name', '=', name).executeTakeFirst()
      return r ? read(r) : null
    },
    async list() {
      return (await db.selectFrom('profiles').selectAll().orderBy('name').execute()).map(read)
    },
    async put(p, now) {
      const row = {
        description: p.description,
        talos_version: p.talosVersion,
        arch: p.arch,
        schematic: p.schematic,
        kernel_args: JSON.stringify(p.kernelArgs),
        base_config: p.baseConfig,
        patches: JSON.stringify(p.patches),
        install_disk: p.installDisk ? JSON.stringify(p.installDisk) : null,
        deadlines: p.deadlines ? JSON.stringify(p.deadlines) : null,
        managed_by: p.managedBy,
        updated_at: now,
      }
      await db
        .insertInto('profiles')
        .values({ name: p.name, ...row, created_at: now })
        .onConflict((oc) => oc.column('name').doUpdateSet(row))
        .execute()
      return (await this.get(p.name))!
    },
    async delete(name) {
      const res = await db.deleteFrom('profiles').where('name', '=', name).executeTakeFirst()
      return Number(res.numDeletedRows) === 1
    },
  }
}
