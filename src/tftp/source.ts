// The content port of the TFTP server: what a path means. A root-jailed file source over the assets directory, a
// routing source for generated content (handlers by path, e.g. per-machine scripts), and helpers to build content.
import { open as openFile, realpath, readlink, type FileHandle } from 'node:fs/promises'
import { constants as fsConstants } from 'node:fs'
import { resolve, sep } from 'node:path'
import { RackbootError } from '../errors.js'
import { packetSlab, packetize } from './packet.js'

export interface TftpClient {
  address: string
  port: number
}

/** An open piece of content. `read` returns exactly `length` bytes, fewer only at the end of the content. */
export interface TftpContent {
  /** Byte count, or null when unknown in advance (then tsize is not offered and the end is found by a short read). */
  size: number | null
  read(offset: number, length: number): Promise<Buffer>
  close(): Promise<void>
  /** Names these exact bytes (a file's device, inode, size and mtime), when they may be cached and shared. */
  identity?: string
  /**
   * Fills `targets` in order with the bytes from `offset` on and returns how many were read (fewer only at the end).
   * Optional: a file reads straight into ready DATA packets with it (readPackets), with no copy on the main thread.
   */
  readInto?(offset: number, targets: Buffer[]): Promise<number>
}

/**
 * `count` DATA packets (block numbers from `firstBlock`) holding the `length` bytes at `offset`, laid out as
 * packetize() would: read straight into the packets where the content can (readInto), else read and cut.
 */
export async function readPackets(content: TftpContent, offset: number, length: number, blksize: number, firstBlock = 1, count = Math.floor(length / blksize) + 1): Promise<Buffer[]> {
  if (content.readInto) {
    // A piece of one preadv at a time, each laid out just before its read: building a whole 16 MiB file's packets
    // at once held the event loop ~60 ms (blksize 1468), in the middle of the transfer that missed the cache.
    const packets: Buffer[] = []
    for (let i = 0; i < count; i += MAX_IOVECS) {
      const n = Math.min(MAX_IOVECS, count - i)
      const at = i * blksize
      const want = Math.max(0, Math.min(n * blksize, length - at))
      const piece = packetSlab(want, blksize, firstBlock + i, n)
      const got = want > 0 ? await content.readInto(offset + at, piece.payloads) : 0
      if (got !== want) throw new Error(`short read at offset ${offset}: ${at + got} of ${length} bytes (content changed?)`)
      for (const p of piece.packets) packets.push(p)
    }
    return packets
  }
  const data = length > 0 ? await content.read(offset, length) : Buffer.alloc(0)
  if (data.length !== length) throw new Error(`short read at offset ${offset}: ${data.length} of ${length} bytes (content changed?)`)
  return packetize(data, blksize, firstBlock, count)
}

/** iovecs per preadv (Linux IOV_MAX). */
const MAX_IOVECS = 1024

/** A refused request: becomes TFTP ERROR 2 (access violation) with `reason` as its message. */
export interface TftpDenied {
  denied: string
}

export type TftpOpenResult = TftpContent | TftpDenied | null

export interface TftpSource {
  /** `path` as the client sent it. null means "no such file" (TFTP ERROR 1). */
  open(path: string, client: TftpClient): Promise<TftpOpenResult>
}

export function isDenied(result: TftpOpenResult): result is TftpDenied {
  return result !== null && typeof (result as TftpDenied).denied === 'string'
}

export const MAX_PATH_LENGTH = 1024

export type PathCheck = { ok: true; path: string } | { ok: false; reason: string }

/**
 * Turns a client's file name into a relative path inside the root, or says why not. Leading slashes mean "from the
 * root" (PXE configs often say `/ipxe.efi`), backslashes are separators (Windows-style clients), and any `..`
 * segment, NUL or control character is refused outright rather than resolved.
 */
export function normalizeRequestPath(raw: string): PathCheck {
  if (raw.length === 0) return { ok: false, reason: 'empty file name' }
  if (raw.length > MAX_PATH_LENGTH) return { ok: false, reason: 'file name too long' }
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(raw)) return { ok: false, reason: 'control character in file name' }
  const segments = raw.replaceAll('\\', '/').split('/')
  const kept: string[] = []
  for (const s of segments) {
    if (s === '' || s === '.') continue
    if (s === '..') return { ok: false, reason: "'..' in file name" }
    kept.push(s)
  }
  if (kept.length === 0) return { ok: false, reason: 'no file named' }
  return { ok: true, path: kept.join('/') }
}

/** Content from memory: generated scripts and the like. */
export function bufferContent(data: Buffer | string): TftpContent {
  const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data
  return {
    size: buf.length,
    read: async (offset, length) => buf.subarray(Math.min(offset, buf.length), Math.min(offset + length, buf.length)),
    close: async () => {},
  }
}

function fileContent(handle: FileHandle, size: number, identity: string): TftpContent {
  let closed = false
  return {
    size,
    identity,
    async read(offset, length) {
      const want = Math.max(0, Math.min(length, size - offset))
      const buf = Buffer.allocUnsafe(want)
      let got = 0
      while (got < want) {
        const { bytesRead } = await handle.read(buf, got, want - got, offset + got)
        if (bytesRead === 0) break
        got += bytesRead
      }
      return got === want ? buf : buf.subarray(0, got)
    },
    async readInto(offset, targets) {
      const bufs = targets.filter((b) => b.length > 0)
      let i = 0
      let pos = offset
      while (i < bufs.length) {
        const { bytesRead } = await handle.readv(bufs.slice(i, i + MAX_IOVECS), pos)
        if (bytesRead === 0) break
        pos += bytesRead
        // Skip what was filled; a partly filled buffer continues where the read stopped.
        let n = bytesRead
        while (i < bufs.length && n >= bufs[i]!.length) n -= bufs[i++]!.length
        if (n > 0) bufs[i] = bufs[i]!.subarray(n)
      }
      return pos - offset
    },
    async close() {
      if (closed) return
      closed = true
      await handle.close()
    },
  }
}

function within(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep)
}

export interface FileSourceDeps {
  /** The directory served (settings.assetsDir). */
  root: string
}

/**
 * Serves regular files under `root`. Symlinks are followed only while they stay inside the root: the resolved path
 * is checked, the file is opened by that path with O_NOFOLLOW, and on Linux the opened descriptor's own path is
 * checked again, so a link swapped in between the check and the open cannot lead out.
 */
export function createFileSource(deps: FileSourceDeps): TftpSource {
  const rootAbs = resolve(deps.root)
  let rootReal: Promise<string> | null = null
  const realRoot = () => (rootReal ??= realpath(rootAbs).catch((err: unknown) => {
    rootReal = null
    throw new RackbootError('RB_ERR_NOT_FOUND', `TFTP root ${rootAbs} is not accessible`, { cause: err })
  }))

  return {
    async open(raw) {
      const check = normalizeRequestPath(raw)
      if (!check.ok) return { denied: check.reason }
      const root = await realRoot()
      let real: string
      try {
        real = await realpath(resolve(root, check.path))
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'ENOENT' || code === 'ENOTDIR') return null
        if (code === 'EACCES' || code === 'ELOOP') return { denied: 'permission denied' }
        throw new RackbootError('RB_ERR_INTERNAL', 'cannot resolve TFTP path', { cause: err })
      }
      if (!within(root, real)) return { denied: 'outside the TFTP root' }
      let handle: FileHandle
      try {
        handle = await openFile(real, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'ENOENT' || code === 'ENOTDIR') return null
        if (code === 'EACCES' || code === 'ELOOP' || code === 'EPERM') return { denied: 'permission denied' }
        throw new RackbootError('RB_ERR_INTERNAL', 'cannot open TFTP file', { cause: err })
      }
      try {
        const st = await handle.stat()
        if (!st.isFile()) {
          await handle.close()
          return { denied: 'not a regular file' }
        }
        if (process.platform === 'linux') {
          const opened = await readlink(`/proc/self/fd/${handle.fd}`).catch(() => null)
          if (opened !== null && !within(root, opened)) {
            await handle.close()
            return { denied: 'outside the TFTP root' }
          }
        }
        return fileContent(handle, st.size, `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`)
      } catch (err) {
        await handle.close().catch(() => {})
        throw new RackbootError('RB_ERR_INTERNAL', 'cannot stat TFTP file', { cause: err })
      }
    },
  }
}

/** Generated content for one path; null falls through to the next handler and finally the fallback source. */
export type TftpHandler = (path: string, client: TftpClient) => Promise<TftpContent | TftpDenied | null> | TftpContent | TftpDenied | null

export type TftpRoute = string | RegExp | ((path: string) => boolean)

export interface RoutingSource extends TftpSource {
  /** Adds a handler for a normalised path (no leading slash); returns a function that removes it. */
  register(route: TftpRoute, handler: TftpHandler): () => void
}

/**
 * Tries registered handlers in order (matching the normalised path), then the fallback (typically the file
 * source). Unsafe names are refused before any handler sees them.
 */
export function createRoutingSource(deps: { fallback?: TftpSource } = {}): RoutingSource {
  const routes: { route: TftpRoute; handler: TftpHandler }[] = []
  const matches = (route: TftpRoute, path: string) =>
    typeof route === 'string' ? route === path : route instanceof RegExp ? ((route.lastIndex = 0), route.test(path)) : route(path)
  return {
    register(route, handler) {
      const entry = { route, handler }
      routes.push(entry)
      return () => {
        const i = routes.indexOf(entry)
        if (i >= 0) routes.splice(i, 1)
      }
    },
    async open(raw, client) {
      const check = normalizeRequestPath(raw)
      if (!check.ok) return { denied: check.reason }
      for (const { route, handler } of routes) {
        if (!matches(route, check.path)) continue
        const result = await handler(check.path, client)
        if (result !== null) return result
      }
      return deps.fallback ? deps.fallback.open(raw, client) : null
    },
  }
}
