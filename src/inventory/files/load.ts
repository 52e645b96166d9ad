import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, posix, relative, resolve } from 'node:path'
import { LineCounter, parseDocument, isNode, type Document } from 'yaml'
import Value from 'typebox/value'
import { RackbootError } from '../../errors.js'
import { checkDiskSelector } from '../disk-selector.js'
import { isMac, isUuid, normalizeMac, normalizeUuid } from '../identifiers.js'
import { checkMachineNetwork } from '../network.js'
import {
  bootMethodProblem, cipherSuitesProblem, ipmiAddressProblem, misplacedBmcField, normalizeSystemId, parseCaPem, splitRedfishAddress, systemKey,
} from './bmc-settings.js'
import { InventoryFileSchema, type FileBmc, type FileClass, type FileMachine, type FileProfile, type InventoryFile } from './schema.js'

export interface InventoryProblem {
  file: string
  line: number
  column: number
  /** Dotted path of the field, e.g. machines[2].nics[0].mac. */
  field: string
  message: string
}

export interface Located<T> {
  value: T
  file: string
  /** JSON pointer of the entry inside its file. */
  pointer: string[]
  /** The file's text as loaded and its name in messages (locate() uses them instead of reading the file again). */
  source?: { text: string; shown: string }
}

/** One file given in memory (the API's import): its path, / separated and relative, and its text. */
export interface InventorySource {
  path: string
  content: string
  /**
   * inventory: an inventory document (machines, classes, profiles); referenced: only read where a document names
   * it (baseConfigFile, caFile). Default: inventory for *.yaml and *.yml outside dot-directories (as a directory
   * import reads), referenced otherwise.
   */
  kind?: 'inventory' | 'referenced'
}

/** Where loading gets a file's text and the files a document refers to (baseConfigFile, caFile). */
interface FileAccess {
  /** The text of `relPath` as named in `fromFile`, or the error code (ENOENT, ...) to report. */
  readRelative(fromFile: string, relPath: string): { text: string } | { error: string }
  /** The name a file has in messages. */
  show(file: string): string
}

/**
 * A machine as the files declare it, its BMC normalised: a Redfish address's system path moved to systemId, and
 * the CA certificate read from caFile or ca (bmcCaPem).
 */
export type DesiredMachine = FileMachine & { bmcCaPem?: string | null }

/** Everything the files declare, validated, with where each entry came from. */
export interface DesiredInventory {
  machines: Located<DesiredMachine>[]
  classes: Located<FileClass>[]
  profiles: Located<FileProfile & { baseConfigText: string | null }>[]
  files: string[]
}

export class InventoryFileError extends RackbootError {
  readonly problems: InventoryProblem[]
  constructor(problems: InventoryProblem[]) {
    const p = problems[0]!
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? 's' : ''})` : ''
    super('RB_ERR_INVENTORY_FILE', `${p.file}:${p.line}:${p.column}: ${p.field}: ${p.message}${more}`, { details: problems })
    this.problems = problems
  }
}

function fieldName(path: (string | number)[]): string {
  return path.reduce<string>((acc, part) => (typeof part === 'number' ? `${acc}[${part}]` : acc ? `${acc}.${part}` : part), '') || '(file)'
}

function listYamlFiles(dir: string): string[] {
  const out: string[] = []
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (entry.name.startsWith('.')) continue
    const full = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...listYamlFiles(full))
    else if (/\.ya?ml$/.test(entry.name)) out.push(full)
  }
  return out
}

interface ParsedFile {
  file: string
  text: string
  doc: Document
  lines: LineCounter
  data: InventoryFile
}

/** Reads every *.yaml under `dir` (or one file) and validates it; throws InventoryFileError naming file, line and field. */
export interface LoadOptions {
  cwd?: string
  /**
   * Checks one class selector (the matching layer sits above the inventory, so the caller passes it in): a message
   * saying what is wrong, or null. Without it selectors are checked when the class is evaluated.
   */
  checkSelector?: (selector: string) => string | null
}

export function loadInventoryFiles(target: string, options: LoadOptions = {}): DesiredInventory {
  const root = resolve(options.cwd ?? process.cwd(), target)
  let files: string[]
  try {
    files = statSync(root).isDirectory() ? listYamlFiles(root) : [root]
  } catch (cause) {
    throw new RackbootError('RB_ERR_INVENTORY_FILE', `cannot read inventory ${target}: ${(cause as Error).message}`, { cause })
  }
  const access: FileAccess = {
    show: (f) => relative(process.cwd(), f) || f,
    readRelative(fromFile, relPath) {
      try {
        return { text: readFileSync(resolve(dirname(fromFile), relPath), 'utf8') }
      } catch (err) {
        return { error: (err as NodeJS.ErrnoException).code ?? (err as Error).message }
      }
    },
  }
  return loadTexts(files.map((file) => ({ file, text: readFileSync(file, 'utf8') })), access, options)
}

/** Why an in-memory file's path cannot be used (absolute, .., empty parts, backslashes), or null. */
export function inventoryPathProblem(path: string): string | null {
  if (path.length === 0) return 'empty path'
  if (path.startsWith('/')) return 'must be relative (no leading /)'
  if (path.includes('\\')) return 'use / to separate directories, not \\'
  if (path.includes('\0')) return 'contains a NUL character'
  const parts = path.split('/')
  if (parts.some((p) => p === '' || p === '.' || p === '..')) return 'no empty, . or .. parts'
  return null
}

/** Directory-listing order (each level by name, as listYamlFiles walks): racks/a.yaml before racks.yaml. */
function listingOrder(a: string, b: string): number {
  const pa = a.split('/')
  const pb = b.split('/')
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const c = pa[i]!.localeCompare(pb[i]!)
    if (c !== 0) return c
  }
  return pa.length - pb.length
}

/**
 * As loadInventoryFiles, from files given in memory (the API's import): the inventory documents among them are
 * loaded in the order a directory import reads them, and the references in them (baseConfigFile, caFile, relative
 * to the document) are looked up among the others. Problems name each file by its `path`.
 */
export function loadInventorySources(sources: readonly InventorySource[], options: Pick<LoadOptions, 'checkSelector'> = {}): DesiredInventory {
  const byPath = new Map<string, string>()
  for (const s of sources) {
    const why = inventoryPathProblem(s.path)
    if (why) throw new RackbootError('RB_ERR_VALIDATION', `${s.path}: ${why}`, { details: [{ file: s.path, line: 0, column: 0, field: '(path)', message: why }] })
    if (byPath.has(s.path)) throw new RackbootError('RB_ERR_VALIDATION', `${s.path}: given twice`, { details: [{ file: s.path, line: 0, column: 0, field: '(path)', message: 'given twice' }] })
    byPath.set(s.path, s.content)
  }
  const isDocument = (s: InventorySource) => (s.kind ? s.kind === 'inventory' : /\.ya?ml$/.test(s.path) && !s.path.split('/').some((p) => p.startsWith('.')))
  const documents = sources.filter(isDocument).map((s) => s.path).sort(listingOrder)
  const access: FileAccess = {
    show: (f) => f,
    readRelative(fromFile, relPath) {
      if (relPath.startsWith('/')) return { error: 'ENOENT' }
      const target = posix.normalize(posix.join(posix.dirname(fromFile), relPath))
      const text = target.startsWith('../') ? undefined : byPath.get(target)
      return text === undefined ? { error: 'ENOENT' } : { text }
    },
  }
  return loadTexts(documents.map((file) => ({ file, text: byPath.get(file)! })), access, options)
}

function loadTexts(inputs: { file: string; text: string }[], access: FileAccess, options: Pick<LoadOptions, 'checkSelector'>): DesiredInventory {
  const files = inputs.map((i) => i.file)
  const show = access.show
  const problems: InventoryProblem[] = []
  const parsed: ParsedFile[] = []

  for (const { file, text } of inputs) {
    const lines = new LineCounter()
    const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false, merge: true })
    const at = (path: (string | number)[]): { line: number; col: number } => {
      // Walk up to the nearest node that exists: a missing field is reported at its parent.
      for (let n = path.length; n >= 0; n--) {
        const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true)
        if (isNode(node) && node.range) return lines.linePos(node.range[0])
      }
      return { line: 1, col: 1 }
    }
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const pos = e.linePos?.[0] ?? { line: 1, col: 1 }
        problems.push({ file: show(file), line: pos.line, column: pos.col, field: '(yaml)', message: e.message.split('\n')[0]! })
      }
      continue
    }
    const data = (doc.toJS({ maxAliasCount: 1000 }) ?? {}) as unknown
    const errors = [...Value.Errors(InventoryFileSchema, data)].filter((e) => e.keyword !== 'boolean' && e.keyword !== 'anyOf')
    if (errors.length > 0) {
      const seen = new Set<string>()
      for (const e of errors) {
        const path = e.instancePath.split('/').filter(Boolean).map((p) => (/^\d+$/.test(p) ? Number(p) : p))
        let message = e.message
        const extra = (e.params as { additionalProperties?: string[] }).additionalProperties
        if (e.keyword === 'additionalProperties' && extra) {
          path.push(extra[0]!)
          message = `unknown field '${extra[0]}'`
        }
        const missing = (e.params as { requiredProperties?: string[] }).requiredProperties
        if (e.keyword === 'required' && missing?.length) {
          // Reported at the entry that lacks it, named by the field it lacks.
          path.push(missing[0]!)
          message = `missing required field '${missing.join("', '")}'`
        }
        if (e.keyword === 'const') message = `must be ${JSON.stringify((e.params as { allowedValue?: unknown }).allowedValue)}${errors.filter((x) => x.instancePath === e.instancePath && x.keyword === 'const').length > 1 ? ' (or another allowed value)' : ''}`
        if (e.keyword === 'enum') message = `must be one of ${((e.params as { allowedValues?: unknown[] }).allowedValues ?? []).join(', ')}`
        if (e.keyword === 'pattern' && /name$/.test(e.instancePath)) message = 'must be a lower-case DNS label (a-z, 0-9, "-", ".")'
        const key = `${e.instancePath}|${e.keyword}`
        if (seen.has(key)) continue
        seen.add(key)
        const pos = at(path)
        problems.push({ file: show(file), line: pos.line, column: pos.col, field: fieldName(path), message })
      }
      continue
    }
    parsed.push({ file, text, doc, lines, data: data as InventoryFile })
  }
  if (problems.length > 0) throw new InventoryFileError(problems)

  const desired: DesiredInventory = { machines: [], classes: [], profiles: [], files }
  const owners = new Map<string, string>()
  for (const { file, text, doc, lines, data } of parsed) {
    const source = { text, shown: show(file) }
    const report = (path: (string | number)[], message: string) => {
      // A field that came in through a merge key (<<: *anchor) has no node of its own: its entry's line then.
      let pos = { line: 1, col: 1 }
      for (let n = path.length; n > 0; n--) {
        const node = doc.getIn(path.slice(0, n), true)
        if (isNode(node) && node.range) {
          pos = lines.linePos(node.range[0])
          break
        }
      }
      problems.push({ file: show(file), line: pos.line, column: pos.col, field: fieldName(path), message })
    }
    // Names, MACs, serials, uuids and reserved addresses must be unique across all files.
    const claim = (kind: string, key: string, path: (string | number)[]) => {
      const k = `${kind}:${key}`
      const prev = owners.get(k)
      if (prev) report(path, `duplicate ${kind} '${key}' (already declared at ${prev})`)
      else {
        const node = doc.getIn(path, true)
        const pos = isNode(node) && node.range ? lines.linePos(node.range[0]) : { line: 1 }
        owners.set(k, `${show(file)}:${pos.line}`)
      }
    }
    ;(data.machines ?? []).forEach((m, i) => {
      claim('machine name', m.name, ['machines', i, 'name'])
      if (m.serial) claim('serial', m.serial, ['machines', i, 'serial'])
      if (m.uuid !== undefined) {
        if (!isUuid(m.uuid)) report(['machines', i, 'uuid'], `not an SMBIOS UUID: '${m.uuid}'`)
        else claim('uuid', normalizeUuid(m.uuid), ['machines', i, 'uuid'])
      }
      const nics = m.nics ?? []
      nics.forEach((n, j) => {
        if (!isMac(n.mac)) report(['machines', i, 'nics', j, 'mac'], `not a MAC address: '${n.mac}'`)
        else claim('MAC', normalizeMac(n.mac), ['machines', i, 'nics', j, 'mac'])
        if (n.ip) claim('reserved address', n.ip, ['machines', i, 'nics', j, 'ip'])
      })
      if (nics.filter((n) => n.boot).length > 1) report(['machines', i, 'nics'], 'more than one NIC is marked boot: true')
      if (m.network) {
        const problems = checkMachineNetwork(m.network)
        for (const p of problems) report(['machines', i, 'network', ...p.path], p.message)
        if (problems.length === 0) {
          m.network.addresses.forEach((link, j) => link.addresses.forEach((a, k) => {
            claim('static address', a.slice(0, a.indexOf('/')).toLowerCase(), ['machines', i, 'network', 'addresses', j, 'addresses', k])
          }))
        }
      }
      if (!m.serial && !m.uuid && nics.length === 0) {
        report(['machines', i], 'a machine needs at least one of serial, uuid or nics[].mac to be recognised when it boots')
      }
      let bmcCaPem: string | null = null
      if (m.bmc) {
        const checked = checkFileBmc(m.name, m.bmc, (rel) => access.readRelative(file, rel), (field, message) => report(['machines', i, 'bmc', field], message))
        m.bmc = checked.bmc
        bmcCaPem = checked.caPem
      }
      desired.machines.push({ value: { ...m, bmcCaPem }, file, pointer: ['machines', String(i)], source })
    })
    ;(data.classes ?? []).forEach((c, i) => {
      claim('class', c.name, ['classes', i, 'name'])
      ;(c.selectors ?? []).forEach((sel, j) => {
        const wrong = options.checkSelector?.(sel)
        if (wrong) report(['classes', i, 'selectors', j], wrong)
      })
      desired.classes.push({ value: c, file, pointer: ['classes', String(i)], source })
    })
    ;(data.profiles ?? []).forEach((p, i) => {
      claim('profile', p.name, ['profiles', i, 'name'])
      let baseConfigText: string | null = p.baseConfig ?? null
      if (p.baseConfig !== undefined && p.baseConfigFile !== undefined) {
        report(['profiles', i, 'baseConfigFile'], 'give baseConfig or baseConfigFile, not both')
      } else if (p.baseConfigFile !== undefined) {
        const read = access.readRelative(file, p.baseConfigFile)
        if ('text' in read) baseConfigText = read.text
        else report(['profiles', i, 'baseConfigFile'], `cannot read ${p.baseConfigFile}: ${read.error}`)
      }
      if (baseConfigText !== null) {
        const base = parseDocument(baseConfigText)
        if (base.errors.length > 0) report(['profiles', i, p.baseConfigFile ? 'baseConfigFile' : 'baseConfig'], `base config is not valid YAML: ${base.errors[0]!.message.split('\n')[0]}`)
      }
      if (p.installDisk) {
        for (const problem of checkDiskSelector(p.installDisk)) report(['profiles', i, 'installDisk', ...problem.path], problem.message)
      }
      desired.profiles.push({ value: { ...p, baseConfigText }, file, pointer: ['profiles', String(i)], source })
    })
  }
  // References: profiles named by machines and classes must exist (in the files or the database: checked at import).
  if (problems.length > 0) throw new InventoryFileError(problems)
  return desired
}

/**
 * The checks a BMC entry needs beyond its schema: settings of the other BMC type, the system path in a Redfish
 * address (split off into systemId), the CA certificate (read and parsed now), cipher suites and boot method.
 */
function checkFileBmc(
  machine: string, b: FileBmc, readRelative: (relPath: string) => { text: string } | { error: string }, report: (field: string, message: string) => void,
): { bmc: FileBmc; caPem: string | null } {
  for (const field of Object.keys(b)) {
    const why = misplacedBmcField(b.type, field)
    if (why) report(field, why)
  }
  const method = bootMethodProblem(b.type, b.bootMethod)
  if (method) report('bootMethod', method)
  if (b.cipherSuites) {
    const why = cipherSuitesProblem(b.cipherSuites)
    if (why) report('cipherSuites', why)
  }
  let systemId = b.systemId
  if (systemId !== undefined) {
    const n = normalizeSystemId(systemId)
    if ('error' in n) report('systemId', n.error)
    else systemId = n.systemId
  }
  let address = b.address
  if (b.type === 'ipmi') {
    const why = ipmiAddressProblem(address)
    if (why) report('address', why)
  } else {
    const split = splitRedfishAddress(address)
    if ('error' in split) report('address', split.error)
    else {
      address = split.address
      if (split.systemId !== null) {
        if (systemId !== undefined && systemKey(systemId) !== systemKey(split.systemId)) {
          report('systemId', `machine ${machine}: the address names system ${split.systemId}, but systemId is ${systemId}`)
        } else systemId ??= split.systemId
      }
    }
  }
  let caPem: string | null = null
  if (b.type !== 'redfish') {
    // Already reported as misplaced; nothing to read for an IPMI BMC.
  } else if (b.ca !== undefined && b.caFile !== undefined) report('caFile', 'give ca or caFile, not both')
  else if (b.caFile !== undefined) {
    const read = readRelative(b.caFile)
    const text = 'text' in read ? read.text : null
    if (!('text' in read)) report('caFile', `cannot read ${b.caFile}: ${read.error}`)
    if (text !== null) {
      const parsed = parseCaPem(text)
      if ('error' in parsed) report('caFile', `${b.caFile} ${parsed.error}`)
      else caPem = parsed.pem
    }
  } else if (b.ca !== undefined) {
    const parsed = parseCaPem(b.ca)
    if ('error' in parsed) report('ca', `the inline PEM ${parsed.error}`)
    else caPem = parsed.pem
  }
  return { bmc: { ...b, address, ...(systemId !== undefined ? { systemId } : {}) }, caPem }
}

/** Where an entry lives, for messages about it after loading (e.g. a reference to an unknown profile). */
export function locate(parsedFile: string, pointer: string[], field: string, source?: { text: string; shown: string }): InventoryProblem {
  const lines = new LineCounter()
  const doc = parseDocument(source?.text ?? readFileSync(parsedFile, 'utf8'), { lineCounter: lines, merge: true })
  const shown = source?.shown ?? (relative(process.cwd(), parsedFile) || parsedFile)
  const path = [...pointer.map((p) => (/^\d+$/.test(p) ? Number(p) : p)), field]
  for (let n = path.length; n > 0; n--) {
    const node = doc.getIn(path.slice(0, n), true)
    if (isNode(node) && node.range) {
      const pos = lines.linePos(node.range[0])
      return { file: shown, line: pos.line, column: pos.col, field: fieldName(path), message: '' }
    }
  }
  return { file: source ? shown : parsedFile, line: 1, column: 1, field: fieldName(path), message: '' }
}
