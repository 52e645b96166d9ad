// A lock across processes for a shared cache directory (two test files, or a CLI build beside a running test, may
// build the same assets at once). mkdir is atomic; the owner's pid is kept inside so a crashed owner's lock is taken
// over instead of waited on forever.
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { RackbootError } from '../errors.js'
import { processAlive as alive } from '../processes.js'

export interface LockOptions {
  /** Give up after this long (default 15 min: a first kernel download and extraction may be under way). */
  timeoutMs?: number
  pollMs?: number
}

/** Runs `fn` while holding the lock directory `path` (created; removed afterwards). */
export async function withLock<T>(path: string, fn: () => Promise<T>, options: LockOptions = {}): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 15 * 60_000)
  const pidFile = join(path, 'pid')
  for (;;) {
    try {
      await mkdir(path)
      await writeFile(pidFile, String(process.pid))
      break
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new RackbootError('RB_ERR_INTERNAL', `cannot create lock ${path}`, { cause: err })
      }
      const owner = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim())
      // A lock without a pid file is one being created this instant, unless it has been like that for a while.
      const age = Date.now() - ((await stat(path).catch(() => null))?.mtimeMs ?? Date.now())
      const stale = owner > 0 ? owner !== process.pid && !alive(owner) : age > 30_000
      if (stale) {
        await rm(path, { recursive: true, force: true })
        continue
      }
      if (Date.now() > deadline) {
        throw new RackbootError('RB_ERR_INTERNAL', `timed out waiting for lock ${path} (held by pid ${owner || 'unknown'})`)
      }
      await new Promise((r) => setTimeout(r, options.pollMs ?? 250))
    }
  }
  try {
    return await fn()
  } finally {
    await rm(path, { recursive: true, force: true }).catch(() => undefined)
  }
}
