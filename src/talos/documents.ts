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

// Immutable documents and incremental YAML. A boot storm renders thousands of configs from a few profiles: the
// profile's documents (base + patches) are deep-frozen once and shared by every machine's config, which copies only
// the objects its own values change (render.ts). The YAML of a frozen subtree never changes, so it is written once
// and remembered by object identity; a machine's config is then its few changed mappings plus remembered text.

const deepFrozen = new WeakSet<object>()

/** Freezes JSON-like data all the way down (objects already deep-frozen are not walked again); returns it. */
export function deepFreeze<T>(value: T): T {
  if (typeof value !== 'object' || value === null || deepFrozen.has(value)) return value
  // (for...in: no array of values made for every object of every machine's config.)
  const obj = value as Record<string, unknown>
  for (const key in obj) if (Object.hasOwn(obj, key)) deepFreeze(obj[key])
  Object.freeze(value)
  deepFrozen.add(value)
  return value
}

/** Whether deepFreeze froze this object (Object.isFrozen alone says nothing about its children). */
export function isDeepFrozen(value: unknown): boolean {
  return typeof value === 'object' && value !== null && deepFrozen.has(value)
}

// A machine's documents are copies of its profile's, changed on a few paths (render.ts). Which object a copy was
// made from lets the lint compare the two and check only what differs (lint.ts); it is a hint, never trusted for
// content: the lint compares the objects themselves.
const copiedFrom = new WeakMap<object, object>()

/** Records that `copy` was made from `original` (a shallow copy, then changed). */
export function recordCopy(copy: object, original: object): void {
  copiedFrom.set(copy, original)
}

/** The object `copy` was made from, if recorded. */
export function originalOf(copy: object): object | undefined {
  return copiedFrom.get(copy)
}

function isPlainRecord(value: unknown): value is Record<string, unknown> {
  if (!isRecord(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** Text of a deep-frozen mapping, by nesting depth. */
const mappingTexts = new WeakMap<object, string[]>()
/** Text of `key: value` for a deep-frozen value, by depth and key. */
const pairTexts = new WeakMap<object, Map<string, string>>()
/** Text of `key: scalar` by depth; bounded, cleared when full (per-machine values pass through here). */
let scalarPairs = new Map<string, string>()
const SCALAR_PAIRS_MAX = 8192
const SCALAR_PAIR_MAX_CHARS = 512
/** `key:` as the writer spells the key, or null when it needs the explicit `? key` form. */
const keyPrefixes = new Map<string, string | null>()

function keyPrefix(key: string): string | null {
  let prefix = keyPrefixes.get(key)
  if (prefix === undefined) {
    const m = key === '__proto__' ? null : /^([^\n]*): \{\}\n$/.exec(stringifyConfigDocument({ [key]: {} }))
    prefix = m && !m[1]!.startsWith('? ') ? `${m[1]}:` : null
    if (keyPrefixes.size >= SCALAR_PAIRS_MAX) keyPrefixes.clear()
    keyPrefixes.set(key, prefix)
  }
  return prefix
}

// The writer's indent is four spaces a level; empty lines (inside block scalars) stay empty, as the writer leaves them.
function indented(text: string, depth: number): string {
  if (depth === 0) return text
  const pad = ' '.repeat(4 * depth)
  return text.split('\n').map((line) => (line === '' ? line : pad + line)).join('\n')
}

// Per-machine strings (a hostname, an address) are new in every config, and writing each through the YAML library
// was most of a machine's render. A string of these characters, not read back as a number, boolean or null, is
// written as it is (a plain scalar, never folded at lineWidth 0): `key: value`, `- value`. Conservative on purpose
// (anything number-like, or starting with '.' or '-', goes to the writer); test/talos/render-cache.test.ts holds it
// against the writer.
const PLAIN_CHARS = /^[A-Za-z0-9_/][A-Za-z0-9_./-]*$/
const NUMBER_LIKE = /^[0-9._+-]*(?:[eE][0-9._+-]*)?$|^0[xXoObB]/
const RESERVED_WORDS = /^(?:true|True|TRUE|false|False|FALSE|null|Null|NULL)$/

/** Whether the writer writes this string plain, as it is (when false, it may or may not). */
export function writtenPlain(value: string): boolean {
  return value.length <= SCALAR_PAIR_MAX_CHARS && PLAIN_CHARS.test(value) && !NUMBER_LIKE.test(value) && !RESERVED_WORDS.test(value)
}

// A value that is new in every config (a machine's addresses, routes, nameservers) has a shape shared by many: the
// same keys, numbers, booleans and other strings, different plain strings. The shape is written once, with a marker
// in place of each plain string, and each config's text is that text with its own strings put back in the markers'
// places (a value with no plain string is its own shape: written once too).
const SLOT = 'rbslot'
const SLOT_RE = /rbslot[0-9]+x/g
/** Text of a shape by depth and key, with slots; bounded like scalarPairs. */
let shapeTexts = new Map<string, string[] | null>()
const SHAPE_MAX_CHARS = 2048

/** The shape of a value (plain strings replaced by numbered markers) and its strings, or null when it has none to share. */
function shapeOf(value: unknown, strings: string[]): unknown {
  if (typeof value === 'string') {
    if (!writtenPlain(value)) return value
    strings.push(value)
    return `${SLOT}${strings.length - 1}x`
  }
  if (typeof value === 'number') return Object.is(value, -0) ? undefined : value
  if (typeof value !== 'object' || value === null) return typeof value === 'boolean' || value === null ? value : undefined
  if (Array.isArray(value)) {
    const out: unknown[] = []
    for (const v of value) {
      const s = shapeOf(v, strings)
      if (s === undefined) return undefined
      out.push(s)
    }
    return out
  }
  if (!isPlainRecord(value)) return undefined
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(value)) {
    const v = value[key]
    if (v === undefined) continue
    const s = shapeOf(v, strings)
    if (s === undefined) return undefined
    out[key] = s
  }
  return out
}

function writtenPair(key: string, value: object, depth: number): string {
  const strings: string[] = []
  const shape = shapeOf(value, strings)
  if (shape === undefined) return indented(stringifyConfigDocument({ [key]: value }), depth)
  const id = `${depth}\0${key}\0${JSON.stringify(shape)}`
  // Large values (certificate lists) are kept by identity when frozen (pairTexts), not here: the map stays small.
  if (id.length > SHAPE_MAX_CHARS) return indented(stringifyConfigDocument({ [key]: value }), depth)
  let parts = shapeTexts.get(id)
  if (parts === undefined) {
    const text = indented(stringifyConfigDocument({ [key]: shape }), depth)
    // The markers must come back one each, in order; a key or string that happens to hold one is written whole.
    const found = text.match(SLOT_RE) ?? []
    parts = found.length === strings.length && found.every((m, i) => m === `${SLOT}${i}x`) ? text.split(SLOT_RE) : null
    if (shapeTexts.size >= SCALAR_PAIRS_MAX) shapeTexts = new Map()
    shapeTexts.set(id, parts)
  }
  if (parts === null) return indented(stringifyConfigDocument({ [key]: value }), depth)
  let out = parts[0]!
  for (let i = 0; i < strings.length; i++) out += strings[i]! + parts[i + 1]!
  return out
}

function pairText(key: string, value: unknown, depth: number): string {
  if (typeof value === 'object' && value !== null) {
    if (!isDeepFrozen(value)) return writtenPair(key, value, depth)
    let byKey = pairTexts.get(value)
    if (!byKey) pairTexts.set(value, (byKey = new Map()))
    const id = `${depth}\0${key}`
    let text = byKey.get(id)
    if (text === undefined) byKey.set(id, (text = writtenPair(key, value, depth)))
    return text
  }
  if (typeof value === 'string' && writtenPlain(value)) {
    const prefix = keyPrefix(key)
    if (prefix !== null) return `${' '.repeat(4 * depth)}${prefix} ${value}\n`
  }
  // (String(-0) is '0', but the writer tells them apart.)
  const id = `${depth}\0${typeof value}\0${key}\0${Object.is(value, -0) ? '-0' : String(value)}`
  let text = scalarPairs.get(id)
  if (text === undefined) {
    text = indented(stringifyConfigDocument({ [key]: value }), depth)
    // Long values (certificates, keys) are written each time rather than kept: the map stays a few MiB at most.
    if (id.length > SCALAR_PAIR_MAX_CHARS) return text
    if (scalarPairs.size >= SCALAR_PAIRS_MAX) scalarPairs = new Map()
    scalarPairs.set(id, text)
  }
  return text
}

function hasDefinedValue(obj: Record<string, unknown>): boolean {
  for (const key in obj) if (Object.hasOwn(obj, key) && obj[key] !== undefined) return true
  return false
}

// A block mapping is written pair after pair, and a nested mapping is its parent's key line followed by the
// mapping written on its own, one level deeper: the writer's output, assembled from parts
// (test/talos/render-cache.test.ts compares the two on generated configs and on random data).
function mappingText(obj: Record<string, unknown>, depth: number): string {
  const frozen = isDeepFrozen(obj)
  if (frozen) {
    const hit = mappingTexts.get(obj)?.[depth]
    if (hit !== undefined) return hit
  }
  const pad = ' '.repeat(4 * depth)
  let out = ''
  for (const key of Object.keys(obj)) {
    const value = obj[key]
    if (value === undefined) continue
    if (isPlainRecord(value) && hasDefinedValue(value)) {
      const prefix = keyPrefix(key)
      if (prefix !== null) {
        out += `${pad}${prefix}\n${mappingText(value, depth + 1)}`
        continue
      }
    }
    out += pairText(key, value, depth)
  }
  if (frozen) {
    let byDepth = mappingTexts.get(obj)
    if (!byDepth) mappingTexts.set(obj, (byDepth = []))
    byDepth[depth] = out
  }
  return out
}

/**
 * stringifyConfigDocuments, reusing the text of deep-frozen subtrees written before: the same output, at the cost
 * of the objects that are not frozen.
 */
export function stringifyConfigDocumentsIncremental(docs: readonly ConfigDocument[]): string {
  return docs
    .map((d) => (isPlainRecord(d) && hasDefinedValue(d) ? mappingText(d, 0) : stringifyConfigDocument(d)))
    .join('---\n')
}
