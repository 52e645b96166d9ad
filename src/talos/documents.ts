import YAML from 'yaml'
import { RackbootError } from '../errors.js'

// A Talos machine config is a stream of YAML documents: the legacy v1alpha1 document (`version: v1alpha1`, no
// kind) and typed documents (`apiVersion: v1alpha1`, `kind`, sometimes `name`). Their identity, for patching and
// for duplicate checks, is apiVersion/kind/name (configloader decoder and configpatcher/strategic.go).

export type ConfigDocument = Record<string, unknown>

export interface DocumentIdentity {
  /** '' for the v1alpha1 document. */
  apiVersion: string
  /** 'v1alpha1' for the v1alpha1 document. */
  kind: string
  /** '' when the document has no name. */
  name: string
}

export const V1ALPHA1 = 'v1alpha1'

// Keys that mark a kind-less document as the v1alpha1 one (decoder.go ManifestDeprecatedKey*).
const V1ALPHA1_KEYS = ['version', 'machine', 'cluster', 'debug', 'persist']

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function stringField(doc: ConfigDocument, key: string): string {
  const v = doc[key]
  return typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v)
}

export function isV1Alpha1Document(doc: ConfigDocument): boolean {
  return doc.kind === undefined && V1ALPHA1_KEYS.some((k) => k in doc)
}

export function documentIdentity(doc: ConfigDocument): DocumentIdentity {
  if (isV1Alpha1Document(doc)) return { apiVersion: '', kind: V1ALPHA1, name: '' }
  return { apiVersion: stringField(doc, 'apiVersion'), kind: stringField(doc, 'kind'), name: stringField(doc, 'name') }
}

export function identityKey(id: DocumentIdentity): string {
  return `${id.apiVersion}/${id.kind}${id.name ? `/${id.name}` : ''}`
}

export function documentKey(doc: ConfigDocument): string {
  return identityKey(documentIdentity(doc))
}

/** A short human label for a document: "v1alpha1", "HostnameConfig", "LinkConfig/eth0". */
export function documentLabel(doc: ConfigDocument): string {
  const id = documentIdentity(doc)
  return id.name ? `${id.kind}/${id.name}` : id.kind
}

function yamlError(message: string, source: string, err: YAML.YAMLError): RackbootError {
  const pos = err.linePos?.[0]
  return new RackbootError('RB_ERR_VALIDATION', `${source}${pos ? ` line ${pos.line}:${pos.col}` : ''}: ${message}: ${err.message.split('\n')[0]}`, {
    cause: err,
    details: pos ? { line: pos.line, column: pos.col } : undefined,
  })
}

/**
 * Parses a multi-document YAML stream into plain objects. Empty documents are skipped; a document that is not a
 * mapping is an error, as it is for Talos. Duplicate keys are errors (Go's yaml rejects them).
 */
export function parseYamlDocuments(text: string, source = 'config'): unknown[] {
  const docs = YAML.parseAllDocuments(text, { uniqueKeys: true, prettyErrors: true })
  const out: unknown[] = []
  const list = Array.isArray(docs) ? docs : [docs]
  for (const doc of list) {
    const err = doc.errors[0]
    if (err) throw yamlError('invalid YAML', source, err)
    const value: unknown = doc.toJS({ maxAliasCount: 100 })
    if (value === null || value === undefined) continue
    out.push(value)
  }
  return out
}

/** Parses a machine config: every document must be a mapping. */
export function parseConfigDocuments(text: string, source = 'config'): ConfigDocument[] {
  const values = parseYamlDocuments(text, source)
  values.forEach((v, i) => {
    if (!isRecord(v)) throw new RackbootError('RB_ERR_VALIDATION', `${source}: document ${i} is not a mapping`, { details: { documentIndex: i } })
  })
  return values as ConfigDocument[]
}

const STRINGIFY_OPTIONS = {
  indent: 4,
  lineWidth: 0,
  minContentWidth: 0,
  blockQuote: 'literal',
  aliasDuplicateObjects: false,
} as const

// yaml 2.9 writes a wrong indentation indicator (|2 under indent 4) for block scalars whose first line starts with
// whitespace, which reads back with extra spaces; such strings are written double-quoted instead.
function needsQuoting(value: string): boolean {
  if (!value.includes('\n')) return false
  const lines = value.split('\n')
  const first = lines.findIndex((l) => l.trim() !== '')
  // Leading whitespace on any line up to the first one with content (or anywhere, when no line has content).
  return (first < 0 ? lines : lines.slice(0, first + 1)).some((l) => /^[ \t]/.test(l))
}

/** One document as YAML text, round-trip safe. */
export function stringifyConfigDocument(doc: ConfigDocument): string {
  const node = new YAML.Document(doc, STRINGIFY_OPTIONS)
  YAML.visit(node, {
    Scalar(_key, scalar) {
      if (typeof scalar.value === 'string' && needsQuoting(scalar.value)) scalar.type = 'QUOTE_DOUBLE'
    },
  })
  return node.toString(STRINGIFY_OPTIONS)
}

/** Writes documents as one YAML stream, `---` between documents (as Talos's encoder does). */
export function stringifyConfigDocuments(docs: readonly ConfigDocument[]): string {
  return docs.map(stringifyConfigDocument).join('---\n')
}

/** Deep copy of JSON-like data (plain objects, arrays, scalars). */
export function cloneValue<T>(value: T): T {
  return structuredClone(value)
}
