import { createPrivateKey, generateKeyPair, type KeyObject } from 'node:crypto'
import { promisify } from 'node:util'
import { RackbootError } from '../errors.js'

// Private keys in the PEM forms Talos writes (siderolabs/crypto x509/key.go): "EC PRIVATE KEY" (SEC1),
// "RSA PRIVATE KEY" (PKCS#1) and "ED25519 PRIVATE KEY" (a PKCS#8 body under Talos's own label).

const generateKeyPairAsync = promisify(generateKeyPair)

export type KeyAlgorithm = 'ecdsa-p256' | 'ed25519' | 'rsa'

export interface KeyPair {
  privateKey: KeyObject
  publicKey: KeyObject
}

export async function generateKey(algorithm: KeyAlgorithm, options: { rsaBits?: number } = {}): Promise<KeyPair> {
  try {
    switch (algorithm) {
      case 'ecdsa-p256':
        return await generateKeyPairAsync('ec', { namedCurve: 'prime256v1' })
      case 'ed25519':
        return await generateKeyPairAsync('ed25519')
      case 'rsa':
        return await generateKeyPairAsync('rsa', { modulusLength: options.rsaBits ?? 4096 })
    }
  } catch (cause) {
    throw new RackbootError('RB_ERR_CRYPTO', `cannot generate ${algorithm} key`, { cause })
  }
}

/** PEM of a private key, with the label Talos uses for its type. */
export function privateKeyToPem(key: KeyObject): string {
  switch (key.asymmetricKeyType) {
    case 'ec':
      return key.export({ type: 'sec1', format: 'pem' }).toString()
    case 'rsa':
      return key.export({ type: 'pkcs1', format: 'pem' }).toString()
    case 'ed25519':
      return key
        .export({ type: 'pkcs8', format: 'pem' })
        .toString()
        .replace('-----BEGIN PRIVATE KEY-----', '-----BEGIN ED25519 PRIVATE KEY-----')
        .replace('-----END PRIVATE KEY-----', '-----END ED25519 PRIVATE KEY-----')
    default:
      throw new RackbootError('RB_ERR_CRYPTO', `unsupported key type ${String(key.asymmetricKeyType)}`)
  }
}

/** Loads any private key PEM Talos accepts (crypto x509/key.go GetKey): RSA, EC, ED25519 or PKCS#8 labels. */
export function loadPrivateKey(pem: string): KeyObject {
  const normalised = pem
    .replace('-----BEGIN ED25519 PRIVATE KEY-----', '-----BEGIN PRIVATE KEY-----')
    .replace('-----END ED25519 PRIVATE KEY-----', '-----END PRIVATE KEY-----')
  try {
    return createPrivateKey(normalised)
  } catch (cause) {
    throw new RackbootError('RB_ERR_CRYPTO', 'cannot parse private key PEM', { cause })
  }
}
