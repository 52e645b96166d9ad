// First-start seeding of the assets directory from boot files baked into the container image (RACKBOOT_ASSETS_SEED,
// /opt/rackboot/assets-seed in the image): Debian's iPXE loaders and a prebuilt discovery agent, laid out as an
// assets directory (ipxe/..., agent/..., manifest.json). An appliance with an empty assets volume and no internet can
// then PXE-boot and discover machines at once.
//
// A file already in the assets directory is never overwritten: only what is missing is copied, each file through a
// temporary name and a hard link, so a crash leaves no half-written boot file and a race never replaces one. The
// agent is one unit (its kernel, initramfs and build record belong together): copied whole when the assets
// directory has none of it, left alone otherwise. Entries of the seed's manifest.json (where each iPXE file came
// from, its sha256) are added for the files copied, so `rackboot assets list` checks them.
import { randomBytes } from 'node:crypto'
import { copyFile, link, lstat, mkdir, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'

/** The environment variable naming the seed directory; unset or empty: no seeding. */
export const ASSETS_SEED_ENV = 'RACKBOOT_ASSETS_SEED'

/** Directories copied whole or not at all. */
const UNITS = ['agent']

export interface SeedLog {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
}

export interface SeedOptions {
  assetsDir: string
  /** Default: the RACKBOOT_ASSETS_SEED environment variable. */
  seedDir?: string | undefined
  log: SeedLog
}

export interface SeedResult {
  /** null when no seed directory is configured. */
  seedDir: string | null
  /** Paths (relative to the assets directory) copied now. */
  copied: string[]
  /** Paths the seed has that the assets directory already had (kept as they are). */
  kept: string[]
  /** Why seeding stopped, when it did. */
  error?: string
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path)
    return true
  } catch {
    return false
  }
}

async function walk(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
    const path = rel ? `${rel}/${e.name}` : e.name
    if (e.isDirectory()) out.push(...(await walk(dir, path)))
    else if (e.isFile()) out.push(path)
  }
  return out
}

/** Not boot files: the manifest (merged separately), notes, locks and leftovers of interrupted writes. */
function seedable(rel: string): boolean {
  const name = rel.slice(rel.lastIndexOf('/') + 1)
  return rel !== 'manifest.json' && name !== 'README.md' && !name.startsWith('.') && !/\.(tmp|part|download)$/.test(name)
}

/** Copies src to dest unless dest exists; false when it did (never replaced). */
async function copyNew(src: string, dest: string): Promise<boolean> {
  await mkdir(dirname(dest), { recursive: true })
  const tmp = `${dest}.seed-${process.pid}-${randomBytes(4).toString('hex')}.tmp`
  await copyFile(src, tmp)
  try {
    await link(tmp, dest)
    return true
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EEXIST') return false
    // A filesystem without hard links: check, then rename (a race here is only with another seeding).
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOSYS') {
      if (await exists(dest)) return false
      await rename(tmp, dest)
      return true
    }
    throw err
  } finally {
    await unlink(tmp).catch(() => {})
  }
}

async function readJson(path: string): Promise<Record<string, unknown> | null> {
  try {
    const value = JSON.parse(await readFile(path, 'utf8')) as unknown
    return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null
  } catch {
    return null
  }
}

/** Adds the seed manifest's entries for `copied` to the assets manifest, keeping every entry it has. */
async function mergeManifest(seedDir: string, assetsDir: string, copied: string[], log: SeedLog): Promise<void> {
  const seed = await readJson(join(seedDir, 'manifest.json'))
  if (!seed) return
  const wanted = copied.filter((rel) => rel in seed)
  if (wanted.length === 0) return
  const file = join(assetsDir, 'manifest.json')
  let current: Record<string, unknown> = {}
  if (await exists(file)) {
    const read = await readJson(file)
    if (!read) {
      log.warn({ file }, 'the assets manifest is not valid JSON: seeded files not recorded in it')
      return
    }
    current = read
  }
  for (const rel of wanted) if (!(rel in current)) current[rel] = seed[rel]
  const tmp = `${file}.seed-${process.pid}.tmp`
  await writeFile(tmp, JSON.stringify(current, null, 2) + '\n')
  await rename(tmp, file)
}

/**
 * Copies the seed's boot files that the assets directory lacks. Never throws: a seed that cannot be read or an
 * assets directory that cannot be written is logged (serving goes on, and /healthz names what is missing).
 */
export async function seedAssets(options: SeedOptions): Promise<SeedResult> {
  const configured = options.seedDir ?? process.env[ASSETS_SEED_ENV]
  if (!configured) return { seedDir: null, copied: [], kept: [] }
  const seedDir = resolve(configured)
  const assetsDir = resolve(options.assetsDir)
  const result: SeedResult = { seedDir, copied: [], kept: [] }
  const { log } = options
  if (seedDir === assetsDir) return result
  try {
    if (!(await stat(seedDir)).isDirectory()) throw Object.assign(new Error(`${seedDir} is not a directory`), { code: 'ENOTDIR' })
  } catch (err) {
    result.error = `no assets seed at ${seedDir}: ${(err as Error).message}`
    log.warn({ seedDir, envVar: ASSETS_SEED_ENV }, `${result.error}; nothing seeded`)
    return result
  }
  try {
    const files = (await walk(seedDir)).filter(seedable).sort()
    // Units first decide as a whole; every other file on its own.
    const groups = new Map<string, string[]>()
    for (const rel of files) {
      const top = rel.split('/')[0]!
      const key = UNITS.includes(top) && rel.includes('/') ? `${top}/` : rel
      groups.set(key, [...(groups.get(key) ?? []), rel])
    }
    for (const [key, members] of groups) {
      const present = await Promise.all(members.map((rel) => exists(join(assetsDir, rel))))
      if (present.some(Boolean)) {
        result.kept.push(...members)
        continue
      }
      if (key.endsWith('/') && !(await exists(join(assetsDir, key)))) {
        // A unit into a directory of its own: built aside and renamed in, so it is there whole or not at all.
        const tmp = join(assetsDir, `.${key.slice(0, -1)}.seed-${process.pid}-${randomBytes(4).toString('hex')}`)
        try {
          for (const rel of members) await copyNew(join(seedDir, rel), join(tmp, rel.slice(key.length)))
          await rename(tmp, join(assetsDir, key))
          result.copied.push(...members)
          continue
        } catch (err) {
          await rm(tmp, { recursive: true, force: true })
          if (!(await exists(join(assetsDir, key)))) throw err
          result.kept.push(...members) // another seeding got there first
          continue
        }
      }
      for (const rel of members) {
        if (await copyNew(join(seedDir, rel), join(assetsDir, rel))) result.copied.push(rel)
        else result.kept.push(rel)
      }
    }
    await mergeManifest(seedDir, assetsDir, result.copied, log)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    const hint = e.code === 'EACCES' || e.code === 'EPERM' || e.code === 'EROFS'
      ? ` (the assets directory must be writable by uid ${process.getuid?.() ?? '?'}: for a bind mount, chown it to that uid)`
      : ''
    result.error = `${e.message}${hint}`
    log.warn({ seedDir, assetsDir, copied: result.copied }, `cannot seed the assets directory: ${result.error}`)
    return result
  }
  if (result.copied.length) {
    log.info({ seedDir, assetsDir, copied: result.copied, kept: result.kept.length },
      `seeded the assets directory with ${result.copied.length} boot files from the image: ${result.copied.join(', ')}`)
  }
  return result
}
