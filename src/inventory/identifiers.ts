import { randomBytes } from 'node:crypto'
import { RackbootError } from '../errors.js'

const MAC_RE = /^[0-9a-f]{2}([:-]?[0-9a-f]{2}){5}$/i

/** Lower-case, colon-separated MAC, from any of the usual spellings (3C-EC-EF-..., 3cecef123456, ...). */
export function normalizeMac(value: string): string {
  const v = value.trim()
  if (!MAC_RE.test(v)) throw new RackbootError('RB_ERR_VALIDATION', `not a MAC address: '${value}'`)
  const hex = v.replace(/[:-]/g, '').toLowerCase()
  return hex.match(/../g)!.join(':')
}

export function isMac(value: string): boolean {
  return MAC_RE.test(value.trim())
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

export function normalizeUuid(value: string): string {
  const v = value.trim().toLowerCase()
  if (!UUID_RE.test(v)) throw new RackbootError('RB_ERR_VALIDATION', `not an SMBIOS UUID: '${value}'`)
  return v
}

export function isUuid(value: string): boolean {
  return UUID_RE.test(value.trim())
}

export function newMachineId(): string {
  return `m-${randomBytes(6).toString('hex')}`
}
