import { RackbootError } from '../errors.js'
import { isRecord, parseConfigDocuments, parseYamlDocuments, type ConfigDocument } from './documents.js'
import { applyJsonPatch, validateOperations, type JsonPatchOperation } from './json-patch.js'
import { applyStrategicPatch, loadStrategicPatch, type StrategicPatch } from './strategic-merge.js'

// Loading and applying config patches the way configpatcher (load.go, apply.go) does: a patch is a strategic
// merge patch (one or more config documents, `$patch: delete` allowed) unless it is a list, which makes it an
// RFC 6902 JSON patch. JSON patches work on single-document configs only.

export type ConfigPatch =
  | ({ type: 'strategic' } & StrategicPatch)
  | { type: 'json6902'; operations: JsonPatchOperation[] }

/** What callers may store as a patch: YAML/JSON text, a config document object, or a list of JSON patch operations. */
export type PatchInput = string | Record<string, unknown> | readonly unknown[] | ConfigPatch

function isLoaded(input: unknown): input is ConfigPatch {
  return isRecord(input) && ((input.type === 'strategic' && Array.isArray(input.steps))
    || (input.type === 'json6902' && Array.isArray(input.operations)))
}

/** Reads one patch. Text may hold several YAML documents (strategic) or one YAML/JSON list (JSON patch). */
export function loadPatch(input: PatchInput, source = 'patch'): ConfigPatch {
  if (isLoaded(input)) return input
  if (Array.isArray(input)) return { type: 'json6902', operations: validateOperations(input) }
  if (isRecord(input)) return { type: 'strategic', ...loadStrategicPatch([input]) }
  if (typeof input !== 'string') throw new RackbootError('RB_ERR_VALIDATION', `${source}: a patch must be text, a mapping or a list`)
  const docs = parseYamlDocuments(input, source)
  if (docs.length === 0) throw new RackbootError('RB_ERR_VALIDATION', `${source}: the patch is empty`)
  if (docs.length === 1 && Array.isArray(docs[0])) return { type: 'json6902', operations: validateOperations(docs[0]) }
  docs.forEach((d, i) => {
    if (!isRecord(d)) {
      throw new RackbootError('RB_ERR_VALIDATION', `${source}: document ${i} is neither a config document nor a JSON patch list`, {
        details: { documentIndex: i },
      })
    }
  })
  return { type: 'strategic', ...loadStrategicPatch(docs as ConfigDocument[]) }
}

/** The message Talos gives (configpatcher/json6902.go), with the count and the way out. */
export const JSON6902_MULTIDOC_MESSAGE = 'JSON6902 patches are not supported for multi-document machine configuration'

/** Applies one loaded patch to a config (documents are not mutated). */
export function applyPatch(config: readonly ConfigDocument[], patch: ConfigPatch, source = 'patch'): ConfigDocument[] {
  if (patch.type === 'strategic') return applyStrategicPatch(config, patch)
  if (config.length !== 1) {
    throw new RackbootError(
      'RB_ERR_VALIDATION',
      `${source}: ${JSON6902_MULTIDOC_MESSAGE} (this config has ${config.length} documents); use a strategic merge patch`,
      { details: { documents: config.length } },
    )
  }
  const result = applyJsonPatch(config[0], patch.operations)
  if (!isRecord(result)) throw new RackbootError('RB_ERR_VALIDATION', `${source}: the JSON patch left a document that is not a mapping`)
  return [result]
}

/** Applies patches in order to a config given as YAML text or documents. */
export function applyPatches(config: string | readonly ConfigDocument[], patches: readonly PatchInput[], source = 'patch'): ConfigDocument[] {
  let docs = typeof config === 'string' ? parseConfigDocuments(config) : config.slice()
  patches.forEach((p, i) => {
    const label = patches.length > 1 ? `${source} ${i}` : source
    docs = applyPatch(docs, loadPatch(p, label), label)
  })
  return docs
}
