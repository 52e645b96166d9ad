import { readFileSync, writeFileSync } from 'node:fs'
import { clusterTalosconfig, createCluster } from '../lifecycle/index.js'
import { renderTable } from './table.js'
import { parse, printJson, UsageError, withContext } from './context.js'

export const CLUSTERS_USAGE = `rackboot clusters <command>

  create NAME --endpoint https://HOST:6443 --talos-version vX.Y.Z [--kubernetes-version X.Y.Z] [--secrets FILE]
                           generate (or adopt) the cluster's Talos secrets, sealed at rest; machines allocated
                           to it get controlplane/worker configs rendered from them
  list [--json]
  talosconfig NAME [--out FILE] [--endpoint HOST]...   the admin talosconfig (a fresh os:admin certificate)`

export async function clustersCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args
  const { values, positionals } = parse(rest, {
    endpoint: { type: 'string', multiple: true },
    'talos-version': { type: 'string' },
    'kubernetes-version': { type: 'string' },
    secrets: { type: 'string' },
    out: { type: 'string', short: 'o' },
  })
  if (!sub || values.help) {
    console.log(CLUSTERS_USAGE)
    return sub ? 0 : 2
  }
  return withContext(values, async ({ inventory }) => {
    switch (sub) {
      case 'create': {
        const [name] = positionals
        const endpoint = values.endpoint?.[0]
        if (!name || !endpoint || !values['talos-version']) throw new UsageError(`clusters create needs NAME, --endpoint and --talos-version\n\n${CLUSTERS_USAGE}`)
        if (!/^https:\/\/[^/]+:\d+\/?$/.test(endpoint)) throw new UsageError(`--endpoint must look like https://HOST:6443, got '${endpoint}'`)
        const c = await createCluster(inventory, {
          name, endpoint, talosVersion: values['talos-version'],
          ...(values['kubernetes-version'] ? { kubernetesVersion: values['kubernetes-version'] } : {}),
          ...(values.secrets ? { secrets: readFileSync(values.secrets, 'utf8') } : {}),
        })
        if (values.json) printJson(c)
        else console.log(`cluster ${c.name}: endpoint ${c.endpoint}, Talos ${c.talosVersion}; secrets generated and sealed in the database`)
        return 0
      }
      case 'list': {
        const clusters = await inventory.clusters.list()
        if (values.json) printJson(clusters)
        else console.log(renderTable(clusters, [
          { header: 'name', value: (c) => c.name },
          { header: 'endpoint', value: (c) => c.endpoint },
          { header: 'talos', value: (c) => c.talosVersion },
          { header: 'kubernetes', value: (c) => c.kubernetesVersion },
        ]))
        return 0
      }
      case 'talosconfig': {
        const [name] = positionals
        if (!name) throw new UsageError('clusters talosconfig needs a NAME')
        const yaml = await clusterTalosconfig(inventory, name, values.endpoint ? { endpoints: values.endpoint } : {})
        if (values.out) {
          writeFileSync(values.out, yaml, { mode: 0o600 })
          console.log(`wrote ${values.out}`)
        } else process.stdout.write(yaml)
        return 0
      }
      default:
        throw new UsageError(`unknown clusters command '${sub}'\n\n${CLUSTERS_USAGE}`)
    }
  })
}
