import type { FastifyPluginAsync, FastifySchemaCompiler } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Ajv as AjvType, AnySchema } from 'ajv'
import { createRequire } from 'node:module'
import { lazyCompilerFor } from '../../lazy-schemas.js'
import Type from 'typebox'
import { openApiRoutes, registerOpenApi } from '../../openapi.js'
import { allocationRoutes } from './allocations.js'
import { bmcRoutes } from './bmc.js'
import { classRoutes } from './classes.js'
import { clusterRoutes } from './clusters.js'
import { machineRefHook, type ApiDeps } from './context.js'
import { eventRoutes } from './events.js'
import { machineRoutes } from './machines.js'
import { profileRoutes } from './profiles.js'
import { powerRoutes } from './power.js'
import { logRoutes } from './logs.js'
import { overviewRoutes } from './overview.js'
import { tokenRoutes } from './tokens.js'
import { inventoryRoutes } from './inventory.js'
import { assetRoutes } from './assets.js'
import { classMatchRoutes } from './class-match.js'
import { errors, Named } from './schemas.js'

// Module scope: named schemas are registered (registerOpenApi) before any route is.
const TokenSchema = Named('Token', Type.Object({
  id: Type.String(), name: Type.String(), scopes: Type.Array(Type.String()), expiresAt: Type.Union([Type.String(), Type.Null()]),
}, { description: 'An API token (never its secret)' }))

export type { ApiDeps } from './context.js'
export type { EventStreamOptions } from './event-hub.js'

/**
 * The versioned API, registered under /api/v1: every route validated against its TypeBox schema, authenticated
 * by a bearer token with the scope the route names (the machines' own endpoints, such as the agent report, live
 * elsewhere and are not affected), and described in the generated OpenAPI document.
 */
export const apiRoutes: FastifyPluginAsync<ApiDeps> = async (app, options) => {
  // The route groups get the dependencies only: passing the register options on would prefix them twice.
  const { prefix: _prefix, ...deps } = options as ApiDeps & { prefix?: string }
  // Strict bodies: unknown fields and wrong types are errors, not silently dropped or coerced. Query strings and
  // path parameters are text, so those coerce (and a single value becomes a one-element list).
  let ajvs: { strict: AjvType; coercing: AjvType } | null = null
  const built = () => {
    if (ajvs) return ajvs
    const { Ajv } = createRequire(import.meta.url)('ajv') as typeof import('ajv')
    return (ajvs = {
      strict: new Ajv({ allErrors: false, coerceTypes: false, useDefaults: true, removeAdditional: false, strict: false, validateFormats: false }),
      coercing: new Ajv({ allErrors: false, coerceTypes: 'array', useDefaults: true, removeAdditional: false, strict: false, validateFormats: false }),
    })
  }
  app.setValidatorCompiler(lazyCompilerFor(app, ({ schema, httpPart }: { schema: AnySchema; httpPart?: string }) => (httpPart === 'body' ? built().strict : built().coercing).compile(schema)) as FastifySchemaCompiler<AnySchema>)
  app.addHook('onRequest', deps.auth.hook)
  // /machines/:id/... : the machine named (id, name, MAC, UUID or serial) is resolved once, after auth and validation.
  app.addHook('preHandler', machineRefHook(deps.inventory))

  await registerOpenApi(app, { version: deps.version })
  await app.register(openApiRoutes)
  await app.register(machineRoutes, deps)
  await app.register(bmcRoutes, deps)
  await app.register(allocationRoutes, deps)
  await app.register(eventRoutes, deps)
  await app.register(classRoutes, deps)
  await app.register(profileRoutes, deps)
  await app.register(clusterRoutes, deps)
  await app.register(overviewRoutes, deps)
  await app.register(classMatchRoutes, deps)
  await app.register(tokenRoutes, deps)
  await app.register(inventoryRoutes, deps)
  await app.register(assetRoutes, deps)
  if (deps.power) await app.register(powerRoutes, { ...deps, power: deps.power })
  if (deps.kernelLogs) await app.register(logRoutes, { ...deps, logStore: deps.kernelLogs.store, peersOf: deps.kernelLogs.peersOf })

  app.withTypeProvider<TypeBoxTypeProvider>().get('/whoami', {
    config: { scope: 'read' },
    schema: {
      tags: ['meta'], operationId: 'whoami', summary: 'The token this request was made with',
      response: {
        200: TokenSchema,
        ...errors(),
      },
    },
  }, async (request) => {
    const t = request.apiToken!
    return { id: t.id, name: t.name, scopes: t.scopes, expiresAt: t.expiresAt === null ? null : new Date(t.expiresAt).toISOString() }
  })
}
