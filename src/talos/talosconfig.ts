import YAML from 'yaml'
import { RackbootError } from '../errors.js'
import { generateKey, loadPrivateKey, privateKeyToPem } from './keys.js'
import { decodePem, encodePem, type SecretsBundle } from './secrets.js'
import { createCertificate } from './x509.js'

// The admin talosconfig `talosctl gen config` writes (generate/talosconfig.go, client/config): one context with
// the endpoints, the OS CA certificate and a client certificate signed by the OS CA with O=<role>,
// KeyUsage=DigitalSignature and ExtKeyUsage=ClientAuth only (apid checks the EKU), valid 365 days.

/** constants.TalosAPIDefaultCertificateValidityDuration. */
export const TALOS_API_CLIENT_CERT_VALIDITY_MS = 365 * 24 * 3_600_000

export interface TalosconfigOptions {
  /** Context name; talosctl uses the cluster name. */
  contextName: string
  /** Talos API endpoints (control-plane addresses or a load balancer). */
  endpoints: readonly string[]
  /** Default target nodes, when wanted. */
  nodes?: readonly string[]
  /** Start of the client certificate validity (defaults to the current time). */
  now?: Date
  /** Talos API roles, written as the certificate's organizations; default os:admin. */
  roles?: readonly string[]
  validityMs?: number
}

export interface TalosconfigContext {
  endpoints: string[]
  nodes?: string[]
  ca: string
  crt: string
  key: string
}

export interface Talosconfig {
  context: string
  contexts: Record<string, TalosconfigContext>
}

/** An admin talosconfig for the cluster whose secrets these are. */
export async function talosconfigFor(
  secrets: SecretsBundle,
  options: TalosconfigOptions,
): Promise<{ config: Talosconfig; yaml: string }> {
  if (!options.contextName) throw new RackbootError('RB_ERR_VALIDATION', 'talosconfig needs a context name')
  const now = options.now ?? new Date()
  const caPem = decodePem(secrets.certs.os.crt)
  const caKey = loadPrivateKey(decodePem(secrets.certs.os.key))
  // siderolabs/crypto NewKeyPair makes the client key of the CA's own type.
  const algorithm = caKey.asymmetricKeyType === 'ed25519' ? 'ed25519' : caKey.asymmetricKeyType === 'ec' ? 'ecdsa-p256' : 'rsa'
  const { privateKey, publicKey } = await generateKey(algorithm)
  const crt = createCertificate({
    template: {
      subject: { organization: options.roles ?? ['os:admin'] },
      notBefore: now,
      notAfter: new Date(now.getTime() + (options.validityMs ?? TALOS_API_CLIENT_CERT_VALIDITY_MS)),
      isCA: false,
      keyUsage: ['digitalSignature'],
      extKeyUsage: ['clientAuth'],
    },
    publicKey,
    issuer: { certificate: caPem, privateKey: caKey },
  })
  const context: TalosconfigContext = {
    endpoints: [...options.endpoints],
    ...(options.nodes?.length ? { nodes: [...options.nodes] } : {}),
    ca: secrets.certs.os.crt,
    crt: encodePem(crt),
    key: encodePem(privateKeyToPem(privateKey)),
  }
  const config: Talosconfig = { context: options.contextName, contexts: { [options.contextName]: context } }
  return { config, yaml: YAML.stringify(config, { indent: 4, lineWidth: 0 }) }
}
