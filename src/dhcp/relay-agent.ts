// Option 82, relay agent information (RFC 3046): set by relays, echoed back unchanged by the server.
import { parseSubOptions, readIp } from './options.js'

export const RelaySubOption = {
  CircuitId: 1,
  RemoteId: 2,
  /** RFC 3527: the subnet the client is on, when giaddr cannot say it. */
  LinkSelection: 5,
  /** RFC 5107. */
  ServerIdOverride: 11,
} as const

export interface RelayAgentInfo {
  circuitId?: Buffer
  remoteId?: Buffer
  linkSelection?: string
  serverIdOverride?: string
  raw: Map<number, Buffer>
}

/** Reads option 82; undefined when malformed (the server then echoes nothing it cannot parse). */
export function decodeRelayAgentInfo(value: Buffer): RelayAgentInfo | undefined {
  const raw = parseSubOptions(value)
  if (!raw) return undefined
  const out: RelayAgentInfo = { raw }
  const circuit = raw.get(RelaySubOption.CircuitId)
  if (circuit) out.circuitId = circuit
  const remote = raw.get(RelaySubOption.RemoteId)
  if (remote) out.remoteId = remote
  const link = raw.get(RelaySubOption.LinkSelection)
  if (link && link.length === 4) out.linkSelection = readIp(link, 0)
  const override = raw.get(RelaySubOption.ServerIdOverride)
  if (override && override.length === 4) out.serverIdOverride = readIp(override, 0)
  return out
}
