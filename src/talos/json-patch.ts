import { isDeepStrictEqual } from 'node:util'
import { RackbootError } from '../errors.js'
import { cloneValue, isRecord } from './documents.js'

// RFC 6902 JSON Patch over RFC 6901 JSON Pointers, as Talos applies it (evanphx/json-patch) to the JSON form of a
// single-document machine config.

export type JsonPatchOperation =
  | { op: 'add' | 'replace' | 'test'; path: string; value: unknown }
  | { op: 'remove'; path: string }
  | { op: 'move' | 'copy'; from: string; path: string }

const OPS = new Set(['add', 'remove', 'replace', 'move', 'copy', 'test'])

function patchError(message: string, details?: unknown): RackbootError {
  return new RackbootError('RB_ERR_VALIDATION', message, { details })
}

/** Splits a JSON Pointer into reference tokens ('~1' is '/', '~0' is '~'). */
export function parsePointer(pointer: string): string[] {
  if (pointer === '') return []
  if (!pointer.startsWith('/')) throw patchError(`JSON pointer must start with '/': '${pointer}'`)
  return pointer
    .slice(1)
    .split('/')
    .map((t) => {
      if (/~[^01]|~$/.test(t)) throw patchError(`bad escape in JSON pointer '${pointer}'`)
      return t.replace(/~1/g, '/').replace(/~0/g, '~')
    })
}

/** Checks the shape of an operation list and returns it typed. */
export function validateOperations(value: unknown): JsonPatchOperation[] {
  if (!Array.isArray(value)) throw patchError('a JSON patch must be a list of operations')
  return value.map((raw, i) => {
    if (!isRecord(raw) || typeof raw.op !== 'string' || !OPS.has(raw.op)) {
      throw patchError(`JSON patch operation ${i}: 'op' must be one of add, remove, replace, move, copy, test`, { index: i })
    }
    if (typeof raw.path !== 'string') throw patchError(`JSON patch operation ${i} (${raw.op}): 'path' must be a string`, { index: i })
    parsePointer(raw.path)
    if ((raw.op === 'add' || raw.op === 'replace' || raw.op === 'test') && !('value' in raw)) {
      throw patchError(`JSON patch operation ${i} (${raw.op} ${raw.path}): 'value' is required`, { index: i })
    }
    if (raw.op === 'move' || raw.op === 'copy') {
      if (typeof raw.from !== 'string') throw patchError(`JSON patch operation ${i} (${raw.op} ${raw.path}): 'from' must be a string`, { index: i })
      parsePointer(raw.from)
    }
    return raw as JsonPatchOperation
  })
}

function arrayIndex(arr: unknown[], token: string, forAdd: boolean): number {
  if (forAdd && token === '-') return arr.length
  if (!/^(0|[1-9]\d*)$/.test(token)) throw new Error(`'${token}' is not an array index`)
  const idx = Number(token)
  if (idx > arr.length || (!forAdd && idx === arr.length)) throw new Error(`index ${idx} is out of range`)
  return idx
}

interface Location {
  parent: unknown
  token: string
}

function resolveParent(doc: unknown, tokens: string[]): Location {
  let node = doc
  for (const t of tokens.slice(0, -1)) {
    if (Array.isArray(node)) node = node[arrayIndex(node, t, false)]
    else if (isRecord(node) && Object.hasOwn(node, t)) node = node[t]
    else throw new Error(`path does not exist at '${t}'`)
  }
  return { parent: node, token: tokens[tokens.length - 1]! }
}

function getValue(doc: unknown, tokens: string[]): unknown {
  if (tokens.length === 0) return doc
  const { parent, token } = resolveParent(doc, tokens)
  if (Array.isArray(parent)) return parent[arrayIndex(parent, token, false)]
  if (isRecord(parent) && Object.hasOwn(parent, token)) return parent[token]
  throw new Error('path does not exist')
}

function addValue(doc: unknown, tokens: string[], value: unknown): unknown {
  if (tokens.length === 0) return value
  const { parent, token } = resolveParent(doc, tokens)
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, token, true), 0, value)
  else if (isRecord(parent)) parent[token] = value
  else throw new Error('parent is not an object or array')
  return doc
}

function removeValue(doc: unknown, tokens: string[]): unknown {
  if (tokens.length === 0) throw new Error('cannot remove the whole document')
  const { parent, token } = resolveParent(doc, tokens)
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, token, false), 1)
  else if (isRecord(parent) && Object.hasOwn(parent, token)) delete parent[token]
  else throw new Error('path does not exist')
  return doc
}

function replaceValue(doc: unknown, tokens: string[], value: unknown): unknown {
  if (tokens.length === 0) return value
  const { parent, token } = resolveParent(doc, tokens)
  // In place, so a replaced key keeps its position in the document.
  if (Array.isArray(parent)) parent[arrayIndex(parent, token, false)] = value
  else if (isRecord(parent) && Object.hasOwn(parent, token)) parent[token] = value
  else throw new Error('path does not exist')
  return doc
}

/** Applies operations to a copy of `doc`; the first failing operation throws with its index. */
export function applyJsonPatch(doc: unknown, operations: readonly JsonPatchOperation[]): unknown {
  let result = cloneValue(doc)
  operations.forEach((op, i) => {
    const label = `JSON patch operation ${i} (${op.op} ${op.path})`
    try {
      const path = parsePointer(op.path)
      switch (op.op) {
        case 'add':
          result = addValue(result, path, cloneValue(op.value))
          break
        case 'remove':
          result = removeValue(result, path)
          break
        case 'replace':
          result = replaceValue(result, path, cloneValue(op.value))
          break
        case 'move': {
          const from = parsePointer(op.from)
          if (path.length > from.length && from.every((t, j) => t === path[j])) throw new Error('cannot move a value into itself')
          const value = getValue(result, from)
          result = addValue(removeValue(result, from), path, value)
          break
        }
        case 'copy':
          result = addValue(result, path, cloneValue(getValue(result, parsePointer(op.from))))
          break
        case 'test':
          if (!isDeepStrictEqual(getValue(result, path), op.value)) throw new Error('test failed: value differs')
          break
      }
    } catch (err) {
      if (err instanceof RackbootError) throw err
      throw new RackbootError('RB_ERR_VALIDATION', `${label}: ${(err as Error).message}`, { cause: err, details: { index: i, op } })
    }
  })
  return result
}
