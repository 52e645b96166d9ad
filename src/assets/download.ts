import { createHash } from 'node:crypto'
import { createWriteStream, mkdirSync, renameSync, rmSync } from 'node:fs'
import { dirname } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { RackbootError } from '../errors.js'
import { createProgress, type Progress } from './progress.js'

export interface DownloadResult {
  file: string
  bytes: number
  sha256: string
  sha512: string
}

/**
 * Downloads `url` to `file` (through a temporary file, so a broken download never leaves a half file behind),
 * hashing as it goes, with a progress bar. Follows redirects (the Image Factory answers 302).
 */
export async function download(url: string, file: string, options: { label?: string; progress?: (label: string, total: number | null) => Progress; fetchImpl?: typeof fetch } = {}): Promise<DownloadResult> {
  const res = await (options.fetchImpl ?? fetch)(url, { redirect: 'follow' }).catch((cause: unknown) => {
    throw new RackbootError('RB_ERR_INTERNAL', `cannot reach ${url}: ${(cause as Error).message}`, { cause })
  })
  if (!res.ok || !res.body) throw new RackbootError('RB_ERR_NOT_FOUND', `download of ${url} failed: HTTP ${res.status}`)
  const total = Number(res.headers.get('content-length')) || null
  const progress = (options.progress ?? createProgress)(options.label ?? url.split('/').pop() ?? url, total)
  const h256 = createHash('sha256')
  const h512 = createHash('sha512')
  let bytes = 0
  mkdirSync(dirname(file), { recursive: true })
  const tmp = `${file}.part`
  try {
    await pipeline(
      Readable.fromWeb(res.body as never),
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          h256.update(chunk)
          h512.update(chunk)
          bytes += chunk.length
          progress.update(bytes)
          yield chunk
        }
      },
      createWriteStream(tmp),
    )
  } catch (cause) {
    rmSync(tmp, { force: true })
    throw new RackbootError('RB_ERR_INTERNAL', `download of ${url} broke off after ${bytes} bytes: ${(cause as Error).message}`, { cause })
  }
  if (total !== null && bytes !== total) {
    rmSync(tmp, { force: true })
    throw new RackbootError('RB_ERR_INTERNAL', `download of ${url} is short: ${bytes} of ${total} bytes`)
  }
  renameSync(tmp, file)
  progress.finish(`${options.label ?? file}: ${(bytes / 1048576).toFixed(1)} MiB`)
  return { file, bytes, sha256: h256.digest('hex'), sha512: h512.digest('hex') }
}

/** Parses `sha256sum`/`sha512sum` output: `<hex>  <name>` lines (a `*` before the name marks binary mode). */
export function parseChecksums(text: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const line of text.split('\n')) {
    const m = /^([0-9a-fA-F]{64}|[0-9a-fA-F]{128})\s+\*?(.+?)\s*$/.exec(line)
    if (m) out.set(m[2]!, m[1]!.toLowerCase())
  }
  return out
}
