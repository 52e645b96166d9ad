// Peer addresses as the lifecycle keys them: a bare IP, IPv4-mapped IPv6 unwrapped (dual-stack sockets report
// IPv4 peers as ::ffff:a.b.c.d), lower case.
import { isIP } from 'node:net'

export function normalizeIp(address: string): string {
  const lower = address.toLowerCase()
  if (lower.startsWith('::ffff:') && isIP(lower.slice(7)) === 4) return lower.slice(7)
  return lower
}

/** The IP of a grpc-js peer string ("1.2.3.4:5678", "::ffff:1.2.3.4:5678", "fd00::1:5678"; no brackets). */
export function ipFromGrpcPeer(peer: string): string {
  const bracketed = /^\[([^\]]+)\]:\d+$/.exec(peer)
  if (bracketed?.[1]) return normalizeIp(bracketed[1])
  const colon = peer.lastIndexOf(':')
  if (colon > 0 && /^\d+$/.test(peer.slice(colon + 1)) && isIP(peer.slice(0, colon)) !== 0) {
    return normalizeIp(peer.slice(0, colon))
  }
  return normalizeIp(peer)
}
