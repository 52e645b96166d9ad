import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Type, { type Static } from 'typebox'
import { NotFoundError, RackbootError } from '../../../errors.js'
import { checkDiskSelector, DiskSelectorSchema, PhaseDeadlinesSchema, type Inventory, type Profile } from '../../../inventory/index.js'
import { parseConfigDocuments, parseTalosVersion } from '../../../talos/index.js'
import { checkPatches } from './classes.js'
import type { ApiDeps } from './context.js'
import { errors, NameParams, NameSchema, Nullable, ProfileSchema, profileView, refuseValue, StringEnumOrNull } from './schemas.js'

const ProfileFields = {
  description: Type.Optional(Nullable(Type.String({ maxLength: 1024 }))),
  talosVersion: Type.Optional(Nullable(Type.String({ maxLength: 32, description: 'e.g. v1.13.9' }))),
  arch: Type.Optional(StringEnumOrNull(['amd64', 'arm64'])),
  schematic: Type.Optional(Nullable(Type.String({ pattern: '^[0-9a-f]{64}$', description: 'Image Factory schematic ID' }))),
  kernelArgs: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 512 }), { maxItems: 64 })),
  baseConfig: Type.Optional(Nullable(Type.String({ maxLength: 1024 * 1024, description: 'Talos machine config (YAML); null: generated from the cluster of an allocation' }))),
  patches: Type.Optional(Type.Array(Type.Union([Type.Object({}, { additionalProperties: true }), Type.Array(Type.Unknown()), Type.String()]), { maxItems: 64 })),
  installDisk: Type.Optional(Nullable(DiskSelectorSchema)),
  deadlines: Type.Optional(Nullable(PhaseDeadlinesSchema)),
}
const ProfileBody = Type.Object(ProfileFields, { additionalProperties: false })
const NewProfileBody = Type.Object({ name: NameSchema, ...ProfileFields }, { additionalProperties: false })

async function write(inventory: Inventory, name: string, b: Static<typeof ProfileBody>, missingAssets?: ApiDeps['missingAssets']): Promise<Profile> {
  if (b.talosVersion) parseTalosVersion(b.talosVersion)
  const missing = b.talosVersion ? missingAssets?.({ talosVersion: b.talosVersion, arch: b.arch ?? null, schematic: b.schematic ?? null }) : null
  if (missing) throw new RackbootError('RB_ERR_VALIDATION', `profile ${name}: ${missing}`, { statusCode: 422, details: { reason: 'missing-assets' } })
  if (b.baseConfig) {
    try {
      parseConfigDocuments(b.baseConfig)
    } catch (err) {
      throw new RackbootError('RB_ERR_VALIDATION', `baseConfig: ${(err as Error).message}`, { details: (err as RackbootError).details ?? null })
    }
  }
  checkPatches(b.patches ?? [])
  if (b.installDisk) refuseValue('installDisk', checkDiskSelector(b.installDisk))
  return inventory.profiles.put({
    name, description: b.description ?? null, talosVersion: b.talosVersion ?? null, arch: b.arch ?? null,
    schematic: b.schematic ?? null, kernelArgs: b.kernelArgs ?? [], baseConfig: b.baseConfig ?? null, patches: b.patches ?? [],
    installDisk: b.installDisk ?? null, deadlines: b.deadlines ?? null, managedBy: null,
  }, Date.now())
}

export const profileRoutes: FastifyPluginAsync<ApiDeps> = async (base, { inventory, missingAssets }) => {
  const app = base.withTypeProvider<TypeBoxTypeProvider>()

  app.get('/profiles', {
    config: { scope: 'read' },
    schema: { tags: ['profiles'], operationId: 'listProfiles', summary: 'Profiles (what gets installed)', response: { 200: Type.Object({ items: Type.Array(ProfileSchema) }), ...errors() } },
  }, async () => ({ items: (await inventory.profiles.list()).map(profileView) }))

  app.get('/profiles/:name', {
    config: { scope: 'read' },
    schema: { tags: ['profiles'], operationId: 'getProfile', summary: 'One profile', params: NameParams, response: { 200: ProfileSchema, ...errors(400, 404) } },
  }, async (request) => {
    const p = await inventory.profiles.get(request.params.name)
    if (!p) throw new NotFoundError('profile', request.params.name)
    return profileView(p)
  })

  app.post('/profiles', {
    config: { scope: 'admin' },
    schema: { tags: ['profiles'], operationId: 'createProfile', summary: 'Create a profile', body: NewProfileBody, response: { 201: ProfileSchema, ...errors(400, 409) } },
  }, async (request, reply) => {
    const { name, ...rest } = request.body
    if (await inventory.profiles.get(name)) throw new RackbootError('RB_ERR_CONFLICT', `a profile named '${name}' already exists`, { details: { name } })
    reply.status(201).header('location', `/api/v1/profiles/${name}`)
    return profileView(await write(inventory, name, rest, missingAssets))
  })

  app.put('/profiles/:name', {
    config: { scope: 'admin' },
    schema: { tags: ['profiles'], operationId: 'putProfile', summary: 'Create or replace a profile', params: NameParams, body: ProfileBody, response: { 200: ProfileSchema, ...errors(400) } },
  }, async (request) => profileView(await write(inventory, request.params.name, request.body, missingAssets)))

  app.delete('/profiles/:name', {
    config: { scope: 'admin' },
    schema: { tags: ['profiles'], operationId: 'deleteProfile', summary: 'Delete a profile no class uses', params: NameParams, response: { 204: Type.Null({ description: 'Deleted' }), ...errors(400, 404, 409) } },
  }, async (request, reply) => {
    const name = request.params.name
    const users = (await inventory.classes.list()).filter((c) => c.profile === name).map((c) => c.name)
    if (users.length > 0) throw new RackbootError('RB_ERR_CONFLICT', `profile '${name}' is used by class ${users.join(', ')}`, { details: { classes: users } })
    if (!(await inventory.profiles.delete(name))) throw new NotFoundError('profile', name)
    return reply.status(204).send(null)
  })
}
