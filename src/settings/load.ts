import { readFileSync, existsSync } from 'node:fs'
import { resolve, dirname } from 'node:path'
import { parseDocument, parse as parseYamlScalar } from 'yaml'
import Value from 'typebox/value'
import { RackbootError } from '../errors.js'
import { SettingsSchema, type Settings, type SettingsInput } from './schema.js'

export const DEFAULT_SETTINGS_FILE = 'rackboot.yaml'

export interface LoadOptions {
  /** Path given by --config; otherwise RACKBOOT_CONFIG, otherwise ./rackboot.yaml when it exists. */
  file?: string
  /** `key.path=value` overrides from --set flags; values are read as YAML scalars. */
  overrides?: string[]
  env?: NodeJS.ProcessEnv
  cwd?: string
  /** Whether we run as root (chooses the TFTP port); injectable for tests. */
  isRoot?: boolean
}

// Environment variables with a fixed meaning; anything else goes through --set or the file.
const ENV_KEYS: Record<string, string> = {
  RACKBOOT_DATA_DIR: 'dataDir',
  RACKBOOT_DATABASE_URL: 'database.url',
  RACKBOOT_ASSETS_DIR: 'assetsDir',
  RACKBOOT_LOG_LEVEL: 'log.level',
  RACKBOOT_LOG_FORMAT: 'log.format',
  RACKBOOT_HTTP_PORT: 'http.port',
  RACKBOOT_HTTP_LISTEN: 'http.listen',
  RACKBOOT_PUBLIC_URL: 'http.publicUrl',
  RACKBOOT_TFTP_PORT: 'tftp.port',
  RACKBOOT_DHCP_MODE: 'dhcp.mode',
  RACKBOOT_DHCP_INTERFACE: 'dhcp.interface',
  RACKBOOT_SERVER: 'cli.server',
  RACKBOOT_TOKEN: 'cli.token',
}

function settingsError(message: string, details?: unknown): RackbootError {
  return new RackbootError('RB_ERR_SETTINGS', message, { details })
}

function setPath(target: Record<string, unknown>, path: string, value: unknown, origin: string): void {
  const keys = path.split('.')
  let node: Record<string, unknown> = target
  for (const key of keys.slice(0, -1)) {
    const next = node[key]
    if (next === undefined) node[key] = {}
    else if (typeof next !== 'object' || next === null || Array.isArray(next)) {
      throw settingsError(`${origin}: cannot set '${path}': '${key}' is not a section`)
    }
    node = node[key] as Record<string, unknown>
  }
  node[keys[keys.length - 1]!] = value
}

function readFile(file: string): Record<string, unknown> {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw settingsError(`cannot read settings file ${file}: ${(err as Error).message}`)
  }
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true })
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!
    const line = e.linePos?.[0]
    throw settingsError(`${file}${line ? `:${line.line}:${line.col}` : ''}: ${e.message.split('\n')[0]}`)
  }
  const value = doc.toJS() ?? {}
  if (typeof value !== 'object' || Array.isArray(value)) throw settingsError(`${file}: the top level must be a mapping`)
  return value as Record<string, unknown>
}

/** Describes one schema error in a line a person can act on: the key, what was wrong, and what is allowed. */
function describeError(err: { instancePath: string; keyword: string; message: string; params: Record<string, unknown> }, schemaAt: (p: string) => unknown): string {
  const key = err.instancePath.replace(/^\//, '').replaceAll('/', '.') || '(top level)'
  if (err.keyword === 'additionalProperties') {
    const extra = (err.params.additionalProperties as string[] | undefined) ?? []
    const known = Object.keys((schemaAt(err.instancePath) as { properties?: object })?.properties ?? {})
    const where = key === '(top level)' ? '' : `${key}.`
    return `unknown key '${where}${extra.join(`', '${where}`)}'; allowed here: ${known.join(', ')}`
  }
  const schema = schemaAt(err.instancePath) as { anyOf?: { const?: unknown }[]; type?: string } | undefined
  if (schema?.anyOf && schema.anyOf.every((s) => 'const' in s)) {
    return `'${key}' must be one of: ${schema.anyOf.map((s) => JSON.stringify(s.const)).join(', ')}`
  }
  return `'${key}' ${err.message}`
}

function schemaAtPath(pointer: string): unknown {
  let node: any = SettingsSchema
  for (const part of pointer.split('/').filter(Boolean)) {
    if (node?.properties?.[part]) node = node.properties[part]
    else if (node?.items && /^\d+$/.test(part)) node = node.items
    else return undefined
  }
  return node
}

export function loadSettings(options: LoadOptions = {}): Settings {
  const env = options.env ?? process.env
  const cwd = options.cwd ?? process.cwd()
  const explicit = options.file ?? env.RACKBOOT_CONFIG
  const fallback = resolve(cwd, DEFAULT_SETTINGS_FILE)
  const file = explicit ? resolve(cwd, explicit) : existsSync(fallback) ? fallback : null
  if (explicit && !existsSync(file!)) throw settingsError(`settings file not found: ${file}`)

  const raw: Record<string, unknown> = file ? readFile(file) : {}
  for (const [name, path] of Object.entries(ENV_KEYS)) {
    const value = env[name]
    if (value !== undefined && value !== '') setPath(raw, path, parseYamlScalar(value), `environment ${name}`)
  }
  for (const item of options.overrides ?? []) {
    const eq = item.indexOf('=')
    if (eq <= 0) throw settingsError(`--set expects key=value, got '${item}'`)
    setPath(raw, item.slice(0, eq), parseYamlScalar(item.slice(eq + 1)), `--set ${item}`)
  }

  const withDefaults = Value.Default(SettingsSchema, structuredClone(raw)) as SettingsInput
  const errors = [...Value.Errors(SettingsSchema, withDefaults)]
  if (errors.length > 0) {
    // Report the most specific error first (deepest path); one precise line beats a wall of anyOf noise.
    const ordered = errors
      .filter((e) => e.keyword !== 'boolean')
      .sort((a, b) => b.instancePath.length - a.instancePath.length)
    const first = ordered.find((e) => e.keyword === 'anyOf') ?? ordered[0] ?? errors[0]!
    const specific = ordered.find((e) => e.instancePath === first.instancePath && e.keyword !== 'const') ?? first
    const lines = [...new Set(ordered.filter((e) => e.keyword !== 'const').map((e) => describeError(e as any, schemaAtPath)))]
    throw settingsError(`invalid settings${file ? ` in ${file}` : ''}: ${describeError(specific as any, schemaAtPath)}`, {
      errors: lines,
    })
  }

  validateSemantics(withDefaults)
  const base = file ? dirname(file) : cwd
  const isRoot = options.isRoot ?? (typeof process.getuid === 'function' && process.getuid() === 0)
  return Object.freeze({
    ...withDefaults,
    dataDir: resolve(base, withDefaults.dataDir),
    assetsDir: resolve(base, withDefaults.assetsDir),
    tftp: { ...withDefaults.tftp, port: withDefaults.tftp.port ?? (isRoot ? 69 : 6969) },
    talos: { ...withDefaults.talos, schemasDir: withDefaults.talos.schemasDir ? resolve(base, withDefaults.talos.schemasDir) : '' },
    inventory: {
      ...withDefaults.inventory,
      ...(withDefaults.inventory.importOnStart ? { importOnStart: resolve(base, withDefaults.inventory.importOnStart) } : {}),
    },
    virtualMedia: { ...withDefaults.virtualMedia, iso: withDefaults.virtualMedia.iso ? resolve(base, withDefaults.virtualMedia.iso) : '' },
    source: file,
  })
}

function ipToInt(ip: string): number {
  return ip.split('.').reduce((acc, part) => acc * 256 + Number(part), 0)
}

// Rules the schema cannot say: DHCP needs subnets and a server address once turned on; ranges lie in their subnet.
function validateSemantics(s: SettingsInput): void {
  if (s.dhcp.mode === 'off') return
  if (!s.dhcp.serverAddress) throw settingsError(`'dhcp.serverAddress' is required when dhcp.mode is '${s.dhcp.mode}'`)
  if (s.dhcp.mode === 'full' && s.dhcp.subnets.length === 0) {
    throw settingsError(`'dhcp.subnets' needs at least one subnet when dhcp.mode is 'full'`)
  }
  s.dhcp.subnets.forEach((sub, i) => {
    const [net, bitsText] = sub.subnet.split('/') as [string, string]
    const bits = Number(bitsText)
    if (bits > 32) throw settingsError(`'dhcp.subnets.${i}.subnet' has a prefix longer than 32: ${sub.subnet}`)
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0
    const base = (ipToInt(net) & mask) >>> 0
    for (const key of ['rangeStart', 'rangeEnd'] as const) {
      if (((ipToInt(sub[key]) & mask) >>> 0) !== base) {
        throw settingsError(`'dhcp.subnets.${i}.${key}' (${sub[key]}) is outside ${sub.subnet}`)
      }
    }
    if (ipToInt(sub.rangeStart) > ipToInt(sub.rangeEnd)) {
      throw settingsError(`'dhcp.subnets.${i}.rangeStart' comes after rangeEnd`)
    }
  })
}
