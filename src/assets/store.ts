import { createReadStream, createWriteStream, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { pipeline } from 'node:stream/promises'
import { basename, join, relative } from 'node:path'
import { RackbootError, isRackbootError } from '../errors.js'
import { download, parseChecksums, type DownloadResult } from './download.js'
import { checkFile, expectationFor, identify, readHead, type AssetExpectation } from './formats.js'
import type { Progress } from './progress.js'

// The boot assets directory, laid out the way the boot scripts and TFTP ask for files:
//   ipxe/undionly.kpxe ipxe/ipxe.efi ipxe/snponly.efi      (TFTP and HTTP)
//   talos/<version>/<arch>/{vmlinuz,initramfs.xz}             (release images)
//   talos/<schematic>/<version>/<arch>/{vmlinuz,initramfs.xz} (Image Factory)
//   agent/{vmlinuz,agent.img}                                  (discovery agent, amd64)
//   agent/arm64/{vmlinuz,agent.img}                            (discovery agent, arm64)
//   grub/grubnetaa64.efi grub/grubnetx64.efi                  (Debian's signed GRUB netboot images)
// manifest.json records where each file came from and its sha256, so a copy can be checked later.

export interface ManifestEntry {
  path: string
  bytes: number
  sha256: string
  source: string
  /** What checked the bytes against a published hash: sha512sum.txt, sha256 (given), ...; null when nothing did. */
  verified: string | null
  addedAt: string
  /** What the content is, told from its bytes (formats.ts): "x86_64 bzImage (boot protocol 2.15, Linux 6.12.40)". */
  format?: string
}

/** How `importFile` checks what it copies in. */
export interface ImportOptions {
  /** Where the file came from, for the manifest (default `file:<src>`). */
  source?: string
  /** The file's SHA-256 as published (64 hex digits): the import fails unless the bytes match. */
  sha256?: string
  /** The file's SHA-512 (128 hex digits), likewise. */
  sha512?: string
  /**
   * A checksum list in `sha256sum`/`sha512sum` output format (a Talos release's sha256sum.txt or sha512sum.txt):
   * the file is looked up by `checksumName`, else its own base name, else the release's name for what it is
   * imported as (vmlinuz-<arch>, kernel-<arch>, initramfs-<arch>.xz); the import fails when the list does not
   * name it or the hash differs.
   */
  checksums?: string
  /** The name to find in `checksums` (default: see there). */
  checksumName?: string
  /** What the content must be; default: what the destination needs (formats.ts expectationFor), null: no check. */
  expect?: AssetExpectation | null
  /**
   * What already vouched for the bytes, for the manifest's `verified` (e.g. the Debian archive's SHA256 of the .deb
   * the file came out of), when the caller checked them itself.
   */
  verifiedBy?: string
}

/** How `recordFile` describes a file already in the store. */
export interface RecordOptions {
  source: string
  verified?: string | null
  /** What the content must be; default: what the place needs (formats.ts expectationFor), null: no check. */
  expect?: AssetExpectation | null
}

/** Names a Talos release gives the file that goes to `rel` (talos/.../<arch>/vmlinuz → vmlinuz-<arch>, kernel-<arch>). */
function releaseNames(rel: string): string[] {
  const parts = rel.split(/[\\/]/)
  if (parts[0] !== 'talos' || parts.length < 4) return []
  const arch = parts[parts.length - 2]!
  const name = parts[parts.length - 1]!
  if (name === 'vmlinuz') return [`vmlinuz-${arch}`, `kernel-${arch}`]
  if (name.startsWith('initramfs')) return [`initramfs-${arch}.xz`]
  return []
}

async function describeFile(file: string): Promise<string> {
  const { head, size } = await readHead(file)
  return identify(head, size).description
}

const short = (hex: string) => `${hex.slice(0, 16)}…`

interface WantedHash {
  alg: 'sha256' | 'sha512'
  hex: string
  /** What said so: "sha256 (given)", "sha512sum.txt". */
  from: string
}

/** The hashes an import must match, from its options; throws on a malformed hash or a list that lacks the file. */
function wantedHashes(src: string, rel: string, o: ImportOptions): WantedHash[] {
  const out: WantedHash[] = []
  for (const [alg, len] of [['sha256', 64], ['sha512', 128]] as const) {
    const given = o[alg]
    if (given === undefined) continue
    const hex = given.trim().toLowerCase()
    if (!new RegExp(`^[0-9a-f]{${len}}$`).test(hex)) throw new RackbootError('RB_ERR_VALIDATION', `${src}: the ${alg} given is not ${len} hex digits: '${given}'`)
    out.push({ alg, hex, from: `${alg} (given)` })
  }
  if (o.checksums !== undefined) {
    let text: string
    try {
      text = readFileSync(o.checksums, 'utf8')
    } catch (cause) {
      throw new RackbootError('RB_ERR_NOT_FOUND', `cannot read the checksum list ${o.checksums}: ${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message}`, { cause })
    }
    const sums = parseChecksums(text)
    if (sums.size === 0) throw new RackbootError('RB_ERR_VALIDATION', `${o.checksums} holds no sha256sum or sha512sum lines ('<hex>  <name>')`)
    // Lists made in another directory name files with a path (_out/vmlinuz-amd64): match on the base name too.
    const byBase = new Map([...sums].map(([name, hex]) => [basename(name), hex]))
    const names = o.checksumName ? [o.checksumName] : [...new Set([basename(src), ...releaseNames(rel)])]
    const name = names.find((n) => sums.has(n) || byBase.has(n))
    if (!name) throw new RackbootError('RB_ERR_VALIDATION', `${src}: ${o.checksums} lists no ${names.join(' or ')}`)
    const hex = sums.get(name) ?? byBase.get(name)!
    out.push({ alg: hex.length === 128 ? 'sha512' : 'sha256', hex, from: basename(o.checksums) })
  }
  return out
}

export interface AssetStoreOptions {
  dir: string
  progress?: (label: string, total: number | null) => Progress
  fetchImpl?: typeof fetch
  /** Lines a person should read (a download that could not be verified, and why); default: stderr. */
  notice?: (line: string) => void
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
  const notice = options.notice ?? ((line: string) => void process.stderr.write(`${line}\n`))
  /** A checksum list, parsed; or why there is none ("HTTP 404", "connection refused", "no checksum lines"). */
  const fetchList = async (url: string): Promise<Map<string, string> | string> => {
    try {
      const res = await (options.fetchImpl ?? fetch)(url, { redirect: 'follow' })
      if (!res.ok) return `HTTP ${res.status}`
      const sums = parseChecksums(await res.text())
      return sums.size ? sums : 'no checksum lines in it'
    } catch (cause) {
      return `cannot fetch it: ${(cause as Error).message}`
    }
  }
  const get = (url: string, rel: string): Promise<DownloadResult> =>
    download(url, join(dir, rel), { label: rel, ...(options.progress ? { progress: options.progress } : {}), ...(options.fetchImpl ? { fetchImpl: options.fetchImpl } : {}) })

  return {
    dir,
    manifest: readManifest,

    /**
     * Talos kernel + initramfs from a release (verified against its sha512sum.txt and sha256sum.txt, which Talos
     * publishes with every release: talos.md §1.1) or the Image Factory (which publishes no checksum for community
     * users: the hash is recorded, and a notice says so). Each file's bytes are checked to be a kernel for `arch` and
     * an initramfs before they take the place of anything.
     */
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
      const lists: Array<{ name: string; sums: Map<string, string> }> = []
      if (input.schematic) {
        notice(`Image Factory files come with no public checksum (the factory's .sha256/.sha512 are Enterprise-only): ${files.map((f) => f.remote).join(' and ')} are checked for format only; their sha256 is recorded in manifest.json`)
      } else {
        const missing: string[] = []
        for (const name of ['sha512sum.txt', 'sha256sum.txt']) {
          const url = `${input.releasesUrl}/${input.version}/${name}`
          const got = await fetchList(url)
          if (typeof got === 'string') missing.push(`${name}: ${got}`)
          else lists.push({ name, sums: got })
        }
        if (lists.length === 0) notice(`Talos ${input.version} publishes no checksum list here (${missing.join('; ')}): ${files.map((f) => f.remote).join(' and ')} are checked for format only; their sha256 is recorded in manifest.json`)
      }
      const out: ManifestEntry[] = []
      for (const f of files) {
        const rel = join(target, f.local)
        const partial = join(dir, `${rel}.download`)
        const got = await get(f.url, `${rel}.download`)
        // What the server sent is wrong, not what the user asked: a failure (exit 1), as a broken download is.
        const discard = (message: string, cause?: unknown): never => {
          rmSync(partial, { force: true })
          throw new RackbootError('RB_ERR_INTERNAL', `${message}; file discarded`, cause === undefined ? {} : { cause })
        }
        const verifiedBy: string[] = []
        for (const list of lists) {
          const want = list.sums.get(f.remote)
          if (!want) continue
          const alg = want.length === 128 ? 'sha512' : 'sha256'
          if (want !== got[alg]) discard(`${f.remote}: ${alg} mismatch against the release's ${list.name} (expected ${short(want)}, got ${short(got[alg])})`)
          verifiedBy.push(list.name)
        }
        if (lists.length > 0 && verifiedBy.length === 0) notice(`${f.remote}: the release's ${lists.map((l) => l.name).join(' and ')} do not list it: checked for format only; its sha256 is recorded in manifest.json`)
        let format: string
        try {
          format = (await checkFile(partial, expectationFor(rel)!, f.remote)).format
        } catch (cause) {
          return discard(`${(cause as Error).message} (downloaded from ${f.url})`, cause)
        }
        renameSync(partial, join(dir, rel))
        const entry: ManifestEntry = { path: rel, bytes: got.bytes, sha256: got.sha256, source: f.url, verified: verifiedBy[0] ?? null, addedAt: new Date().toISOString(), format }
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
        if (existsSync(src)) out.push(await this.importFile(src, join('ipxe', name), { source: `debian:${src}` }))
      }
      if (out.length === 0) throw new RackbootError('RB_ERR_NOT_FOUND', `${fromDir} holds none of ${IPXE_FILES.join(', ')}`)
      return out
    },

    /**
     * Copies a local file into the store at `rel` (offline sites bring their own images), checking on the way that
     * its bytes are what that place needs (formats.ts: a kernel for the declared arch, an initramfs, an iPXE binary)
     * and, when given, that they match a published hash (`options.sha256`, `options.checksums`). A file that fails
     * is not imported: one line names it and what it is instead. The third argument may be the source string alone.
     */
    async importFile(src: string, rel: string, options: ImportOptions | string = {}): Promise<ManifestEntry> {
      const o: ImportOptions = typeof options === 'string' ? { source: options } : options
      if (!existsSync(src) || !statSync(src).isFile()) throw new RackbootError('RB_ERR_NOT_FOUND', `no such file: ${src}`)
      if (rel.split(/[\\/]/).some((p) => p === '..' || p === '') || rel.startsWith('/')) {
        throw new RackbootError('RB_ERR_VALIDATION', `asset path must stay inside the assets directory: ${rel}`)
      }
      const wanted = wantedHashes(src, rel, o)
      const expect = o.expect !== undefined ? o.expect : expectationFor(rel)
      // Fail fast, before copying a large file: its head is enough to tell what it is.
      if (expect) await checkFile(src, expect, src)
      const dest = join(dir, rel)
      const tmp = `${dest}.tmp`
      mkdirSync(join(dest, '..'), { recursive: true })
      const h256 = createHash('sha256')
      const h512 = wanted.some((w) => w.alg === 'sha512') ? createHash('sha512') : null
      let format: string
      try {
        await pipeline(createReadStream(src), async function* (source: AsyncIterable<Buffer>) {
          for await (const chunk of source) {
            h256.update(chunk)
            h512?.update(chunk)
            yield chunk
          }
        }, createWriteStream(tmp))
        // Checked again on the copy: what is recorded is what was checked, even if the source changed meanwhile.
        format = expect ? (await checkFile(tmp, expect, src)).format : await describeFile(tmp)
        const got = { sha256: h256.digest('hex'), sha512: h512?.digest('hex') ?? '' }
        for (const w of wanted) {
          if (got[w.alg] !== w.hex) {
            throw new RackbootError('RB_ERR_VALIDATION', `${src}: ${w.alg} mismatch against ${w.from} (expected ${short(w.hex)}, got ${short(got[w.alg])}): not imported`)
          }
        }
        renameSync(tmp, dest)
        const vouched = [...new Set(wanted.map((w) => w.from)), ...(o.verifiedBy ? [o.verifiedBy] : [])]
        const entry: ManifestEntry = {
          path: rel, bytes: statSync(dest).size, sha256: got.sha256, source: o.source ?? `file:${src}`,
          verified: vouched.length ? vouched.join(', ') : null, addedAt: new Date().toISOString(), format,
        }
        record(entry)
        return entry
      } catch (cause) {
        rmSync(tmp, { force: true })
        if (isRackbootError(cause)) throw cause
        throw new RackbootError('RB_ERR_STORAGE', `cannot copy ${src} to ${dest}: ${(cause as Error).message}`, { cause })
      }
    },

    /**
     * Records a file something else wrote into the store (the agent build writes agent/ itself): its size, hash and
     * what it is, so `list` can check it later. The bytes are checked as `importFile` checks a copy.
     */
    async recordFile(rel: string, options: RecordOptions): Promise<ManifestEntry> {
      if (rel.split(/[\\/]/).some((p) => p === '..' || p === '') || rel.startsWith('/')) {
        throw new RackbootError('RB_ERR_VALIDATION', `asset path must stay inside the assets directory: ${rel}`)
      }
      const file = join(dir, rel)
      if (!existsSync(file) || !statSync(file).isFile()) throw new RackbootError('RB_ERR_NOT_FOUND', `no such file in the assets directory: ${rel}`)
      const expect = options.expect !== undefined ? options.expect : expectationFor(rel)
      const format = expect ? (await checkFile(file, expect, rel)).format : await describeFile(file)
      const entry: ManifestEntry = {
        path: rel, bytes: statSync(file).size, sha256: await sha256File(file), source: options.source,
        verified: options.verified ?? null, addedAt: new Date().toISOString(), format,
      }
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
