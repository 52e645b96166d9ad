import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { NotFoundError, RackbootError } from '../../../errors.js'
import { MAX_ALLOCATION_COUNT } from '../../../lifecycle/index.js'
import { actor, type ApiDeps } from './context.js'
import { AllocationSchema, allocationView, errors, Named, NameSchema, Nullable, StringEnum } from './schemas.js'

const AllocationBody = Type.Object({
  class: Type.Optional(NameSchema),
  selector: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, description: 'Selector expression, ANDed with the class\'s selectors' })),
  count: Type.Integer({ minimum: 1, maximum: MAX_ALLOCATION_COUNT }),
  cluster: Type.Optional(NameSchema),
  role: Type.Optional(StringEnum(['controlplane', 'worker'], { description: 'Default worker when a cluster is given' })),
  profile: Type.Optional(NameSchema),
  patches: Type.Optional(Type.Array(Type.Union([Type.Object({}, { additionalProperties: true }), Type.Array(Type.Unknown()), Type.String()]), {
    maxItems: 64,
    description: 'Talos config patches for these machines: strategic merge documents (objects or YAML text) or RFC 6902 lists',
  })),
  idempotencyKey: Type.Optional(Type.String({ minLength: 1, maxLength: 255, description: 'Or the Idempotency-Key header' })),
  powerOn: Type.Optional(Type.Boolean({ default: false, description: 'PXE-boot the machines now through their BMCs' })),
}, { additionalProperties: false })

const ListQuery = Type.Object({
  cluster: Type.Optional(NameSchema),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  cursor: Type.Optional(Type.String({ maxLength: 512 })),
}, { additionalProperties: false })

const IdParams = Type.Object({ id: Type.String({ pattern: '^a-[0-9a-z]{1,40}$' }) })

const AllocationPage = Named('AllocationPage', Type.Object({
  items: Type.Array(AllocationSchema),
  next: Nullable(Type.String({ description: 'Cursor of the next page; null at the end' })),
}, { description: 'A page of allocations' }))

export const allocationRoutes: FastifyPluginAsync<ApiDeps> = async (base, deps) => {
  const app = base.withTypeProvider<TypeBoxTypeProvider>()

  app.post('/allocations', {
    config: { scope: 'provision' },
    schema: {
      tags: ['allocations'], operationId: 'allocate',
      summary: 'Take `count` ready machines atomically (all or none), move them to provisioning, optionally power them on',
      description: 'A repeated request with the same idempotency key returns the stored result (header Idempotent-Replayed: true); '
        + 'the same key with a different request is refused with 422. Not enough matching ready machines: 409, nothing taken.',
      headers: Type.Object({ 'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: 255 })) }),
      body: AllocationBody,
      response: { 201: AllocationSchema, ...errors(400, 409, 422) },
    },
  }, async (request, reply) => {
    const b = request.body
    const header = request.headers['idempotency-key']
    if (header && b.idempotencyKey && header !== b.idempotencyKey) {
      throw new RackbootError('RB_ERR_VALIDATION', 'the Idempotency-Key header and the idempotencyKey field differ', { details: { header, field: b.idempotencyKey } })
    }
    const key = b.idempotencyKey ?? header ?? null
    const { allocation, replayed } = await deps.allocator.allocate({
      count: b.count,
      ...(b.class ? { class: b.class } : {}),
      ...(b.selector ? { selector: b.selector } : {}),
      ...(b.cluster ? { cluster: b.cluster } : {}),
      ...(b.role ? { role: b.role } : {}),
      ...(b.profile ? { profile: b.profile } : {}),
      ...(b.patches ? { patches: b.patches } : {}),
      idempotencyKey: key,
      powerOn: b.powerOn ?? false,
    }, `allocated by ${actor(request)}`)
    if (replayed) reply.header('idempotent-replayed', 'true')
    reply.header('location', `/api/v1/allocations/${allocation.id}`)
    reply.status(201)
    return allocationView(allocation)
  })

  app.get('/allocations', {
    config: { scope: 'read' },
    schema: {
      tags: ['allocations'], operationId: 'listAllocations', summary: 'Allocations, oldest first',
      querystring: ListQuery,
      response: { 200: AllocationPage, ...errors(400) },
    },
  }, async (request) => {
    const q = request.query
    const page = await deps.inventory.allocations.list({
      ...(q.cluster ? { cluster: q.cluster } : {}), ...(q.cursor ? { after: q.cursor } : {}), limit: q.limit ?? 100,
    })
    return { items: page.items.map(allocationView), next: page.next }
  })

  app.get('/allocations/:id', {
    config: { scope: 'read' },
    schema: {
      tags: ['allocations'], operationId: 'getAllocation', summary: 'One allocation as it was handed out',
      params: IdParams, response: { 200: AllocationSchema, ...errors(400, 404) },
    },
  }, async (request) => {
    const a = await deps.inventory.allocations.byId(request.params.id)
    if (!a) throw new NotFoundError('allocation', request.params.id)
    return allocationView(a)
  })
}
