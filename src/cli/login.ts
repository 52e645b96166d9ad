// `rackboot login URL --token T`, `logout`, `context list|use|remove`: the CLI configuration's contexts. A token is
// checked against the server before it is saved, and never printed.
import { readFileSync } from 'node:fs'
import { ApiClient, normalizeServer } from './client.js'
import { cliConfigPath, readCliConfig, writeCliConfig } from './cli-config.js'
import { palette, printJson, UsageError, type GlobalOptions } from './common.js'
import { renderTable } from './table.js'

type Options = GlobalOptions & { ca?: string }

/** A context name from the server URL: its host and port (`10.0.0.2:8080`). */
export function contextNameFor(server: string): string {
  const u = new URL(server)
  return u.port ? `${u.hostname}:${u.port}` : u.hostname
}

export async function login(url: string, o: Options, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const server = normalizeServer(url)
  const token = o.token || env.RACKBOOT_TOKEN
  if (!token) throw new UsageError('give the API token with --token TOKEN or RACKBOOT_TOKEN (`rackboot tokens create NAME --scope read --data-dir DIR` on the server makes one)')
  let ca: string | undefined
  if (o.ca) {
    try {
      ca = readFileSync(o.ca, 'utf8')
    } catch (err) {
      throw new UsageError(`--ca ${o.ca}: cannot read it: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
    if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`--ca ${o.ca}: not a PEM certificate`)
  }
  // The token is checked before anything is saved: a typo is found now, not at the next command.
  const api = new ApiClient({ server, token, ca: ca ?? null, via: 'rackboot login' })
  const who = await api.get<{ id: string; name: string; scopes: string[]; expiresAt: string | null }>('/whoami', { timeoutMs: 15_000 })
  const path = cliConfigPath(env)
  const config = await readCliConfig(path)
  const name = o.context ?? contextNameFor(server)
  config.contexts[name] = { server, token, ...(ca ? { ca } : {}) }
  config.current = name
  writeCliConfig(path, config)
  console.log(`logged in to ${server} as token '${who.name}' (scopes: ${who.scopes.join(', ') || 'none'}${who.expiresAt ? `, expires ${who.expiresAt}` : ''})`)
  console.log(`context '${name}' saved in ${path} and made current`)
  return 0
}

export async function logout(o: Options, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const path = cliConfigPath(env)
  const config = await readCliConfig(path)
  const name = o.context ?? config.current
  if (!name || !config.contexts[name]) throw new UsageError(name ? `no context '${name}' in ${path}` : `no current context in ${path}: nothing to log out of`)
  delete config.contexts[name]
  if (config.current === name) config.current = null
  writeCliConfig(path, config)
  console.log(`context '${name}' and its token removed from ${path}`)
  return 0
}

export async function contextList(o: Options, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const path = cliConfigPath(env)
  const config = await readCliConfig(path)
  const rows = Object.entries(config.contexts).map(([name, c]) => ({ name, current: name === config.current, server: c.server, token: Boolean(c.token), ca: Boolean(c.ca) }))
  if (o.json) {
    printJson({ file: path, current: config.current, contexts: rows })
    return 0
  }
  if (rows.length === 0) {
    console.log(`no contexts in ${path}: rackboot login URL --token TOKEN makes one`)
    return 0
  }
  const p = palette()
  console.log(renderTable(rows, [
    { header: 'current', value: (r) => (r.current ? '*' : '') },
    { header: 'name', value: (r) => r.name, colour: (c, r, pal) => (r.current ? pal.bold(c) : c) },
    { header: 'server', value: (r) => r.server },
    { header: 'token', value: (r) => (r.token ? 'saved' : 'none') },
    { header: 'ca', value: (r) => (r.ca ? 'saved' : '') },
  ], { palette: p }))
  return 0
}

export async function contextUse(name: string, _o: Options, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const path = cliConfigPath(env)
  const config = await readCliConfig(path)
  if (!config.contexts[name]) throw new UsageError(`no context '${name}' in ${path} (there are: ${Object.keys(config.contexts).join(', ') || 'none'})`)
  config.current = name
  writeCliConfig(path, config)
  console.log(`current context: ${name} (${config.contexts[name]!.server})`)
  return 0
}

export async function contextRemove(name: string, _o: Options, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const path = cliConfigPath(env)
  const config = await readCliConfig(path)
  if (!config.contexts[name]) throw new UsageError(`no context '${name}' in ${path}`)
  delete config.contexts[name]
  if (config.current === name) config.current = null
  writeCliConfig(path, config)
  console.log(`context '${name}' removed${config.current === null ? '; no context is current now' : ''}`)
  return 0
}
