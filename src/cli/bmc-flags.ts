// The `machines bmc set|adopt` flags as BMC changes, in the API's terms: the same for the server (PUT/PATCH) and
// --data-dir. Secrets come from env:VAR or file:PATH, never from the command line (ps and shell history see it).
import { readFileSync } from 'node:fs'
import { resolveSecretRef, SECRET_REF_PATTERN, type BmcChanges } from '../inventory/files/bmc-settings.js'
import type { IpmiCipherSuite } from '../inventory/types.js'
import { UsageError } from './common.js'

/** Which setting each --unset name clears (the API's field). */
export const UNSET: Record<string, keyof BmcChanges> = {
  port: 'port', username: 'username', password: 'password', fingerprint: 'fingerprint', insecure: 'insecure', 'system-id': 'systemId',
  ca: 'ca', auth: 'auth', 'cipher-suites': 'cipherSuites', privilege: 'privilege', kg: 'kg', 'boot-verify': 'bootVerify', 'boot-method': 'bootMethod',
}

export interface BmcFlags {
  type?: string
  address?: string
  port?: string
  username?: string
  passwordFrom?: string
  kgFrom?: string
  systemId?: string
  caFile?: string
  auth?: string
  cipherSuites?: string
  privilege?: string
  bootVerify?: string
  bootMethod?: string
  insecure?: boolean
  fingerprint?: string
  unset?: string[]
}

/** A secret named by env:VAR or file:PATH, read now; a usage error (naming the reference, not the value) otherwise. */
function secretFrom(flag: string, ref: string): string {
  if (!new RegExp(SECRET_REF_PATTERN).test(ref)) throw new UsageError(`--${flag} takes env:VARIABLE or file:PATH (never the secret itself)`)
  const { value, warning } = resolveSecretRef(ref, process.env)
  if (warning !== undefined || value === undefined) throw new UsageError(`--${flag} ${ref}: ${warning}`)
  return value
}

/** The changes the flags ask for, in the API's terms (the checks of the values are the server's, or applyBmcChanges'). */
export function bmcChangesOf(f: BmcFlags): BmcChanges {
  const c: BmcChanges = {}
  if (f.type !== undefined) c.type = f.type as BmcChanges['type']
  if (f.address !== undefined) c.address = f.address
  if (f.port !== undefined) {
    const port = Number(f.port)
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`--port expects 1 to 65535, got '${f.port}'`)
    c.port = port
  }
  if (f.username !== undefined) c.username = f.username
  if (f.passwordFrom !== undefined) {
    c.password = secretFrom('password-from', f.passwordFrom)
    c.passwordFrom = f.passwordFrom
  }
  if (f.kgFrom !== undefined) {
    c.kg = secretFrom('kg-from', f.kgFrom)
    c.kgFrom = f.kgFrom
  }
  if (f.systemId !== undefined) c.systemId = f.systemId
  if (f.caFile !== undefined) {
    try {
      c.ca = readFileSync(f.caFile, 'utf8')
    } catch (err) {
      throw new UsageError(`--ca-file ${f.caFile}: cannot read it: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
  }
  if (f.auth !== undefined) c.auth = f.auth as BmcChanges['auth']
  if (f.cipherSuites !== undefined) {
    const suites = f.cipherSuites.split(',').map((s) => s.trim())
    if (suites.some((s) => s !== '3' && s !== '17')) throw new UsageError(`--cipher-suites takes 17 and/or 3, comma-separated, got '${f.cipherSuites}'`)
    c.cipherSuites = suites.map(Number) as IpmiCipherSuite[]
  }
  if (f.privilege !== undefined) c.privilege = f.privilege as BmcChanges['privilege']
  if (f.bootVerify !== undefined) c.bootVerify = f.bootVerify as BmcChanges['bootVerify']
  if (f.bootMethod !== undefined) c.bootMethod = f.bootMethod as BmcChanges['bootMethod']
  if (f.insecure) c.insecure = true
  if (f.fingerprint !== undefined) c.fingerprint = f.fingerprint
  for (const name of f.unset ?? []) {
    const field = UNSET[name]
    if (!field) throw new UsageError(`--unset takes one of ${Object.keys(UNSET).join(', ')}, got '${name}'`)
    if (field in c) throw new UsageError(`--unset ${name} and a value for it: give one`)
    ;(c as Record<string, unknown>)[field] = null
  }
  return c
}

/** The changes as the API's PUT/PATCH body takes them: no secret references (the API stores the secret itself). */
export function apiBody(c: BmcChanges): Record<string, unknown> {
  const { passwordFrom: _p, kgFrom: _k, ...rest } = c
  return rest
}
