// Sockets only: bind [::]:547, join ff02::1:2 on the provisioning interface, decode, dispatch to the handler,
// encode, send the reply back where the request came from (a client's link-local address on port 546, or the relay
// on 547). A datagram that fails anywhere is counted and logged; the socket handler never throws.
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import type { Logger } from '../log.js'
import { isLinkLocal } from './address.js'
import { decode6, encode6, type Dhcp6Limits } from './codec.js'
import type { Dhcp6Handler } from './handler.js'
import type { Dhcp6Metrics } from './metrics.js'
import { messageName6 } from './options.js'

/** All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1). */
export const ALL_DHCP_RELAY_AGENTS_AND_SERVERS = 'ff02::1:2'

export interface Dhcp6SocketDeps {
  handler: Dhcp6Handler
  listen: string
  port: number
  /** The interface multicast is joined on and link-local replies leave through. */
  interface?: string
  limits: Dhcp6Limits
  /**
   * Stores what the message changed (the bindings it made or ended) before its reply leaves; a failure keeps the
   * reply back, as DHCPv4 does: no address is handed out that is not recorded.
   */
  commit?: () => Promise<void>
  metrics: Dhcp6Metrics
  log: Logger
  now?: () => number
}

export interface Dhcp6Socket {
  start(): Promise<{ port: number }>
  stop(): Promise<void>
}

export function createDhcp6Socket(deps: Dhcp6SocketDeps): Dhcp6Socket {
  const log = deps.log
  let socket: Socket | null = null

  const destination = (rinfo: RemoteInfo): string => {
    // A link-local peer is reachable only through an interface: name it when the kernel's answer did not.
    if (isLinkLocal(rinfo.address) && !rinfo.address.includes('%') && deps.interface) return `${rinfo.address}%${deps.interface}`
    return rinfo.address
  }

  const onMessage = (msg: Buffer, rinfo: RemoteInfo) => {
    void answer(msg, rinfo)
  }

  const answer = async (msg: Buffer, rinfo: RemoteInfo): Promise<void> => {
    const started = process.hrtime.bigint()
    let type = 'unknown'
    try {
      const d = decode6(msg, deps.limits)
      if (!d.ok) {
        deps.metrics.received('malformed')
        deps.metrics.dropped(d.reason)
        log.debug({ peer: rinfo.address, bytes: msg.length, reason: d.reason }, 'dhcp6 datagram dropped')
        return
      }
      type = messageName6(d.message.type)
      deps.metrics.received(type)
      const result = await deps.handler.handle(d, d.relays.length === 0 ? rinfo.address : null)
      if (result.kind === 'ignore') {
        deps.metrics.dropped(result.reason)
        log.debug({ peer: rinfo.address, type, reason: result.reason, duid: result.facts?.duid }, 'dhcp6 message not answered')
        return
      }
      const out = encode6(result.reply)
      const f = result.facts
      const send = () => socket?.send(out, rinfo.port, destination(rinfo), (err) => {
        if (err) {
          deps.metrics.dropped('send-error')
          log.warn({ err, peer: rinfo.address, type }, 'dhcp6 reply could not be sent')
        } else deps.metrics.replied(result.type)
      })
      if (deps.commit) {
        deps.commit().then(send, (err: unknown) => {
          deps.metrics.dropped('store-error')
          log.warn({ err, peer: rinfo.address, type }, 'dhcp6 binding could not be stored: no reply (the client retransmits)')
        })
      } else send()
      log.debug({ peer: rinfo.address, type, reply: result.type, duid: f.duid, mac: f.mac, arch: f.arch?.name ?? null, ipxe: f.isIpxe, boot: result.boot?.reason ?? null }, 'dhcp6 reply')
    } catch (err) {
      deps.metrics.dropped('error')
      log.error({ err, peer: rinfo.address, type }, 'dhcp6 datagram failed')
    } finally {
      deps.metrics.handled(type, Number(process.hrtime.bigint() - started) / 1e9)
    }
  }

  return {
    start() {
      return new Promise((resolve, reject) => {
        const s = createSocket({ type: 'udp6', reuseAddr: true, ipv6Only: true })
        const onError = (err: Error) => {
          s.close()
          reject(err)
        }
        s.once('error', onError)
        s.bind({ address: deps.listen, port: deps.port, exclusive: true }, () => {
          s.off('error', onError)
          s.on('error', (err) => log.warn({ err }, 'dhcp6 socket error'))
          if (deps.interface) {
            try {
              s.addMembership(ALL_DHCP_RELAY_AGENTS_AND_SERVERS, `::%${deps.interface}`)
            } catch (err) {
              s.close()
              return reject(new Error(`cannot join ${ALL_DHCP_RELAY_AGENTS_AND_SERVERS} on ${deps.interface}: ${(err as Error).message}`, { cause: err }))
            }
          }
          s.on('message', onMessage)
          socket = s
          resolve({ port: s.address().port })
        })
      })
    },
    stop() {
      const s = socket
      socket = null
      if (!s) return Promise.resolve()
      return new Promise((resolve) => {
        try {
          s.close(() => resolve())
        } catch {
          resolve()
        }
      })
    },
  }
}
