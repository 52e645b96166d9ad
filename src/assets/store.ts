import { copyFileSync, createReadStream, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { basename, join, relative } from 'node:path'
import { RackbootError } from '../errors.js'
import { download, parseChecksums, type DownloadResult } from './download.js'
import type { Progress } from './progress.js'

// The boot assets directory, laid out the way the boot scripts and TFTP ask for files:
//   ipxe/undionly.kpxe ipxe/ipxe.efi ipxe/snponly.efi      (TFTP and HTTP)
//   talos/<version>/<arch>/{vmlinuz,initramfs.xz}             (release images)
//   talos/<schematic>/<version>/<arch>/{vmlinuz,initramfs.xz} (Image Factory)
//   agent/{vmlinuz,agent.img}                                  (discovery agent)
// manifest.json records where each file came from and its sha256, so a copy can be checked later.

export interface ManifestEntry {
  path: string
  bytes: number
  sha256: string
  source: string
  verified: string | null
  addedAt: string
}

export interface AssetStoreOptions {
  dir: string
  progress?: (label: string, total: number | null) => Progress
  fetchImpl?: typeof fetch
}

const VERSION_RE = /^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/
const SCHEMATIC_RE = /^[0-9a-f]{64}$/
export const IPXE_FILES = ['undionly.kpxe', 'ipxe.efi', 'snponly.efi', 'ipxe.pxe', 'undionly.kkpxe'] as const

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256')
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer)
  return h.digest('hex')
}

export function talosAssetDir(version: string, arch: string, schematic?: string | null): string {
  return join('talos', ...(schematic ? [schematic] : []), version, arch)
}

export function createAssetStore(options: AssetStoreOptions) {
  const dir = options.dir
  const manifestFile = join(dir, 'manifest.json')
  const readManifest = (): Record<string, ManifestEntry> => (existsSync(manifestFile) ? JSON.parse(readFileSync(manifestFile, 'utf8')) : {})
  const record = (entry: ManifestEntry) => {
    const m = readManifest()
    m[entry.path] = entry
    mkdirSync(dir, { recursive: true })
    writeFileSync(`${manifestFile}.tmp`, JSON.stringify(m, null, 2) + '\n')
    renameSync(`${manifestFile}.tmp`, manifestFile)
  }
  const fetchText = async (url: string): Promise<string | null> => {
    const res = await (options.fetchImpl ?? fetch)(url, { redirect: 'follow' }).catch(() => null)
    return res && res.ok ? res.text() : null
  }
  const get = (url: string, rel: string): Promise<DownloadResult> =>
    download(url, join(dir, rel), { label: rel, ...(options.progress ? { progress: options.progress } : {}), ...(options.fetchImpl ? { fetchImpl: options.fetchImpl } : {}) })

  return {
    dir,
    manifest: readManifest,

    /** Talos kernel + initramfs from a release (verified against its sha512sum.txt) or the Image Factory. */
    async fetchTalos(input: { version: string; arch: 'amd64' | 'arm64'; schematic?: string | null; releasesUrl: string; factoryUrl: string }): Promise<ManifestEntry[]> {
      if (!VERSION_RE.test(input.version)) throw new RackbootError('RB_ERR_VALIDATION', `not a Talos version: '${input.version}' (like v1.13.9)`)
      if (input.schematic && !SCHEMATIC_RE.test(input.schematic)) throw new RackbootError('RB_ERR_VALIDATION', `not a schematic ID: '${input.schematic}' (64 hex digits)`)
      const target = talosAssetDir(input.version, input.arch, input.schematic)
      const files: Array<{ remote: string; local: string; url: string }> = input.schematic
        ? [
            { remote: `kernel-${input.arch}`, local: 'vmlinuz', url: `${input.factoryUrl}/image/${input.schematic}/${input.version}/kernel-${input.arch}` },
            { remote: `initramfs-${input.arch}.xz`, local: 'initramfs.xz', url: `${input.factoryUrl}/image/${input.schematic}/${input.version}/initramfs-${input.arch}.xz` },
          ]
        : [
            { remote: `vmlinuz-${input.arch}`, local: 'vmlinuz', url: `${input.releasesUrl}/${input.version}/vmlinuz-${input.arch}` },
            { remote: `initramfs-${input.arch}.xz`, local: 'initramfs.xz', url: `${input.releasesUrl}/${input.version}/initramfs-${input.arch}.xz` },
          ]
      // Release assets come with checksum files; the community Image Factory publishes none (talos.md §1.2).
      const sums = input.schematic ? null : parseChecksums((await fetchText(`${input.releasesUrl}/${input.version}/sha512sum.txt`)) ?? '')
      const sums256 = input.schematic ? null : parseChecksums((await fetchText(`${input.releasesUrl}/${input.version}/sha256sum.txt`)) ?? '')
      const out: ManifestEntry[] = []
      for (const f of files) {
        const rel = join(target, f.local)
        const got = await get(f.url, `${rel}.download`)
        let verified: string | null = null
        const want512 = sums?.get(f.remote)
        const want256 = sums256?.get(f.remote)
        if (want512 && want512 !== got.sha512) throw new RackbootError('RB_ERR_INTERNAL', `${f.remote}: sha512 mismatch (expected ${want512.slice(0, 16)}…, got ${got.sha512.slice(0, 16)}…); file discarded`)
        if (want256 && want256 !== got.sha256) throw new RackbootError('RB_ERR_INTERNAL', `${f.remote}: sha256 mismatch; file discarded`)
        if (want512) verified = 'sha512sum.txt'
        else if (want256) verified = 'sha256sum.txt'
        renameSync(join(dir, `${rel}.download`), join(dir, rel))
        const entry: ManifestEntry = { path: rel, bytes: got.bytes, sha256: got.sha256, source: f.url, verified, addedAt: new Date().toISOString() }
        record(entry)
        out.push(entry)
      }
      return out
    },

    /** iPXE binaries from Debian's ipxe package (offline), when it is installed. */
    async importIpxe(fromDir: string): Promise<ManifestEntry[]> {
      if (!existsSync(fromDir)) {
        throw new RackbootError('RB_ERR_NOT_FOUND', `no iPXE binaries in ${fromDir}: install Debian's ipxe package (apt-get install ipxe), or import your own build with 'rackboot assets import FILE --to ipxe/'`)
      }
      const out: ManifestEntry[] = []
      for (const name of IPXE_FILES) {
        const src = join(fromDir, name)
        if (existsSync(src)) out.push(await this.importFile(src, join('ipxe', name), `debian:${src}`))
      }
      if (out.length === 0) throw new RackbootError('RB_ERR_NOT_FOUND', `${fromDir} holds none of ${IPXE_FILES.join(', ')}`)
      return out
    },

    /** Copies a local file into the store at `rel` (offline sites bring their own images). */
    async importFile(src: string, rel: string, source = `file:${src}`): Promise<ManifestEntry> {
      if (!existsSync(src) || !statSync(src).isFile()) throw new RackbootError('RB_ERR_NOT_FOUND', `no such file: ${src}`)
      if (rel.split(/[\\/]/).some((p) => p === '..' || p === '') || rel.startsWith('/')) {
        throw new RackbootError('RB_ERR_VALIDATION', `asset path must stay inside the assets directory: ${rel}`)
      }
      const dest = join(dir, rel)
      mkdirSync(join(dest, '..'), { recursive: true })
      copyFileSync(src, `${dest}.tmp`)
      renameSync(`${dest}.tmp`, dest)
      const entry: ManifestEntry = { path: rel, bytes: statSync(dest).size, sha256: await sha256File(dest), source, verified: null, addedAt: new Date().toISOString() }
      record(entry)
      return entry
    },

    /** Every file in the store with its size, and whether it still matches the manifest. */
    async list(): Promise<Array<{ path: string; bytes: number; source: string | null; ok: boolean | null }>> {
      const manifest = readManifest()
      const walk = (d: string): string[] =>
        existsSync(d)
          ? readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)]))
          : []
      const out = []
      for (const file of walk(dir).sort()) {
        const rel = relative(dir, file)
        if (rel === 'manifest.json' || basename(rel) === 'README.md' || rel.endsWith('.tmp') || rel.endsWith('.part')) continue
        const entry = manifest[rel]
        const bytes = statSync(file).size
        out.push({ path: rel, bytes, source: entry?.source ?? null, ok: entry ? entry.bytes === bytes && (await sha256File(file)) === entry.sha256 : null })
      }
      return out
    },
  }
}

export type AssetStore = ReturnType<typeof createAssetStore>
