import { createHash, randomBytes } from 'node:crypto'
import YAML from 'yaml'
import { RackbootError } from '../errors.js'
import { generateKey, loadPrivateKey, privateKeyToPem } from './keys.js'
import { createCertificate, parseCertificate, type NameSpec } from './x509.js'
import { contractGreater, parseTalosVersion, versionAtLeast, type TalosVersion } from './version.js'

// Talos's secrets bundle (`talosctl gen secrets`), generated with node:crypto the way
// pkg/machinery/config/generate/secrets does it (shared/reference/talos.md §4.2). The object has the same
// lower-case layout as Talos's secrets.yaml, PEM data base64-encoded, so `secretsBundleToYaml` output can be
// handed to `talosctl gen config --with-secrets`.

/** Certificate and key, each the base64 of a PEM block (Go []byte in YAML). */
export interface CertAndKey {
  crt: string
  key: string
}

export interface SecretsBundle {
  cluster: { id: string; secret: string }
  secrets: {
    /** Kubernetes bootstrap token, [0-9a-z]{6}.[0-9a-z]{16}. */
    bootstraptoken: string
    secretboxencryptionsecret?: string
    aescbcencryptionsecret?: string
  }
  trustdinfo: { token: string }
  certs: {
    etcd: CertAndKey
    k8s: CertAndKey
    k8saggregator: CertAndKey
    k8sserviceaccount: { key: string }
    os: CertAndKey
  }
}

export interface GenerateSecretsOptions {
  /** Target Talos version: chooses RSA vs ECDSA service-account key, secretbox vs aescbc, cluster id encoding. */
  talosVersion: string | TalosVersion
  /** Start of the CA validity (defaults to the current time). */
  now?: Date
  /** RSA service-account key size; Talos uses 4096. */
  rsaBits?: number
}

/** secrets.CAValidityTime = 87600h. */
export const CA_VALIDITY_MS = 87_600 * 3_600_000

const TOKEN_CHARS = '0123456789abcdefghijklmnopqrstuvwxyz'
export const TOKEN_RE = /^[0-9a-z]{6}\.[0-9a-z]{16}$/

function randomTokenString(length: number): string {
  // 256 % 36 = 4: bytes >= 252 are discarded so every character is equally likely (secrets/utils.go).
  let out = ''
  while (out.length < length) {
    for (const b of randomBytes(length * 2)) {
      if (b >= 252) continue
      out += TOKEN_CHARS[b % TOKEN_CHARS.length]
      if (out.length === length) break
    }
  }
  return out
}

/** A token in Talos's genToken(6, 16) format, used for the bootstrap token and the trustd token. */
export function generateToken(): string {
  return `${randomTokenString(6)}.${randomTokenString(16)}`
}

export function encodePem(pem: string): string {
  return Buffer.from(pem, 'utf8').toString('base64')
}

/** The PEM text behind a bundle field (base64 of PEM). */
export function decodePem(b64: string): string {
  return Buffer.from(b64, 'base64').toString('utf8')
}

function base64Url(bytes: Buffer): string {
  // Go's base64.URLEncoding: URL alphabet, with padding.
  return bytes.toString('base64').replace(/\+/g, '-').replace(/\//g, '_')
}

async function selfSignedCA(
  algorithm: 'ecdsa-p256' | 'ed25519',
  subject: NameSpec,
  now: Date,
): Promise<CertAndKey> {
  const { privateKey, publicKey } = await generateKey(algorithm)
  const crt = createCertificate({
    template: {
      subject,
      notBefore: now,
      notAfter: new Date(now.getTime() + CA_VALIDITY_MS),
      isCA: true,
      keyUsage: ['digitalSignature', 'keyCertSign'],
      extKeyUsage: ['serverAuth', 'clientAuth'],
    },
    publicKey,
    privateKey,
  })
  return { crt: encodePem(crt), key: encodePem(privateKeyToPem(privateKey)) }
}

/** A new secrets bundle for `talosVersion`, as `talosctl gen secrets` of that version would make it. */
export async function generateSecretsBundle(options: GenerateSecretsOptions): Promise<SecretsBundle> {
  const v = parseTalosVersion(options.talosVersion)
  const now = options.now ?? new Date()
  if (Number.isNaN(now.getTime())) throw new RackbootError('RB_ERR_VALIDATION', 'invalid "now" for secrets generation')

  // siderolabs/crypto NewSelfSignedCertificateAuthority sets only Organization, so the aggregator CA's
  // CommonName("front-proxy") option never reaches the certificate: its subject is empty, as in Talos.
  const [etcd, k8s, k8saggregator, os, serviceAccount] = await Promise.all([
    selfSignedCA('ecdsa-p256', { organization: ['etcd'] }, now),
    selfSignedCA('ecdsa-p256', { organization: ['kubernetes'] }, now),
    selfSignedCA('ecdsa-p256', {}, now),
    selfSignedCA('ed25519', { organization: ['talos'] }, now),
    // contract > 1.6: RSA (4096 bits) service-account key, else ECDSA P-256.
    generateKey(contractGreater(v, 1, 6) ? 'rsa' : 'ecdsa-p256', { rsaBits: options.rsaBits ?? 4096 }),
  ])

  // internal/cis CreateEncryptionToken: base64 of 32 random bytes.
  const encryption = randomBytes(32).toString('base64')
  const secrets: SecretsBundle['secrets'] = { bootstraptoken: generateToken() }
  // secretbox from contract 1.3 on, aescbc before.
  if (contractGreater(v, 1, 2)) secrets.secretboxencryptionsecret = encryption
  else secrets.aescbcencryptionsecret = encryption

  const clusterId = randomBytes(32)
  return {
    cluster: {
      // talosctl before 1.14 encoded the cluster id with base64.URLEncoding; 1.14 switched to StdEncoding.
      id: versionAtLeast(v, 1, 14) ? clusterId.toString('base64') : base64Url(clusterId),
      secret: randomBytes(32).toString('base64'),
    },
    secrets,
    trustdinfo: { token: generateToken() },
    certs: {
      etcd,
      k8s,
      k8saggregator,
      k8sserviceaccount: { key: encodePem(privateKeyToPem(serviceAccount.privateKey)) },
      os,
    },
  }
}

/** The bundle as Talos's secrets.yaml. */
export function secretsBundleToYaml(bundle: SecretsBundle): string {
  return YAML.stringify(bundle, { indent: 4, lineWidth: 0 })
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function checkCertAndKey(name: string, value: unknown, problems: string[], needCert = true): void {
  if (!isRecord(value)) {
    problems.push(`certs.${name} is required`)
    return
  }
  let keyPem: string | null = null
  if (typeof value.key !== 'string' || value.key === '') problems.push(`certs.${name}.key is required`)
  else {
    try {
      keyPem = decodePem(value.key)
      loadPrivateKey(keyPem)
    } catch {
      problems.push(`certs.${name}.key is not a private key PEM`)
      keyPem = null
    }
  }
  if (!needCert) return
  if (typeof value.crt !== 'string' || value.crt === '') {
    problems.push(`certs.${name}.crt is required`)
    return
  }
  try {
    const cert = parseCertificate(decodePem(value.crt))
    if (keyPem && !cert.checkPrivateKey(loadPrivateKey(keyPem))) problems.push(`certs.${name}: key does not match crt`)
  } catch {
    problems.push(`certs.${name}.crt is not a certificate PEM`)
  }
}

/** What is missing or broken in a bundle (Talos's Bundle.Validate); empty when it is usable. */
export function validateSecretsBundle(bundle: unknown): string[] {
  const problems: string[] = []
  if (!isRecord(bundle)) return ['secrets bundle must be a mapping']
  const cluster = bundle.cluster
  if (!isRecord(cluster)) problems.push('cluster is required')
  else {
    if (typeof cluster.id !== 'string' || cluster.id === '') problems.push('cluster.id is required')
    if (typeof cluster.secret !== 'string' || cluster.secret === '') problems.push('cluster.secret is required')
    else if (Buffer.from(cluster.secret, 'base64').length !== 32) problems.push('cluster.secret must be base64 of 32 bytes')
  }
  const secrets = bundle.secrets
  if (!isRecord(secrets)) problems.push('secrets is required')
  else {
    if (typeof secrets.bootstraptoken !== 'string' || !TOKEN_RE.test(secrets.bootstraptoken)) {
      problems.push('secrets.bootstraptoken is required ([0-9a-z]{6}.[0-9a-z]{16})')
    }
    const box = typeof secrets.secretboxencryptionsecret === 'string' && secrets.secretboxencryptionsecret !== ''
    const cbc = typeof secrets.aescbcencryptionsecret === 'string' && secrets.aescbcencryptionsecret !== ''
    if (!box && !cbc) problems.push('one of [secrets.secretboxencryptionsecret, secrets.aescbcencryptionsecret] is required')
    if (box && cbc) problems.push('only one of [secrets.secretboxencryptionsecret, secrets.aescbcencryptionsecret] is allowed')
  }
  const trustd = bundle.trustdinfo
  if (!isRecord(trustd) || typeof trustd.token !== 'string' || trustd.token === '') problems.push('trustdinfo.token is required')
  const certs = bundle.certs
  if (!isRecord(certs)) problems.push('certs is required')
  else {
    checkCertAndKey('etcd', certs.etcd, problems)
    checkCertAndKey('k8s', certs.k8s, problems)
    checkCertAndKey('k8saggregator', certs.k8saggregator, problems)
    checkCertAndKey('k8sserviceaccount', certs.k8sserviceaccount, problems, false)
    checkCertAndKey('os', certs.os, problems)
  }
  return problems
}

/** Bundles parsed from text, by the text: validating one loads every key and certificate (~7 ms). */
const PARSED_MAX = 64
const parsedBundles = new Map<string, SecretsBundle>()

/**
 * Reads a bundle from Talos's secrets.yaml text (or an already parsed object) and validates it. Text is parsed and
 * validated once: a cluster's config fetches (lifecycle's baseConfigFor, per fetch) share the result, frozen.
 */
export function parseSecretsBundle(input: string | unknown): SecretsBundle {
  if (typeof input !== 'string') return parseAndValidate(input)
  // By the text itself: a Map compares a few KiB faster than sha256 reads them.
  const hit = parsedBundles.get(input)
  if (hit) return hit
  const bundle = deepFreeze(parseAndValidate(input))
  parsedBundles.set(input, bundle)
  frozenBundles.add(bundle)
  if (parsedBundles.size > PARSED_MAX) parsedBundles.delete(parsedBundles.keys().next().value!)
  return bundle
}

/** Bundles parseSecretsBundle froze: their content never changes (generate.ts keys its cache on that). */
const frozenBundles = new WeakSet<object>()

export function isFrozenBundle(bundle: SecretsBundle): boolean {
  return frozenBundles.has(bundle)
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}

function parseAndValidate(input: string | unknown): SecretsBundle {
  let value: unknown = input
  if (typeof input === 'string') {
    try {
      value = YAML.parse(input)
    } catch (cause) {
      throw new RackbootError('RB_ERR_VALIDATION', 'secrets bundle is not valid YAML', { cause })
    }
  }
  const problems = validateSecretsBundle(value)
  if (problems.length > 0) {
    throw new RackbootError('RB_ERR_VALIDATION', `invalid secrets bundle: ${problems.join('; ')}`, { details: { problems } })
  }
  return value as SecretsBundle
}
