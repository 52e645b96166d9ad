// Debian packages fetched with apt (apt-cache, apt-get download) into a cache directory and unpacked with dpkg -x:
// never installed on the host. apt is the host's own for its architecture, or a private configuration for another
// (apt.ts: an AptContext). Cached .debs are checked against the archive's SHA256 before reuse.
import { execFile, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { RackbootError } from '../errors.js'
import type { AptContext } from './apt.js'
import { withLock } from './lock.js'

export interface DebPackage {
  name: string
  version: string
  /** Debian architecture of the .deb (amd64, arm64, all). */
  arch: string
  /** File name apt gives the .deb (the epoch's colon is written %3a). */
  filename: string
  url: string
  size: number
  sha256: string
}

export type ProgressPhase = 'resolve' | 'download' | 'extract' | 'modules' | 'pack' | 'compress' | 'done'

export interface BuildProgress {
  phase: ProgressPhase
  message: string
  /** Work done and total in the phase's unit (bytes when downloading), when known. */
  done?: number
  total?: number
}

export type ProgressFn = (p: BuildProgress) => void

/** The network failed, as apt words it: worth another try (cli/assets.ts retries messages with "cannot reach"). */
export const APT_NETWORK_ERROR = /Could not connect|Could not resolve|Temporary failure resolving|Connection (timed out|failed|refused)|Unable to connect|Network is unreachable|No route to host|Failed to fetch|Some index files failed/i

/** Runs a program to completion; its output, or a RackbootError naming the program and its complaint. */
export function exec(cmd: string, args: string[], options: { cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { cwd: options.cwd, timeout: options.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8', env: options.env ?? { ...process.env, LC_ALL: 'C' } },
      (err, stdout, stderr) => {
        if (err) {
          const missing = (err as NodeJS.ErrnoException).code === 'ENOENT'
          reject(
            new RackbootError(
              'RB_ERR_INTERNAL',
              missing ? `${cmd} not found (is this a Debian system with apt and dpkg?)` : `${cmd} ${args.join(' ')} failed: ${(stderr || stdout || err.message).trim()}`,
              { cause: err },
            ),
          )
        } else resolve(stdout)
      },
    )
  })
}

const aptEnv = (apt?: AptContext) => (apt ? { env: apt.env } : {})
const archWord = (apt?: AptContext) => (apt?.root ? ` for ${apt.arch}` : '')

/** The package a Debian metapackage currently depends on, e.g. linux-image-amd64 → linux-image-6.1.0-56-amd64. */
export async function resolveMetapackage(meta: string, pattern: RegExp, apt?: AptContext): Promise<string> {
  const out = await exec('apt-cache', ['depends', '--no-recommends', '--no-suggests', '--no-conflicts', '--no-breaks', '--no-replaces', '--no-enhances', meta], aptEnv(apt))
  for (const line of out.split('\n')) {
    const m = /^\s*\|?Depends:\s*(\S+)/.exec(line)
    if (m?.[1] && pattern.test(m[1])) return m[1]
  }
  throw new RackbootError('RB_ERR_NOT_FOUND', `${meta}${archWord(apt)} depends on no package matching ${pattern} (run apt-get update?)`)
}

/** Where apt would download a package from, its size and checksum (apt-get download --print-uris). */
export async function resolveDeb(name: string, apt?: AptContext): Promise<DebPackage> {
  const out = await exec('apt-get', ['download', '--print-uris', name], aptEnv(apt))
  for (const line of out.split('\n')) {
    const m = /^'([^']+)'\s+(\S+\.deb)\s+(\d+)\s+SHA256:([0-9a-f]{64})/.exec(line.trim())
    if (!m?.[1] || !m[2] || !m[3] || !m[4]) continue
    const parts = m[2].split('_')
    const arch = (parts[2] ?? '').replace(/\.deb$/, '')
    return { name, version: decodeURIComponent(parts[1] ?? ''), arch, filename: m[2], url: m[1], size: Number(m[3]), sha256: m[4] }
  }
  throw new RackbootError('RB_ERR_NOT_FOUND', `apt has no download for ${name}${archWord(apt)} (run apt-get update?)`)
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/** Size and checksum match the archive's. A stamp beside the file (size, mtime, sha256) spares re-hashing 70 MB. */
async function validDeb(path: string, pkg: DebPackage): Promise<boolean> {
  const st = await stat(path).catch(() => null)
  if (!st || st.size !== pkg.size) return false
  const stamp = `${st.size} ${st.mtimeMs} ${pkg.sha256}\n`
  if ((await readFile(`${path}.verified`, 'utf8').catch(() => '')) === stamp) return true
  if ((await sha256File(path)) !== pkg.sha256) return false
  await writeFile(`${path}.verified`, stamp).catch(() => undefined)
  return true
}

/**
 * The .deb in `<cacheDir>/debs/`, downloaded by `apt-get download` when missing or damaged. Progress comes from
 * apt's status fd (percent of the file).
 */
export async function fetchDeb(pkg: DebPackage, cacheDir: string, onProgress?: ProgressFn, apt?: AptContext): Promise<string> {
  const debs = join(cacheDir, 'debs')
  await mkdir(debs, { recursive: true })
  const dest = join(debs, pkg.filename)
  return withLock(join(debs, `.lock-${pkg.name}${pkg.arch ? `-${pkg.arch}` : ''}`), async () => {
    if (await validDeb(dest, pkg)) return dest
    const work = await mkdtemp(join(debs, '.download-'))
    try {
      onProgress?.({ phase: 'download', message: `downloading ${pkg.filename}`, done: 0, total: pkg.size })
      await new Promise<void>((resolve, reject) => {
        // Sandbox::User=root: the _apt user may not be able to write into the cache directory.
        const child = spawn('apt-get', ['download', '-q', '-o', 'APT::Sandbox::User=root', '-o', 'APT::Status-Fd=3', pkg.name], {
          cwd: work,
          stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
          env: apt?.env ?? { ...process.env, LC_ALL: 'C' },
        })
        let stderr = ''
        child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
        child.stdout?.resume()
        let buf = ''
        child.stdio[3]?.on('data', (d: Buffer) => {
          buf += d.toString()
          const lines = buf.split('\n')
          buf = lines.pop() ?? ''
          for (const line of lines) {
            const m = /^dlstatus:\d+:([\d.]+):/.exec(line)
            if (m?.[1]) {
              const done = Math.min(pkg.size, Math.round((Number(m[1]) / 100) * pkg.size))
              onProgress?.({ phase: 'download', message: `downloading ${pkg.filename}`, done, total: pkg.size })
            }
          }
        })
        child.once('error', (err) => reject(new RackbootError('RB_ERR_INTERNAL', 'cannot run apt-get', { cause: err })))
        child.once('exit', (code) => {
          if (code === 0) resolve()
          // "cannot reach" marks a network failure, which the CLI retries (cli/assets.ts retryable).
          else reject(new RackbootError('RB_ERR_INTERNAL', `${APT_NETWORK_ERROR.test(stderr) ? 'cannot reach the archive: ' : ''}apt-get download ${pkg.name}${archWord(apt)} failed (exit ${code}): ${stderr.trim()}`))
        })
      })
      const got = join(work, pkg.filename)
      if (!(await validDeb(got, pkg))) {
        throw new RackbootError('RB_ERR_INTERNAL', `downloaded ${pkg.filename} does not match the archive's size and SHA256`)
      }
      await rename(got, dest)
      onProgress?.({ phase: 'download', message: `downloaded ${pkg.filename}`, done: pkg.size, total: pkg.size })
      return dest
    } finally {
      await rm(work, { recursive: true, force: true }).catch(() => undefined)
    }
  })
}

/** Cached .debs of a package name prefix, newest version last (for working offline). */
export async function cachedDebs(cacheDir: string, prefix: RegExp): Promise<string[]> {
  const files = await readdir(join(cacheDir, 'debs')).catch(() => [] as string[])
  const matching = files.filter((f) => f.endsWith('.deb') && prefix.test(f))
  const versions = await Promise.all(matching.map(async (f) => ({ f, v: decodeURIComponent(f.split('_')[1] ?? '') })))
  const sorted: typeof versions = []
  for (const item of versions) {
    let i = 0
    while (i < sorted.length && (await compareDebVersions(sorted[i]!.v, item.v)) <= 0) i++
    sorted.splice(i, 0, item)
  }
  return sorted.map((x) => join(cacheDir, 'debs', x.f))
}

/** Debian version order, as dpkg defines it (dpkg --compare-versions). */
export async function compareDebVersions(a: string, b: string): Promise<number> {
  if (a === b) return 0
  try {
    await exec('dpkg', ['--compare-versions', a, 'lt', b])
    return -1
  } catch {
    return 1
  }
}

/**
 * Unpacks a .deb once into `dest` (dpkg -x into a temporary directory, then renamed), so a half-finished extraction
 * is never mistaken for a complete one.
 */
export async function extractDeb(debPath: string, dest: string, onProgress?: ProgressFn): Promise<string> {
  if (await stat(dest).catch(() => null)) return dest
  const parent = join(dest, '..')
  await mkdir(parent, { recursive: true })
  return withLock(`${dest}.lock`, async () => {
    if (await stat(dest).catch(() => null)) return dest
    const work = await mkdtemp(`${dest}.tmp-`)
    try {
      onProgress?.({ phase: 'extract', message: `unpacking ${debPath.split('/').pop()}` })
      await exec('dpkg', ['-x', debPath, work], { timeoutMs: 10 * 60_000 })
      await rename(work, dest)
      return dest
    } catch (err) {
      await rm(work, { recursive: true, force: true }).catch(() => undefined)
      throw err
    }
  })
}
