// One undici Agent per BMC, so each BMC gets its own TLS policy: verified against the system CAs (default, plus an
// optional CA), pinned to one certificate's sha256 fingerprint (BMCs ship self-signed certificates), or, only when
// the inventory says so explicitly, not verified at all.
import { rootCertificates, type TLSSocket } from 'node:tls'
import { Agent, buildConnector } from 'undici'
import { PowerError } from '../errors.js'

export interface TlsPolicy {
  /** Skip certificate verification: an explicit per-BMC choice, never a default. */
  insecure?: boolean
  /** sha256 fingerprint of the BMC's certificate (hex; colons and case ignored). Replaces CA and name checks. */
  fingerprint?: string | null
  /** Extra CA certificate(s), PEM, trusted besides the system store. */
  ca?: string | Buffer | null
  /** TCP + TLS connect timeout. */
  connectTimeoutMs?: number
}

export function normalizeFingerprint(fp: string): string {
  const hex = fp.replace(/^sha256[:=]/i, '').replace(/[^0-9a-f]/gi, '').toLowerCase()
  if (hex.length !== 64) throw new PowerError('invalid', 'a certificate fingerprint must be a sha256 (64 hex digits)')
  return hex
}

/** Error raised (as a connect error) when the certificate is not the pinned one. */
export class PinMismatchError extends Error {
  readonly code = 'RB_TLS_PIN_MISMATCH'
  constructor(readonly got: string) {
    super(`certificate sha256 fingerprint ${got} is not the pinned one`)
    this.name = 'PinMismatchError'
  }
}

export function createBmcAgent(policy: TlsPolicy): Agent {
  const timeout = policy.connectTimeoutMs ?? 10_000
  // Keep-alive connections are reused for one driver's requests; BMCs drop idle ones quickly anyway.
  const common = { keepAliveTimeout: 4_000, keepAliveMaxTimeout: 10_000, connections: 2 }
  if (policy.fingerprint) {
    const pin = normalizeFingerprint(policy.fingerprint)
    // No TLS session resumption: a resumed session shows no peer certificate, so every connection is checked anew.
    const base = buildConnector({ rejectUnauthorized: false, timeout, maxCachedSessions: 0 })
    const connect: buildConnector.connector = (opts, callback) =>
      base(opts, (err, socket) => {
        if (err || !socket) return callback(err ?? new Error('no socket'), null)
        const tls = socket as TLSSocket
        if (typeof tls.getPeerCertificate !== 'function') return callback(null, socket) // plain http: nothing to pin
        const got = (tls.getPeerCertificate().fingerprint256 ?? '').replace(/:/g, '').toLowerCase()
        if (got !== pin) {
          socket.destroy()
          return callback(new PinMismatchError(got), null)
        }
        callback(null, socket)
      })
    return new Agent({ ...common, connect })
  }
  if (policy.insecure) return new Agent({ ...common, connect: { rejectUnauthorized: false, timeout } })
  // Node's `ca` replaces the system store, so the system roots are passed along with the extra CA.
  const ca = policy.ca ? [...rootCertificates, policy.ca] : undefined
  return new Agent({ ...common, connect: { timeout, ...(ca ? { ca } : {}) } })
}
