// rackboot's DHCPv4 server: full mode (pools, leases, reservations, relays) or ProxyDHCP (67 + 4011), with the PXE
// boot-file choice. The public door of src/dhcp.
import { networkInterfaces } from 'node:os'
import type { Registry } from 'prom-client'
import { RackbootError } from '../errors.js'
import type { ReservationRepository } from '../inventory/repositories.js'
import type { Logger } from '../log.js'
import type { Settings } from '../settings/schema.js'
import type { BootFileConfig } from './boot-file.js'
import type { BatchLeaseRepository, LeaseTransaction } from './lease-writer.js'
import type { DhcpHandler } from './handler.js'
import { createFullHandler, type FullHandler } from './handlers/full.js'
import { createProxyHandler } from './handlers/proxy.js'
import { createDhcpMetrics } from './metrics.js'
import { createMissingLoaderReporter } from './missing-loaders.js'
import { noopBootPort, type DhcpBootPort, type DhcpLoaderCheck, type DhcpProblemPort, type DhcpUrls } from './ports.js'
import { createDhcpSockets, type DhcpSockets } from './server.js'
import { parseSubnet } from './subnet.js'
import { createUnservedRelayReporter } from './unserved-relays.js'

export type DhcpSettings = Settings['dhcp']

export interface DhcpServerDeps {
  settings: DhcpSettings
  /**
   * Lease storage (full mode); this server is the only writer for its subnets unless `sharedLeases`. An optional
   * `putMany(leases)` on it is used for batches of writes (group commit).
   */
  leases: BatchLeaseRepository
  /**
   * Runs lease writes in one transaction so concurrent ACKs share a commit, e.g.
   * `(fn) => inventory.transaction((inv) => fn(inv.leases))`. Optional; strongly advised for SQLite.
   */
  leaseTransaction?: LeaseTransaction
  /**
   * Full mode: other rackboot instances share this lease store (PostgreSQL); offers and bindings are claimed in it
   * (handlers/full.ts). Needs `leases.claimMany`.
   */
  sharedLeases?: boolean
  /** Fixed addresses from the inventory (full mode). */
  reservations: ReservationRepository
  /** The lifecycle: timeline events and per-machine advice. Defaults to a port that does nothing. */
  bootPort?: DhcpBootPort
  urls: DhcpUrls
  /** Whether the loaders offered are on this server (a cached stat); absent: not checked. */
  loaders?: DhcpLoaderCheck
  /** Problems of known machines (a loader not on this server, a relay rackboot does not serve), for their timelines. */
  problems?: DhcpProblemPort
  log: Logger
  /** The registry rackboot_dhcp_* metrics are registered on. */
  metrics: Registry
  now?: () => number
  /** Ask the boot port about every DHCP client, not only network-boot ones. */
  inspectAllClients?: boolean
}

export interface DhcpServerInfo {
  mode: 'full' | 'proxy'
  serverAddress: string
  port: number
  /** The PXE boot-server port (proxy mode), else null. */
  bootServerPort: number | null
}

export interface DhcpServer {
  /** Loads leases and reservations, then binds. Resolves null when settings.mode is 'off'. */
  start(): Promise<DhcpServerInfo | null>
  stop(): Promise<void>
  /** Reloads reservations now (call after an inventory import); full mode only, a no-op otherwise. */
  reloadReservations(): Promise<void>
}

/** The IPv4 address of a named interface, from the OS. */
function interfaceAddress(name: string): string | undefined {
  return networkInterfaces()[name]?.find((a) => a.family === 'IPv4' && !a.internal)?.address
}

export function createDhcpServer(deps: DhcpServerDeps): DhcpServer {
  const s = deps.settings
  const log = deps.log.child({ svc: 'dhcp' })
  let sockets: DhcpSockets | null = null
  let handler: DhcpHandler | null = null
  let full: FullHandler | null = null

  return {
    async start() {
      if (s.mode === 'off') {
        log.info('dhcp off')
        return null
      }
      const serverAddress = s.serverAddress ?? (s.interface ? interfaceAddress(s.interface) : undefined)
      if (!serverAddress) {
        throw new RackbootError('RB_ERR_SETTINGS', `dhcp.serverAddress is not set and interface ${s.interface ?? '(none)'} has no IPv4 address`)
      }
      if (s.interface) {
        const addrs = networkInterfaces()[s.interface]
        if (!addrs) log.warn({ interface: s.interface }, 'dhcp interface not found on this host')
        else if (!addrs.some((a) => a.address === serverAddress)) {
          log.warn({ interface: s.interface, serverAddress }, 'dhcp serverAddress is not an address of the named interface')
        }
      }
      const subnets = s.subnets.map(parseSubnet)
      let usage: () => { subnet: string; used: number; total: number }[] = () => []
      const metrics = createDhcpMetrics(deps.metrics, () => usage())
      const boot: BootFileConfig = {
        bootFiles: s.bootFiles,
        archBootFiles: s.archBootFiles,
        scriptUrl: deps.urls.scriptUrl,
        httpBootUrl: (loader, arch) => deps.urls.httpBootUrl(loader, arch),
        nextServer: s.nextServer ?? serverAddress,
      }
      const now = deps.now ?? Date.now
      const advice = {
        bootPort: deps.bootPort ?? noopBootPort, timeoutMs: s.bootPortTimeoutMs, metrics, log,
        ...(deps.loaders ? { missingLoader: createMissingLoaderReporter({ check: deps.loaders, problems: deps.problems, log, now }) } : {}),
      }
      if (s.mode === 'full') {
        full = createFullHandler({
          serverId: serverAddress,
          subnets,
          settings: s,
          leases: deps.leases,
          ...(deps.leaseTransaction ? { leaseTransaction: deps.leaseTransaction } : {}),
          reservations: deps.reservations,
          boot,
          advice,
          log,
          ...(deps.now ? { now: deps.now } : {}),
          ...(deps.inspectAllClients ? { inspectAllClients: true } : {}),
          ...(deps.sharedLeases ? { shared: {} } : {}),
          unservedRelay: createUnservedRelayReporter({ log, problems: deps.problems, now }),
        })
        const h = full
        usage = () => h.poolUsage()
        handler = full
      } else {
        handler = createProxyHandler({ serverId: serverAddress, boot, advice, log })
      }
      await handler.start?.()
      sockets = createDhcpSockets({
        handler,
        listen: s.listen,
        port: s.port,
        serverAddress,
        bootServerPort: s.mode === 'proxy' ? s.proxyPort : null,
        receiveBufferBytes: s.receiveBufferBytes,
        metrics,
        log,
        ...(deps.now ? { now: deps.now } : {}),
      })
      try {
        const bound = await sockets.start()
        return { mode: s.mode, serverAddress, port: bound.port, bootServerPort: bound.bootServerPort }
      } catch (err) {
        await handler.stop?.()
        await sockets.stop()
        throw new RackbootError('RB_ERR_INTERNAL', `dhcp cannot bind ${s.listen}:${s.port}: ${(err as Error).message}`, { cause: err })
      }
    },
    async stop() {
      await sockets?.stop()
      await handler?.stop?.()
      sockets = null
      handler = null
    },
    async reloadReservations() {
      await full?.reloadReservations()
    },
  }
}

export { chooseBoot, NO_BOOT_FILE, type BootChoice, type BootFileConfig, type BootOverride } from './boot-file.js'
export { CLIENT_ARCHS, clientArch, archCpuName, type ClientArch, type BootFamily } from './client-arch.js'
export { decode, encode, tryDecode, hardwareAddress, type DhcpPacket, type DecodeResult } from './codec.js'
export { requestFacts, type RequestFacts, type RequestMeta, type ClientType } from './facts.js'
export type { DhcpHandler, DhcpResult, DhcpReply } from './handler.js'
export { OptionCode, MessageType, type DhcpOptions, type MessageName } from './options.js'
export {
  noopBootPort, type DhcpBootPort, type DhcpBootAdvice, type DhcpBootEvent, type DhcpUrls, type DhcpLoaderCheck, type DhcpProblem, type DhcpProblemPort,
} from './ports.js'
export { replyDestination } from './server.js'
export type { BatchLeaseRepository, LeaseTransaction } from './lease-writer.js'
export { createRouterAdverts, radvdConfig, findRadvd, type RouterAdverts, type RouterAdvertsDeps } from './router-adverts.js'
