// The CLI's own file (not the server's settings): named contexts, each a server URL, an API token and optionally the
// CA that signed the server's certificate, and which one is current (as talosctl's talosconfig). It holds tokens, so
// it is written 0600 in a 0700 directory, and never printed whole.
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { RackbootError } from '../errors.js'

export interface CliContext {
  server: string
  token?: string
  /** PEM of the CA that signed the server's certificate (https servers with a private CA). */
  ca?: string
}

export interface CliConfig {
  current: string | null
  contexts: Record<string, CliContext>
}

/** $RACKBOOT_CLI_CONFIG, else $XDG_CONFIG_HOME/rackboot/cli.yaml, else ~/.config/rackboot/cli.yaml. */
export function cliConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.RACKBOOT_CLI_CONFIG) return env.RACKBOOT_CLI_CONFIG
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config')
  return join(base, 'rackboot', 'cli.yaml')
}

const EMPTY: CliConfig = { current: null, contexts: {} }

/**
 * The format this module writes, read without the YAML library (it costs ~75 ms of every command's start):
 * `current: "name"`, `contexts:`, `  "name":`, `    key: "value"`, strings as JSON (valid YAML double-quoted
 * scalars). Null for anything else: the caller then reads it as YAML (a hand-edited file).
 */
function parseOwnFormat(text: string): CliConfig | null {
  const config: CliConfig = { current: null, contexts: {} }
  let context: CliContext | null = null
  const str = (v: string): string | null => {
    if (!v.startsWith('"')) return null
    try {
      const s: unknown = JSON.parse(v)
      return typeof s === 'string' ? s : null
    } catch {
      return null
    }
  }
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\s+$/, '')
    if (line === '' || /^\s*#/.test(line)) continue
    let m: RegExpExecArray | null
    if ((m = /^current: (.*)$/.exec(line))) {
      if (m[1] === 'null') config.current = null
      else if ((config.current = str(m[1]!)) === null) return null
    } else if (line === 'contexts:' || line === 'contexts: {}') {
      context = null
    } else if ((m = /^ {2}(".*"):$/.exec(line))) {
      const name = str(m[1]!)
      if (name === null) return null
      context = { server: '' }
      config.contexts[name] = context
    } else if ((m = /^ {4}(server|token|ca): (".*")$/.exec(line)) && context) {
      const v = str(m[2]!)
      if (v === null) return null
      context[m[1] as keyof CliContext] = v
    } else return null
  }
  return config
}

function fromYaml(value: unknown, path: string): CliConfig {
  const bad = (why: string) => new RackbootError('RB_ERR_SETTINGS', `${path}: ${why}`)
  if (value === null || value === undefined) return { ...EMPTY, contexts: {} }
  if (typeof value !== 'object' || Array.isArray(value)) throw bad('the top level must be a mapping (current, contexts)')
  const v = value as { current?: unknown; contexts?: unknown }
  const contexts: Record<string, CliContext> = {}
  if (v.contexts !== undefined && v.contexts !== null) {
    if (typeof v.contexts !== 'object' || Array.isArray(v.contexts)) throw bad('contexts must be a mapping of names to {server, token, ca}')
    for (const [name, c] of Object.entries(v.contexts as Record<string, unknown>)) {
      const ctx = c as Partial<CliContext> | null
      if (!ctx || typeof ctx.server !== 'string') throw bad(`context '${name}' needs a server URL`)
      contexts[name] = { server: ctx.server, ...(typeof ctx.token === 'string' ? { token: ctx.token } : {}), ...(typeof ctx.ca === 'string' ? { ca: ctx.ca } : {}) }
    }
  }
  return { current: typeof v.current === 'string' ? v.current : null, contexts }
}

/** The file's contexts; an empty configuration when there is no file. */
export async function readCliConfig(path: string): Promise<CliConfig> {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { current: null, contexts: {} }
    throw new RackbootError('RB_ERR_SETTINGS', `cannot read the CLI configuration ${path}: ${(err as Error).message}`)
  }
  const own = parseOwnFormat(text)
  if (own) return own
  const { parse } = await import('yaml')
  let value: unknown
  try {
    value = parse(text)
  } catch (err) {
    throw new RackbootError('RB_ERR_SETTINGS', `${path}: not valid YAML: ${(err as Error).message.split('\n')[0]}`)
  }
  return fromYaml(value, path)
}

export function formatCliConfig(config: CliConfig): string {
  const q = (s: string) => JSON.stringify(s)
  const lines = [
    '# rackboot CLI contexts (rackboot login, rackboot context use). It holds API tokens: keep it private (0600).',
    `current: ${config.current === null ? 'null' : q(config.current)}`,
    Object.keys(config.contexts).length ? 'contexts:' : 'contexts: {}',
  ]
  for (const [name, c] of Object.entries(config.contexts)) {
    lines.push(`  ${q(name)}:`, `    server: ${q(c.server)}`)
    if (c.token !== undefined) lines.push(`    token: ${q(c.token)}`)
    if (c.ca !== undefined) lines.push(`    ca: ${q(c.ca)}`)
  }
  return lines.join('\n') + '\n'
}

/** Writes the file 0600 (through a temporary file and a rename), its directory made 0700 when it is made now. */
export function writeCliConfig(path: string, config: CliConfig): void {
  const dir = dirname(path)
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    const tmp = join(dir, `.cli.yaml.${process.pid}.tmp`)
    writeFileSync(tmp, formatCliConfig(config), { mode: 0o600 })
    chmodSync(tmp, 0o600)
    renameSync(tmp, path)
  } catch (err) {
    throw new RackbootError('RB_ERR_STORAGE', `cannot write the CLI configuration ${path}: ${(err as Error).message}`)
  }
}
