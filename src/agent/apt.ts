// apt for another architecture without touching the host: a private APT_CONFIG whose architecture list, package
// lists, cache and (empty) dpkg status all live under <cacheDir>/apt/<arch>/. `dpkg --add-architecture` would change
// the host's dpkg for every other user of the machine; this changes nothing outside the cache directory. The host's
// sources (/etc/apt/sources.list*) and proxy settings still apply, so a site's local mirror is used.
import { existsSync } from 'node:fs'
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { RackbootError } from '../errors.js'
import type { Logger } from '../log.js'
import { APT_NETWORK_ERROR, exec, type ProgressFn } from './debian.js'
import { withLock } from './lock.js'

/** Debian's names for the architectures rackboot boots. */
export const DEB_ARCHES = ['amd64', 'arm64'] as const
export type DebArch = (typeof DEB_ARCHES)[number]

export function isDebArch(value: string): value is DebArch {
  return (DEB_ARCHES as readonly string[]).includes(value)
}

/** How apt-get and apt-cache are run for one architecture. */
export interface AptContext {
  arch: DebArch
  /** Environment for apt-get/apt-cache (APT_CONFIG names the private configuration; LC_ALL=C for parsing). */
  env: NodeJS.ProcessEnv
  /** The private state directory; null when the host's own apt serves this architecture. */
  root: string | null
}

/** The host's apt, for packages of the host's own architecture. */
export function hostApt(arch: DebArch): AptContext {
  return { arch, env: { ...process.env, LC_ALL: 'C' }, root: null }
}

/**
 * The private apt.conf for `arch` rooted at `root`. Read after /etc/apt/apt.conf.d (APT_CONFIG replaces only the
 * main file), so these settings win over the host's.
 */
export function privateAptConfig(arch: DebArch, root: string): string {
  if (!isDebArch(arch)) throw new RackbootError('RB_ERR_VALIDATION', `unknown architecture '${arch}' (one of ${DEB_ARCHES.join(', ')})`)
  if (!root.startsWith('/') || /["\n\\]/.test(root)) {
    throw new RackbootError('RB_ERR_VALIDATION', `the apt state directory must be an absolute path without quotes, backslashes or newlines: ${JSON.stringify(root)}`)
  }
  return [
    `APT::Architecture "${arch}";`,
    `APT::Architectures { "${arch}"; };`,
    `Dir::State::Lists "${root}/lists";`,
    `Dir::State::status "${root}/status";`,
    `Dir::State::extended_states "${root}/extended_states";`,
    `Dir::Cache "${root}/cache";`,
    `Dir::Cache::archives "${root}/cache/archives";`,
    // The _apt user may not be able to write into a cache directory owned by whoever runs rackboot.
    'APT::Sandbox::User "root";',
    '',
  ].join('\n')
}

let hostArchMemo: Promise<string> | undefined

/** The host's dpkg architecture (amd64 on a PC); memoized. */
export function hostDebArch(): Promise<string> {
  hostArchMemo ??= exec('dpkg', ['--print-architecture']).then((s) => s.trim())
  hostArchMemo.catch(() => (hostArchMemo = undefined))
  return hostArchMemo
}

/** When the private lists were last updated (the newest file in lists/), or null when there are none. */
export async function listsUpdatedAt(root: string): Promise<Date | null> {
  const dir = join(root, 'lists')
  const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.includes('_Packages'))
  if (files.length === 0) return null
  const times = await Promise.all(files.map(async (f) => (await stat(join(dir, f))).mtimeMs))
  return new Date(Math.max(...times))
}

export interface AptForOptions {
  arch: DebArch
  cacheDir: string
  log: Logger
  onProgress?: ProgressFn | undefined
  /** Private lists older than this are updated first (default 24 h); 0 updates every time. */
  maxListAgeMs?: number
  /** Use a private configuration even for the host's own architecture (tests). */
  forcePrivate?: boolean
  /** The host's architecture (default: dpkg --print-architecture). */
  hostArch?: string
}

/**
 * The apt to use for `arch`: the host's own for its architecture; otherwise the private one, its package lists
 * updated (apt-get update) when missing or older than `maxListAgeMs`. An update that fails while older lists exist
 * is a warning (an offline site keeps working from its lists and cached .debs); without lists it is an error.
 */
export async function aptFor(options: AptForOptions): Promise<AptContext> {
  const { arch, log } = options
  if (!isDebArch(arch)) throw new RackbootError('RB_ERR_VALIDATION', `unknown architecture '${arch}' (one of ${DEB_ARCHES.join(', ')})`)
  if (!options.forcePrivate && arch === (options.hostArch ?? (await hostDebArch()))) return hostApt(arch)
  const root = join(options.cacheDir, 'apt', arch)
  const configFile = join(root, 'apt.conf')
  const config = privateAptConfig(arch, root)
  for (const d of ['lists/partial', 'cache/archives/partial']) await mkdir(join(root, d), { recursive: true })
  // An empty status: apt sees no installed packages, and never the host's.
  if (!existsSync(join(root, 'status'))) await writeFile(join(root, 'status'), '')
  if ((await readFile(configFile, 'utf8').catch(() => '')) !== config) await writeFile(configFile, config)
  const ctx: AptContext = { arch, env: { ...process.env, LC_ALL: 'C', APT_CONFIG: configFile }, root }

  const maxAge = options.maxListAgeMs ?? 24 * 3600_000
  const fresh = (at: Date | null) => at !== null && maxAge > 0 && Date.now() - at.getTime() < maxAge
  if (fresh(await listsUpdatedAt(root))) return ctx
  return withLock(join(root, '.update.lock'), async () => {
    // Another process may have updated the lists while this one waited for the lock.
    const before = await listsUpdatedAt(root)
    if (fresh(before)) return ctx
    options.onProgress?.({ phase: 'resolve', message: `updating the private ${arch} package lists` })
    try {
      const out = await exec('apt-get', ['update', '-q'], { env: ctx.env, timeoutMs: 10 * 60_000 })
      // apt-get update exits 0 when index files failed to download ("W: Some index files failed..."): no lists
      // afterwards is a failure all the same.
      if (!(await listsUpdatedAt(root))) throw new RackbootError('RB_ERR_INTERNAL', `apt-get update fetched no ${arch} package lists: ${out.trim().split('\n').slice(-3).join(' ')}`)
      log.debug({ arch, root }, 'private apt lists updated')
    } catch (err) {
      const why = (err as Error).message
      if (before) {
        log.warn({ arch, listsFrom: before.toISOString(), err: why }, `cannot update the ${arch} package lists: using those from ${before.toISOString()}`)
        return ctx
      }
      const network = APT_NETWORK_ERROR.test(why)
      throw new RackbootError(
        'RB_ERR_INTERNAL',
        `${network ? 'cannot reach the Debian archive' : 'apt-get update failed'} for the ${arch} package lists (${root}): ${why}`,
        { cause: err },
      )
    }
    return ctx
  })
}
