import { randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto'
import { RackbootError } from '../errors.js'
import * as der from './asn1.js'

// X.509 v3 certificates (RFC 5280) built with the DER writer and signed by node:crypto. The shape follows what
// Go's crypto/x509 emits for Talos's templates (siderolabs/crypto x509): extensions in the order KeyUsage,
// ExtKeyUsage, BasicConstraints, SubjectKeyId, AuthorityKeyId; no AuthorityKeyId on self-signed certificates.

const OID = {
  organization: '2.5.4.10',
  commonName: '2.5.4.3',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  basicConstraints: '2.5.29.19',
  subjectKeyId: '2.5.29.14',
  authorityKeyId: '2.5.29.35',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  ed25519: '1.3.101.112',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const

/** RFC 5280 §4.2.1.3 bit numbers. */
const KEY_USAGE_BITS = {
  digitalSignature: 0,
  contentCommitment: 1,
  keyEncipherment: 2,
  dataEncipherment: 3,
  keyAgreement: 4,
  keyCertSign: 5,
  cRLSign: 6,
} as const

export type KeyUsage = keyof typeof KEY_USAGE_BITS
export type ExtKeyUsage = 'serverAuth' | 'clientAuth'

export interface NameSpec {
  organization?: readonly string[]
  commonName?: string
}

export interface CertificateTemplate {
  subject: NameSpec
  notBefore: Date
  notAfter: Date
  isCA: boolean
  keyUsage: readonly KeyUsage[]
  extKeyUsage: readonly ExtKeyUsage[]
  /** Random 128-bit serial when omitted (as siderolabs/crypto NewSerialNumber). */
  serialNumber?: bigint
  /** Subject Key Identifier; CAs get 20 random bytes when omitted (siderolabs/crypto NewSubjectKeyID). */
  subjectKeyId?: Uint8Array
}

export interface Issuer {
  /** The issuing CA's certificate (PEM or DER). */
  certificate: string | Uint8Array
  privateKey: KeyObject
}

export interface CreateCertificateInput {
  template: CertificateTemplate
  /** The certified public key. */
  publicKey: KeyObject
  /** Absent: self-signed with `privateKey`. */
  issuer?: Issuer
  /** Self-signed certificates are signed with this key (the pair of publicKey). */
  privateKey?: KeyObject
}

/** pkix.Name in Go's attribute order (O before CN), each type one RDN. */
export function encodeName(name: NameSpec): Buffer {
  const rdns: Buffer[] = []
  const attr = (type: string, values: readonly string[]): void => {
    if (values.length === 0) return
    rdns.push(der.setOf(...values.map((v) => der.sequence(der.oid(type), der.directoryString(v)))))
  }
  attr(OID.organization, name.organization ?? [])
  attr(OID.commonName, name.commonName ? [name.commonName] : [])
  return der.sequence(...rdns)
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? der.sequence(der.oid(id), der.boolean(true), der.octetString(value)) : der.sequence(der.oid(id), der.octetString(value))
}

function signatureAlgorithm(key: KeyObject): Buffer {
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve
      if (curve !== 'prime256v1') throw new RackbootError('RB_ERR_CRYPTO', `unsupported EC curve ${String(curve)}`)
      return der.sequence(der.oid(OID.ecdsaWithSha256))
    }
    case 'ed25519':
      return der.sequence(der.oid(OID.ed25519))
    case 'rsa':
      return der.sequence(der.oid(OID.sha256WithRsa), der.nullValue())
    default:
      throw new RackbootError('RB_ERR_CRYPTO', `unsupported signing key type ${String(key.asymmetricKeyType)}`)
  }
}

function signTbs(tbs: Buffer, key: KeyObject): Buffer {
  if (key.asymmetricKeyType === 'ed25519') return sign(null, tbs, key)
  if (key.asymmetricKeyType === 'ec') return sign('sha256', tbs, { key, dsaEncoding: 'der' })
  return sign('sha256', tbs, key)
}

export function randomSerial(): bigint {
  // Positive and non-zero, below 2^128 (RFC 5280 §4.1.2.2).
  return BigInt(`0x${randomBytes(16).toString('hex')}`) || 1n
}

export function toDer(certificate: string | Uint8Array): Buffer {
  if (typeof certificate !== 'string') return Buffer.from(certificate)
  const m = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(certificate)
  if (!m) throw new RackbootError('RB_ERR_CRYPTO', 'no CERTIFICATE block in PEM')
  return Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64')
}

export function toPem(derBytes: Uint8Array, label = 'CERTIFICATE'): string {
  const b64 = Buffer.from(derBytes).toString('base64')
  return `-----BEGIN ${label}-----\n${b64.match(/.{1,64}/g)!.join('\n')}\n-----END ${label}-----\n`
}

/** The raw subject Name and Subject Key Identifier of a certificate, read from its DER. */
export function certificateParts(certificate: string | Uint8Array): { subject: Buffer; subjectKeyId: Buffer | null } {
  const buf = toDer(certificate)
  try {
    const tbs = der.children(buf, der.readElement(buf))[0]!
    const fields = der.children(buf, tbs)
    // version [0] is present on v3 certificates and shifts the later fields by one.
    const off = fields[0]!.tag === 0xa0 ? 1 : 0
    const subject = fields[4 + off]!
    let subjectKeyId: Buffer | null = null
    const extsWrapper = fields.find((f) => f.tag === 0xa3)
    if (extsWrapper) {
      const exts = der.children(buf, der.children(buf, extsWrapper)[0]!)
      for (const ext of exts) {
        const parts = der.children(buf, ext)
        const id = der.decodeOid(buf.subarray(parts[0]!.contentStart, parts[0]!.end))
        if (id !== OID.subjectKeyId) continue
        const outer = parts[parts.length - 1]!
        const inner = der.readElement(buf, outer.contentStart)
        subjectKeyId = Buffer.from(buf.subarray(inner.contentStart, inner.end))
      }
    }
    return { subject: Buffer.from(buf.subarray(subject.start, subject.end)), subjectKeyId }
  } catch (cause) {
    throw new RackbootError('RB_ERR_CRYPTO', 'cannot parse certificate', { cause })
  }
}

/** Builds, signs and returns a certificate as PEM. */
export function createCertificate(input: CreateCertificateInput): string {
  const { template } = input
  if (!(template.notAfter > template.notBefore)) throw new RackbootError('RB_ERR_CRYPTO', 'notAfter must be after notBefore')
  const signingKey = input.issuer?.privateKey ?? input.privateKey
  if (!signingKey) throw new RackbootError('RB_ERR_CRYPTO', 'a self-signed certificate needs its private key')

  const subject = encodeName(template.subject)
  let issuerName = subject
  let authorityKeyId: Buffer | null = null
  if (input.issuer) {
    const parts = certificateParts(input.issuer.certificate)
    issuerName = parts.subject
    // Go sets AuthorityKeyId from the parent's SubjectKeyId unless the certificate is self-issued.
    if (!issuerName.equals(subject)) authorityKeyId = parts.subjectKeyId
  }
  const subjectKeyId = template.subjectKeyId ? Buffer.from(template.subjectKeyId) : template.isCA ? randomBytes(20) : null

  const extensions: Buffer[] = []
  if (template.keyUsage.length > 0) {
    extensions.push(extension(OID.keyUsage, true, der.namedBits(template.keyUsage.map((u) => KEY_USAGE_BITS[u]))))
  }
  if (template.extKeyUsage.length > 0) {
    extensions.push(extension(OID.extKeyUsage, false, der.sequence(...template.extKeyUsage.map((u) => der.oid(OID[u])))))
  }
  if (template.isCA) extensions.push(extension(OID.basicConstraints, true, der.sequence(der.boolean(true))))
  if (subjectKeyId) extensions.push(extension(OID.subjectKeyId, false, der.octetString(subjectKeyId)))
  if (authorityKeyId) {
    extensions.push(extension(OID.authorityKeyId, false, der.sequence(der.implicitPrimitive(0, authorityKeyId))))
  }

  const sigAlg = signatureAlgorithm(signingKey)
  const spki = input.publicKey.export({ type: 'spki', format: 'der' })
  const tbs = der.sequence(
    der.explicit(0, der.integer(2)),
    der.integer(template.serialNumber ?? randomSerial()),
    sigAlg,
    issuerName,
    der.sequence(der.x509Time(template.notBefore), der.x509Time(template.notAfter)),
    subject,
    spki,
    ...(extensions.length > 0 ? [der.explicit(3, der.sequence(...extensions))] : []),
  )
  let signature: Buffer
  try {
    signature = signTbs(tbs, signingKey)
  } catch (cause) {
    throw new RackbootError('RB_ERR_CRYPTO', 'cannot sign certificate', { cause })
  }
  const cert = der.sequence(tbs, sigAlg, der.bitString(signature))
  return toPem(cert)
}

/** Parses a PEM certificate with node:crypto (throws RB_ERR_CRYPTO when it does not parse). */
export function parseCertificate(pem: string): X509Certificate {
  try {
    return new X509Certificate(pem)
  } catch (cause) {
    throw new RackbootError('RB_ERR_CRYPTO', 'cannot parse certificate', { cause })
  }
}
