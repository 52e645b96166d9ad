// IPv6 router advertisements for the provisioning segment, sent by radvd under our supervision. iPXE configures
// IPv6 beside DHCPv4 and does not fetch anything until IPv6 autoconfiguration ends: on a segment where nothing
// advertises it waits out its router solicitations, about 16 s of every boot (lab.md; measured here: boot script
// at 18.3 s without, 2.4 s with). The advertisement sent is the smallest that ends the wait and changes nothing
// else: no prefix (no addresses), router lifetime 0 (not a default router), no DHCPv6 flags. Node has no raw
// sockets for ICMPv6, hence radvd (Debian package radvd).
// Where rackboot also serves DHCPv6 (src/dhcp6) the advertisement can carry the segment's prefix, on-link but not
// for autoconfiguration, with the M (managed) and O (other configuration) flags: hosts then ask DHCPv6 for their
// address and boot options. Router lifetime stays 0 either way: rackboot routes nothing.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { isIPv6 } from 'node:net'
import { join } from 'node:path'
import type { Logger } from '../log.js'
import { stopChild, which } from '../processes.js'

export interface RouterAdvertsDeps {
  /** The provisioning interface (radvd advertises on one named interface). */
  interface: string
  /** Where radvd's config and pid file go. */
  runDir: string
  log: Logger
  /** The radvd binary; found on the usual paths when not given. */
  program?: string
  /**
   * Unsolicited advertisement interval bounds, seconds (radvd's defaults, 200 and 600). Long on purpose: radvd answers
   * a solicitation from a link-local address (iPXE, the agent, Talos) at once by unicast, but one from `::` (UEFI
   * firmware before its address is ready: OVMF's PXEv6) by multicast, and sends no multicast advertisement within
   * MinDelayBetweenRAs (3 s, its floor) of the last one: the firmware then waits ~5 s to solicit again. With
   * advertisements every 3-10 s that was ~45 % of PXEv6 boots (bench/boot.bench.ts, mode uefi-pxe6); every 200-600 s,
   * ~1 %.
   */
  minIntervalSeconds?: number
  maxIntervalSeconds?: number
  /** A command that radvd's command line is appended to (tests run it inside a network namespace). */
  wrap?: readonly string[]
  /** Managed mode for DHCPv6 (absent: today's advertisement, no prefix and no flags). */
  managed?: ManagedAdverts
}

export interface ManagedAdverts {
  /** The on-link prefix, e.g. 2001:db8:1::/64; advertised with L on, and A (autonomous) as `autonomous` says. */
  prefix: string
  /**
   * Hosts may also form their own address in the prefix (SLAAC). The discovery agent and Talos have no DHCPv6
   * client early in boot: on an IPv6-only segment this is how they get an address to report from and fetch their
   * config with (the kernel's neighbour table vouches for it). Default off: DHCPv6 addresses only.
   */
  autonomous?: boolean
  /** Valid and preferred lifetimes of the prefix, seconds (defaults 86400 and 14400, radvd's). */
  validSeconds?: number
  preferredSeconds?: number
}

export interface RouterAdverts {
  start(): Promise<void>
  stop(): Promise<void>
  /**
   * A route for UEFI firmware that has just been given its DHCPv6 address (PXEv6, HTTPv6 boot), at its link-local
   * address. Before it loads anything the firmware waits up to 10 s for a route to its boot server in its IPv6 route
   * table (edk2 UefiPxeBcDxe PxeBcCheckRouteTable, polled once a second). Only a default router ends that wait: the
   * on-link prefix of an advertisement sent during the wait does not (measured: bench/boot.bench.ts --pcap, mode
   * uefi-pxe6); dnsmasq, a default router to the whole segment, skips it whenever its next advertisement lands
   * inside the wait. rackboot routes nothing and the segment's advertisement keeps router lifetime 0, so the default
   * route goes only to the firmware: a second radvd sends unicast advertisements (its `clients` list: no multicast,
   * solicitations from anyone else ignored) with router lifetime BOOT_ROUTER_LIFETIME_S at low preference, to each
   * address given here for BOOT_CLIENT_TTL_MS, then stops with a final advertisement of lifetime 0 (radvd's own, on
   * SIGTERM). Only in managed mode (the advertisement carries the prefix the firmware's address is in).
   */
  routeFor(linkLocal: string): void
  /** True while radvd runs. */
  readonly running: boolean
}

/** How long a firmware stays on the boot router's list: its 10 s wait, and a margin. */
export const BOOT_CLIENT_TTL_MS = 15_000
/** At most this many firmware on the list at once (a boot storm's newest win; an older one may wait its 10 s). */
export const BOOT_CLIENTS_MAX = 64
/** Router lifetime of the boot router's advertisements (radvd: at least its MaxRtrAdvInterval, here 4 s). */
const BOOT_ROUTER_LIFETIME_S = 30
/** Config rereads (SIGHUP: radvd advertises to every listed client at once) no closer than this. */
const BOOT_RELOAD_GAP_MS = 250
/** No reread sooner than this after start: radvd handles SIGHUP only from its main loop on. */
const BOOT_START_MS = 500

/** The radvd binary, or null when the package is not installed. */
export function findRadvd(): string | null {
  return which('radvd')
}

/**
 * radvd.conf for an advertisement with no prefix and router lifetime 0; with `managed`, the prefix (on-link, not
 * autonomous) and the M and O flags, still router lifetime 0.
 */
export function radvdConfig(iface: string, minSeconds = 200, maxSeconds = 600, managed?: ManagedAdverts): string {
  if (!/^[A-Za-z0-9_.:@-]{1,15}$/.test(iface)) throw new Error(`not an interface name: ${JSON.stringify(iface)}`)
  if (!managed) {
    return [
      `# written by rackboot: ends iPXE's IPv6 autoconfiguration wait; advertises no prefix and no default router`,
      `interface ${iface} {`,
      '  AdvSendAdvert on;',
      '  IgnoreIfMissing on;',
      '  AdvDefaultLifetime 0;',
      '  AdvManagedFlag off;',
      '  AdvOtherConfigFlag off;',
      `  MinRtrAdvInterval ${minSeconds};`,
      `  MaxRtrAdvInterval ${maxSeconds};`,
      '};',
      '',
    ].join('\n')
  }
  const prefix = managedPrefix(managed.prefix)
  const lifetime = (v: number | undefined, d: number, what: string) => {
    const n = v ?? d
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`not a prefix ${what} lifetime: ${n}`)
    return n
  }
  const valid = lifetime(managed.validSeconds, 86400, 'valid')
  const preferred = lifetime(managed.preferredSeconds, 14400, 'preferred')
  if (preferred > valid) throw new Error(`prefix preferred lifetime ${preferred} exceeds valid lifetime ${valid}`)
  return [
    `# written by rackboot: hosts ask DHCPv6 (M and O flags) for addresses in ${prefix}${managed.autonomous ? ' and may form their own (A flag)' : ''}; no default router`,
    `interface ${iface} {`,
    '  AdvSendAdvert on;',
    '  IgnoreIfMissing on;',
    '  AdvDefaultLifetime 0;',
    '  AdvManagedFlag on;',
    '  AdvOtherConfigFlag on;',
    `  MinRtrAdvInterval ${minSeconds};`,
    `  MaxRtrAdvInterval ${maxSeconds};`,
    `  prefix ${prefix} {`,
    '    AdvOnLink on;',
    `    AdvAutonomous ${managed.autonomous ? 'on' : 'off'};`,
    `    AdvValidLifetime ${valid};`,
    `    AdvPreferredLifetime ${preferred};`,
    '  };',
    '};',
    '',
  ].join('\n')
}

/**
 * radvd.conf of the boot router (RouterAdverts.routeFor): unicast to `clients` only, router lifetime
 * BOOT_ROUTER_LIFETIME_S at low preference, the same flags and prefix as the segment's advertisement (so neither
 * radvd reports the other's as inconsistent), every 3-4 s while listed.
 */
export function bootRouterConfig(iface: string, managed: ManagedAdverts, clients: readonly string[]): string {
  const base = radvdConfig(iface, 3, 4, managed)
  const list = clients.map((c) => {
    if (!isLinkLocal(c)) throw new Error(`not a link-local IPv6 address: ${JSON.stringify(c)}`)
    return `    ${c};`
  })
  return base
    .replace(/^# written by rackboot:.*$/m, '# written by rackboot: a default route for network-boot firmware only (unicast to the clients below), ended by its final advertisement')
    .replace('  AdvDefaultLifetime 0;', `  AdvDefaultLifetime ${BOOT_ROUTER_LIFETIME_S};\n  AdvDefaultPreference low;`)
    .replace(/\};\n$/, `  clients {\n${list.join('\n')}\n  };\n};\n`)
}

/** fe80::/10, no zone, as a DHCPv6 client on the link sends from. */
export function isLinkLocal(address: string): boolean {
  return !address.includes('%') && isIPv6(address) && /^fe[89ab][0-9a-f]?:/i.test(address)
}

/** An IPv6 prefix as radvd reads it; anything else (or text that could break out of the config) is refused. */
function managedPrefix(text: string): string {
  const m = /^([0-9a-fA-F:]{2,39})\/(\d{1,3})$/.exec(text)
  if (!m || !isIPv6(m[1]!) || Number(m[2]) > 128) throw new Error(`not an IPv6 prefix: ${JSON.stringify(text)}`)
  return `${m[1]}/${Number(m[2])}`
}

/** A radvd left running by a rackboot that was killed (its pid file, our config on its command line): stopped. */
function stopLeftover(pidFile: string, conf: string, log: Logger): void {
  try {
    const pid = Number(readFileSync(pidFile, 'utf8').trim())
    if (!Number.isInteger(pid) || pid <= 1) return
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    if (!cmdline.includes('radvd') || !cmdline.includes(conf)) return
    process.kill(pid, 'SIGTERM')
    log.info({ pid }, 'stopped a radvd left running by an earlier rackboot')
  } catch {
    // no pid file, no such process, or not ours
  }
}

/**
 * radvd in the foreground on `conf`, its log lines at debug level; `tail()` is the last of its stderr (for a warning
 * when it exits), `failed` is logged if it cannot be started at all.
 */
function spawnRadvd(deps: RouterAdvertsDeps, program: string, conf: string, pidFile: string, log: Logger, name: string, failed: string) {
  const argv = [...(deps.wrap ?? []), program, '--nodaemon', '-C', conf, '-p', pidFile, '-m', 'stderr']
  const p = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] })
  let tail = ''
  p.stderr?.on('data', (d: Buffer) => {
    tail = (tail + d.toString()).slice(-2000)
    for (const line of d.toString().split('\n').filter(Boolean)) log.debug({ radvd: line }, name)
  })
  p.on('error', (err) => log.warn({ err }, failed))
  return { p, tail: () => tail.trim() }
}

/** radvd's grace on SIGTERM, in which it sends its final advertisement; SIGKILL after. */
const RADVD_STOP_MS = 3000

/**
 * The boot router of RouterAdverts.routeFor: a radvd that runs while any firmware is listed. A new client rewrites
 * the config and makes radvd reread it (SIGHUP: it advertises to every listed client at once), or starts it (it
 * advertises at start); the list empty, it is stopped.
 */
function createBootRouter(deps: RouterAdvertsDeps, managed: ManagedAdverts, log: Logger, radvd: () => string | null) {
  const clients = new Map<string, number>() // address -> listed until (ms, monotonic)
  const conf = join(deps.runDir, 'radvd-boot.conf')
  const pidFile = join(deps.runDir, 'radvd-boot.pid')
  let child: ChildProcess | null = null
  let expiry: NodeJS.Timeout | null = null
  let reload: NodeJS.Timeout | null = null
  let lastReload = -Infinity

  const write = () => writeFileSync(conf, bootRouterConfig(deps.interface, managed, [...clients.keys()]))
  const schedule = () => {
    if (expiry) clearTimeout(expiry)
    expiry = null
    if (clients.size === 0) return
    const next = Math.min(...clients.values())
    expiry = setTimeout(expire, Math.max(0, next - performance.now()) + 10)
    expiry.unref()
  }
  const expire = () => {
    const now = performance.now()
    for (const [c, until] of clients) if (until <= now) clients.delete(c)
    if (clients.size === 0) {
      // Its final advertisement (lifetime 0) goes to the clients still in its config: their route ends now.
      const p = child
      child = null
      if (p) void stopChild(p, RADVD_STOP_MS)
      return
    }
    write()
    schedule()
  }
  const sighup = () => {
    reload = null
    lastReload = performance.now()
    child?.kill('SIGHUP')
  }
  const launch = (program: string): void => {
    stopLeftover(pidFile, conf, log)
    const { p } = spawnRadvd(deps, program, conf, pidFile, log, 'radvd (boot router)',
      'the boot router (radvd) could not be started: UEFI firmware waits 10 s for a route before it loads its boot file')
    child = p
    // radvd takes SIGHUP only once it is in its main loop (before, the signal ends it): rereads wait a while.
    lastReload = performance.now() + BOOT_START_MS
    p.on('exit', (code, signal) => {
      if (child !== p) return
      child = null
      // Still needed (it was not stopped here): again, with every listed client, at most once a second.
      if (clients.size > 0 && radvd()) {
        log.debug({ code, signal }, 'boot router exited; restarting')
        const again = setTimeout(() => {
          const program = radvd()
          if (!child && clients.size > 0 && program) launch(program)
        }, 1000)
        again.unref()
      }
    })
  }

  return {
    add(from: string) {
      const address = from.split('%')[0]! // a datagram's source may carry its zone (fe80::1%eth0)
      const program = radvd()
      if (!program || !isLinkLocal(address)) return
      const known = clients.has(address)
      clients.delete(address)
      clients.set(address, performance.now() + BOOT_CLIENT_TTL_MS)
      // The oldest make room (Map keeps insertion order; a returning client was moved to the end above).
      for (const c of clients.keys()) {
        if (clients.size <= BOOT_CLIENTS_MAX) break
        clients.delete(c)
      }
      write()
      schedule()
      if (child && child.exitCode === null) {
        if (!known && !reload) {
          reload = setTimeout(sighup, Math.max(0, lastReload + BOOT_RELOAD_GAP_MS - performance.now()))
          reload.unref()
        }
        return
      }
      launch(program)
      log.debug({ client: address }, 'boot router started')
    },
    async stop() {
      if (expiry) clearTimeout(expiry)
      if (reload) clearTimeout(reload)
      expiry = reload = null
      clients.clear()
      const p = child
      child = null
      if (p) await stopChild(p, RADVD_STOP_MS)
    },
  }
}

export function createRouterAdverts(deps: RouterAdvertsDeps): RouterAdverts {
  const log = deps.log.child({ svc: 'ra', interface: deps.interface })
  let child: ChildProcess | null = null
  let stopping = false
  let restarts = 0
  let restartTimer: NodeJS.Timeout | null = null
  let program: string | null = null
  const bootRouter = deps.managed ? createBootRouter(deps, deps.managed, log, () => (stopping ? null : program)) : null

  const launch = (program: string, conf: string, pid: string): void => {
    const { p, tail } = spawnRadvd(deps, program, conf, pid, log, 'radvd', 'radvd could not be started; iPXE will wait ~16 s for IPv6 on this segment')
    child = p
    p.on('exit', (code, signal) => {
      if (child === p) child = null
      if (stopping) return
      // Unexpected: restart with backoff, so a flapping interface does not spin.
      const wait = Math.min(60_000, 1000 * 2 ** Math.min(restarts++, 6))
      log.warn({ code, signal, retryInMs: wait, stderr: tail() }, 'radvd exited; restarting')
      restartTimer = setTimeout(() => launch(program, conf, pid), wait)
      restartTimer.unref()
    })
  }

  return {
    async start() {
      program = deps.program ?? findRadvd()
      if (!program) {
        log.warn('radvd is not installed (Debian package radvd): no router advertisements, so iPXE waits ~16 s for IPv6 autoconfiguration on this segment unless a router advertises')
        return
      }
      mkdirSync(deps.runDir, { recursive: true })
      const conf = join(deps.runDir, 'radvd.conf')
      writeFileSync(conf, radvdConfig(deps.interface, deps.minIntervalSeconds, deps.maxIntervalSeconds, deps.managed))
      const pidFile = join(deps.runDir, 'radvd.pid')
      stopLeftover(pidFile, conf, log)
      stopping = false
      launch(program, conf, pidFile)
      if (deps.managed) log.info({ prefix: deps.managed.prefix }, 'sending IPv6 router advertisements (prefix on-link, managed: hosts use DHCPv6; lifetime 0)')
      else log.info('sending IPv6 router advertisements (no prefix, lifetime 0) so iPXE does not wait for IPv6')
    },
    routeFor(linkLocal) {
      bootRouter?.add(linkLocal)
    },
    async stop() {
      stopping = true
      if (restartTimer) clearTimeout(restartTimer)
      await bootRouter?.stop()
      if (child) await stopChild(child, RADVD_STOP_MS)
    },
    get running() {
      return child !== null && child.exitCode === null
    },
  }
}
