// `rackboot assets ...`. list asks the server what it serves (GET /api/v1/assets), or reads this box's assets
// directory with --local. fetch, import and build are file operations on the assets directory of the box they run
// on (the settings' assetsDir): run them beside the server. Downloads show a progress bar on a terminal, and each
// retry of a failed download is a line.
import { basename } from 'node:path'
import { isRackbootError, RackbootError } from '../errors.js'
import { connect } from './client.js'
import { palette, printJson, statusLine, UsageError, type GlobalOptions } from './common.js'
import { formatBytes, renderTable } from './table.js'

type Options = GlobalOptions & { arch?: string; schematic?: string; talos?: string; to?: string; local?: boolean; sha256?: string; checksums?: string; cacheDir?: string }

interface AssetFile {
  path: string
  bytes: number
  source: string | null
  ok: boolean | null
  format?: string
}

interface Entry {
  path: string
  bytes: number
  sha256: string
  verified: string | null
}

async function store(o: Options) {
  const [{ loadSettings }, { createAssetStore }] = await Promise.all([import('../settings/index.js'), import('../assets/index.js')])
  const settings = loadSettings({ ...(o.config ? { file: o.config } : {}), overrides: o.set ?? [] })
  return { settings, store: createAssetStore({ dir: settings.assetsDir }) }
}

function printEntries(entries: Entry[], json: boolean | undefined): void {
  if (json) return printJson(entries)
  console.log(renderTable(entries, [
    { header: 'path', value: (e) => e.path },
    { header: 'size', value: (e) => formatBytes(e.bytes), align: 'right' },
    { header: 'sha256', value: (e) => e.sha256.slice(0, 16) + '…' },
    { header: 'verified', value: (e) => e.verified ?? 'recorded' },
  ], { palette: palette() }))
}

function printFiles(files: AssetFile[], where: string): number {
  if (files.length === 0) console.log(`no assets in ${where} yet: try 'rackboot assets fetch ipxe', 'rackboot assets fetch grub' and 'rackboot assets fetch talos v1.13.9'`)
  else console.log(renderTable(files, [
    { header: 'path', value: (f) => f.path },
    { header: 'size', value: (f) => formatBytes(f.bytes), align: 'right' },
    { header: 'check', value: (f) => (f.ok === null ? 'not in manifest' : f.ok ? 'ok' : 'CHANGED'), colour: (c, f, p) => (f.ok === false ? p.red(c) : f.ok ? p.green(c) : c) },
    { header: 'source', value: (f) => f.source },
  ], { palette: palette() }))
  return files.some((f) => f.ok === false) ? 1 : 0
}

interface ServerAsset {
  path: string
  kind: string
  bytes: number | null
  source: string | null
  status: 'verified' | 'recorded' | 'changed' | 'unrecorded' | 'missing'
}

export async function list(o: Options & { verify?: boolean }): Promise<number> {
  if (o.local) {
    const { settings, store: s } = await store(o)
    const files = await s.list()
    if (o.json) printJson(files)
    else printFiles(files, settings.assetsDir)
    return files.some((f) => f.ok === false) ? 1 : 0
  }
  const api = await connect(o)
  const body = await api.get<{ dir: string; items: ServerAsset[]; problems: number }>('/assets', { query: { verify: o.verify === true }, timeoutMs: o.verify ? 600_000 : 30_000 })
  if (o.json) printJson(body)
  else if (body.items.length === 0) console.log(`no assets in ${body.dir} on ${api.server} yet: run 'rackboot assets fetch ipxe' and 'rackboot assets fetch talos v1.13.9' there`)
  else {
    const bad = (a: ServerAsset) => a.status === 'changed' || a.status === 'missing'
    console.log(renderTable(body.items, [
      { header: 'path', value: (a) => a.path },
      { header: 'kind', value: (a) => a.kind },
      { header: 'size', value: (a) => (a.bytes === null ? null : formatBytes(a.bytes)), align: 'right' },
      { header: 'check', value: (a) => a.status, colour: (c, a, p) => (bad(a) ? p.red(c) : a.status === 'verified' ? p.green(c) : c) },
      { header: 'source', value: (a) => a.source },
    ], { palette: palette() }))
    console.log(`\n${body.items.length} file${body.items.length === 1 ? '' : 's'} in ${body.dir}${body.problems ? `, ${body.problems} changed or missing` : ''}${o.verify ? '' : ' (sizes compared; --verify hashes them)'}`)
  }
  return body.problems > 0 ? 1 : 0
}

/** Worth another try: the network or the far side failed, not the request (404) or the bytes (a wrong checksum). */
export function retryable(err: unknown): boolean {
  if (!isRackbootError(err)) return true
  if (err.code === 'RB_ERR_INTERNAL') return /cannot reach|broke off|is short|timed? ?out|reset/i.test(err.message)
  return /HTTP (5\d\d|429)/.test(err.message)
}

/** Runs a download up to `attempts` times, with a line for each failed attempt and backoff (1 s, 3 s, 9 s...). */
export async function withRetries<T>(what: string, fn: () => Promise<T>, options: { attempts?: number; baseMs?: number; line?: (s: string) => void } = {}): Promise<T> {
  const attempts = options.attempts ?? 3
  const line = options.line ?? ((s: string) => void process.stderr.write(`${s}\n`))
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn()
    } catch (err) {
      if (attempt >= attempts || !retryable(err)) throw err
      const wait = (options.baseMs ?? 1000) * 3 ** (attempt - 1)
      line(`${what}: attempt ${attempt} of ${attempts} failed: ${(err as Error).message}; trying again in ${Math.round(wait / 100) / 10} s`)
      await new Promise((r) => setTimeout(r, wait))
    }
  }
}

export async function fetchTalos(version: string, o: Options): Promise<number> {
  const { settings, store: s } = await store(o)
  // A command that reaches out says where before it does.
  process.stderr.write(`fetching Talos ${version} (${o.arch ?? 'amd64'}) from ${o.schematic ? settings.assetSources.imageFactory : settings.assetSources.talosReleases} into ${settings.assetsDir}\n`)
  const entries = await withRetries(`assets fetch talos ${version}`, () => s.fetchTalos({
    version, arch: (o.arch ?? 'amd64') as 'amd64' | 'arm64', schematic: o.schematic ?? null,
    releasesUrl: settings.assetSources.talosReleases, factoryUrl: settings.assetSources.imageFactory,
  }))
  printEntries(entries, o.json)
  return 0
}

export async function fetchIpxe(o: Options): Promise<number> {
  const { settings, store: s } = await store(o)
  printEntries(await s.importIpxe(settings.assetSources.ipxeDir), o.json)
  return 0
}

/**
 * `assets fetch grub`: GRUB netboot images (grub/grubnetaa64.efi for arm64, grub/grubnetx64.efi for x86 UEFI) built
 * with grub-mkimage, http built in, from the modules of grub-efi-<arch>-bin (assets/grub.ts says why not Debian's
 * signed images); the .debs come through apt-get download with a private apt for the foreign architecture; nothing
 * is installed.
 */
export async function fetchGrub(o: Options): Promise<number> {
  const [{ settings, store: s }, { fetchGrub: fetch }, { createLogger }, { join }, { isDebArch }] = await Promise.all([
    store(o), import('../assets/index.js'), import('../log.js'), import('node:path'), import('../agent/apt.js'),
  ])
  const arches = o.arch === undefined || o.arch === 'all' ? undefined : [o.arch]
  if (arches && !arches.every(isDebArch)) throw new UsageError(`--arch: amd64, arm64 or all, not '${o.arch}'`)
  const cacheDir = o.cacheDir ?? join(settings.dataDir, 'cache')
  process.stderr.write(`building GRUB netboot images (${arches?.join(', ') ?? 'arm64, amd64'}) with grub-mkimage and apt-get download into ${settings.assetsDir}/grub (packages cached in ${cacheDir})\n`)
  const log = createLogger({ level: 'warn', destination: process.stderr })
  const entries = await withRetries('assets fetch grub', () => fetch({
    store: s, cacheDir, log, ...(arches ? { arches: arches as Array<'amd64' | 'arm64'> } : {}),
    onPhase: (message) => void process.stderr.write(`${message}\n`),
  }))
  printEntries(entries, o.json)
  return 0
}

export async function importAssets(files: string[], o: Options): Promise<number> {
  const [{ store: s }, { talosAssetDir, IPXE_FILES, grubAssetName }] = await Promise.all([store(o), import('../assets/index.js')])
  const arch = o.arch ?? 'amd64'
  // Where each file goes, all decided before anything is copied: a wrong name changes nothing.
  const plan = files.map((file) => {
    const name = basename(file)
    if (o.to) return { file, rel: `${o.to.replace(/\/+$/, '')}/${name}` }
    if (o.talos) {
      const m = /^(vmlinuz|kernel|initramfs)(-(amd64|arm64))?(\.xz)?$/.exec(name)
      if (!m) throw new UsageError(`${name}: with --talos give vmlinuz-<arch> or initramfs-<arch>.xz (or use --to)`)
      return { file, rel: `${talosAssetDir(o.talos, m[3] ?? arch, o.schematic ?? null)}/${m[1] === 'initramfs' ? 'initramfs.xz' : 'vmlinuz'}` }
    }
    if ((IPXE_FILES as readonly string[]).includes(name)) return { file, rel: `ipxe/${name}` }
    // GRUB netboot images, as Debian names them (grubnetaa64.efi.signed) or already renamed.
    const grub = grubAssetName(name)
    if (grub) return { file, rel: `grub/${grub}` }
    throw new UsageError(`${name}: say where it goes with --talos VERSION or --to DIR/`)
  })
  if (o.sha256 && plan.length > 1) throw new UsageError('--sha256 names one file\'s hash: give one FILE, or --checksums with the release\'s list')
  const status = statusLine()
  const entries: Entry[] = []
  try {
    for (const [i, { file, rel }] of plan.entries()) {
      status.draw(`importing ${i + 1}/${plan.length}: ${rel}`)
      entries.push(await s.importFile(file, rel, { ...(o.sha256 ? { sha256: o.sha256 } : {}), ...(o.checksums ? { checksums: o.checksums } : {}) }))
    }
  } catch (err) {
    status.end()
    if (isRackbootError(err)) throw err
    throw new RackbootError('RB_ERR_INTERNAL', (err as Error).message)
  }
  status.end()
  printEntries(entries, o.json)
  return 0
}
