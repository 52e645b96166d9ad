import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { readdir, stat } from 'node:fs/promises'
import { basename, join, relative, sep } from 'node:path'
import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { createAssetStore, type ManifestEntry } from '../../../assets/index.js'
import { RackbootError } from '../../../errors.js'
import type { ApiDeps } from './context.js'
import { errors, Named, Nullable, StringEnum } from './schemas.js'

// `GET /assets`: the boot assets directory as `rackboot assets list` shows it, checked against its manifest.

const KINDS = ['ipxe', 'talos-kernel', 'talos-initramfs', 'agent-kernel', 'agent-initramfs', 'other'] as const
const STATUSES = ['verified', 'recorded', 'changed', 'unrecorded', 'missing'] as const

const AssetSchema = Named('Asset', Type.Object({
  path: Type.String({ description: 'Relative to the assets directory, / separated' }),
  kind: StringEnum(KINDS, { description: 'What the file is, by where it lies: ipxe/..., talos/[schematic/]version/arch/{vmlinuz,initramfs.xz}, agent/{vmlinuz,agent.img}' }),
  talos: Nullable(Type.Object({
    version: Type.String(),
    arch: Type.String(),
    schematic: Nullable(Type.String({ description: 'Image Factory schematic id; null for a release image' })),
  }, { description: 'For Talos kernels and initramfs: which image' })),
  bytes: Nullable(Type.Integer({ description: 'Size on disk; null when the file is missing' })),
  sha256: Nullable(Type.String({ description: 'As the manifest records it (computed when the file was added); null when not in the manifest' })),
  source: Nullable(Type.String({ description: 'Where it came from (a URL, debian:..., file:...), as the manifest records it' })),
  verifiedBy: Nullable(Type.String({ description: 'The published checksum list it was verified against when downloaded (sha512sum.txt), as the manifest records it' })),
  addedAt: Nullable(Type.String({ format: 'date-time' })),
  format: Nullable(Type.String({ description: 'What the content is, told from its bytes when it was added (e.g. "x86_64 bzImage ..."), as the manifest records it' })),
  status: StringEnum(STATUSES, {
    description: 'verified: hashed now, matches the manifest (verify=true); recorded: in the manifest, same size (not hashed now); '
      + 'changed: size or hash differs from the manifest; unrecorded: not in the manifest (copied in by hand); missing: in the manifest, not on disk',
  }),
}, { description: 'A file of the boot assets directory' }))

const AssetList = Named('AssetList', Type.Object({
  dir: Type.String({ description: 'The assets directory on the server' }),
  verified: Type.Boolean({ description: 'Whether the files were hashed now (verify=true)' }),
  items: Type.Array(AssetSchema),
  problems: Type.Integer({ description: 'How many are changed or missing (`rackboot assets list` exits 1 when there are any)' }),
}, { description: 'The boot assets directory' }))

const Query = Type.Object({
  verify: Type.Optional(Type.Boolean({ default: false, description: 'Hash every file and compare with the manifest (reads every byte: seconds for several Talos images); default compares sizes' })),
}, { additionalProperties: false })

/** What a file is, by its place in the directory layout (assets/store.ts). */
export function assetKind(path: string): { kind: (typeof KINDS)[number]; talos: { version: string; arch: string; schematic: string | null } | null } {
  const parts = path.split('/')
  if (parts[0] === 'ipxe') return { kind: 'ipxe', talos: null }
  if (parts[0] === 'agent') {
    if (parts.length === 2 && parts[1] === 'vmlinuz') return { kind: 'agent-kernel', talos: null }
    if (parts.length === 2 && parts[1] === 'agent.img') return { kind: 'agent-initramfs', talos: null }
    return { kind: 'other', talos: null }
  }
  if (parts[0] === 'talos' && (parts.length === 4 || parts.length === 5)) {
    const [schematic, version, arch, file] = parts.length === 5 ? parts.slice(1) : [null, ...parts.slice(1)]
    const talos = { version: version!, arch: arch!, schematic }
    if (file === 'vmlinuz') return { kind: 'talos-kernel', talos }
    if (file === 'initramfs.xz') return { kind: 'talos-initramfs', talos }
  }
  return { kind: 'other', talos: null }
}

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256')
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer)
  return h.digest('hex')
}

async function walk(dir: string): Promise<string[]> {
  let entries
  try {
    entries = await readdir(dir, { withFileTypes: true })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  const out: string[] = []
  for (const e of entries) {
    const full = join(dir, e.name)
    if (e.isDirectory()) out.push(...await walk(full))
    else if (e.isFile()) out.push(full)
  }
  return out
}

/** The assets directory's files with their manifest status (as AssetStore.list, plus kinds and missing files). */
export async function listAssets(dir: string, verify: boolean) {
  const manifest: Record<string, ManifestEntry> = createAssetStore({ dir }).manifest()
  const items = []
  const seen = new Set<string>()
  for (const file of (await walk(dir)).sort()) {
    const rel = relative(dir, file).split(sep).join('/')
    // As AssetStore.list: the manifest itself, READMEs and files being written are not assets.
    if (rel === 'manifest.json' || basename(rel) === 'README.md' || rel.endsWith('.tmp') || rel.endsWith('.part') || rel.endsWith('.download')) continue
    seen.add(rel)
    const entry = manifest[rel]
    const bytes = (await stat(file)).size
    let status: (typeof STATUSES)[number] = 'unrecorded'
    if (entry) {
      if (entry.bytes !== bytes) status = 'changed'
      else if (verify) status = (await sha256File(file)) === entry.sha256 ? 'verified' : 'changed'
      else status = 'recorded'
    }
    items.push({ path: rel, ...assetKind(rel), bytes, sha256: entry?.sha256 ?? null, source: entry?.source ?? null, verifiedBy: entry?.verified ?? null, addedAt: entry?.addedAt ?? null, format: entry?.format ?? null, status })
  }
  for (const [rel, entry] of Object.entries(manifest)) {
    if (seen.has(rel)) continue
    items.push({ path: rel, ...assetKind(rel), bytes: null, sha256: entry.sha256, source: entry.source, verifiedBy: entry.verified ?? null, addedAt: entry.addedAt ?? null, format: entry.format ?? null, status: 'missing' as const })
  }
  items.sort((a, b) => a.path.localeCompare(b.path))
  return { dir, verified: verify, items, problems: items.filter((i) => i.status === 'changed' || i.status === 'missing').length }
}

export const assetRoutes: FastifyPluginAsync<ApiDeps> = async (base, deps) => {
  const app = base.withTypeProvider<TypeBoxTypeProvider>()
  app.get('/assets', {
    config: { scope: 'read' },
    schema: {
      tags: ['assets'], operationId: 'listAssets', summary: 'The boot assets (iPXE, Talos kernels and initramfs, the discovery agent), checked against the manifest',
      querystring: Query, response: { 200: AssetList, ...errors(400, 503) },
    },
  }, async (request) => {
    if (!deps.assetsDir) throw new RackbootError('RB_ERR_NOT_SERVABLE', 'this server was started without an assets directory', { details: null })
    try {
      return await listAssets(deps.assetsDir, request.query.verify ?? false)
    } catch (err) {
      if (err instanceof SyntaxError) {
        throw new RackbootError('RB_ERR_NOT_SERVABLE', `${join(deps.assetsDir, 'manifest.json')} is not valid JSON: ${err.message}`, { cause: err })
      }
      throw err
    }
  })
}
