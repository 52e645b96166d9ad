import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { NotFoundError, RackbootError } from '../../../errors.js'
import { clusterTalosconfig, createCluster } from '../../../lifecycle/index.js'
import type { ApiDeps } from './context.js'
import { ClusterSchema, clusterView, errors, NameParams, NameSchema, Nullable } from './schemas.js'

const NewClusterBody = Type.Object({
  name: NameSchema,
  endpoint: Type.String({ pattern: '^https://', maxLength: 512, description: 'Kubernetes API endpoint, https://host:port' }),
  talosVersion: Type.String({ maxLength: 32, description: 'Talos version the secrets are made for, e.g. v1.13.9' }),
  kubernetesVersion: Type.Optional(Nullable(Type.String({ maxLength: 32 }))),
  secrets: Type.Optional(Type.String({ maxLength: 256 * 1024, description: 'An existing secrets bundle (talosctl gen secrets YAML) to adopt; generated when absent' })),
}, { additionalProperties: false })

const TalosconfigQuery = Type.Object({
  endpoint: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 256 }), { maxItems: 16, description: 'Talos API endpoints; default: the host of the cluster endpoint' })),
  node: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 256 }), { maxItems: 64 })),
}, { additionalProperties: false })

export const clusterRoutes: FastifyPluginAsync<ApiDeps> = async (base, { inventory }) => {
  const app = base.withTypeProvider<TypeBoxTypeProvider>()

  app.get('/clusters', {
    config: { scope: 'read' },
    schema: { tags: ['clusters'], operationId: 'listClusters', summary: 'Clusters (never their secrets)', response: { 200: Type.Object({ items: Type.Array(ClusterSchema) }), ...errors() } },
  }, async () => {
    const clusters = await inventory.clusters.list()
    return { items: await Promise.all(clusters.map(async (c) => clusterView(c, await inventory.allocations.countByCluster(c.name)))) }
  })

  app.get('/clusters/:name', {
    config: { scope: 'read' },
    schema: { tags: ['clusters'], operationId: 'getCluster', summary: 'One cluster (never its secrets)', params: NameParams, response: { 200: ClusterSchema, ...errors(400, 404) } },
  }, async (request) => {
    const c = await inventory.clusters.get(request.params.name)
    if (!c) throw new NotFoundError('cluster', request.params.name)
    return clusterView(c, await inventory.allocations.countByCluster(c.name))
  })

  app.post('/clusters', {
    config: { scope: 'admin' },
    schema: {
      tags: ['clusters'], operationId: 'createCluster',
      summary: 'Create a cluster: its Talos secrets bundle is generated (or adopted) and sealed at rest',
      body: NewClusterBody, response: { 201: ClusterSchema, ...errors(400, 409) },
    },
  }, async (request, reply) => {
    const b = request.body
    const c = await createCluster(inventory, {
      name: b.name, endpoint: b.endpoint, talosVersion: b.talosVersion, kubernetesVersion: b.kubernetesVersion ?? null,
      ...(b.secrets ? { secrets: b.secrets } : {}),
    })
    reply.status(201).header('location', `/api/v1/clusters/${c.name}`)
    return clusterView(c, 0)
  })

  app.get('/clusters/:name/talosconfig', {
    config: { scope: 'admin' },
    schema: {
      tags: ['clusters'], operationId: 'getTalosconfig', summary: "The cluster's admin talosconfig (a fresh os:admin client certificate)",
      params: NameParams, querystring: TalosconfigQuery,
      response: {
        200: { description: 'talosconfig (YAML)', content: { 'application/yaml': { schema: Type.String() } } },
        ...errors(400, 404),
      },
    },
  }, async (request, reply) => {
    const c = await inventory.clusters.get(request.params.name)
    if (!c) throw new NotFoundError('cluster', request.params.name)
    const yaml = await clusterTalosconfig(inventory, c.name, {
      ...(request.query.endpoint ? { endpoints: request.query.endpoint } : {}),
      ...(request.query.node ? { nodes: request.query.node } : {}),
    })
    reply.type('application/yaml').header('content-disposition', `attachment; filename="talosconfig-${c.name}"`)
    return yaml
  })

  app.delete('/clusters/:name', {
    config: { scope: 'admin' },
    schema: { tags: ['clusters'], operationId: 'deleteCluster', summary: 'Delete a cluster that holds no machines', params: NameParams, response: { 204: Type.Null({ description: 'Deleted' }), ...errors(400, 404, 409) } },
  }, async (request, reply) => {
    const name = request.params.name
    const held = await inventory.allocations.countByCluster(name)
    if (held > 0) throw new RackbootError('RB_ERR_CONFLICT', `cluster '${name}' still holds ${held} machines: release them first`, { details: { machines: held } })
    if (!(await inventory.clusters.delete(name))) throw new NotFoundError('cluster', name)
    return reply.status(204).send(null)
  })
}
