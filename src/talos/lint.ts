import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js'
import { Counter, type Registry } from 'prom-client'
import { RackbootError } from '../errors.js'
import {
  documentIdentity,
  identityKey,
  isDeepFrozen,
  isRecord,
  isV1Alpha1Document,
  originalOf,
  parseConfigDocuments,
  type ConfigDocument,
  type DocumentIdentity,
} from './documents.js'
import { renderedDocumentsOf } from './render-cache.js'
import { formatTalosVersion, parseTalosVersion, versionAtLeast, type TalosVersion } from './version.js'

// Lint of a rendered machine config against Talos's official JSON schema (draft 2020-12) for the target
// version. Each YAML document is validated on its own against the schema definition of its kind. The schema is
// stricter than Talos (shared/reference/talos.md §3.5): it drops deprecated fields that Talos still decodes.
// Those are allowances here, reported as warnings instead of errors:
//   - v1alpha1 fields Talos still decodes that no schema lists (`persist`, which talosctl gen config still
//     writes; legacy `machine.network.*`; machine.install.extraKernelArgs; ...) are skipped;
//   - v1alpha1 fields a newer schema dropped (1.14 moved machine.install, cluster.network, ... to separate
//     documents) are checked against the newest older schema that still has them;
//   - the schema spells two kinds differently from Talos (UnattendedInstall for UnattendedInstallConfig,
//     KubeSpanEndpoints for KubeSpanEndpointsConfig: Talos's schemaMeta tags) and lacks ImageVerificationConfig;
//   - without a schema of the target's own minor, unknown fields and kinds are warnings: older Talos versions
//     had fields a newer schema hides, newer ones have kinds an older schema lacks.
// Beyond the schema: duplicate documents, unknown kinds, install disk required on metal up to 1.13,
// HostnameConfig's hostname/auto exclusivity, and a warning when the config has no v1alpha1 document.

export interface LintIssue {
  /** Position of the document in the YAML stream (0-based); -1 for the config as a whole (YAML syntax, schema choice). */
  documentIndex: number
  /** 'v1alpha1' for the main document, else the document kind ('' when missing). */
  kind: string
  /** Document name, for named documents. */
  name?: string
  /** JSON Pointer inside the document ('' for the document itself). */
  path: string
  message: string
  /** JSON-schema keyword, or rackboot's own check name. */
  keyword: string
}

export interface LintResult {
  ok: boolean
  talosVersion: string
  /** Version of the schema file used, e.g. v1.13.9. */
  schemaVersion: string
  errors: LintIssue[]
  warnings: LintIssue[]
}

export interface LintOptions {
  talosVersion: string | TalosVersion
  /** Talos runtime mode; metal (the default) requires an install disk up to 1.13. */
  mode?: 'metal' | 'container'
}

export interface ConfigLinterDeps {
  /** Directory holding talos-config.<version>.schema.json files. Defaults to DEFAULT_SCHEMAS_DIR. */
  schemasDir?: string
  /** Counts lint runs by result (rackboot_talos_config_lint_total). */
  registry?: Registry
}

export interface SchemaInfo {
  file: string
  version: TalosVersion
  /** Version label, e.g. v1.13.9 (or v1.15-main for an unversioned file). */
  label: string
}

export interface ConfigLinter {
  lint(config: string | readonly ConfigDocument[], options: LintOptions): LintResult
  /** The schema that would be used for a Talos version. */
  schemaFor(talosVersion: string | TalosVersion): SchemaInfo
  schemas(): SchemaInfo[]
  /**
   * Loads the schema a Talos version's configs are checked against and compiles its v1alpha1 validator now (a few
   * hundred ms), so the first config served for that version does not pay for it. Throws as lint would.
   */
  warm(talosVersion: string | TalosVersion): void
}

type IssueSink = (path: string, message: string, keyword: string, warning?: boolean) => void

interface CheckedDocument {
  issues: Array<{ path: string; message: string; keyword: string; warning: boolean }>
  /** An UnattendedInstallConfig the schema knows (the install-disk rule then only warns). */
  unattended: boolean
}

interface DocumentContext {
  /** The schema choice this result holds for: schema file, legacy schema file, Talos version. */
  key: string
  v: TalosVersion
  info: SchemaInfo
  schema: LoadedSchema
  legacy: LoadedSchema | null
  exactMinor: boolean
  lenient: (e: ErrorObject) => boolean
}

/** The repository root (two levels above this file: src/talos/). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** The official Talos config schemas, shipped with rackboot (talos-schemas/ at the repository root) so an offline appliance can lint. */
export const DEFAULT_SCHEMAS_DIR = resolve(REPO_ROOT, 'talos-schemas')

/** Talos kind -> the kind its JSON schema lists (the schemaMeta tags disagree with the registered kinds). */
const SCHEMA_KIND_ALIASES: Readonly<Record<string, string>> = {
  UnattendedInstallConfig: 'UnattendedInstall',
  KubeSpanEndpointsConfig: 'KubeSpanEndpoints',
}

/** The schema's spelling -> Talos's kind. */
const TALOS_SPELLINGS: ReadonlyMap<string, string> = new Map(Object.entries(SCHEMA_KIND_ALIASES).map(([kind, alias]) => [alias, kind]))

/** Kinds Talos decodes (from 1.13) that the schemas leave out. */
const KINDS_MISSING_FROM_SCHEMA: ReadonlySet<string> = new Set(['ImageVerificationConfig'])

const SCHEMA_FILE_RE = /^talos-config(?:\.(v?\d+\.\d+(?:\.\d+)?(?:-[0-9A-Za-z.-]+)?))?\.schema\.json$/

interface LoadedSchema {
  info: SchemaInfo
  /** Made at the first validator asked for: an older schema is often read only for its property names. */
  ajv(): Ajv2020
  id: string
  /** `${apiVersion}/${kind}` (or 'v1alpha1') to $defs name. */
  defs: Map<string, string>
  validators: Map<string, ValidateFunction>
  /** Property names of a $defs entry. */
  properties: Map<string, Set<string>>
  /** Validators of one field of a document by $defs name and path, null where it cannot be checked on its own (partValidator). */
  parts: Map<string, ValidateFunction | null>
  raw: { $defs: Record<string, { properties?: Record<string, unknown> }> }
}

/** v1alpha1 sections whose fields are compared with the schema, parents first, with their $defs names. */
const V1ALPHA1_CONTAINERS: ReadonlyArray<[string[], string]> = [
  [[], 'v1alpha1.Config'],
  [['machine'], 'v1alpha1.MachineConfig'],
  [['cluster'], 'v1alpha1.ClusterConfig'],
  [['machine', 'features'], 'v1alpha1.FeaturesConfig'],
  [['machine', 'install'], 'v1alpha1.InstallConfig'],
  [['machine', 'network'], 'v1alpha1.NetworkConfig'],
  [['cluster', 'apiServer'], 'v1alpha1.APIServerConfig'],
  [['cluster', 'etcd'], 'v1alpha1.EtcdConfig'],
]

/**
 * v1alpha1 fields Talos's Go types still decode but none of the schemas (1.12-1.14) lists: computed by comparing
 * the yaml tags of types/v1alpha1/v1alpha1_types.go with the schema definitions at v1.12.11, v1.13.9, v1.14.0-rc.1.
 */
const DECODED_NOT_IN_SCHEMA: Readonly<Record<string, readonly string[]>> = {
  '': ['persist'],
  machine: ['network', 'disks', 'env', 'time', 'registries', 'systemDiskEncryption'],
  cluster: ['allowSchedulingOnMasters'],
  'machine.install': ['extraKernelArgs', 'extensions', 'bootloader'],
  'machine.network': ['hostname', 'interfaces', 'nameservers', 'searchDomains', 'extraHostEntries', 'disableSearchDomain', 'kubespan'],
  'cluster.apiServer': ['disablePodSecurityPolicy'],
  'cluster.etcd': ['subnet'],
  'machine.features': ['rbac', 'stableHostname', 'apidCheckExtKeyUsage'],
}

const DEPRECATION_NOTES: Readonly<Record<string, string>> = {
  persist: ' (talosctl gen config still writes it)',
  'machine.network': ' (multi-document network config since Talos 1.12)',
  'machine.install.extraKernelArgs': ' (not supported when booting with systemd-boot)',
}

function getPath(root: unknown, path: readonly string[]): unknown {
  let node = root
  for (const key of path) node = isRecord(node) ? node[key] : undefined
  return node
}

/**
 * A copy of a v1alpha1 document that the lint may change: the containers it removes fields from (and their
 * parents) are copied, everything else is shared with the document (which is not changed).
 */
function copyContainers(doc: ConfigDocument): ConfigDocument {
  const root: ConfigDocument = { ...doc }
  for (const [path] of V1ALPHA1_CONTAINERS) {
    if (path.length === 0) continue
    const parent = getPath(root, path.slice(0, -1))
    const key = path[path.length - 1]!
    if (isRecord(parent) && isRecord(parent[key])) parent[key] = { ...parent[key] }
  }
  return root
}

function compareVersions(a: TalosVersion, b: TalosVersion): number {
  if (a.major !== b.major) return a.major - b.major
  if (a.minor !== b.minor) return a.minor - b.minor
  if (a.patch !== b.patch) return a.patch - b.patch
  if (a.prerelease === b.prerelease) return 0
  if (a.prerelease === null) return 1
  if (b.prerelease === null) return -1
  return a.prerelease < b.prerelease ? -1 : 1
}

function schemaError(message: string, cause?: unknown): RackbootError {
  return new RackbootError('RB_ERR_SETTINGS', message, cause === undefined ? {} : { cause })
}

function pointer(segments: readonly string[]): string {
  return segments.map((s) => `/${s.replace(/~/g, '~0').replace(/\//g, '~1')}`).join('')
}

function readableMessage(e: ErrorObject): string {
  const at = e.instancePath || '(document)'
  switch (e.keyword) {
    case 'additionalProperties':
      return `unknown field '${String(e.params.additionalProperty)}' at ${at}`
    case 'enum':
      return `${at} must be one of: ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`
    case 'required':
      return `missing required field '${String(e.params.missingProperty)}' at ${at}`
    default:
      return `${at} ${e.message ?? 'is invalid'}`
  }
}

/** Lists the schema files in a directory, newest first. */
export function listSchemas(dir: string): SchemaInfo[] {
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch (cause) {
    throw schemaError(`cannot read the Talos schemas directory ${dir}`, cause)
  }
  const out: SchemaInfo[] = []
  for (const name of names) {
    const m = SCHEMA_FILE_RE.exec(name)
    if (!m) continue
    const file = join(dir, name)
    if (m[1]) {
      const version = parseTalosVersion(m[1])
      out.push({ file, version, label: formatTalosVersion(version) })
      continue
    }
    // An unversioned file (Talos main): its $id names the minor, https://talos.dev/v1.15/schemas/...
    try {
      const id = String((JSON.parse(readFileSync(file, 'utf8')) as { $id?: unknown }).$id ?? '')
      const mm = /\/v(\d+)\.(\d+)\//.exec(id)
      if (!mm) continue
      const version: TalosVersion = { major: Number(mm[1]), minor: Number(mm[2]), patch: 0, prerelease: 'main' }
      out.push({ file, version, label: `v${mm[1]}.${mm[2]}-main` })
    } catch {
      continue
    }
  }
  return out.sort((a, b) => compareVersions(b.version, a.version))
}

/**
 * The schema for a Talos version: the newest file of the same minor, else the nearest minor (the older one on a
 * tie), so a version older than every schema gets the oldest and a newer one the newest.
 */
export function chooseSchema(schemas: readonly SchemaInfo[], talosVersion: string | TalosVersion): SchemaInfo {
  if (schemas.length === 0) throw schemaError('no Talos config schemas found (talos-config.<version>.schema.json)')
  const v = parseTalosVersion(talosVersion)
  const rank = (s: SchemaInfo): number => (s.version.major - v.major) * 1000 + (s.version.minor - v.minor)
  const sameMinor = schemas.filter((s) => rank(s) === 0)
  if (sameMinor.length > 0) {
    // Prefer a release over a pre-release of the same minor, then the newest.
    return [...sameMinor].sort((a, b) => Number(a.version.prerelease !== null) - Number(b.version.prerelease !== null) || compareVersions(b.version, a.version))[0]!
  }
  return [...schemas].sort((a, b) => Math.abs(rank(a)) - Math.abs(rank(b)) || rank(a) - rank(b) || compareVersions(b.version, a.version))[0]!
}

function loadSchema(info: SchemaInfo): LoadedSchema {
  let raw: { $id?: string; oneOf?: Array<{ $ref?: string }>; $defs?: Record<string, { properties?: Record<string, unknown> }> }
  try {
    raw = JSON.parse(readFileSync(info.file, 'utf8'))
  } catch (cause) {
    throw schemaError(`cannot read Talos schema ${info.file}`, cause)
  }
  if (!raw.$id || !raw.$defs || !Array.isArray(raw.oneOf)) throw schemaError(`${info.file} is not a Talos config schema`)
  let ajv: Ajv2020 | null = null
  const made = (): Ajv2020 => {
    if (!ajv) {
      // strict: false because the schema carries markdownDescription / x-intellij-html-description keywords.
      ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true, validateSchema: false, code: { optimize: false } })
      ajv.addFormat('uri', (s: string) => URL.canParse(s))
      ajv.addSchema(raw)
    }
    return ajv
  }
  const defs = new Map<string, string>()
  for (const ref of raw.oneOf) {
    const name = ref.$ref?.replace('#/$defs/', '')
    const def = name ? raw.$defs[name] : undefined
    if (!name || !def?.properties) continue
    if (name === 'v1alpha1.Config') {
      defs.set('v1alpha1', name)
      continue
    }
    const kinds = (def.properties.kind as { enum?: unknown[] } | undefined)?.enum ?? []
    const apiVersions = (def.properties.apiVersion as { enum?: unknown[] } | undefined)?.enum ?? []
    for (const k of kinds) for (const a of apiVersions) defs.set(`${String(a)}/${String(k)}`, name)
  }
  return { info, ajv: made, id: raw.$id, defs, validators: new Map(), properties: new Map(), parts: new Map(), raw: raw as LoadedSchema['raw'] }
}

function validatorFor(schema: LoadedSchema, defName: string): ValidateFunction {
  let fn = schema.validators.get(defName)
  if (!fn) {
    try {
      fn = schema.ajv().compile({ $ref: `${schema.id}#/$defs/${defName}` })
    } catch (cause) {
      throw schemaError(`cannot compile ${defName} from ${schema.info.file}`, cause)
    }
    schema.validators.set(defName, fn)
  }
  return fn
}

// Schema keywords under which an object is valid exactly when each of its properties is (for a given set of keys):
// none relates one property to another. The Talos schemas use only these (and annotations) for v1alpha1.
const PER_PROPERTY_KEYWORDS: ReadonlySet<string> = new Set([
  '$ref', 'type', 'properties', 'additionalProperties', 'required', 'title', 'description', 'markdownDescription', 'x-intellij-html-description',
])

/**
 * A validator of the field at `path` of a document of $defs `defName` on its own, from the schema node reached through
 * `properties` (and local $refs); null when a node on the way has a keyword that relates properties to each other, or
 * the field is not among the properties listed.
 */
function partValidator(schema: LoadedSchema, defName: string, path: readonly string[]): ValidateFunction | null {
  const id = `${defName}\0${path.join('\0')}`
  const known = schema.parts.get(id)
  if (known !== undefined) return known
  let fn: ValidateFunction | null = null
  const defs = schema.raw.$defs as Record<string, unknown>
  let at = `/$defs/${defName}`
  let node: unknown = defs[defName]
  let ok = true
  for (const key of path) {
    // Follow the node's $ref (a local one) to the object it names.
    for (let hops = 0; ok && isRecord(node) && typeof node.$ref === 'string'; hops++) {
      const m = /^#\/\$defs\/([A-Za-z0-9_.-]+)$/.exec(node.$ref)
      ok = hops < 8 && !!m && Object.keys(node).every((k) => PER_PROPERTY_KEYWORDS.has(k))
      if (ok) {
        at = `/$defs/${m![1]}`
        node = defs[m![1]!]
      }
    }
    if (!ok || !isRecord(node) || node.type !== 'object' || !Object.keys(node).every((k) => PER_PROPERTY_KEYWORDS.has(k))) {
      ok = false
      break
    }
    const props = node.properties
    if (!/^[A-Za-z0-9_.-]+$/.test(key) || !isRecord(props) || !isRecord(props[key])) {
      ok = false
      break
    }
    at = `${at}/properties/${key}`
    node = props[key]
  }
  if (ok) {
    try {
      fn = schema.ajv().compile({ $ref: `${schema.id}#${at}` })
    } catch {
      fn = null
    }
  }
  schema.parts.set(id, fn)
  return fn
}

/**
 * The paths where `doc` differs from the object it was copied from (descending into the objects it copied), or
 * false when their keys differ (a key added, removed or moved changes what the lint reports about the keys).
 */
function changedPaths(doc: Record<string, unknown>, original: Record<string, unknown>, path: readonly string[], out: string[][]): boolean {
  const keys = Object.keys(doc)
  const was = Object.keys(original)
  if (keys.length !== was.length) return false
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!
    if (key !== was[i]) return false
    const now = doc[key]
    const before = original[key]
    if (now === before) continue
    if (isRecord(now) && isRecord(before) && originalOf(now) === before) {
      if (!changedPaths(now, before, [...path, key], out)) return false
    } else out.push([...path, key])
  }
  return true
}

function propertiesOf(schema: LoadedSchema, defName: string): Set<string> {
  let props = schema.properties.get(defName)
  if (!props) schema.properties.set(defName, (props = new Set(Object.keys(schema.raw.$defs[defName]?.properties ?? {}))))
  return props
}

export function createConfigLinter(deps: ConfigLinterDeps = {}): ConfigLinter {
  const dir = deps.schemasDir ? resolve(deps.schemasDir) : DEFAULT_SCHEMAS_DIR
  const loaded = new Map<string, LoadedSchema>()
  let listed: SchemaInfo[] | null = null
  const runs = deps.registry
    ? new Counter({
        name: 'rackboot_talos_config_lint_total',
        help: 'Talos machine configs linted against the JSON schema, by result (ok, failed).',
        labelNames: ['result'],
        registers: [deps.registry],
      })
    : null

  const schemas = (): SchemaInfo[] => {
    if (!listed) {
      try {
        if (!statSync(dir).isDirectory()) throw new Error('not a directory')
      } catch (cause) {
        throw schemaError(`Talos schemas directory not found: ${dir}`, cause)
      }
      listed = listSchemas(dir)
    }
    return listed
  }
  const load = (info: SchemaInfo): LoadedSchema => {
    let s = loaded.get(info.file)
    if (!s) {
      s = loadSchema(info)
      loaded.set(info.file, s)
    }
    return s
  }

  function lintV1Alpha1(
    doc: ConfigDocument,
    issue: (path: string, message: string, keyword: string, warning?: boolean) => void,
    schema: LoadedSchema,
    legacy: LoadedSchema | null,
    lenient: (e: ErrorObject) => boolean,
  ): void {
    const subject = copyContainers(doc)
    const machine = isRecord(subject.machine) ? subject.machine : null
    if (machine?.type === 'init') {
      issue('/machine/type', "machine type 'init' is a legacy alias of controlplane", 'allowance', true)
      machine.type = 'controlplane'
    }
    // Fields the target schema lacks: moved ones are checked against an older schema that has them; fields Talos
    // still decodes but no schema lists are skipped with a warning; anything else is left for the schema to report.
    const moved: string[][] = []
    for (const [path, def] of V1ALPHA1_CONTAINERS) {
      const obj = getPath(subject, path)
      // A moved section is checked as a whole against the older schema.
      if (!isRecord(obj) || moved.some((m) => m.every((seg, i) => path[i] === seg))) continue
      const now = propertiesOf(schema, def)
      const before = legacy ? propertiesOf(legacy, def) : new Set<string>()
      const decoded = DECODED_NOT_IN_SCHEMA[path.join('.')] ?? []
      for (const key of Object.keys(obj)) {
        if (now.has(key)) continue
        const at = pointer([...path, key])
        if (decoded.includes(key)) {
          issue(at, `${[...path, key].join('.')} is deprecated${DEPRECATION_NOTES[[...path, key].join('.')] ?? ''}; Talos still accepts it but the schema does not list it (not checked)`, 'allowance', true)
          delete obj[key]
        } else if (before.has(key)) {
          moved.push([...path, key])
          issue(at, `${[...path, key].join('.')} is deprecated in Talos ${schema.info.label} (moved to multi-document config); checked against the ${legacy!.info.label} schema`, 'allowance', true)
        }
      }
    }
    if (legacy && moved.length > 0) {
      const legacyCheck = validatorFor(legacy, 'v1alpha1.Config')
      if (!legacyCheck(subject)) {
        for (const e of legacyCheck.errors ?? []) {
          if (moved.some((p) => e.instancePath === pointer(p) || e.instancePath.startsWith(`${pointer(p)}/`))) {
            issue(e.instancePath, readableMessage(e), e.keyword, lenient(e))
          }
        }
      }
      for (const p of moved) {
        const parent = getPath(subject, p.slice(0, -1))
        if (isRecord(parent)) delete parent[p[p.length - 1]!]
      }
    }
    const check = validatorFor(schema, 'v1alpha1.Config')
    if (!check(subject)) for (const e of check.errors ?? []) issue(e.instancePath, readableMessage(e), e.keyword, lenient(e))
  }

  // The checks of one document on its own (the schema, and rules that read only that document). A deep-frozen
  // document cannot change, so its result is remembered (by identity, for this schema choice): a profile's
  // documents are checked once, however many machines' configs share them (render.ts).
  const checkedDocuments = new WeakMap<object, Map<string, CheckedDocument>>()

  function checkDocument(doc: ConfigDocument, id: DocumentIdentity, ctx: DocumentContext): CheckedDocument {
    const frozen = isDeepFrozen(doc)
    if (frozen) {
      const hit = checkedDocuments.get(doc)?.get(ctx.key)
      if (hit) return hit
    }
    let out = frozen ? checkedFromOriginal(doc, id, ctx) : null
    if (!out) {
      const checked: CheckedDocument = { issues: [], unattended: false }
      const issue = (path: string, message: string, keyword: string, warning = false): void => {
        checked.issues.push({ path, message, keyword, warning })
      }
      checkDocumentInto(doc, id, ctx, issue, checked)
      out = checked
    }
    if (frozen) {
      let byContext = checkedDocuments.get(doc)
      if (!byContext) checkedDocuments.set(doc, (byContext = new Map()))
      byContext.set(ctx.key, out)
    }
    return out
  }

  // A machine's v1alpha1 document is its profile's with a few values written (render.ts: the install disk, ...).
  // When the profile's document is checked and the machine's has the same keys everywhere, only the changed values
  // need checking, each against its own part of the schema: if they all pass, the machine's document gets exactly
  // the profile document's issues (nothing in the schema relates one field to another, see partValidator). Anything
  // else (a changed value the profile's issues are about, a value that fails, a field the lint treats specially)
  // gets the whole check, so the result is always the one the whole check gives.
  // The same for a typed document (a LinkConfig, UnattendedInstallConfig, ... the machine's values are written in)
  // whose identity did not change, checked against its kind's definition; HostnameConfig's own rule reads two
  // fields, so a change to either gets the whole check.
  function checkedFromOriginal(doc: ConfigDocument, id: DocumentIdentity, ctx: DocumentContext): CheckedDocument | null {
    const original = originalOf(doc) as ConfigDocument | undefined
    if (!original || !isDeepFrozen(original)) return null
    const main = isV1Alpha1Document(doc)
    if (main !== isV1Alpha1Document(original)) return null
    let defName = 'v1alpha1.Config'
    if (!main) {
      const was = documentIdentity(original)
      if (was.apiVersion !== id.apiVersion || was.kind !== id.kind || was.name !== id.name) return null
      const def = ctx.schema.defs.get(`${id.apiVersion}/${SCHEMA_KIND_ALIASES[id.kind] ?? id.kind}`)
      if (!def) return null
      defName = def
    }
    const changed: string[][] = []
    if (!changedPaths(doc, original, [], changed)) return null
    const before = checkDocument(original, id, ctx)
    for (const path of changed) {
      if (main ? path[0] === 'machine' && path[1] === 'type' : ['apiVersion', 'kind', 'name'].includes(path[0]!)) return null
      if (id.kind === 'HostnameConfig' && (path[0] === 'hostname' || path[0] === 'auto')) return null
      const at = pointer(path)
      if (before.issues.some((i) => i.path === at || at.startsWith(`${i.path}/`) || i.path.startsWith(`${at}/`))) return null
      const check = partValidator(ctx.schema, defName, path)
      if (!check || !check(getPath(doc, path))) return null
    }
    return before
  }

  function checkDocumentInto(doc: ConfigDocument, id: DocumentIdentity, ctx: DocumentContext, issue: IssueSink, out: CheckedDocument): void {
    const { schema, legacy, lenient, info, v, exactMinor } = ctx
    if (isV1Alpha1Document(doc)) {
      lintV1Alpha1(doc, issue, schema, legacy, lenient)
      return
    }
    const schemaKind = SCHEMA_KIND_ALIASES[id.kind] ?? id.kind
    const defName = schema.defs.get(`${id.apiVersion}/${schemaKind}`)
    const talosSpelling = TALOS_SPELLINGS.get(id.kind)
    if (talosSpelling) {
      issue('/kind', `Talos registers this kind as ${talosSpelling}; '${id.kind}' is only the schema's spelling`, 'kind')
      return
    }
    if (!defName) {
      if (KINDS_MISSING_FROM_SCHEMA.has(id.kind) && versionAtLeast(v, 1, 13)) {
        issue('', `${id.kind} is not in the Talos ${info.label} schema (not checked)`, 'allowance', true)
      } else {
        issue('/kind', `unknown document kind ${id.apiVersion}/${id.kind} for Talos ${info.label}`, 'kind', !exactMinor)
      }
      return
    }
    if (id.kind === 'UnattendedInstallConfig') out.unattended = true
    const check = validatorFor(schema, defName)
    if (!check(schemaKind === id.kind ? doc : { ...doc, kind: schemaKind })) {
      for (const e of check.errors ?? []) issue(e.instancePath, readableMessage(e), e.keyword, lenient(e))
    }
    if (id.kind === 'HostnameConfig') {
      const hostname = typeof doc.hostname === 'string' ? doc.hostname : ''
      if (hostname && doc.auto !== undefined && doc.auto !== 'off') issue('/auto', "'auto' and 'hostname' cannot be set at the same time (use auto: off)", 'hostname')
      if (!hostname && doc.auto === undefined) issue('', "either 'auto' or 'hostname' must be set", 'hostname')
    }
  }

  // The schema choice for a Talos version, made once per version (every config served asks for one).
  const contexts = new Map<string, DocumentContext>()
  function contextFor(talosVersion: string | TalosVersion): DocumentContext {
    const asked = typeof talosVersion === 'string' ? talosVersion : null
    const hit = asked === null ? undefined : contexts.get(asked)
    if (hit) return hit
    const v = parseTalosVersion(talosVersion)
    const info = chooseSchema(schemas(), v)
    const schema = load(info)
    const olderInfo = schemas().find((s) => compareVersions(s.version, info.version) < 0 && (s.version.minor !== info.version.minor || s.version.major !== info.version.major))
    const legacy = olderInfo ? load(olderInfo) : null
    const exactMinor = info.version.major === v.major && info.version.minor === v.minor
    // Without the target's own schema, unknown fields may just be from another version.
    const lenient = (e: ErrorObject): boolean => !exactMinor && e.keyword === 'additionalProperties'
    const ctx: DocumentContext = { key: `${info.file}\0${legacy?.info.file ?? ''}\0${formatTalosVersion(v)}`, v, info, schema, legacy, exactMinor, lenient }
    if (asked !== null) {
      if (contexts.size >= 64) contexts.clear()
      contexts.set(asked, ctx)
    }
    return ctx
  }

  function lint(config: string | readonly ConfigDocument[], options: LintOptions): LintResult {
    const mode = options.mode ?? 'metal'
    const ctx = contextFor(options.talosVersion)
    const { v, info, exactMinor } = ctx
    const errors: LintIssue[] = []
    const warnings: LintIssue[] = []

    let docs: readonly ConfigDocument[]
    // The text of a config rendered a moment ago (the config route renders, then lints the text it will serve):
    // its documents are what parsing the text gives (render.ts reads its prepared documents back from YAML), so they
    // are checked without parsing again.
    const rendered = typeof config === 'string' ? renderedDocumentsOf(config) : undefined
    if (rendered) docs = rendered
    else if (typeof config === 'string') {
      try {
        docs = parseConfigDocuments(config)
      } catch (err) {
        errors.push({ documentIndex: -1, kind: '', path: '', keyword: 'yaml', message: (err as Error).message })
        runs?.inc({ result: 'failed' })
        return { ok: false, talosVersion: formatTalosVersion(v), schemaVersion: info.label, errors, warnings }
      }
    } else docs = config

    if (!exactMinor) {
      warnings.push({ documentIndex: -1, kind: '', path: '', keyword: 'schema', message: `no schema for Talos ${v.major}.${v.minor}; using the nearest, ${info.label} (unknown fields and kinds are warnings)` })
    }

    const seen = new Map<string, number>()
    let v1alpha1: ConfigDocument | null = null
    let unattended = false
    // (A plain loop and one issue writer: this runs for every document of every config served.)
    const issue = (index: number, id: DocumentIdentity, path: string, message: string, keyword: string, warning = false): void => {
      ;(warning ? warnings : errors).push(
        id.name ? { documentIndex: index, kind: id.kind, name: id.name, path, message, keyword } : { documentIndex: index, kind: id.kind, path, message, keyword },
      )
    }
    for (let index = 0; index < docs.length; index++) {
      const doc = docs[index]!
      if (!isRecord(doc)) {
        errors.push({ documentIndex: index, kind: '', path: '', message: 'document is not a mapping', keyword: 'type' })
        continue
      }
      const id = documentIdentity(doc)
      const main = isV1Alpha1Document(doc)
      if (!main && (doc.kind === undefined || doc.apiVersion === undefined)) {
        issue(index, id, '', doc.kind === undefined ? 'document has no kind (and is not the v1alpha1 document)' : 'document has no apiVersion', 'required')
        continue
      }
      const key = identityKey(id)
      const first = seen.get(key)
      if (first !== undefined) issue(index, id, '', `duplicate document (also document ${first}); Talos rejects duplicates`, 'duplicate')
      else seen.set(key, index)

      if (main) v1alpha1 = doc
      const checked = checkDocument(doc, id, ctx)
      if (checked.unattended) unattended = true
      for (const i of checked.issues) issue(index, id, i.path, i.message, i.keyword, i.warning)
    }

    const main = v1alpha1 as ConfigDocument | null
    if (!main) {
      warnings.push({ documentIndex: -1, kind: 'v1alpha1', path: '', keyword: 'incomplete', message: 'no v1alpha1 document: Talos applies this config and waits in maintenance mode for a complete one' })
    } else if (mode === 'metal') {
      const install = isRecord(main.machine) && isRecord(main.machine.install) ? main.machine.install : null
      const hasDisk = !!install && ((typeof install.disk === 'string' && install.disk !== '') || isRecord(install.diskSelector))
      const index = docs.indexOf(main)
      if (!hasDisk && !versionAtLeast(v, 1, 14)) {
        errors.push({ documentIndex: index, kind: 'v1alpha1', path: '/machine/install', keyword: 'install', message: 'either install disk or diskSelector should be defined (required on metal)' })
      } else if (!hasDisk && !unattended) {
        warnings.push({ documentIndex: index, kind: 'v1alpha1', path: '/machine/install', keyword: 'install', message: 'no install disk and no UnattendedInstallConfig: the machine will not install itself' })
      }
    }

    const ok = errors.length === 0
    runs?.inc({ result: ok ? 'ok' : 'failed' })
    return { ok, talosVersion: formatTalosVersion(v), schemaVersion: info.label, errors, warnings }
  }

  return {
    lint,
    schemaFor: (talosVersion) => chooseSchema(schemas(), talosVersion),
    schemas,
    warm(talosVersion) {
      validatorFor(contextFor(talosVersion).schema, 'v1alpha1.Config')
    },
  }
}
