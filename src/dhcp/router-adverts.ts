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
import { which } from '../processes.js'

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
  /** True while radvd runs. */
  readonly running: boolean
}

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

export function createRouterAdverts(deps: RouterAdvertsDeps): RouterAdverts {
  const log = deps.log.child({ svc: 'ra', interface: deps.interface })
  let child: ChildProcess | null = null
  let stopping = false
  let restarts = 0
  let restartTimer: NodeJS.Timeout | null = null

  const launch = (program: string, conf: string, pid: string): void => {
    const argv = [...(deps.wrap ?? []), program, '--nodaemon', '-C', conf, '-p', pid, '-m', 'stderr']
    const p = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] })
    child = p
    let tail = ''
    p.stderr?.on('data', (d: Buffer) => {
      tail = (tail + d.toString()).slice(-2000)
      for (const line of d.toString().split('\n').filter(Boolean)) log.debug({ radvd: line }, 'radvd')
    })
    p.on('error', (err) => log.warn({ err }, 'radvd could not be started; iPXE will wait ~16 s for IPv6 on this segment'))
    p.on('exit', (code, signal) => {
      if (child === p) child = null
      if (stopping) return
      // Unexpected: restart with backoff, so a flapping interface does not spin.
      const wait = Math.min(60_000, 1000 * 2 ** Math.min(restarts++, 6))
      log.warn({ code, signal, retryInMs: wait, stderr: tail.trim() }, 'radvd exited; restarting')
      restartTimer = setTimeout(() => launch(program, conf, pid), wait)
      restartTimer.unref()
    })
  }

  return {
    async start() {
      const program = deps.program ?? findRadvd()
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
    async stop() {
      stopping = true
      if (restartTimer) clearTimeout(restartTimer)
      const p = child
      if (!p || p.exitCode !== null) return
      await new Promise<void>((resolve) => {
        const kill = setTimeout(() => p.kill('SIGKILL'), 3000)
        p.once('exit', () => {
          clearTimeout(kill)
          resolve()
        })
        p.kill('SIGTERM')
      })
    },
    get running() {
      return child !== null && child.exitCode === null
    },
  }
}
