// Per-BMC settings (issue 18) as the inventory files, the API and the CLI take them: one set of checks and
// normalisations, so a value the files refuse is refused by the API with the same words.
import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { isDeepStrictEqual } from 'node:util'
import { RackbootError } from '../../errors.js'
import type { Bmc, BmcAuth, BmcInput, BmcOptions, BmcPrivilege, BmcType, BootMethod, IpmiCipherSuite } from '../types.js'

export const BMC_AUTHS = ['auto', 'session', 'basic'] as const satisfies readonly BmcAuth[]
export const BMC_PRIVILEGES = ['user', 'operator', 'administrator'] as const satisfies readonly BmcPrivilege[]
export const BMC_BOOT_VERIFY = ['strict', 'device'] as const
export const BOOT_METHODS = ['pxe', 'uefi-http', 'virtual-media'] as const satisfies readonly BootMethod[]
export const IPMI_CIPHER_SUITES = [17, 3] as const satisfies readonly IpmiCipherSuite[]

/** A problem with one field of a BMC (its name as the caller spells it: `kgFrom` in a file, `kg` in the API). */
export interface BmcProblem {
  field: string
  message: string
}

/**
 * Settings that mean something to one BMC type only. A file or request that gives one to the other type is a
 * mistake (most likely the wrong type), not something to ignore silently.
 */
const ONLY_FOR: Record<string, BmcType> = {
  systemId: 'redfish', ca: 'redfish', caFile: 'redfish', auth: 'redfish',
  cipherSuites: 'ipmi', privilege: 'ipmi', kg: 'ipmi', kgFrom: 'ipmi', bootVerify: 'ipmi',
}

/** Why `field` does not belong on a BMC of `type`, or null when it does. */
export function misplacedBmcField(type: BmcType, field: string): string | null {
  const only = ONLY_FOR[field]
  if (!only || only === type) return null
  return `${field} is ${only === 'ipmi' ? 'an IPMI' : 'a Redfish'} setting, but this BMC is ${type}`
}

/** Boot methods an IPMI BMC cannot do (no HTTP boot device, no virtual media in IPMI's boot flags). */
export function bootMethodProblem(type: BmcType, method: BootMethod | null | undefined): string | null {
  if (type === 'ipmi' && (method === 'uefi-http' || method === 'virtual-media')) return `bootMethod ${method} needs a Redfish BMC; IPMI can boot pxe only`
  return null
}

/** The last segment of a system Id or @odata.id path: what two spellings of one system share. */
export function systemKey(systemId: string): string {
  return systemId.replace(/\/+$/, '').split('/').pop() ?? systemId
}

/** A Redfish system as given (an Id, or /redfish/v1/Systems/<id>), without a trailing slash; or why not. */
export function normalizeSystemId(systemId: string): { systemId: string } | { error: string } {
  const s = systemId.trim().replace(/(.)\/+$/, '$1')
  if (/^[^/\s]+$/.test(s) || /^\/redfish\/v1\/Systems\/[^/\s]+$/.test(s)) return { systemId: s }
  return { error: `not a Redfish system Id or /redfish/v1/Systems/<id> path: '${systemId}'` }
}

/**
 * A Redfish address given as a URL with the system's path (https://host:8443/redfish/v1/Systems/1) split into the
 * address (its origin: the driver drops any path) and the system. An address without a path is returned as is.
 */
export function splitRedfishAddress(address: string): { address: string; systemId: string | null } | { error: string } {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(address)) return { address, systemId: null }
  let u: URL
  try {
    u = new URL(address)
  } catch {
    return { error: 'not a URL (https://host[:port][/redfish/v1/Systems/<id>])' }
  }
  // Not echoed: a URL with user:password in it holds a secret.
  if (u.username || u.password) return { error: 'user name and password do not belong in the address: use username and passwordFrom' }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return { error: `scheme ${u.protocol} is not http or https` }
  if (u.search || u.hash) return { error: 'a query or fragment does not belong in the address' }
  const path = u.pathname.replace(/\/+$/, '')
  if (path === '') return { address: address.replace(/\/+$/, ''), systemId: null }
  if (path === '/redfish/v1') return { address: u.origin, systemId: null }
  const m = /^\/redfish\/v1\/Systems\/([^/]+)$/.exec(path)
  if (!m) return { error: `path ${u.pathname} is not a Redfish system (/redfish/v1/Systems/<id>)` }
  return { address: u.origin, systemId: decodeURIComponent(m[1]!) }
}

/** An IPMI address is a host: a URL there is a mistake the driver would only report at the first power action. */
export function ipmiAddressProblem(address: string): string | null {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(address) ? 'an IPMI address is a host name or IP address, not a URL' : null
}

/**
 * CA certificates in PEM: every CERTIFICATE block must parse. Returns the blocks alone (text around them, such as
 * openssl's subject= lines, is dropped), so a file and its inline export compare equal.
 */
export function parseCaPem(text: string): { pem: string } | { error: string } {
  // A key next to the certificate would be stored and exported: refuse it rather than keep it.
  if (/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(text)) return { error: 'holds a private key; give the CA certificate only' }
  const blocks = text.replace(/\r\n/g, '\n').match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []
  if (blocks.length === 0) return { error: 'is not a PEM certificate (no -----BEGIN CERTIFICATE----- block)' }
  for (const [i, block] of blocks.entries()) {
    try {
      new X509Certificate(block)
    } catch (err) {
      return { error: `is not a PEM certificate: certificate ${i + 1} does not parse (${(err as Error).message})` }
    }
  }
  return { pem: `${blocks.join('\n')}\n` }
}

/** An IPMI K_G as lower-case hex, up to 20 bytes. The message never quotes the value: it is a secret. */
export function parseKg(text: string): { hex: string } | { error: string } {
  const t = text.trim().replace(/^0x/i, '')
  if (!/^(?:[0-9a-fA-F]{2}){1,20}$/.test(t)) return { error: 'is not a K_G in hex (2 to 40 hex digits: up to 20 bytes)' }
  return { hex: t.toLowerCase() }
}

/** A sha256 certificate fingerprint as 64 lower-case hex digits (colons, case and a sha256: prefix ignored), or null. */
export function normalizeBmcFingerprint(fp: string): string | null {
  const hex = fp.trim().replace(/^sha256[:=]/i, '').replaceAll(':', '').toLowerCase()
  return /^[0-9a-f]{64}$/.test(hex) ? hex : null
}

/** Cipher suites: 17 and 3 only (what the IPMI driver speaks), each once. */
export function cipherSuitesProblem(suites: readonly number[]): string | null {
  const bad = suites.find((s) => !(IPMI_CIPHER_SUITES as readonly number[]).includes(s))
  if (bad !== undefined) return `cipher suite ${bad} is not supported (17 or 3)`
  if (new Set(suites).size !== suites.length) return 'a cipher suite is listed twice'
  if (suites.length === 0) return 'give at least one cipher suite (17, 3), or leave the setting out'
  return null
}

/** `env:VARIABLE` or `file:/path`: where a secret comes from, never the secret itself. */
export const SECRET_REF_PATTERN = '^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$'

/** Reads a secret named by `env:VAR` or `file:/path` (one trailing newline dropped); a warning when it cannot be. */
export function resolveSecretRef(ref: string, env: NodeJS.ProcessEnv): { value?: string; warning?: string } {
  if (ref.startsWith('env:')) {
    const name = ref.slice(4)
    const value = env[name]
    return value === undefined ? { warning: `environment variable ${name} is not set` } : { value }
  }
  if (ref.startsWith('file:')) {
    const path = ref.slice(5)
    try {
      return { value: readFileSync(path, 'utf8').replace(/\r?\n$/, '') }
    } catch (err) {
      return { warning: `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }
    }
  }
  return { warning: `'${ref}' is not env:VARIABLE or file:/path` }
}

/** The host part of a stored BMC address (a host, an IP, or a Redfish URL), lower case, IPv6 without brackets. */
export function bmcHost(address: string): string {
  let host = address
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(address)) {
    try {
      host = new URL(address).hostname
    } catch {
      // Left as given: compared as text.
    }
  }
  return host.replace(/^\[(.*)\]$/, '$1').toLowerCase()
}

/**
 * Why the address the discovery agent reported cannot be adopted, or null. The report comes from the machine,
 * unauthenticated, and the adopted address is sent the BMC credentials: only a plain unicast IP address is taken.
 */
export function reportedBmcAddressProblem(reported: string | undefined | null): string | null {
  if (!reported) return 'the discovery agent reported no BMC address (it reads it with `ipmitool lan print` when the machine has an IPMI device)'
  const family = isIP(reported)
  if (family === 0) return 'the BMC address the discovery agent reported is not an IP address'
  if (/^(0\.|127\.|::1?$|169\.254\.|2(2[4-9]|[3-5]\d)\.)/i.test(reported)) return `the BMC address the discovery agent reported (${reported}) is not a usable unicast address`
  return null
}

/** The stored address with its host replaced by the reported one; a Redfish URL keeps its scheme and port. */
export function adoptedBmcAddress(current: string | null, reported: string): string {
  if (current && /^https?:\/\//i.test(current)) {
    try {
      const u = new URL(current)
      u.hostname = isIP(reported) === 6 ? `[${reported}]` : reported
      return u.origin
    } catch {
      // A stored address that is not a URL after all: the reported one replaces it.
    }
  }
  return reported
}

// ---- Changing a BMC (API and CLI) ----

/**
 * Changes to a BMC as the API takes them (the CLI too): left out keeps, null clears (back to the default). Secrets
 * in plain text; `passwordFrom`/`kgFrom` record where they came from (the CLI), kept for export.
 */
export interface BmcChanges {
  type?: BmcType
  address?: string
  port?: number | null
  username?: string | null
  password?: string | null
  passwordFrom?: string | null
  kg?: string | null
  kgFrom?: string | null
  insecure?: boolean | null
  fingerprint?: string | null
  systemId?: string | null
  ca?: string | null
  auth?: BmcAuth | null
  cipherSuites?: IpmiCipherSuite[] | null
  privilege?: BmcPrivilege | null
  bootVerify?: 'strict' | 'device' | null
  bootMethod?: BootMethod | null
}

/** A BMC as stored, or about to be: every field explicit (BmcRepository.put keeps only what it is not given). */
export interface BmcDraft extends BmcOptions {
  type: BmcType
  address: string
  port: number | null
  username: string | null
  insecure: boolean
  fingerprint: string | null
  passwordFrom: string | null
  kgFrom: string | null
  /** undefined: keep the stored one. */
  password?: string | null
  kg?: string | null
}

export const BMC_DRAFT_DEFAULTS: Omit<BmcDraft, 'type' | 'address'> = {
  port: null, username: null, insecure: false, fingerprint: null, systemId: null, caPem: null, auth: 'auto', cipherSuites: null,
  privilege: null, bootVerify: null, bootMethod: 'pxe', passwordFrom: null, kgFrom: null,
}

/** The stored BMC as a draft to change. */
export function bmcDraftOf(b: Bmc): BmcDraft {
  const refs = { passwordFrom: b.credentialsRef, kgFrom: b.kgRef }
  return {
    type: b.type, address: b.address, port: b.port, username: b.username, insecure: b.insecure, fingerprint: b.fingerprint,
    systemId: b.systemId, caPem: b.caPem, auth: b.auth, cipherSuites: b.cipherSuites, privilege: b.privilege,
    bootVerify: b.bootVerify, bootMethod: b.bootMethod, ...refs,
  }
}

/** Settings of the other BMC type, which a type change leaves behind (given ones are checked instead). */
const IPMI_ONLY: (keyof BmcDraft)[] = ['cipherSuites', 'privilege', 'bootVerify']
const REDFISH_ONLY: (keyof BmcDraft)[] = ['systemId', 'caPem']

/**
 * The BMC a request asks for: `base` (the stored one for PATCH, defaults for PUT) with the given fields applied,
 * checked and normalised. Problems name the request's fields.
 */
export function applyBmcChanges(base: BmcDraft, given: BmcChanges, existing: Bmc | null): { draft: BmcDraft; problems: BmcProblem[] } {
  const problems: BmcProblem[] = []
  const bad = (field: string, message: string) => problems.push({ field, message })
  const d: BmcDraft = { ...base }
  if (given.type !== undefined && given.type !== existing?.type) {
    // A type change drops the other type's stored settings; K_G is IPMI's.
    for (const k of given.type === 'redfish' ? IPMI_ONLY : REDFISH_ONLY) (d as unknown as Record<string, unknown>)[k] = null
    if (given.type === 'redfish') {
      if (existing?.hasKg) d.kg = null
      d.kgFrom = null
    } else d.auth = 'auto'
  }
  if (given.type !== undefined) d.type = given.type
  for (const key of Object.keys(given)) {
    const why = misplacedBmcField(d.type, key)
    // null is "clear it", always fine; auth auto is the default and means nothing to IPMI either.
    if (why && given[key as keyof BmcChanges] !== null && !(key === 'auth' && given.auth === 'auto')) bad(key, why)
  }
  if (given.port !== undefined) d.port = given.port
  if (given.username !== undefined) d.username = given.username
  if (given.insecure !== undefined) d.insecure = given.insecure ?? false
  if (given.auth !== undefined) d.auth = given.auth ?? 'auto'
  if (given.cipherSuites !== undefined) d.cipherSuites = given.cipherSuites
  if (given.privilege !== undefined) d.privilege = given.privilege
  if (given.bootVerify !== undefined) d.bootVerify = given.bootVerify
  if (given.bootMethod !== undefined) d.bootMethod = given.bootMethod ?? 'pxe'
  if (given.fingerprint !== undefined) {
    if (given.fingerprint === null) d.fingerprint = null
    else {
      const fp = normalizeBmcFingerprint(given.fingerprint)
      if (fp === null) bad('fingerprint', 'not a sha256 fingerprint (64 hex digits, colons allowed)')
      else d.fingerprint = fp
    }
  }
  if (given.systemId !== undefined) {
    if (given.systemId === null) d.systemId = null
    else {
      const n = normalizeSystemId(given.systemId)
      if ('error' in n) bad('systemId', n.error)
      else d.systemId = n.systemId
    }
  }
  if (given.ca !== undefined) {
    if (given.ca === null) d.caPem = null
    else {
      const parsed = parseCaPem(given.ca)
      if ('error' in parsed) bad('ca', `the PEM ${parsed.error}`)
      else d.caPem = parsed.pem
    }
  }
  if (given.password !== undefined) {
    d.password = given.password
    d.passwordFrom = given.passwordFrom ?? null
  }
  if (given.kg !== undefined) {
    d.kgFrom = given.kgFrom ?? null
    if (given.kg === null) d.kg = null
    else {
      const kg = parseKg(given.kg)
      // The value is a secret: the message says what is wrong with it, never what it was.
      if ('error' in kg) bad('kg', kg.error)
      else d.kg = kg.hex
    }
  }
  if (given.address !== undefined) d.address = given.address
  if (given.address !== undefined || given.type !== undefined) {
    if (d.type === 'ipmi') {
      const why = ipmiAddressProblem(d.address)
      if (why) bad('address', why)
    } else {
      const split = splitRedfishAddress(d.address)
      if ('error' in split) bad('address', split.error)
      else {
        d.address = split.address
        if (split.systemId !== null) {
          if (given.systemId && d.systemId && systemKey(d.systemId) !== systemKey(split.systemId)) {
            bad('systemId', `the address names system ${split.systemId}, but systemId is ${d.systemId}`)
          } else if (!given.systemId) d.systemId = split.systemId
        }
      }
    }
  }
  const method = bootMethodProblem(d.type, d.bootMethod)
  if (method) bad('bootMethod', method)
  return { draft: d, problems }
}

/** Throws the problems as one validation error naming the first field (exit 2 in the CLI, 400 in the API). */
export function refuseBmcProblems(problems: BmcProblem[]): void {
  if (problems.length === 0) return
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''
  throw new RackbootError('RB_ERR_VALIDATION', `${problems[0]!.field}: ${problems[0]!.message}${more}`, { details: problems })
}

/** What BmcRepository.put stores for the draft (every field given, so nothing stale is kept). */
export function bmcInputOf(d: BmcDraft): BmcInput {
  return {
    type: d.type, address: d.address, port: d.port, username: d.username, insecure: d.insecure, fingerprint: d.fingerprint,
    systemId: d.systemId, caPem: d.caPem, auth: d.auth, cipherSuites: d.cipherSuites, privilege: d.privilege,
    bootVerify: d.bootVerify, bootMethod: d.bootMethod, credentialsRef: d.passwordFrom, kgRef: d.kgFrom,
    ...(d.password !== undefined ? { password: d.password } : {}),
    ...(d.kg !== undefined ? { kg: d.kg } : {}),
  }
}

/** Names of the fields that differ, secrets by name only: what the timeline says changed. */
export function bmcChangedFields(before: Bmc | null, after: Bmc, d: BmcDraft): string[] {
  const out: string[] = []
  const names: [keyof Bmc, string][] = [
    ['type', 'type'], ['address', 'address'], ['port', 'port'], ['username', 'username'], ['insecure', 'insecure'], ['fingerprint', 'fingerprint'],
    ['systemId', 'systemId'], ['caPem', 'ca'], ['auth', 'auth'], ['cipherSuites', 'cipherSuites'], ['privilege', 'privilege'],
    ['bootVerify', 'bootVerify'], ['bootMethod', 'bootMethod'],
  ]
  for (const [key, name] of names) {
    if (!before || !isDeepStrictEqual(after[key], before[key])) out.push(name)
  }
  if (d.password !== undefined) out.push('password')
  if (d.kg !== undefined || (before?.hasKg && !after.hasKg)) out.push('kg')
  return out
}
