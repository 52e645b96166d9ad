// `rackboot clusters create|list|talosconfig` through the API, or a data directory's database with --data-dir.
import { readFileSync, writeFileSync } from 'node:fs'
import { connect } from './client.js'
import { palette, printJson, UsageError, type GlobalOptions } from './common.js'
import { renderTable } from './table.js'

type Options = GlobalOptions & { endpoint?: string | string[]; talosVersion?: string; kubernetesVersion?: string; secrets?: string; out?: string; node?: string[] }

const local = () => import('./local/clusters.js')

export function checkEndpoint(endpoint: string | string[] | undefined): string {
  const e = Array.isArray(endpoint) ? endpoint[0] : endpoint
  if (!e || !/^https:\/\/[^/]+:\d+\/?$/.test(e)) throw new UsageError(`--endpoint must look like https://HOST:6443, got '${e ?? ''}'`)
  return e
}

export function printClusters(clusters: readonly { name: string; endpoint: string; talosVersion: string; kubernetesVersion: string | null; machines?: number }[]): void {
  console.log(renderTable(clusters, [
    { header: 'name', value: (c) => c.name },
    { header: 'endpoint', value: (c) => c.endpoint },
    { header: 'talos', value: (c) => c.talosVersion },
    { header: 'kubernetes', value: (c) => c.kubernetesVersion },
    ...(clusters.some((c) => c.machines !== undefined) ? [{ header: 'machines', value: (c: { machines?: number }) => c.machines, align: 'right' as const }] : []),
  ], { palette: palette() }))
}

export async function create(name: string, o: Options): Promise<number> {
  if (o.dataDir) return (await local()).create(name, o)
  const endpoint = checkEndpoint(o.endpoint)
  const secrets = o.secrets ? readFileSync(o.secrets, 'utf8') : undefined
  const api = await connect(o)
  const c = await api.post<{ name: string; endpoint: string; talosVersion: string }>('/clusters', {
    name, endpoint, talosVersion: o.talosVersion, ...(o.kubernetesVersion ? { kubernetesVersion: o.kubernetesVersion } : {}), ...(secrets ? { secrets } : {}),
  }, { scope: 'admin', timeoutMs: 120_000 })
  if (o.json) printJson(c)
  else console.log(`cluster ${c.name}: endpoint ${c.endpoint}, Talos ${c.talosVersion}; secrets ${secrets ? 'adopted' : 'generated'} and sealed on the server`)
  return 0
}

export async function list(o: Options): Promise<number> {
  if (o.dataDir) return (await local()).list(o)
  const api = await connect(o)
  const { items } = await api.get<{ items: Parameters<typeof printClusters>[0] }>('/clusters')
  if (o.json) printJson(items)
  else printClusters(items)
  return 0
}

export async function talosconfig(name: string, o: Options): Promise<number> {
  if (o.dataDir) return (await local()).talosconfig(name, o)
  const api = await connect(o)
  const endpoints = Array.isArray(o.endpoint) ? o.endpoint : o.endpoint ? [o.endpoint] : []
  const res = await api.request('GET', `/clusters/${encodeURIComponent(name)}/talosconfig`, {
    query: { endpoint: endpoints, node: o.node ?? [] }, scope: 'admin', accept: 'application/yaml', timeoutMs: 60_000,
  })
  const yaml = await res.text()
  if (o.out) {
    writeFileSync(o.out, yaml, { mode: 0o600 })
    console.log(`wrote ${o.out}`)
  } else process.stdout.write(yaml)
  return 0
}
