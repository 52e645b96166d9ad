import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { RackbootError } from '../errors.js'

// Secrets at rest (BMC passwords, cluster secrets) are sealed with AES-256-GCM under a key kept in a file in the
// data directory, readable by its owner only. Sealed form: "v1:" + base64(iv | tag | ciphertext).

export interface SecretBox {
  seal(plain: string): string
  open(sealed: string): string
}

/** Sealed values whose plaintext a box keeps (see open). */
const OPENED_MAX = 256

export function createSecretBox(key: Buffer): SecretBox {
  if (key.length !== 32) throw new RackbootError('RB_ERR_CRYPTO', 'secret key must be 32 bytes')
  // Opening costs tens of microseconds (OpenSSL 3 sets a cipher up on every call), and a cluster's secrets are opened
  // for every config its machines fetch. A sealed text names one plaintext (its own random IV, authenticated when it
  // was first opened with this box's key), so the plaintext of recently opened ones is kept, per box.
  const opened = new Map<string, string>()
  return {
    seal(plain) {
      const iv = randomBytes(12)
      const cipher = createCipheriv('aes-256-gcm', key, iv)
      const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()])
      return `v1:${Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64')}`
    },
    open(sealed) {
      const hit = opened.get(sealed)
      if (hit !== undefined) return hit
      if (!sealed.startsWith('v1:')) throw new RackbootError('RB_ERR_CRYPTO', 'unknown sealed secret format')
      const raw = Buffer.from(sealed.slice(3), 'base64')
      let plain: string
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12))
        decipher.setAuthTag(raw.subarray(12, 28))
        plain = Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8')
      } catch (cause) {
        throw new RackbootError('RB_ERR_CRYPTO', 'cannot open sealed secret (wrong key file?)', { cause })
      }
      if (opened.size >= OPENED_MAX) opened.delete(opened.keys().next().value!)
      opened.set(sealed, plain)
      return plain
    },
  }
}

/**
 * The value the database keeps to recognise its key (meta 'secretKeyCheck'): an HMAC of a constant, so it names the
 * key without revealing it, and a replaced or wrong key file is caught at start-up instead of at the first secret.
 */
export function secretKeyCheck(key: Buffer): string {
  return createHmac('sha256', key).update('rackboot secret key check v1').digest('hex')
}

/** Reads a key file (base64 of 32 bytes). */
export function readKeyFile(file: string): Buffer {
  const key = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64')
  if (key.length !== 32) throw new RackbootError('RB_ERR_CRYPTO', `secret key file ${file} is not a 32-byte base64 key`)
  return key
}

/**
 * Writes a fresh random key file (mode 0600, never over an existing file). When another process made one at the
 * same moment, that one is read and used instead, so both agree on the key.
 */
export function createKeyFile(file: string): Buffer {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
  const key = randomBytes(32)
  try {
    writeFileSync(file, key.toString('base64') + '\n', { mode: 0o600, flag: 'wx' })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readKeyFile(file)
    throw new RackbootError('RB_ERR_CRYPTO', `cannot create secret key file ${file}: ${(err as Error).message}`, { cause: err })
  }
  chmodSync(file, 0o600)
  return key
}

/** Reads the key file, creating it (mode 0600) with a fresh random key the first time. No check against a database. */
export function loadOrCreateKey(file: string): Buffer {
  return existsSync(file) ? readKeyFile(file) : createKeyFile(file)
}
