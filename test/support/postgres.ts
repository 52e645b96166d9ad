// A private PostgreSQL cluster for one test file: initdb + pg_ctl in a temporary directory, listening only on a Unix
// socket in that directory (no TCP port, nothing else on the machine can reach it), as an unprivileged user when the
// tests run as root (PostgreSQL refuses to run as root). Never a system service. Torn down by stop().
import { execFile, execFileSync } from 'node:child_process'
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'

const run = promisify(execFile)

export interface PgCluster {
  /** Directory holding the data directory and the socket. */
  dir: string
  /** The socket directory (the `host` of every URL). */
  socketDir: string
  bin: string
  /** A URL for database `name` (made by createDatabase). */
  url(name: string): string
  /** Creates an empty database and returns its URL. */
  createDatabase(name?: string): Promise<string>
  /** Stops the server (fast shutdown) without removing it: a database outage. */
  pause(): Promise<void>
  /** Starts it again after pause(). */
  resume(): Promise<void>
  /** Stops the server and removes every file. */
  stop(): Promise<void>
  /** The user the server runs as (root runs it as `postgres`). */
  osUser: string | null
}

/** The newest PostgreSQL bin directory Debian's packages installed, or null. */
export function postgresBin(): string | null {
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return null
  const versions = readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a))
  return versions.length > 0 ? join(root, versions[0]!, 'bin') : null
}

let counter = 0

/**
 * Starts a cluster, or returns why it cannot (no PostgreSQL installed, no unprivileged user to run it as): the caller
 * skips loudly with that reason.
 */
export async function startPostgres(): Promise<PgCluster | { skip: string }> {
  const bin = postgresBin()
  if (!bin) return { skip: 'PostgreSQL is not installed (Debian package postgresql; .ci/run installs it)' }
  const root = process.getuid?.() === 0
  let osUser: string | null = null
  if (root) {
    try {
      execFileSync('id', ['-u', 'postgres'], { stdio: 'ignore' })
      osUser = 'postgres'
    } catch {
      return { skip: 'running as root and there is no postgres user to run PostgreSQL as (initdb refuses root)' }
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'rb-pg-'))
  const data = join(dir, 'data')
  const socketDir = join(dir, 'sock')
  mkdirSync(socketDir)
  if (osUser) {
    const uid = Number(execFileSync('id', ['-u', osUser]).toString().trim())
    const gid = Number(execFileSync('id', ['-g', osUser]).toString().trim())
    // The run's scratch directory is 0755, the test's own temp dir is made 0700 by mkdtemp: let the server in.
    chmodSync(dir, 0o755)
    chownSync(dir, uid, gid)
    chownSync(socketDir, uid, gid)
  }
  const as = (cmd: string, args: string[]): [string, string[]] => (osUser ? ['runuser', ['-u', osUser, '--', cmd, ...args]] : [cmd, args])
  const user = 'rackboot'
  try {
    await run(...as(join(bin, 'initdb'), ['-D', data, '-U', user, '--auth=trust', '--no-locale', '-E', 'UTF8', '--no-sync']))
    const conf = [
      `listen_addresses = ''`,
      `unix_socket_directories = '${socketDir}'`,
      // Test speed: the tests kill rackboot, never PostgreSQL; durability of PostgreSQL itself is not under test.
      'fsync = off', 'synchronous_commit = off', 'full_page_writes = off',
      'shared_buffers = 32MB', 'max_connections = 200',
    ].join('\n')
    execFileSync('sh', ['-c', `cat >> '${join(data, 'postgresql.conf')}'`], { input: `${conf}\n` })
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    return { skip: `initdb failed: ${(err as Error).message.split('\n')[0]}` }
  }
  const start = async () => {
    await run(...as(join(bin, 'pg_ctl'), ['-D', data, '-l', join(dir, 'server.log'), '-w', '-t', '60', 'start']))
  }
  const pause = async () => {
    await run(...as(join(bin, 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', 'stop']))
  }
  try {
    await start()
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    return { skip: `pg_ctl start failed: ${(err as Error).message.split('\n')[0]}` }
  }
  const url = (name: string) => `postgres://${user}@/${name}?host=${encodeURIComponent(socketDir)}`
  return {
    dir,
    socketDir,
    bin,
    osUser,
    url,
    async createDatabase(name) {
      const db = name ?? `t${process.pid}_${++counter}`
      const c = new pg.Client({ connectionString: url('postgres') })
      await c.connect()
      try {
        await c.query(`CREATE DATABASE "${db}" TEMPLATE template0`)
      } finally {
        await c.end()
      }
      return url(db)
    },
    pause,
    resume: start,
    async stop() {
      await pause().catch(() => {})
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
