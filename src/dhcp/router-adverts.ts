// IPv6 router advertisements for the provisioning segment, sent by radvd under our supervision. iPXE configures
// IPv6 beside DHCPv4 and does not fetch anything until IPv6 autoconfiguration ends: on a segment where nothing
// advertises it waits out its router solicitations, about 16 s of every boot (lab.md; measured here: boot script
// at 18.3 s without, 2.4 s with). The advertisement sent is the smallest that ends the wait and changes nothing
// else: no prefix (no addresses), router lifetime 0 (not a default router), no DHCPv6 flags. Node has no raw
// sockets for ICMPv6, hence radvd (Debian package radvd).
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
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
  /** Unsolicited advertisement interval bounds, seconds (radvd: min 3). Solicitations are answered at once. */
  minIntervalSeconds?: number
  maxIntervalSeconds?: number
  /** A command that radvd's command line is appended to (tests run it inside a network namespace). */
  wrap?: readonly string[]
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

/** radvd.conf for an advertisement with no prefix and router lifetime 0. */
export function radvdConfig(iface: string, minSeconds = 3, maxSeconds = 10): string {
  if (!/^[A-Za-z0-9_.:@-]{1,15}$/.test(iface)) throw new Error(`not an interface name: ${JSON.stringify(iface)}`)
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
      writeFileSync(conf, radvdConfig(deps.interface, deps.minIntervalSeconds, deps.maxIntervalSeconds))
      const pidFile = join(deps.runDir, 'radvd.pid')
      stopLeftover(pidFile, conf, log)
      stopping = false
      launch(program, conf, pidFile)
      log.info('sending IPv6 router advertisements (no prefix, lifetime 0) so iPXE does not wait for IPv6')
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
