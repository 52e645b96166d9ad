// Network namespaces for tests: uniquely named namespaces, veth pairs, bridges, addresses, commands run inside a
// namespace, and a teardown that never throws. Addresses come from 198.18.0.0/15 (RFC 2544) only.
//
//   const lab = await createNetLab(t)            // or: if (skipUnlessNetns(t, ['dnsmasq'])) return
//   const srv = await lab.ns('srv'); const cli = await lab.ns('cli')
//   await lab.veth({ ns: srv, name: 'eth0', cidr: '198.18.7.1/24' }, { ns: cli, name: 'eth0', cidr: '198.18.7.2/24' })
//   const r = await cli.exec(['ping', '-c1', '198.18.7.1'])
//   const p = srv.spawn(['node', '--import', 'tsx', 'server.ts'])   // killed on teardown
//
// createNetLab(t) registers lab.destroy() with t.after, so namespaces go away also when the test fails.
import { execFile, spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { stopChild, which } from '../../src/processes.js'

export interface ExecResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export interface ExecOptions {
  /** Kill the command after this many ms (default 30 s). */
  timeoutMs?: number
  /** Reject when the command exits non-zero (default true). */
  check?: boolean
  input?: string
  env?: NodeJS.ProcessEnv
  cwd?: string
}

export { which }

let probed: string | null | undefined

/** Why network-namespace tests cannot run here (not root, no `ip`, netns creation refused), or null when they can. */
export function netnsUnavailableReason(): string | null {
  if (probed !== undefined) return probed
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) probed = 'needs root to create network namespaces'
  else if (!which('ip')) probed = "needs the 'ip' program (Debian package iproute2)"
  else {
    const name = `rbprobe${randomBytes(4).toString('hex')}`
    const add = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8' })
    if (add.status !== 0) probed = `cannot create a network namespace: ${(add.stderr || add.error?.message || '').trim()}`
    else probed = null
    spawnSync('ip', ['netns', 'del', name])
  }
  return probed
}

/** Why a test needing netns and these programs cannot run, or null. Use as `test(name, { skip: reason ?? false })`. */
export function netnsSkipReason(programs: string[] = []): string | null {
  const base = netnsUnavailableReason()
  if (base) return base
  const missing = programs.filter((p) => !which(p))
  return missing.length > 0 ? `missing program(s): ${missing.join(', ')}` : null
}

interface SkipContext {
  skip(message?: string): void
}

/** Marks the test skipped (saying why) and returns true when netns or a program is unavailable: `if (skipUnlessNetns(t)) return`. */
export function skipUnlessNetns(t: SkipContext, programs: string[] = []): boolean {
  const reason = netnsSkipReason(programs)
  if (reason) {
    console.error(`# SKIP: ${reason}`)
    t.skip(reason)
    return true
  }
  return false
}

/** Runs a program (outside any namespace), collecting its output. */
export function run(argv: string[], options: ExecOptions = {}): Promise<ExecResult> {
  const [cmd, ...args] = argv
  if (!cmd) return Promise.reject(new Error('run: empty command'))
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      {
        timeout: options.timeoutMs ?? 30_000,
        maxBuffer: 64 * 1024 * 1024,
        encoding: 'utf8',
        env: options.env ?? process.env,
        cwd: options.cwd,
        killSignal: 'SIGKILL',
      },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: number | string; signal?: NodeJS.Signals }) | null
        const result: ExecResult = {
          code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
          signal: e?.signal ?? null,
          stdout,
          stderr,
        }
        if (e && typeof e.code === 'string') return reject(new Error(`${cmd}: ${e.message}`))
        if (e && options.check !== false) {
          return reject(new Error(`${argv.join(' ')} failed (code ${result.code}, signal ${result.signal}): ${stderr.trim() || stdout.trim()}`))
        }
        resolve(result)
      },
    )
    if (options.input !== undefined) child.stdin?.end(options.input)
  })
}

/** A network namespace created by a NetLab. */
export interface Netns {
  readonly name: string
  /** Runs a command inside the namespace and waits for it. */
  exec(argv: string[], options?: ExecOptions): Promise<ExecResult>
  /** Starts a long-running command inside the namespace; it is killed on teardown. */
  spawn(argv: string[], options?: SpawnOptions): ChildProcess
  /** `ip -n NAME ...args`. */
  ip(args: string[]): Promise<ExecResult>
  addAddress(dev: string, cidr: string): Promise<void>
  up(dev: string): Promise<void>
  addRoute(dest: string, via: string): Promise<void>
  /** Sets a sysctl inside the namespace, e.g. ('net.ipv4.ip_forward', '1'). */
  sysctl(key: string, value: string): Promise<void>
}

export interface VethEnd {
  /** Namespace of this end; omitted means the root namespace (then `name` should be unique: use lab.ifname()). */
  ns?: Netns
  name: string
  /** Address to assign, e.g. 198.18.7.1/24. */
  cidr?: string
  /** Bring the link up (default true). */
  up?: boolean
  mac?: string
}

export interface NetLab {
  /** Short random tag shared by everything this lab creates. */
  readonly tag: string
  /** Creates a namespace named `rb-<label>-<tag>` with loopback up (and IPv6 off unless ipv6: true). */
  ns(label: string, options?: { ipv6?: boolean }): Promise<Netns>
  /** A unique interface name (<= 15 chars) for the root namespace. */
  ifname(prefix: string): string
  /** Creates a veth pair with each end placed (and optionally addressed) directly in its namespace. */
  veth(a: VethEnd, b: VethEnd): Promise<void>
  /** Creates a bridge in `ns`, enslaves `members` (already in ns), assigns `cidr`, brings it up. */
  bridge(ns: Netns, name: string, members: string[], cidr?: string): Promise<void>
  /** Kills what the lab spawned and removes every namespace and root-namespace link it made. Never throws. */
  destroy(): Promise<void>
}

interface AfterContext {
  after(fn: () => Promise<void> | void): void
}

// stopChild lives with the other process helpers (src/processes.ts); re-exported for the tests and benches.
export { stopChild }

/**
 * Creates a lab. With a test context, its teardown is registered with `t.after` (runs also on failure);
 * otherwise call `destroy()` in a finally block.
 */
export async function createNetLab(t?: AfterContext): Promise<NetLab> {
  const reason = netnsUnavailableReason()
  if (reason) throw new Error(`network namespaces unavailable: ${reason}`)
  const tag = randomBytes(3).toString('hex')
  const namespaces: string[] = []
  const rootLinks: string[] = []
  const children = new Set<ChildProcess>()
  let destroyed = false
  let ifseq = 0

  const makeNs = (name: string): Netns => {
    const ns: Netns = {
      name,
      exec: (argv, options) => run(['ip', 'netns', 'exec', name, ...argv], options),
      spawn(argv, options = {}) {
        const child = spawn('ip', ['netns', 'exec', name, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], ...options })
        children.add(child)
        child.once('exit', () => children.delete(child))
        // An error event (e.g. spawn failure) must not crash the test runner.
        child.on('error', () => undefined)
        return child
      },
      ip: (args) => run(['ip', '-n', name, ...args]),
      async addAddress(dev, cidr) {
        await run(['ip', '-n', name, 'addr', 'add', cidr, 'dev', dev])
      },
      async up(dev) {
        await run(['ip', '-n', name, 'link', 'set', 'dev', dev, 'up'])
      },
      async addRoute(dest, via) {
        await run(['ip', '-n', name, 'route', 'add', dest, 'via', via])
      },
      async sysctl(key, value) {
        await run(['ip', 'netns', 'exec', name, 'sysctl', '-q', '-w', `${key}=${value}`])
      },
    }
    return ns
  }

  const lab: NetLab = {
    tag,
    async ns(label, options = {}) {
      if (destroyed) throw new Error('lab already destroyed')
      const name = `rb-${label}-${tag}`
      await run(['ip', 'netns', 'add', name])
      namespaces.push(name)
      const ns = makeNs(name)
      await ns.up('lo')
      if (!options.ipv6) {
        // Quieter links (no DAD, no router solicitations); failure here is harmless.
        await ns.sysctl('net.ipv6.conf.all.disable_ipv6', '1').catch(() => undefined)
        await ns.sysctl('net.ipv6.conf.default.disable_ipv6', '1').catch(() => undefined)
      }
      return ns
    },
    ifname(prefix) {
      ifseq += 1
      return `${prefix.slice(0, 6)}${tag}${ifseq.toString(36)}`.slice(0, 15)
    },
    async veth(a, b) {
      if (destroyed) throw new Error('lab already destroyed')
      const place = (end: VethEnd) => (end.ns ? ['netns', end.ns.name] : [])
      const args = ['link', 'add', 'name', a.name, ...place(a)]
      if (a.mac) args.push('address', a.mac)
      args.push('type', 'veth', 'peer', 'name', b.name, ...place(b))
      if (b.mac) args.push('address', b.mac)
      await run(['ip', ...args])
      if (!a.ns) rootLinks.push(a.name)
      else if (!b.ns) rootLinks.push(b.name)
      for (const end of [a, b]) {
        const ipArgs = end.ns ? ['-n', end.ns.name] : []
        if (end.cidr) await run(['ip', ...ipArgs, 'addr', 'add', end.cidr, 'dev', end.name])
        if (end.up !== false) await run(['ip', ...ipArgs, 'link', 'set', 'dev', end.name, 'up'])
      }
    },
    async bridge(ns, name, members, cidr) {
      await ns.ip(['link', 'add', 'name', name, 'type', 'bridge'])
      // No STP forwarding delay: ports forward at once.
      await ns.ip(['link', 'set', 'dev', name, 'type', 'bridge', 'forward_delay', '0', 'stp_state', '0'])
      for (const m of members) await ns.ip(['link', 'set', 'dev', m, 'master', name])
      if (cidr) await ns.addAddress(name, cidr)
      await ns.up(name)
    },
    async destroy() {
      if (destroyed) return
      destroyed = true
      await Promise.all([...children].map((c) => stopChild(c, 2_000).catch(() => undefined)))
      for (const name of namespaces) {
        // Processes started inside the namespace by other means (daemons that fork) keep it alive: end them by pid.
        try {
          const pids = (await run(['ip', 'netns', 'pids', name], { check: false, timeoutMs: 5_000 })).stdout
            .split(/\s+/)
            .filter(Boolean)
            .map(Number)
            .filter((pid) => Number.isInteger(pid) && pid > 1 && pid !== process.pid)
          for (const pid of pids) {
            try {
              process.kill(pid, 'SIGKILL')
            } catch {
              // gone already
            }
          }
        } catch {
          // best effort
        }
        await run(['ip', 'netns', 'del', name], { check: false, timeoutMs: 10_000 }).catch(() => undefined)
      }
      for (const link of rootLinks) {
        await run(['ip', 'link', 'del', 'dev', link], { check: false, timeoutMs: 10_000 }).catch(() => undefined)
      }
    },
  }
  t?.after(() => lab.destroy())
  return lab
}

/** Waits until `probe` returns a value other than undefined/false, polling every `intervalMs`; throws on timeout. */
export async function waitFor<T>(
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  options: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 20_000)
  let lastError: unknown
  for (;;) {
    try {
      const v = await probe()
      if (v !== undefined && v !== false) return v
    } catch (err) {
      lastError = err
    }
    if (Date.now() > deadline) {
      const why = lastError instanceof Error ? `: ${lastError.message}` : ''
      throw new Error(`timed out waiting for ${options.what ?? 'condition'}${why}`)
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 100))
  }
}
