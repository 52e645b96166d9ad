import { RackbootError } from '../errors.js'
import {
  cloneValue,
  documentIdentity,
  documentKey,
  identityKey,
  isRecord,
  isV1Alpha1Document,
  V1ALPHA1,
  type ConfigDocument,
  type DocumentIdentity,
} from './documents.js'

// Talos's strategic merge (configpatcher/strategic.go, merge/merge.go, decoder/delete.go, selector.go) ported to
// untyped YAML. Talos merges typed Go structs; the type knowledge that changes the outcome is carried here as
// tables: lists that are replaced instead of appended (`merge:"replace"`), lists merged by a key (custom Merge
// methods) and argument maps replaced key by key (meta.Args). Everything else follows merge.go:
//   scalars: the patch wins unless it is a zero value ("" or 0); booleans always win;
//   maps: merged key by key; lists: appended; null in the patch: no change.
// Known difference: Go lets an explicit zero override a pointer field (*int: 0); untyped YAML cannot tell a
// pointer from a value, so a zero never overrides here. Use `$patch: delete` to clear a field, as Talos advises.
// `$patch: delete` fails ("lookup failed") when the way to the deleted key or the list item is missing, as in
// Talos; a missing last key is a no-op (Talos zeroes a struct field without complaint).

type Path = readonly string[]

interface PathRule {
  kind: string
  path: readonly string[]
}

interface KeyedListRule extends PathRule {
  /** Does element `existing` match patch element `patch`? */
  match: (existing: unknown, patch: unknown) => boolean
  /** 'merge': merge the patch element into the match (Talos's merge.Merge); 'replace': put it in its place. */
  onMatch: 'merge' | 'replace'
}

const rule = (kind: string, dotted: string): PathRule => ({ kind, path: dotted.split('.') })

/** Fields tagged `merge:"replace"` (Talos 1.12–1.14). */
const REPLACE_RULES: readonly PathRule[] = [
  rule(V1ALPHA1, 'cluster.network.podSubnets'),
  rule(V1ALPHA1, 'cluster.network.serviceSubnets'),
  rule(V1ALPHA1, 'cluster.apiServer.auditPolicy'),
  rule('KubeNetworkConfig', 'podSubnets'),
  rule('KubeNetworkConfig', 'serviceSubnets'),
  rule('KubeAuditPolicyConfig', 'configuration'),
  rule('KubeAuthenticationConfig', 'configuration'),
  rule('KubeCredentialProviderConfig', 'configuration'),
  rule('KubeStaticPodConfig', 'pod'),
  rule('CRIBaseRuntimeSpecConfig', 'overrides'),
  rule('BGPInstanceConfig', 'advertise'),
  rule('BGPInstanceConfig', 'importRoutes'),
  rule('BGPInstanceConfig', 'neighbors'),
  rule('NetworkRuleConfig', 'ingress'),
  rule('NetworkRuleConfig', 'portSelector.ports'),
]

/** meta.Args (`extraArgs`): each key of the patch replaces the whole value of that key (maps.Copy). */
const ARGS_RULES: readonly PathRule[] = [
  rule(V1ALPHA1, 'machine.kubelet.extraArgs'),
  rule(V1ALPHA1, 'cluster.apiServer.extraArgs'),
  rule(V1ALPHA1, 'cluster.controllerManager.extraArgs'),
  rule(V1ALPHA1, 'cluster.proxy.extraArgs'),
  rule(V1ALPHA1, 'cluster.scheduler.extraArgs'),
  rule(V1ALPHA1, 'cluster.etcd.extraArgs'),
  rule('KubeAPIServerConfig', 'extraArgs'),
  rule('KubeControllerManagerConfig', 'extraArgs'),
  rule('KubeSchedulerConfig', 'extraArgs'),
  rule('KubeProxyConfig', 'extraArgs'),
  rule('KubeletConfig', 'extraArgs'),
]

function str(value: unknown): string {
  return value === undefined || value === null ? '' : String(value)
}

const SELECTOR_FIELDS = ['busPath', 'hardwareAddr', 'permanentAddr', 'pciID', 'driver'] as const

/**
 * NetworkDeviceList.Merge: by `interface`, else by an equal `deviceSelector`. Go compares the selector struct
 * with ==, and `physical` is a *bool there, so selectors that set `physical` never match (pointer identity).
 */
function sameNetworkDevice(existing: unknown, patch: unknown): boolean {
  if (!isRecord(existing) || !isRecord(patch)) return false
  if (str(patch.interface) !== '') return str(existing.interface) === str(patch.interface)
  const a = existing.deviceSelector
  const b = patch.deviceSelector
  if (!isRecord(a) || !isRecord(b)) return false
  if (a.physical != null || b.physical != null) return false
  return SELECTOR_FIELDS.every((f) => str(a[f]) === str(b[f]))
}

const byField = (field: string) => (existing: unknown, patch: unknown): boolean =>
  isRecord(existing) && isRecord(patch) && str(existing[field]) === str(patch[field])

const KEYED_RULES: readonly KeyedListRule[] = [
  { ...rule(V1ALPHA1, 'machine.network.interfaces'), match: sameNetworkDevice, onMatch: 'merge' },
  { ...rule(V1ALPHA1, 'machine.network.interfaces.*.vlans'), match: (a, b) => isRecord(a) && isRecord(b) && Number(a.vlanId ?? 0) === Number(b.vlanId ?? 0), onMatch: 'merge' },
  { ...rule(V1ALPHA1, 'cluster.apiServer.admissionControl'), match: byField('name'), onMatch: 'merge' },
  { ...rule('ExtensionServiceConfig', 'configFiles'), match: byField('mountPath'), onMatch: 'merge' },
  { ...rule('ImageVerificationConfig', 'rules'), match: byField('imagePattern'), onMatch: 'replace' },
]

function pathMatches(r: PathRule, kind: string, path: Path): boolean {
  return r.kind === kind && r.path.length === path.length && r.path.every((seg, i) => seg === '*' || seg === path[i])
}

function mergeError(kind: string, path: Path, message: string): RackbootError {
  const where = path.length ? path.join('.') : '(document)'
  return new RackbootError('RB_ERR_VALIDATION', `strategic merge: ${kind} ${where}: ${message}`, { details: { kind, path: path.join('.') } })
}

function typeName(v: unknown): string {
  return Array.isArray(v) ? 'list' : isRecord(v) ? 'mapping' : typeof v
}

function isZeroScalar(v: unknown): boolean {
  return v === '' || v === 0
}

/** Merges `right` into `left` (mutating `left` where it is a container) and returns the new value for its slot. */
function mergeValue(left: unknown, right: unknown, kind: string, path: Path): unknown {
  if (right === null || right === undefined) return left
  if (left === null || left === undefined) {
    // A zero scalar does not create a field (its Go field would stay zero and be omitted).
    if (isZeroScalar(right)) return left
    return cloneValue(right)
  }
  if (REPLACE_RULES.some((r) => pathMatches(r, kind, path))) return cloneValue(right)

  if (Array.isArray(left) && Array.isArray(right)) {
    const keyed = KEYED_RULES.find((r) => pathMatches(r, kind, path))
    if (!keyed) return right.length === 0 ? left : [...left, ...cloneValue(right)]
    for (const item of right) {
      const idx = left.findIndex((existing) => keyed.match(existing, item))
      if (idx < 0) left.push(cloneValue(item))
      else if (keyed.onMatch === 'replace') left[idx] = cloneValue(item)
      else left[idx] = mergeValue(left[idx], item, kind, [...path, '*'])
    }
    return left
  }

  if (isRecord(left) && isRecord(right)) {
    const args = ARGS_RULES.some((r) => pathMatches(r, kind, path))
    for (const [key, value] of Object.entries(right)) {
      if (args) {
        if (value !== null && value !== undefined) left[key] = cloneValue(value)
        continue
      }
      const merged = mergeValue(left[key], value, kind, [...path, key])
      if (merged !== undefined) left[key] = merged
    }
    return left
  }

  const leftIsContainer = Array.isArray(left) || isRecord(left)
  const rightIsContainer = Array.isArray(right) || isRecord(right)
  if (leftIsContainer || rightIsContainer) {
    throw mergeError(kind, path, `cannot merge a ${typeName(right)} into a ${typeName(left)}`)
  }
  if (typeof right === 'boolean') return right
  return isZeroScalar(right) ? left : right
}

/** Deep-merges one patch document into a config document of the same identity (mutates and returns `target`). */
export function mergeDocument(target: ConfigDocument, patch: ConfigDocument): ConfigDocument {
  const kind = documentIdentity(target).kind
  return mergeValue(target, patch, kind, []) as ConfigDocument
}

/** A `$patch: delete` found in a patch document (decoder/delete.go). */
export interface DeleteSelector {
  document: DocumentIdentity
  /** Keys from the document root; list items appear as "[i]". Empty: delete the whole document. */
  path: string[]
  /** For a list item: the first key/value of the item, which identifies what to delete. */
  match?: { key: string; value: string }
}

/**
 * A loaded strategic merge patch: ordered steps, as Talos's decoder lists them — each document's deletes, then
 * the rest of that document to merge, document after document. Several documents may target the same config
 * document (the patch loader allows duplicates); they apply one after the other.
 */
export interface StrategicPatch {
  steps: StrategicStep[]
}

export type StrategicStep = { delete: DeleteSelector } | { merge: ConfigDocument }

function isPatchDelete(v: Record<string, unknown>): boolean {
  return v.$patch === 'delete'
}

function loadError(message: string, details?: unknown): RackbootError {
  return new RackbootError('RB_ERR_VALIDATION', `strategic merge patch: ${message}`, { details })
}

function selectorIdentity(root: ConfigDocument, path: string[]): DocumentIdentity {
  const apiVersion = str(root.apiVersion)
  const kind = str(root.kind)
  if (path.length === 0 && (!apiVersion || !kind)) {
    // The v1alpha1 document cannot be deleted; a document delete needs apiVersion and kind.
    throw loadError(`missing ${apiVersion ? 'kind' : 'apiVersion'} in document for which $patch: delete is used`)
  }
  if (!kind && !apiVersion) return { apiVersion: '', kind: V1ALPHA1, name: '' }
  if (!kind || !apiVersion) throw loadError(`kind and apiVersion must be both set for path ${path.join('.')}`)
  return { apiVersion, kind, name: str(root.name) }
}

/** Walks a patch document, collects `$patch: delete` selectors and strips them, as processNode does. */
function extractDeletes(root: ConfigDocument): { deletes: DeleteSelector[]; remaining: ConfigDocument | null } {
  const deletes: DeleteSelector[] = []

  // Returns true when `node` must be removed from its parent.
  const visit = (node: unknown, path: string[], inSequence: boolean): boolean => {
    if (isRecord(node)) {
      if (isPatchDelete(node)) {
        if (inSequence) {
          const entry = Object.entries(node).find(([k]) => k !== '$patch')
          if (!entry) throw loadError(`no key:val found in sequence node for path ${path.join('.')}`)
          const value = entry[1]
          deletes.push({ document: selectorIdentity(root, path), path, match: { key: entry[0], value: isRecord(value) || Array.isArray(value) ? '' : str(value) } })
        } else {
          if (path.some((p) => p.startsWith('['))) throw loadError(`cannot delete an inner key in '${path.join('.')}'`)
          deletes.push({ document: selectorIdentity(root, path), path })
        }
        return true
      }
      for (const key of Object.keys(node)) {
        if (visit(node[key], [...path, key], false)) {
          delete node[key]
          if (Object.keys(node).length === 0) return true
        }
      }
      return false
    }
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        if (visit(node[i], [...path, `[${i}]`], true)) {
          node.splice(i, 1)
          i--
          if (node.length === 0) return true
        }
      }
    }
    return false
  }

  const doc = cloneValue(root)
  if (isPatchDelete(doc)) {
    deletes.push({ document: selectorIdentity(doc, []), path: [] })
    return { deletes, remaining: null }
  }
  const before = deletes.length
  visit(doc, [], false)
  // A document left with nothing but its identity after its deletes were taken out is dropped (isEmptyDoc).
  const onlyIdentity = Object.keys(doc).every((k) => ['version', 'kind', 'name', 'apiVersion'].includes(k))
  if (deletes.length > before && onlyIdentity) return { deletes, remaining: null }
  return { deletes, remaining: doc }
}

/** Prepares patch documents: identifies each and separates its deletes from what it merges. */
export function loadStrategicPatch(documents: readonly ConfigDocument[]): StrategicPatch {
  const patch: StrategicPatch = { steps: [] }
  documents.forEach((raw, i) => {
    if (!isRecord(raw)) throw loadError(`document ${i} is not a mapping`, { documentIndex: i })
    if (!isV1Alpha1Document(raw)) {
      if (raw.kind === undefined && raw.apiVersion === undefined && !isPatchDelete(raw)) {
        throw loadError(`document ${i} is neither the v1alpha1 document (machine/cluster) nor has apiVersion and kind`, { documentIndex: i })
      }
      if (raw.kind === undefined) throw loadError(`document ${i}: missing kind`, { documentIndex: i })
      if (raw.apiVersion === undefined) throw loadError(`document ${i} (${str(raw.kind)}): missing apiVersion`, { documentIndex: i })
    }
    const { deletes, remaining } = extractDeletes(raw)
    for (const d of deletes) patch.steps.push({ delete: d })
    if (remaining) patch.steps.push({ merge: remaining })
  })
  return patch
}

function lookupFailed(sel: DeleteSelector): RackbootError {
  const doc = `${sel.document.apiVersion}/${sel.document.kind}${sel.document.name ? `/${sel.document.name}` : ''}`
  const path = sel.path.join('.')
  return new RackbootError('RB_ERR_VALIDATION', `patch delete: path '${path}' in document '${doc}': lookup failed`, {
    details: { document: doc, path },
  })
}

/** Removes a list or mapping that a delete left empty, as Go's omitempty would leave it out. */
function pruneEmpty(parent: unknown, key: string | undefined): void {
  if (!isRecord(parent) || key === undefined) return
  const v = parent[key]
  if ((Array.isArray(v) && v.length === 0) || (isRecord(v) && Object.keys(v).length === 0)) delete parent[key]
}

function applyDelete(target: ConfigDocument, sel: DeleteSelector): void {
  const { path } = sel
  let node: unknown = target
  let parent: unknown
  // Walk to the container of the last segment: the list (for an item) or the mapping (for a key).
  for (let i = 0; i < path.length - 1; i++) {
    const seg = path[i]!
    if (seg.startsWith('[') || Array.isArray(node)) {
      throw mergeError(sel.document.kind, path, 'searching for complex paths in lists is not supported')
    }
    if (!isRecord(node) || node[seg] === undefined || node[seg] === null) throw lookupFailed(sel)
    parent = node
    node = node[seg]
  }
  const containerKey = path.length >= 2 ? path[path.length - 2] : undefined
  if (sel.match) {
    if (!Array.isArray(node)) throw lookupFailed(sel)
    const { key, value } = sel.match
    const idx = node.findIndex((item) => isRecord(item) && key in item && str(item[key]) === value)
    if (idx < 0) throw lookupFailed(sel)
    node.splice(idx, 1)
  } else {
    if (!isRecord(node)) throw lookupFailed(sel)
    // A missing last key is a no-op: for a Go struct field Talos just zeroes it.
    delete node[path[path.length - 1]!]
  }
  pruneEmpty(parent, containerKey)
}

/**
 * StrategicMerge: each patch document is matched to a config document by apiVersion/kind/name and deep-merged;
 * an unmatched one is appended; a document delete removes its match (and is skipped when there is none).
 */
export function applyStrategicPatch(config: readonly ConfigDocument[], patch: StrategicPatch): ConfigDocument[] {
  const docs = config.map((d) => cloneValue(d))
  const index = new Map<string, ConfigDocument>()
  for (const d of docs) index.set(documentKey(d), d)

  for (const step of patch.steps) {
    if ('delete' in step) {
      const sel = step.delete
      const key = identityKey(sel.document)
      const target = index.get(key)
      // A delete for a document the config does not have is skipped, as in Talos.
      if (!target) continue
      if (sel.path.length === 0) {
        index.delete(key)
        docs.splice(docs.indexOf(target), 1)
      } else applyDelete(target, sel)
      continue
    }
    const p = step.merge
    const key = documentKey(p)
    const target = index.get(key)
    if (target) {
      mergeDocument(target, p)
      continue
    }
    const added = cloneValue(p)
    // The v1alpha1 document is written with its version first, as Talos's encoder does.
    const doc = isV1Alpha1Document(added) && added.version === undefined ? { version: V1ALPHA1, ...added } : added
    docs.push(doc)
    index.set(key, doc)
  }
  return docs
}
