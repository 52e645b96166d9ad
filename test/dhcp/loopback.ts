// A DHCP server on loopback for tests that need real sockets but no namespaces: the test plays a relay agent at
// 127.0.0.2 on the server's port (SO_REUSEADDR lets it bind beside the server's wildcard socket), and uses link
// selection (option 118) to land in a 198.18.x subnet.
import { createSocket, type Socket } from 'node:dgram'
import { Registry } from 'prom-client'
import { decode, encode, type DhcpPacket } from '../../src/dhcp/codec.js'
import { createDhcpServer, type DhcpServer, type DhcpServerInfo, type DhcpSettings } from '../../src/dhcp/index.js'
import { OptionCode } from '../../src/dhcp/options.js'
import { silentLogger } from '../../src/log.js'
import { memoryLeases, memoryReservations } from './fakes.js'
import { request, type RequestSpec } from './packets.js'

export const RELAY = '127.0.0.2'
export const LINK = '198.18.60.0'

export function loopbackSettings(overrides: Partial<DhcpSettings> = {}): DhcpSettings {
  return {
    mode: 'full',
    serverAddress: '127.0.0.1',
    listen: '0.0.0.0',
    port: 0,
    proxyPort: 0,
    subnets: [{ subnet: '198.18.60.0/24', rangeStart: '198.18.60.10', rangeEnd: '198.18.60.250', routers: ['198.18.60.1'], dnsServers: [], leaseSeconds: 600 }],
    ipxeNoPxedhcp: true,
    routerAdverts: 'off',
    bootFiles: { bios: 'undionly.kpxe', uefiX64: 'ipxe.efi', uefiArm64: 'ipxe-arm64.efi' },
    archBootFiles: {},
    offerSeconds: 30,
    declineSeconds: 3600,
    authoritative: true,
    reservationRefreshSeconds: 3600,
    bootPortTimeoutMs: 500,
    receiveBufferBytes: 8 * 1024 * 1024,
    ...overrides,
  }
}

export interface LoopbackServer {
  server: DhcpServer
  info: DhcpServerInfo
  registry: Registry
  relay: Socket
  /** Sends a request as the relay and waits for the reply with its xid (or null after timeoutMs). */
  exchange(spec: RequestSpec, timeoutMs?: number): Promise<DhcpPacket | null>
  sendRaw(buf: Buffer, port?: number): Promise<void>
  close(): Promise<void>
}

export async function startLoopbackServer(overrides: Partial<DhcpSettings> = {}): Promise<LoopbackServer> {
  const registry = new Registry()
  const server = createDhcpServer({
    settings: loopbackSettings(overrides),
    leases: memoryLeases(),
    reservations: memoryReservations(),
    urls: { scriptUrl: 'http://198.18.60.1:8080/boot.ipxe', httpBootUrl: () => 'http://198.18.60.1:8080/ipxe.efi' },
    log: silentLogger(),
    metrics: registry,
  })
  const info = (await server.start())!
  const relay = createSocket({ type: 'udp4', reuseAddr: true })
  await new Promise<void>((resolve, reject) => {
    relay.once('error', reject)
    relay.bind({ address: RELAY, port: info.port }, () => resolve())
  })
  const waiting = new Map<number, (p: DhcpPacket) => void>()
  relay.on('message', (buf) => {
    try {
      const p = decode(buf)
      waiting.get(p.xid)?.(p)
    } catch {
      // not for us
    }
  })
  const sendRaw = (buf: Buffer, port = info.port) =>
    new Promise<void>((resolve) => relay.send(buf, port, '127.0.0.1', () => resolve()))
  return {
    server,
    info,
    registry,
    relay,
    sendRaw,
    exchange(spec, timeoutMs = 5_000) {
      const p = request({ giaddr: RELAY, ...spec, extra: [[OptionCode.SubnetSelection, Buffer.from(LINK.split('.').map(Number))], ...(spec.extra ?? [])] })
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          waiting.delete(p.xid)
          resolve(null)
        }, timeoutMs)
        waiting.set(p.xid, (reply) => {
          clearTimeout(timer)
          waiting.delete(p.xid)
          resolve(reply)
        })
        void sendRaw(encode(p))
      })
    },
    async close() {
      relay.close()
      await server.stop()
    },
  }
}
