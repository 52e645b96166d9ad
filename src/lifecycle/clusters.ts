import { NotFoundError, RackbootError } from '../errors.js'
import type { Cluster, Inventory } from '../inventory/index.js'
import { generateConfig, generateSecretsBundle, parseSecretsBundle, parseTalosVersion, secretsBundleToYaml, talosconfigFor } from '../talos/index.js'

export interface NewCluster {
  name: string
  endpoint: string
  talosVersion: string
  kubernetesVersion?: string | null
  /** An existing secrets bundle (talosctl gen secrets YAML) to adopt; generated when absent. */
  secrets?: string
}

/** Creates a cluster: a Talos secrets bundle generated with node:crypto (or adopted), sealed at rest. */
export async function createCluster(inventory: Inventory, input: NewCluster, now = Date.now()): Promise<Cluster> {
  if (await inventory.clusters.get(input.name)) throw new RackbootError('RB_ERR_CONFLICT', `a cluster named '${input.name}' already exists`, { details: { name: input.name } })
  parseTalosVersion(input.talosVersion)
  const secrets = input.secrets ? parseSecretsBundle(input.secrets) : await generateSecretsBundle({ talosVersion: input.talosVersion })
  // Generating once checks the endpoint, the versions and the bundle the way every machine config will need them.
  generateConfig({
    secrets, clusterName: input.name, endpoint: input.endpoint, talosVersion: input.talosVersion, role: 'controlplane',
    ...(input.kubernetesVersion ? { kubernetesVersion: input.kubernetesVersion } : {}),
  })
  return inventory.clusters.create({
    name: input.name, endpoint: input.endpoint, talosVersion: input.talosVersion, kubernetesVersion: input.kubernetesVersion ?? null,
  }, secretsBundleToYaml(secrets), now)
}

/** The cluster's admin talosconfig: a fresh os:admin client certificate signed by its OS CA. */
export async function clusterTalosconfig(inventory: Inventory, name: string, options: { endpoints?: string[]; nodes?: string[] } = {}): Promise<string> {
  const c = await inventory.clusters.get(name)
  const secrets = c ? await inventory.clusters.secrets(c.name) : null
  if (!c || !secrets) throw new NotFoundError('cluster', name)
  const endpoints = options.endpoints ?? [new URL(c.endpoint).hostname.replace(/^\[|\]$/g, '')]
  const { yaml } = await talosconfigFor(parseSecretsBundle(secrets), { contextName: c.name, endpoints, ...(options.nodes ? { nodes: options.nodes } : {}) })
  return yaml
}
