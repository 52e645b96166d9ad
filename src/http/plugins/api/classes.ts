import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Type, { type Static } from 'typebox'
import { NotFoundError, RackbootError } from '../../../errors.js'
import type { Inventory, MachineClass } from '../../../inventory/index.js'
import { compileSelector } from '../../../matching/index.js'
import { loadPatch } from '../../../talos/index.js'
import type { ApiDeps } from './context.js'
import { ClassSchema, classView, errors, NameParams, NameSchema, Nullable } from './schemas.js'

const Patches = Type.Array(Type.Union([Type.Object({}, { additionalProperties: true }), Type.Array(Type.Unknown()), Type.String()]), {
  maxItems: 64, description: 'Talos config patches: strategic merge documents (objects or YAML text) or RFC 6902 lists',
})

const ClassFields = {
  description: Type.Optional(Nullable(Type.String({ maxLength: 1024 }))),
  selectors: Type.Array(Type.String({ minLength: 1, maxLength: 4096 }), { maxItems: 64, description: 'Selector expressions, all of which must hold' }),
  profile: Type.Optional(Nullable(NameSchema)),
  patches: Type.Optional(Patches),
}
const ClassBody = Type.Object(ClassFields, { additionalProperties: false })
const NewClassBody = Type.Object({ name: NameSchema, ...ClassFields }, { additionalProperties: false })

/** Checks patches before they are stored: a bad one would only show when a machine asks for its config. */
export function checkPatches(patches: readonly unknown[]): void {
  patches.forEach((p, i) => {
    try {
      loadPatch(p as never, `patches[${i}]`)
    } catch (err) {
      throw new RackbootError('RB_ERR_VALIDATION', (err as Error).message, { details: { index: i } })
    }
  })
}

async function write(inventory: Inventory, name: string, body: Static<typeof ClassBody>): Promise<MachineClass> {
  body.selectors.forEach((s, i) => {
    try {
      compileSelector(s)
    } catch (err) {
      const e = err as RackbootError
      throw new RackbootError('RB_ERR_VALIDATION', `selectors[${i}]: ${e.message}`, { details: { index: i, ...(e.details as object) } })
    }
  })
  if (body.profile && !(await inventory.profiles.get(body.profile))) {
    throw new RackbootError('RB_ERR_VALIDATION', `no profile named '${body.profile}'`, { statusCode: 422, details: { profile: body.profile } })
  }
  checkPatches(body.patches ?? [])
  // Written through the API, the class is no longer the declarative inventory's to prune.
  return inventory.classes.put({
    name, description: body.description ?? null, selectors: body.selectors, profile: body.profile ?? null,
    patches: body.patches ?? [], managedBy: null,
  }, Date.now())
}

export const classRoutes: FastifyPluginAsync<ApiDeps> = async (base, { inventory }) => {
  const app = base.withTypeProvider<TypeBoxTypeProvider>()

  app.get('/classes', {
    config: { scope: 'read' },
    schema: { tags: ['classes'], operationId: 'listClasses', summary: 'Machine classes', response: { 200: Type.Object({ items: Type.Array(ClassSchema) }), ...errors() } },
  }, async () => ({ items: (await inventory.classes.list()).map(classView) }))

  app.get('/classes/:name', {
    config: { scope: 'read' },
    schema: { tags: ['classes'], operationId: 'getClass', summary: 'One class', params: NameParams, response: { 200: ClassSchema, ...errors(400, 404) } },
  }, async (request) => {
    const c = await inventory.classes.get(request.params.name)
    if (!c) throw new NotFoundError('class', request.params.name)
    return classView(c)
  })

  app.post('/classes', {
    config: { scope: 'admin' },
    schema: { tags: ['classes'], operationId: 'createClass', summary: 'Create a class', body: NewClassBody, response: { 201: ClassSchema, ...errors(400, 409, 422) } },
  }, async (request, reply) => {
    const { name, ...rest } = request.body
    if (await inventory.classes.get(name)) throw new RackbootError('RB_ERR_CONFLICT', `a class named '${name}' already exists`, { details: { name } })
    reply.status(201).header('location', `/api/v1/classes/${name}`)
    return classView(await write(inventory, name, rest))
  })

  app.put('/classes/:name', {
    config: { scope: 'admin' },
    schema: { tags: ['classes'], operationId: 'putClass', summary: 'Create or replace a class', params: NameParams, body: ClassBody, response: { 200: ClassSchema, ...errors(400, 422) } },
  }, async (request) => classView(await write(inventory, request.params.name, request.body)))

  app.delete('/classes/:name', {
    config: { scope: 'admin' },
    schema: { tags: ['classes'], operationId: 'deleteClass', summary: 'Delete a class', params: NameParams, response: { 204: Type.Null({ description: 'Deleted' }), ...errors(400, 404) } },
  }, async (request, reply) => {
    if (!(await inventory.classes.delete(request.params.name))) throw new NotFoundError('class', request.params.name)
    return reply.status(204).send(null)
  })
}
