// rackboot's DHCPv6 server for IPv6 netboot: stateful IA_NA addresses from one range, boot-file URLs (RFC 5970) from
// the same loader table as DHCPv4, the server DUID kept under the data directory. The public door of src/dhcp6.
import { networkInterfaces } from 'node:os'
import type { Registry } from 'prom-client'
import type { BootFileConfig } from '../dhcp/boot-file.js'
import type { ClientArch } from '../dhcp/client-arch.js'
import type { ClaimingLeaseRepository } from '../dhcp/lease-writer.js'
import type { DhcpBootAdvice, DhcpUrls } from '../dhcp/ports.js'
import { RackbootError } from '../errors.js'
import type { Lease, LeaseRepository } from '../inventory/index.js'
import type { Logger } from '../log.js'
import type { Dhcp6Settings } from '../settings/dhcp6-schema.js'
import { bigintToIpv6, inPrefix, ipv6ToBigint, isLinkLocal, parsePrefix } from './address.js'
import { loadServerDuid } from './duid.js'
import { bootUrl, createDhcp6Handler, type Dhcp6AdviceRequest, type Dhcp6Handler, type Dhcp6Result } from './handler.js'
import { Lease6Store, type Lease6, type Range6 } from './leases.js'
import { Option6, allOptions, decodeIaAddr, decodeIaNa } from './options.js'
import { createDhcp6Metrics } from './metrics.js'
import { createDhcp6Socket, type Dhcp6Socket } from './server.js'
import { bindingOfRow, createShared6, leaseClientId } from './shared.js'

export interface Dhcp6ServerDeps {
  settings: Dhcp6Settings
  /** Where the server DUID is kept (settings.dataDir). */
  dataDir: string
  /** The loader names (settings.dhcp.bootFiles and archBootFiles): one table for DHCPv4 and DHCPv6. */
  bootFiles: BootFileConfig['bootFiles']
  archBootFiles: BootFileConfig['archBootFiles']
  /**
   * The iPXE script URL and loader URLs, with a host IPv6 clients reach (e.g. http://[2001:db8::1]:8080); or a
   * function of the server address (resolved at start from dhcp6.serverAddress or the interface) that makes them.
   */
  urls: DhcpUrls | ((serverAddress: string) => DhcpUrls)
  log: Logger
  /** The registry rackboot_dhcp6_* metrics are registered on. */
  metrics: Registry
  /**
   * The inventory's leases: bindings are stored there before their reply leaves (as DHCPv4's are), so an HTTP
   * request from a DHCPv6 address is vouched for like one from a DHCPv4 lease, the machine's API view lists its
   * IPv6 address, and a restart keeps them. Absent: in memory only.
   */
  leases?: LeaseRepository
  /**
   * Other rackboot instances share `leases` (one PostgreSQL): every offer and binding is claimed there before it is
   * sent (LeaseRepository.claimMany), so no address goes to two clients, and bindings the others granted are renewed.
   */
  sharedLeases?: boolean
  /** Network-boot clients' exchanges go to their machines' timelines through this. */
  bootPort?: Dhcp6BootPort
  /**
   * Called after an address is bound for UEFI firmware on this link (not iPXE, not relayed), with the link-local
   * address it asked from: it now waits for a route to its boot server (RouterAdverts.routeFor).
   */
  firmwareBound?: (linkLocal: string) => void
  now?: () => number
}

/** What DHCPv6 answered a network-boot client with a known MAC, for its machine's timeline. */
export interface Dhcp6BootEvent {
  /** The client's message and the reply, lower case (solicit, request, renew, ...; advertise, reply). */
  message: string
  reply: string
  mac: string
  duid: string | null
  /** Addresses the client holds or was offered after this reply. */
  addresses: string[]
  arch: ClientArch | null
  clientType: string | null
  ipxe: boolean
  /** Option 59, when given. */
  bootUrl: string | null
  /** The relay's link-address, when relayed. */
  relayLink: string | null
}

/** The lifecycle's side: records the event (creating unknown machines as new). Never blocks or fails the reply. */
export interface Dhcp6BootPort {
  seen(event: Dhcp6BootEvent): void
  /**
   * Per-machine advice before boot options are sent, as DHCPv4's DhcpBootPort.inspect returns it: `ignore` for a
   * machine in maintenance (addresses, no boot options), or an override boot file. Bounded by a timeout.
   */
  advise?(request: Dhcp6AdviceRequest): Promise<DhcpBootAdvice | void>
}

/** A binding's row: client id `duid:<hex>/<iaid>`, the prefix as its subnet. Bindings with no known MAC are not stored. */
function leaseRow(l: Lease6, subnet: string, now: number): Lease | null {
  if (!l.mac) return null
  return { ip: bigintToIpv6(l.address), mac: l.mac, clientId: leaseClientId(l.duid, l.iaid), subnet, state: 'bound', hostname: null, expiresAt: l.expiresAt, updatedAt: now }
}

function bootEvent(r: Extract<Dhcp6Result, { kind: 'reply' }>, store: Lease6Store, serverAddress: string): Dhcp6BootEvent {
  const f = r.facts
  return {
    message: f.message, reply: r.type, mac: f.mac!, duid: f.duid,
    addresses: f.duid ? store.heldBy(f.duid).map(bigintToIpv6) : [],
    arch: f.arch,
    clientType: f.clientType, ipxe: f.isIpxe,
    bootUrl: r.boot ? bootUrl(r.boot, serverAddress) : null,
    relayLink: f.linkAddress,
  }
}

/**
 * The link-local address UEFI firmware on this link sent from, when this reply has just bound it an address (a REPLY
 * to its REQUEST, or to a rapid-commit SOLICIT): it now waits for a route to its boot server (firmwareBound). Not
 * iPXE (its own stack takes what the segment advertises), not a relayed client (another link), not a reply that
 * bound nothing.
 */
export function firmwareAwaitingRoute(r: Dhcp6Result, source: string | null | undefined): string | null {
  if (r.kind !== 'reply' || r.type !== 'reply' || !source) return null
  const f = r.facts
  if (f.clientType === null || f.isIpxe || f.linkAddress !== null || (f.message !== 'request' && f.message !== 'solicit')) return null
  const address = source.split('%')[0]!
  if (!isLinkLocal(address)) return null
  const bound = allOptions(r.reply.message.options, Option6.IaNa).some((raw) => {
    const ia = decodeIaNa(raw)
    return !!ia && allOptions(ia.options, Option6.IaAddr).some((a) => (decodeIaAddr(a)?.valid ?? 0) > 0)
  })
  return bound ? address : null
}

export interface Dhcp6ServerInfo {
  serverAddress: string
  port: number
  duid: string
  range: string
}

export interface Dhcp6Server {
  /** Reads (or makes) the server DUID, then binds. Resolves null when settings.enabled is false. */
  start(): Promise<Dhcp6ServerInfo | null>
  stop(): Promise<void>
  /** The bindings held now (for logs, the API and tests). */
  leases(): { address: string; duid: string; iaid: number; state: string; expiresAt: number; mac: string | null }[]
}

/** How often a server sharing the leases table reads what the others changed. */
const SHARED_SYNC_MS = 5000

/** The first global IPv6 address of an interface. */
function interfaceAddress6(name: string): string | undefined {
  return networkInterfaces()[name]?.find((a) => a.family === 'IPv6' && !a.internal && !isLinkLocal(a.address))?.address
}

/** The address range from the settings, checked: inside the prefix, start <= end. */
export function rangeFromSettings(s: Pick<Dhcp6Settings, 'prefix' | 'rangeStart' | 'rangeEnd'>): Range6 {
  const bad = (why: string) => new RackbootError('RB_ERR_SETTINGS', `dhcp6: ${why}`)
  if (!s.prefix) throw bad('prefix is not set (e.g. 2001:db8:1::/64)')
  const prefix = parsePrefix(s.prefix)
  if (!prefix || prefix.length > 128) throw bad(`prefix ${s.prefix} is not an IPv6 prefix`)
  if (!s.rangeStart || !s.rangeEnd) throw bad('rangeStart and rangeEnd are not set')
  const start = ipv6ToBigint(s.rangeStart)
  const end = ipv6ToBigint(s.rangeEnd)
  if (start === null || end === null) throw bad('rangeStart or rangeEnd is not an IPv6 address')
  if (start > end) throw bad(`rangeStart ${s.rangeStart} is after rangeEnd ${s.rangeEnd}`)
  if (!inPrefix(start, prefix) || !inPrefix(end, prefix)) throw bad(`range ${s.rangeStart}-${s.rangeEnd} is not inside ${prefix.text}`)
  return { prefix, start, end }
}

export function createDhcp6Server(deps: Dhcp6ServerDeps): Dhcp6Server {
  const s = deps.settings
  const log = deps.log.child({ svc: 'dhcp6' })
  const now = deps.now ?? Date.now
  let socket: Dhcp6Socket | null = null
  let store: Lease6Store | null = null
  let sweep: NodeJS.Timeout | null = null
  let sync: NodeJS.Timeout | null = null

  return {
    async start() {
      if (!s.enabled) {
        log.info('dhcp6 off')
        return null
      }
      const range = rangeFromSettings(s)
      const serverAddress = s.serverAddress ?? (s.interface ? interfaceAddress6(s.interface) : undefined)
      if (!serverAddress) {
        throw new RackbootError('RB_ERR_SETTINGS', `dhcp6.serverAddress is not set and interface ${s.interface ?? '(none)'} has no global IPv6 address`)
      }
      if (!s.interface) log.warn('dhcp6.interface is not set: only relayed DHCPv6 clients are served')
      const { duid, created, file } = loadServerDuid({ dataDir: deps.dataDir, ...(s.interface ? { interface: s.interface } : {}), now })
      if (created) log.info({ duid: duid.toString('hex'), file }, 'dhcp6 server DUID created')
      const urls = typeof deps.urls === 'function' ? deps.urls(serverAddress) : deps.urls
      const server = ipv6ToBigint(serverAddress)
      const stored = deps.leases
      const claiming = stored?.claimMany ? (stored as ClaimingLeaseRepository) : undefined
      if (deps.sharedLeases && !claiming) throw new RackbootError('RB_ERR_INTERNAL', 'dhcp6: shared leases need a lease store that claims (claimMany)')
      const sharedLeases = deps.sharedLeases === true && claiming !== undefined
      // Shared, every write is a claim made by the handler itself; alone, the socket stores what each message changed.
      const leases = new Lease6Store({ range, maxLeases: s.maxLeases, maxIasPerClient: s.maxIasPerClient, exclude: server === null ? [] : [server], now, journal: stored !== undefined && !sharedLeases })
      store = leases
      if (stored) {
        let kept = 0
        for (const row of await stored.list({ subnet: range.prefix.text, state: 'bound' })) {
          const b = bindingOfRow(row, range.prefix.text)
          if (b && b.duid && leases.restore(b)) kept++
        }
        log.info({ bindings: kept, prefix: range.prefix.text, shared: sharedLeases }, 'dhcp6 bindings loaded')
      }
      const shared = sharedLeases ? createShared6({ leases: claiming!, store: leases, subnet: range.prefix.text, now }) : undefined
      const commit = stored && !sharedLeases
        ? async () => {
            const t = now()
            for (const [address, lease] of leases.drainChanges()) {
              const row = lease ? leaseRow(lease, range.prefix.text, t) : null
              if (row) await stored.put(row)
              else await stored.remove(bigintToIpv6(address))
            }
          }
        : undefined
      const metrics = createDhcp6Metrics(deps.metrics, () => ({ used: leases.used(), total: leases.capacity(), clients: leases.clients() }))
      const handler = createDhcp6Handler({
        config: {
          serverDuid: duid,
          serverAddress,
          preferredSeconds: s.preferredLifetimeSeconds,
          validSeconds: Math.max(s.validLifetimeSeconds, s.preferredLifetimeSeconds),
          offerSeconds: s.offerSeconds,
          declineSeconds: s.declineSeconds,
          rapidCommit: s.rapidCommit,
          preference: s.preference,
          dnsServers: s.dnsServers,
          boot: {
            bootFiles: deps.bootFiles,
            archBootFiles: deps.archBootFiles,
            scriptUrl: urls.scriptUrl,
            httpBootUrl: (loader, arch) => urls.httpBootUrl(loader, arch),
            nextServer: serverAddress,
          },
        },
        store: leases,
        log,
        now,
        ...(deps.bootPort?.advise ? { advise: deps.bootPort.advise.bind(deps.bootPort) } : {}),
        ...(shared ? { shared } : {}),
      })
      const port = deps.bootPort
      const bound = deps.firmwareBound
      const observed: Dhcp6Handler = port || bound
        ? {
            async handle(req, source) {
              const r = await handler.handle(req, source)
              if (r.kind !== 'reply') return r
              const f = r.facts
              if (port && f.isNetboot && f.mac) port.seen(bootEvent(r, leases, serverAddress))
              const firmware = bound ? firmwareAwaitingRoute(r, source) : null
              if (firmware) bound!(firmware)
              return r
            },
          }
        : handler
      socket = createDhcp6Socket({
        handler: observed,
        listen: s.listen,
        port: s.port,
        ...(s.interface ? { interface: s.interface } : {}),
        limits: { maxBytes: s.maxPacketBytes, maxOptions: s.maxOptions, maxRelayDepth: s.maxRelayDepth },
        ...(commit ? { commit } : {}),
        metrics,
        log,
        now,
      })
      try {
        const bound = await socket.start()
        sweep = setInterval(() => leases.sweep(), 60_000)
        sweep.unref()
        if (shared) {
          // What the other instances granted or released lately, so this one neither advertises their addresses nor
          // keeps holding what they freed (as DHCPv4's shared sync); a claim decides in any case.
          let since = now() - 1000
          sync = setInterval(() => {
            const from = now()
            shared.sync(since).then(() => { since = from - 5000 }, (err: unknown) => log.warn({ err }, 'dhcp6 shared binding sync failed'))
          }, SHARED_SYNC_MS)
          sync.unref()
        }
        const info = { serverAddress, port: bound.port, duid: duid.toString('hex'), range: `${bigintToIpv6(range.start)}-${bigintToIpv6(range.end)}` }
        log.info(info, 'dhcp6 serving')
        return info
      } catch (err) {
        await socket.stop()
        socket = null
        throw new RackbootError('RB_ERR_INTERNAL', `dhcp6 cannot bind [${s.listen}]:${s.port}: ${(err as Error).message}`, { cause: err })
      }
    },
    async stop() {
      if (sweep) clearInterval(sweep)
      if (sync) clearInterval(sync)
      sweep = null
      sync = null
      await socket?.stop()
      socket = null
    },
    leases() {
      return store?.list() ?? []
    },
  }
}

export { decode6, encode6, encodeMessage6, replyEnvelopes, DEFAULT_LIMITS6, type Dhcp6Decoded, type Dhcp6Message, type Dhcp6RelayHop, type Dhcp6Limits, type Decode6Result } from './codec.js'
export { createDhcp6Handler, bootUrl, type Dhcp6AdviceRequest, type Dhcp6Handler, type Dhcp6HandlerConfig, type Dhcp6Result } from './handler.js'
export { createShared6, type Shared6 } from './shared.js'
export { requestFacts6, type RequestFacts6 } from './facts.js'
export { loadServerDuid, macFromDuid, duidLlt, duidUuid, SERVER_DUID_FILE } from './duid.js'
export { Lease6Store, type Lease6, type Range6 } from './leases.js'
export { MessageType6, Option6, StatusCode6, PXE_ENTERPRISE } from './options.js'
export { Dhcp6SettingsSchema, type Dhcp6Settings } from '../settings/dhcp6-schema.js'
