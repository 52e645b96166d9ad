import { readFileSync, writeFileSync } from 'node:fs'
import { clusterTalosconfig, createCluster } from '../../lifecycle/index.js'
import { withContext } from '../context.js'
import { printJson, type GlobalOptions } from '../common.js'
import { checkEndpoint, printClusters } from '../clusters.js'

// `rackboot clusters ... --data-dir DIR`: on a data directory's database.

type Options = GlobalOptions & { endpoint?: string | string[]; talosVersion?: string; kubernetesVersion?: string; secrets?: string; out?: string; node?: string[] }

export async function create(name: string, o: Options): Promise<number> {
  const endpoint = checkEndpoint(o.endpoint)
  const secrets = o.secrets ? readFileSync(o.secrets, 'utf8') : undefined
  return withContext(o, async ({ inventory }) => {
    const c = await createCluster(inventory, {
      name, endpoint, talosVersion: o.talosVersion!,
      ...(o.kubernetesVersion ? { kubernetesVersion: o.kubernetesVersion } : {}),
      ...(secrets ? { secrets } : {}),
    })
    if (o.json) printJson(c)
    else console.log(`cluster ${c.name}: endpoint ${c.endpoint}, Talos ${c.talosVersion}; secrets generated and sealed in the database`)
    return 0
  }, { create: true })
}

export async function list(o: Options): Promise<number> {
  return withContext(o, async ({ inventory }) => {
    const clusters = await inventory.clusters.list()
    if (o.json) printJson(clusters)
    else printClusters(clusters)
    return 0
  }, { create: false })
}

export async function talosconfig(name: string, o: Options): Promise<number> {
  const endpoints = Array.isArray(o.endpoint) ? o.endpoint : o.endpoint ? [o.endpoint] : undefined
  return withContext(o, async ({ inventory }) => {
    const yaml = await clusterTalosconfig(inventory, name, { ...(endpoints ? { endpoints } : {}), ...(o.node ? { nodes: o.node } : {}) })
    if (o.out) {
      writeFileSync(o.out, yaml, { mode: 0o600 })
      console.log(`wrote ${o.out}`)
    } else process.stdout.write(yaml)
    return 0
  }, { create: false })
}
