import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { createDhcpServer, createRouterAdverts } from '../dhcp/index.js'
import { createDhcp6Server } from '../dhcp6/index.js'
import { createEventBus } from '../events/bus.js'
import { buildApp } from '../http/index.js'
import { createDownloadGate } from '../http/download-gate.js'
import { createApiAuth } from '../http/auth.js'
import { IPXE_IDENTITY_QUERY } from '../http/ipxe/scripts.js'
import { importInventory, loadInventoryFiles, openInventory, type Inventory, type OpenedInventory } from '../inventory/index.js'
import {
  attachTimeline, createAllocator, createBootService, createConfigService, createDhcp6BootPort, createDhcpBootPort, createIdentityVerifier, createIpxeWait,
  createKernelNeighbourTable, createLifecycle, createNewMachineLimit, createPeerDirectory, createSecurityEvents, createTalosFeedback,
  createAfterBoot, createLeadership, createRepair, createTftpObserver, rebootHistory, registerStateGauge, systemClock,
} from '../lifecycle/index.js'
import { createSqlLeaderLeases } from '../inventory/sql/leader-leases.js'
import type { PostgresInventory } from '../inventory/index.js'
import { defaultInstanceId } from '../power/manager.js'
import { createEventSinkServer, createKernelLogReceiver, createKernelLogStore } from '../talos/receivers/index.js'
import { createLogger } from '../log.js'
import { createMetricsRegistry } from '../metrics.js'
import { registerDatabaseMetrics } from '../inventory/metrics.js'
import { createPowerManager, powerResultLine } from '../power/index.js'
import { loadSettings, type Settings } from '../settings/index.js'
import { publicBaseUrl } from '../settings/public-url.js'
import { createConfigLinter, type ConfigLinter } from '../talos/index.js'
import { createTftpServer } from '../tftp/index.js'
import { createGrubTftp } from '../tftp/grub-source.js'
import { createLoaderSource } from '../tftp/loader-source.js'
import { withNotFoundHints } from '../tftp/loader-hints.js'
import { createGrubConfigs } from '../http/grub/service.js'
import { seedAssets } from '../assets/seed.js'
import { VERSION } from '../version.js'
import { databaseFile, prepareDataDir, secretKeyFile } from './context.js'
import { checkSelector } from '../matching/index.js'
import { bootFileProblems, missingTalosAssets } from '../assets/readiness.js'
import { createLoaderPresence, loaderLocation, loaderUrl, missingLoaderMessage, offeredLoaders, type OfferedLoader } from '../assets/loaders.js'
import type { DhcpProblemPort } from '../dhcp/index.js'
import type { Lifecycle } from '../lifecycle/index.js'
import { createBootIsoProvider } from '../assets/virtual-media.js'
import { VIRTUAL_MEDIA_PATH } from '../http/plugins/virtual-media.js'
import type { Repair } from '../lifecycle/index.js'

export { publicBaseUrl }

/** Builds every concrete piece (the only place that does) and runs until SIGINT/SIGTERM. */
export async function serveCommand(values: { config?: string | undefined; set?: string[] | undefined }): Promise<number> {
  const settings = loadSettings({ ...(values.config ? { file: values.config } : {}), overrides: values.set ?? [] })
  const log = createLogger({ level: settings.log.level, format: settings.log.format })
  prepareDataDir(settings.dataDir, (message) => log.warn({ dataDir: settings.dataDir }, message))
  // An empty assets volume (the appliance's first start) gets the iPXE loaders and discovery agent baked into the image.
  await seedAssets({ assetsDir: settings.assetsDir, log: log.child({ svc: 'assets' }) })
  mkdirSync(join(settings.assetsDir, 'ipxe'), { recursive: true })
  mkdirSync(join(settings.assetsDir, 'grub'), { recursive: true })
  const registry = createMetricsRegistry({ defaults: true })
  const inventory = await openInventory({ file: databaseFile(settings), secretKeyFile: secretKeyFile(settings), server: true, database: settings.database, warn: (message) => log.warn(message) })
  try {
    return await serveWith(settings, log, registry, inventory)
  } catch (err) {
    // A start that fails (an address not on this host, a port taken) still closes the database, whose checkpoint
    // worker would keep the process alive.
    await inventory.close().catch(() => undefined)
    throw err
  }
}

async function serveWith(settings: Settings, log: ReturnType<typeof createLogger>, registry: ReturnType<typeof createMetricsRegistry>, inventory: OpenedInventory): Promise<number> {
  registerDatabaseMetrics(registry, inventory)
  const bus = createEventBus((err, event) => log.error({ err, type: event.type }, 'event listener failed'))
  const timeline = attachTimeline({ inventory, bus, log: log.child({ svc: 'timeline' }) })
  const lifecycle = createLifecycle({ inventory, bus, log: log.child({ svc: 'lifecycle' }), registry })
  const base = publicBaseUrl(settings)

  if (settings.inventory.importOnStart) {
    const report = await importInventory(inventory, loadInventoryFiles(settings.inventory.importOnStart, { checkSelector }), { now: Date.now() })
    for (const w of report.warnings) log.warn({ warning: w }, 'inventory import warning')
    log.info({ dir: settings.inventory.importOnStart, changes: report.changes.length, unchanged: report.unchanged }, 'inventory imported')
  }

  const bootIso = createBootIsoProvider({
    iso: settings.virtualMedia.iso || null, outDir: join(settings.dataDir, 'virtual-media'), ipxeDir: settings.assetSources.ipxeDir,
    log: log.child({ svc: 'virtual-media' }),
  })
  // This instance's name in lease rows: its BMC leases and, on PostgreSQL, the repair ladder's leader lease.
  const instanceId = defaultInstanceId()
  const power = createPowerManager({
    instanceId, bmcs: inventory.bmcs, log, metrics: registry, settings: settings.power, lastRebootAt: rebootHistory(inventory), leases: inventory.bmcLeases,
    driverOptions: { ipmi: { bootVerify: settings.power.ipmiBootVerify } },
    // The ISO is built (or found) before a BMC is told to fetch it, so it never meets a 503.
    mediaUrl: async () => {
      await bootIso.get(base)
      return settings.virtualMedia.imageUrl || `${base}${VIRTUAL_MEDIA_PATH}`
    },
    observer: {
      // Every attempt is on the timeline: a retry, and a request that left without an answer, are visible.
      result: (r) => lifecycle.record(r.machineId, 'power', powerResultLine(r), { ...r }),
      status: (s) => lifecycle.record(s.machineId, 'power', `power is ${s.state}${s.previous ? ` (was ${s.previous})` : ''}`, { state: s.state, previous: s.previous ?? null, error: s.error ?? null }),
    },
  })

  // Who a client is, as the network says: rackboot's own leases (DHCPv4 and DHCPv6); for directly attached clients
  // the kernel's neighbour table too, for every address where rackboot hands out no IPv4 addresses, and for IPv6
  // addresses (SLAAC ones have no binding) where it does. Claims nothing vouches for are believed only by setting.
  const identity = createIdentityVerifier({
    inventory, clock: systemClock, trustClaims: settings.security.trustClaimedIdentity,
    neighbours: createKernelNeighbourTable(), neighboursFor: settings.dhcp.mode === 'full' ? 'ipv6' : 'all',
  })
  if (settings.security.trustClaimedIdentity) {
    log.warn('security.trustClaimedIdentity is on: any host on the provisioning network can claim to be any machine and fetch its Talos config')
  }
  const security = createSecurityEvents({ lifecycle, log: log.child({ svc: 'security' }), registry })
  const peers = createPeerDirectory({ inventory, identity })
  registerStateGauge(registry, inventory)
  // Boot files a boot will ask for: a profile or allocation naming missing ones is refused, /healthz lists them.
  const missingAssets = (p: Parameters<typeof missingTalosAssets>[1]) => missingTalosAssets(settings.assetsDir, p)
  let repair: Repair | null = null
  // iPXE's lease-to-script gap, from DHCP to the boot service: a slow one (IPv6 wait) goes on the timeline.
  const ipxeWait = createIpxeWait()
  const bootService = createBootService({
    inventory, lifecycle, log: log.child({ svc: 'boot' }), clock: systemClock, peers, identity, security, registry, ipxeWait,
    policy: { holdMode: settings.boot.holdMode, autoAccept: settings.boot.autoAccept, installedReturns: settings.boot.installedReturns },
    admission: { admit: async (m) => (repair ? repair.admit(m) : { ok: true }) },
    tokenTtlMs: { agent: settings.security.agentTokenTtlSeconds * 1000, config: settings.security.configTokenTtlSeconds * 1000 },
    newMachines: createNewMachineLimit({ perAddressPerMinute: settings.security.newMachinesPerAddressPerMinute, perMinute: settings.security.newMachinesPerMinute }),
  })
  const linter = createConfigLinter({ registry, ...(settings.talos.schemasDir ? { schemasDir: settings.talos.schemasDir } : {}) })
  const configs = createConfigService({
    inventory, lifecycle, log: log.child({ svc: 'talos-config' }), clock: systemClock, peers, identity, security,
    maxFetches: settings.security.configTokenMaxFetches,
    linter,
  })
  // Failure as routine: phase deadlines, the repair ladder (PXE + power cycle), quarantine in `failed`.
  const r = settings.repair
  // Several instances on one PostgreSQL database: one of them (the leader lease's holder) runs the ladder for all,
  // following every instance's events from the table. SQLite is one process: the ladder follows the bus, as ever.
  const shared = inventory.backend === 'postgres' ? (inventory as OpenedInventory & PostgresInventory) : null
  repair = r.enabled
    ? createRepair({
        inventory, lifecycle, bus, log: log.child({ svc: 'repair' }), power, registry, profileFor: (m) => bootService.profileFor(m),
        ...(shared ? {
          shared: {
            leadership: createLeadership({
              store: createSqlLeaderLeases(shared.db), name: 'repair', holder: instanceId, log: log.child({ svc: 'repair-leader' }),
              onChange: () => repair?.roleChanged(),
            }),
            watch: (wake: () => void) => shared.watchEvents(() => wake()),
          },
        } : {}),
        settings: {
          deadlines: r.deadlines, maxPhaseFailures: r.maxPhaseFailures, maxFailures: r.maxFailures, backoffMs: r.backoffSeconds * 1000,
          backoffMaxMs: r.backoffMaxSeconds * 1000, maxConcurrentRepairs: r.maxConcurrentRepairs, bootLoopScripts: r.bootLoopScripts,
          maxProvisioning: settings.provisioning.maxConcurrent, maxProvisioningPerRack: settings.provisioning.maxPerRack,
        },
      })
    : null
  await repair?.start()
  // A boot that needed a Continuous override or virtual media is tidied once the machine has network-booted.
  const afterBoot = createAfterBoot({ inventory, lifecycle, bus, power, log: log.child({ svc: 'after-boot' }) })
  afterBoot.start()
  if (settings.power.poll) power.startPolling(() => inventory.bmcs.machineIds())
  const gate = createDownloadGate({ limit: settings.http.maxConcurrentDownloads, holdMs: 10 * 60_000 })

  // GRUB (MAAS-style per-machine configs): grub.cfg-01-<mac> over TFTP, the same decisions as /boot.ipxe.
  const grubConfigs = createGrubConfigs({
    boot: bootService, lifecycle, gate, publicUrl: settings.http.publicUrl,
    ...(settings.http.assetBaseUrl ? { assetBaseUrl: settings.http.assetBaseUrl } : {}),
    hold: { seconds: settings.boot.holdSeconds, maxSeconds: settings.boot.holdMaxSeconds },
    agent: { after: settings.boot.agentAfter, kernelArgs: { amd64: settings.boot.agentKernelArgs, arm64: settings.boot.agentKernelArgsArm64 }, assetsDir: settings.assetsDir },
    talosChannels: () => channels,
  })
  // TFTP serves the loaders firmware PXE fetches before it can speak HTTP: iPXE's from assets/ipxe, GRUB netboot
  // images (arm64) from assets/grub.
  const { source: tftpSource, ipxeFiles: tftpFiles } = createLoaderSource({ assetsDir: settings.assetsDir })
  const grubTftp = createGrubTftp({
    config: (mac, ip) => grubConfigs.forMac({ mac }, ip, base),
    bootstrap: () => grubConfigs.bootstrap(base),
    files: tftpFiles, registry, log: log.child({ svc: 'tftp-grub' }),
  })
  grubTftp.attach(tftpSource)
  // The loaders DHCP offers, checked where they are served from here; `none` switches a firmware off.
  const loaders = loadersServedHere(settings) ? offeredLoaders(settings.dhcp) : []
  warnMissingLoaders(settings.assetsDir, loaders, log)
  const loaderPresent = createLoaderPresence({ assetsDir: settings.assetsDir })
  const tftp = settings.tftp.enabled
    ? createTftpServer({
        settings: settings.tftp, source: tftpSource, log, metrics: registry,
        observer: grubTftp.quiet(withNotFoundHints(createTftpObserver({ lifecycle, inventory, log }), (path) => {
          const loader = loaders.find((l) => l.file.replace(/^\/+/, '') === path)
          return loader ? missingLoaderMessage(settings.assetsDir, loader) : null
        })),
      })
    : null
  const dhcp = settings.dhcp.mode !== 'off'
    ? createDhcpServer({
        settings: settings.dhcp, leases: inventory.leases, reservations: inventory.reservations,
        // SQLite: one server owns the file, group commits share a transaction. PostgreSQL: other instances may
        // answer on the same segment, so every lease is a claim the database arbitrates.
        ...(inventory.backend === 'postgres' ? { sharedLeases: true } : { leaseTransaction: (fn) => inventory.transaction((tx) => fn(tx.leases)) }),
        bootPort: createDhcpBootPort({ lifecycle, log, ipxeWait, clock: systemClock }),
        urls: {
          scriptUrl: `${base}/boot.ipxe?${IPXE_IDENTITY_QUERY}`,
          // Where the loader really lives: /assets/ipxe/<name>, or /assets/grub/<image> for GRUB.
          httpBootUrl: (loader) => loaderUrl(base, loader),
        },
        ...(loadersServedHere(settings)
          ? { loaders: { missing: (file: string, setting: string | undefined) => (loaderPresent(file) ? null : missingLoaderMessage(settings.assetsDir, { file, setting })) } }
          : {}),
        problems: timelineProblems(lifecycle, log),
        log, metrics: registry,
      })
    : null

  // DHCPv6 for IPv6 netboot: the same loaders, at URLs an IPv6 client can reach (the server's v6 address, bracketed).
  const d6 = settings.dhcp6
  const dhcp6 = d6.enabled
    ? createDhcp6Server({
        settings: d6, dataDir: settings.dataDir,
        bootFiles: settings.dhcp.bootFiles, archBootFiles: settings.dhcp.archBootFiles,
        urls: (addr) => {
          const base6 = `http://[${addr}]:${settings.http.port}`
          return { scriptUrl: `${base6}/boot.ipxe?${IPXE_IDENTITY_QUERY}`, httpBootUrl: (loader) => loaderUrl(base6, loader) }
        },
        log, metrics: registry, leases: inventory.leases,
        // Several instances on one PostgreSQL database: every binding is a claim the database arbitrates, as DHCPv4's.
        ...(inventory.backend === 'postgres' ? { sharedLeases: true } : {}),
        bootPort: createDhcp6BootPort({ lifecycle, log, ipxeWait, clock: systemClock }),
        firmwareBound: (linkLocal) => adverts?.routeFor(linkLocal),
      })
    : null
  if (dhcp6 && !settings.http.listen.includes(':')) {
    log.warn({ listen: settings.http.listen }, `dhcp6 is on but http.listen is ${settings.http.listen}: IPv6 clients cannot fetch their loader or script; set http.listen: "::"`)
  }
  if (dhcp6 && settings.tftp.enabled && settings.tftp.listen !== '::' && !settings.tftp.listen.includes(':')) {
    log.warn({ listen: settings.tftp.listen }, `dhcp6 is on but tftp.listen is ${settings.tftp.listen}: IPv6 PXE clients (tftp:// boot-file URLs) cannot load their loader; set tftp.listen: "::" (both families)`)
  }

  // Router advertisements end iPXE's IPv6 wait (~16 s a boot) on a segment where no router sends them. With DHCPv6
  // on, they carry its prefix and the managed flag, so hosts ask DHCPv6 for their addresses.
  const owned = settings.dhcp.mode === 'full'
  const raWanted = settings.dhcp.routerAdverts === 'on' || (settings.dhcp.routerAdverts === 'auto' && owned) ||
    (d6.enabled && (d6.routerAdverts === 'on' || (d6.routerAdverts === 'auto' && owned)))
  const raInterface = settings.dhcp.interface ?? d6.interface
  if (raWanted && !raInterface) {
    log.warn('dhcp.routerAdverts needs dhcp.interface (the provisioning interface): no router advertisements sent')
  }
  const managed = d6.enabled && d6.prefix && d6.routerAdverts !== 'off' ? { managed: { prefix: d6.prefix, autonomous: d6.slaac } } : {}
  const adverts = raWanted && raInterface
    ? createRouterAdverts({ interface: raInterface, runDir: join(settings.dataDir, 'run'), log, ...managed })
    : null

  // Talos's back channel: install stages and kernel logs, mapped to machines by address.
  const feedback = createTalosFeedback({ inventory, lifecycle, peers, log, security })
  const kernelLogs = createKernelLogStore({ perMachineLines: settings.talos.kernelLogLines, maxBytes: settings.talos.kernelLogMaxMiB * 1024 * 1024, metrics: registry })
  kernelLogs.subscribe((peer, line) => feedback.kernelLine(peer, line))
  const sink = settings.talos.eventsSinkPort
    ? createEventSinkServer({ listen: settings.http.listen, port: settings.talos.eventsSinkPort, log, metrics: registry, observer: feedback.observer })
    : null
  const kmsg = settings.talos.kernelLogPort
    ? createKernelLogReceiver({ listen: settings.http.listen, tcpPort: settings.talos.kernelLogPort, udpPort: settings.talos.kernelLogPort, log, metrics: registry, store: kernelLogs, linesPerSecond: settings.talos.kernelLogLinesPerSecond })
    : null
  const channels = { eventsSinkPort: null as number | null, kernelLogPort: null as number | null }

  let tftpUp = false
  let dhcpUp = false
  const app = await buildApp({
    inventory, lifecycle, registry, log, version: VERSION,
    checks: { ...(tftp ? { tftp: () => tftpUp } : {}), ...(dhcp ? { dhcp: () => dhcpUp } : {}) },
    warnings: () => bootFileProblems({ assetsDir: settings.assetsDir, loaders, profiles: () => inventory.profiles.list() }),
    boot: {
      service: bootService, gate, assetsDir: settings.assetsDir, publicUrl: settings.http.publicUrl,
      ...(settings.http.assetBaseUrl ? { assetBaseUrl: settings.http.assetBaseUrl } : {}),
      hold: { seconds: settings.boot.holdSeconds, maxSeconds: settings.boot.holdMaxSeconds },
      agent: { after: settings.boot.agentAfter, kernelArgs: { amd64: settings.boot.agentKernelArgs, arm64: settings.boot.agentKernelArgsArm64 }, assetsDir: settings.assetsDir },
      configs,
      talosChannels: () => channels,
      assetBelongs: async (machineId, ip) => {
        const m = await inventory.machines.get(machineId)
        return !!m && (await identity.addressBelongs(m, ip) || (await peers.resolve(ip)) === machineId)
      },
    },
    limits: {
      maxConnectionsPerAddress: settings.http.maxConnectionsPerAddress,
      maxConnections: settings.http.maxConnections,
      headersTimeoutMs: settings.http.headersTimeoutMs,
      maxEventStreamsPerToken: settings.http.maxEventStreamsPerToken,
    },
    virtualMedia: { provider: bootIso, serverUrl: base },
    api: {
      bus, flushTimeline: timeline.flush,
      auth: createApiAuth({ tokens: inventory.tokens, registry }),
      power,
      kernelLogs: { store: kernelLogs, peersOf: (id) => peers.addressesOf(id) },
      allocator: createAllocator({ inventory, lifecycle, log: log.child({ svc: 'allocation' }), power, registry, missingAssets }),
      missingAssets,
      assetsDir: settings.assetsDir,
      ...(repair ? { repair } : {}),
    },
  })
  const address = await app.listen({ host: settings.http.listen, port: settings.http.port })
  const tftpAt = tftp ? await tftp.start() : null
  tftpUp = !!tftpAt
  const dhcpAt = dhcp ? await dhcp.start() : null
  dhcpUp = !!dhcpAt
  const dhcp6At = dhcp6 ? await dhcp6.start() : null
  await adverts?.start()
  if (sink) channels.eventsSinkPort = (await sink.start()).port
  if (kmsg) channels.kernelLogPort = (await kmsg.start()).tcpPort
  log.info({
    address, publicUrl: base, tftp: tftpAt, dhcp: dhcpAt, ...(dhcp6At ? { dhcp6: dhcp6At } : {}), talosEvents: channels.eventsSinkPort, talosKernelLog: channels.kernelLogPort, dataDir: settings.dataDir, assetsDir: settings.assetsDir,
    database: `${inventory.backend} ${inventory.location}`, settings: settings.source ?? '(defaults)', version: VERSION,
  }, 'rackboot is serving')

  // The first config of a Talos version compiles its schema's validator (a few hundred ms, on the event loop): done
  // now, in the background, for the versions the profiles and clusters name, one per turn of the loop.
  const lintWarm = warmLinter(inventory, linter, log)

  // Every boot leaves a token row behind; voided and expired ones go every few minutes.
  const purge = setInterval(() => {
    inventory.bootTokens.purge(Date.now()).catch((err) => log.warn({ err }, 'cannot purge boot tokens'))
  }, 5 * 60_000)
  purge.unref()

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'shutting down')
      resolve()
    }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })
  clearInterval(purge)
  lintWarm.stop()
  await repair?.stop()
  await afterBoot.stop()
  await dhcp?.stop()
  await dhcp6?.stop()
  await adverts?.stop()
  await tftp?.stop()
  await sink?.stop()
  await kmsg?.stop()
  await power.stop()
  await app.close()
  await timeline.flush()
  timeline.detach()
  await inventory.close()
  return 0
}

/**
 * Warms the config linter for every Talos version a profile or a cluster names (ConfigLinter.warm), one version per
 * turn of the event loop so requests that arrive meanwhile are served between them. A version that cannot be warmed
 * (no schema) is left to the config fetch, which reports it. `done` settles when all are warm or it was stopped.
 */
export function warmLinter(inventory: Pick<Inventory, 'profiles' | 'clusters'>, linter: Pick<ConfigLinter, 'warm'>, log: Pick<ReturnType<typeof createLogger>, 'debug'>, startDelayMs = 2_000): { stop(): void; done: Promise<void> } {
  let stopped = false
  const done = (async () => {
    // After the fastify schemas' own background compile (1 s after listen): a probe's first /healthz, and the first
    // boots, do not wait behind it.
    // (Unref'd: it must not hold a stopping server; a test that waits for it asks for no delay.)
    if (startDelayMs > 0) await new Promise<void>((resolve) => setTimeout(resolve, startDelayMs).unref())
    if (stopped) return
    const [profiles, clusters] = await Promise.all([inventory.profiles.list(), inventory.clusters.list()])
    const versions = new Set([...profiles.map((p) => p.talosVersion), ...clusters.map((c) => c.talosVersion)].filter((v): v is string => !!v))
    for (const v of versions) {
      await new Promise<void>((resolve) => setImmediate(resolve))
      if (stopped) return
      try {
        linter.warm(v)
      } catch (err) {
        log.debug({ err, talosVersion: v }, 'cannot warm the config linter')
      }
    }
  })().catch((err: unknown) => log.debug({ err }, 'cannot list the Talos versions to warm the config linter for'))
  return { stop: () => void (stopped = true), done }
}

/**
 * Loaders are served from this server when its TFTP is on, or when its DHCP names no other next-server (then UEFI
 * HTTP boot and TFTP both point here). With TFTP off and dhcp.nextServer set, another server holds them.
 */
function loadersServedHere(settings: Settings): boolean {
  return settings.tftp.enabled || (settings.dhcp.mode !== 'off' && !settings.dhcp.nextServer)
}

/** A start-up warning per loader that network boot offers and that is not on disk, with the fix. */
export function warnMissingLoaders(assetsDir: string, loaders: OfferedLoader[], log: Pick<ReturnType<typeof createLogger>, 'warn'>): void {
  const present = createLoaderPresence({ assetsDir })
  for (const l of loaders) {
    if (!present(l.file)) log.warn({ file: l.file, setting: l.setting, path: join(assetsDir, loaderLocation(l.file)) }, missingLoaderMessage(assetsDir, l))
  }
}

/** DHCP's problems of known machines on their timelines: looked up by MAC, never created (the MAC may be forged). */
export function timelineProblems(lifecycle: Pick<Lifecycle, 'find' | 'record'>, log: Pick<ReturnType<typeof createLogger>, 'warn'>): DhcpProblemPort {
  return {
    report(facts, problem) {
      lifecycle.find({ mac: facts.mac }).then((machine) => {
        if (!machine) return
        if (problem.kind === 'missing-loader') {
          // A failed loader step (red on the timeline), before the firmware even asks for the file.
          lifecycle.record(machine.id, 'boot.tftp', `loader missing: ${problem.message}`, {
            file: problem.file ?? null, ok: false, missing: true, error: problem.message, client: null,
          })
        } else {
          lifecycle.record(machine.id, 'boot.dhcp', `DHCP ${facts.message.toUpperCase()} → no answer: ${problem.message}`, {
            message: facts.message, reply: 'none', relay: problem.giaddr ?? null, error: problem.message,
          })
        }
      }).catch((err: unknown) => log.warn({ err, mac: facts.mac }, 'cannot record a DHCP problem on the timeline'))
    },
  }
}
