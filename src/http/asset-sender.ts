import { close, constants, fstat, open, read } from 'node:fs'
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'

// How boot assets (kernels and initramfs images of ~100 MiB, iPXE loaders) go on the wire. A boot storm is many
// clients on one file, so what matters is CPU per byte and that every client moves: the file is read in large
// chunks (512 KiB: 2,048 reads per GiB, not 65,536 of 16 KiB) into buffers that are reused rather than allocated
// per chunk, and a connection's next read starts only when its socket has taken the last chunk (the kernel's send
// buffer keeps the wire busy meanwhile). Every connection thus holds one buffer and advances as fast as its own
// client reads, one chunk per turn, and none can crowd out the others. (Reading one chunk ahead, DEPTH 2, measured
// no faster on 200 clients and doubles the memory; bench/assets.bench.ts.)
// Segment sizes (issue 19): Node's HTTP server sets TCP_NODELAY, so against GRUB's fixed 8 KiB window (upstream
// net/tcp.c, an ACK per segment) the kernel fills every window with a sub-MSS tail (8192 mod 1460 = 892 bytes): ~106
// a MiB, 5.6 % more segments than nginx, whose tcp_nopush (TCP_CORK) holds that tail back. Nagle does not help (its
// Minshall check lets the tail go), nor do MSS-multiple reads: the writes add no short segments of their own while
// the client is the bottleneck. Only TCP_CORK or MSG_MORE would, and Node exposes neither.

/** Bytes read from the file at a time. */
export const CHUNK_BYTES = 512 * 1024
/** Chunks one transfer may have read and not yet handed to the kernel. */
const DEPTH = 1
/** Idle buffers kept for the next transfers; more are let go. */
const POOL_MAX = 64
/** Idle buffers kept once no transfer is running (the rest of a storm's go back to the system). */
const POOL_IDLE = 4
/** A transfer whose socket took nothing for this long is cut (a client that stopped reading or vanished). */
export const DEFAULT_STALL_MS = 60_000

const free: Buffer[] = []
function takeBuffer(): Buffer {
  return free.pop() ?? Buffer.allocUnsafeSlow(CHUNK_BYTES)
}
function giveBuffer(buf: Buffer): void {
  if (free.length < POOL_MAX) free.push(buf)
}

/** An open asset: the descriptor every byte of one answer is read from (a rename mid-download cannot mix files). */
export interface OpenAsset {
  fd: number
  size: number
  mtimeMs: number
  /** Strong: size and modification time, as nginx forms its own. */
  etag: string
  lastModified: string
  contentType: string
}

const TYPES: Record<string, string> = {
  xz: 'application/x-xz',
  gz: 'application/gzip',
  zst: 'application/zstd',
  tar: 'application/x-tar',
  json: 'application/json',
  txt: 'text/plain; charset=utf-8',
  ipxe: 'text/plain; charset=utf-8',
  cfg: 'text/plain; charset=utf-8',
  yaml: 'text/yaml; charset=utf-8',
  yml: 'text/yaml; charset=utf-8',
  sha256: 'text/plain; charset=utf-8',
  sha512: 'text/plain; charset=utf-8',
}

/** The Content-Type by file name; boot files (vmlinuz, *.efi, *.kpxe, *.img, *.iso) are octet streams. */
export function assetContentType(path: string): string {
  const name = path.slice(path.lastIndexOf('/') + 1)
  const dot = name.lastIndexOf('.')
  return (dot > 0 && TYPES[name.slice(dot + 1).toLowerCase()]) || 'application/octet-stream'
}

/** The ETag of a file of this size and modification time. */
export function assetEtag(size: number, mtimeMs: number): string {
  return `"${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}"`
}

function closeFd(fd: number): void {
  close(fd, () => undefined)
}

/**
 * Opens a regular file for sending (the last component is not followed if it is a symlink: the caller has resolved
 * the path). Null when there is none there (missing, a directory, a link swapped in since); other errors throw.
 */
export function openAsset(path: string): Promise<OpenAsset | null> {
  return new Promise((resolve, reject) => {
    open(path, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0), (err, fd) => {
      if (err) {
        const code = err.code
        if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP' || code === 'EISDIR' || code === 'EACCES' || code === 'ENAMETOOLONG') return resolve(null)
        return reject(err)
      }
      fstat(fd, (err2, st) => {
        if (err2 || !st.isFile()) {
          closeFd(fd)
          return err2 ? reject(err2) : resolve(null)
        }
        resolve({
          fd, size: st.size, mtimeMs: st.mtimeMs, etag: assetEtag(st.size, st.mtimeMs),
          lastModified: st.mtime.toUTCString(), contentType: assetContentType(path),
        })
      })
    })
  })
}

/** Gives back a descriptor openAsset returned, when it is not handed to sendAsset after all. */
export function closeAsset(file: OpenAsset): void {
  closeFd(file.fd)
}

export type ByteRange = { start: number; end: number }

/**
 * A Range header against `size` bytes (RFC 9110 §14.1.2): one satisfiable range, 'unsatisfiable' (416), or null to
 * send the whole file (no header, another unit, several ranges, a malformed one: §14.2 lets a server ignore those).
 */
export function parseByteRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | null {
  if (!header) return null
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header)
  if (!m) return null
  const first = m[1]!
  const last = m[2]!
  if (first === '') {
    if (last === '') return null
    // Suffix: the last N bytes (all of them when the file is shorter).
    const n = Number(last)
    if (n === 0 || size === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - n), end: size - 1 }
  }
  const start = Number(first)
  if (last !== '' && Number(last) < start) return null
  if (start >= size) return 'unsatisfiable'
  return { start, end: last === '' ? size - 1 : Math.min(Number(last), size - 1) }
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name]
  return Array.isArray(v) ? v.join(', ') : v
}

function entityTags(list: string): string[] {
  return list.split(',').map((t) => t.trim()).filter(Boolean)
}

/** Weak comparison (If-None-Match): W/ prefixes do not count. */
function weakMatch(list: string, etag: string): boolean {
  if (list.trim() === '*') return true
  const bare = etag.replace(/^W\//, '')
  return entityTags(list).some((t) => t.replace(/^W\//, '') === bare)
}

/** Strong comparison (If-Match, If-Range): a weak tag never matches. */
function strongMatch(list: string, etag: string): boolean {
  if (list.trim() === '*') return true
  return !etag.startsWith('W/') && entityTags(list).some((t) => t === etag)
}

/** Whole seconds, as HTTP dates carry them; NaN for a malformed date. */
function httpSeconds(date: string): number {
  return Math.floor(Date.parse(date) / 1000)
}

/** What answers a request for a file: the status, the head, and the bytes [start, end] it covers. */
export interface AssetAnswer {
  status: 200 | 206 | 304 | 412 | 416
  headers: OutgoingHttpHeaders
  /** The bytes the answer covers (null: none, as for 304, 412, 416 and an empty file). */
  span: ByteRange | null
  /** Whether they go in the body (not for HEAD). */
  body: boolean
}

/**
 * The answer to GET or HEAD for `file` (RFC 9110 §13.2.2's order): If-Match / If-Unmodified-Since (412),
 * If-None-Match / If-Modified-Since (304), then Range (206 or 416) unless If-Range names another version.
 */
export function answerFor(method: string, headers: IncomingHttpHeaders, file: OpenAsset): AssetAnswer {
  const { size, etag, lastModified } = file
  const head: OutgoingHttpHeaders = { 'Accept-Ranges': 'bytes', 'Last-Modified': lastModified, ETag: etag }
  const mtime = Math.floor(file.mtimeMs / 1000)

  const ifMatch = header(headers, 'if-match')
  const ifUnmodified = header(headers, 'if-unmodified-since')
  if (ifMatch ? !strongMatch(ifMatch, etag) : ifUnmodified !== undefined && mtime > httpSeconds(ifUnmodified)) {
    return { status: 412, headers: { ...head, 'Content-Length': 0 }, span: null, body: false }
  }
  const ifNoneMatch = header(headers, 'if-none-match')
  const ifModified = header(headers, 'if-modified-since')
  if (ifNoneMatch ? weakMatch(ifNoneMatch, etag) : ifModified !== undefined && mtime <= httpSeconds(ifModified)) {
    return { status: 304, headers: head, span: null, body: false }
  }

  head['Content-Type'] = file.contentType
  let range = parseByteRange(header(headers, 'range'), size)
  const ifRange = header(headers, 'if-range')?.trim()
  // Another version than the client has part of: the whole (current) file. A date must be the exact Last-Modified.
  if (range && ifRange && !(ifRange.startsWith('"') || ifRange.startsWith('W/') ? strongMatch(ifRange, etag) : httpSeconds(ifRange) === mtime)) range = null
  if (range === 'unsatisfiable') return { status: 416, headers: { ...head, 'Content-Range': `bytes */${size}`, 'Content-Length': 0 }, span: null, body: false }
  if (range) {
    head['Content-Range'] = `bytes ${range.start}-${range.end}/${size}`
    head['Content-Length'] = range.end - range.start + 1
    return { status: 206, headers: head, span: range, body: method !== 'HEAD' }
  }
  head['Content-Length'] = size
  return { status: 200, headers: head, span: size === 0 ? null : { start: 0, end: size - 1 }, body: method !== 'HEAD' && size > 0 }
}

/** How one answer ended. */
export interface TransferResult {
  status: number
  /** Content-Length of the answer (body bytes promised). */
  length: number
  /** Body bytes the kernel took (sent or queued on the socket). */
  sent: number
  /** The whole answer was handed to the kernel. */
  complete: boolean
  /** The range sent ended at the file's last byte. */
  toEnd: boolean
  /** Why it stopped early: 'aborted' (the client went away), 'stalled' (took nothing for stallMs), or a read error. */
  failure: 'aborted' | 'stalled' | Error | null
}

// Transfers in progress, swept for stalls by one timer that runs only while there are any.
interface Live {
  res: ServerResponse
  progressAt: number
  stalled: boolean
  stallMs: number
}
const live = new Set<Live>()
let sweeper: NodeJS.Timeout | null = null
function watch(t: Live): void {
  live.add(t)
  if (!sweeper) {
    sweeper = setInterval(() => {
      const now = Date.now()
      for (const l of live) {
        if (now - l.progressAt > l.stallMs) {
          l.stalled = true
          l.res.destroy()
        }
      }
    }, 1_000)
    sweeper.unref()
  }
}
function unwatch(t: Live): void {
  live.delete(t)
  if (live.size === 0 && sweeper) {
    clearInterval(sweeper)
    sweeper = null
    if (free.length > POOL_IDLE) free.length = POOL_IDLE
  }
}

export interface SendOptions {
  stallMs?: number
}

/**
 * Answers `req` with `file` on `res` (a raw response nobody else writes to) and closes the descriptor; `done` is
 * called once, when the answer has gone to the kernel or was cut short. The head goes out through res.writeHead, so
 * hooks on it (canonical header case) apply. A client that goes away ends the transfer quietly: the descriptor is
 * closed once no read is pending on it.
 */
export function sendAsset(req: IncomingMessage, res: ServerResponse, file: OpenAsset, done: (result: TransferResult) => void, options: SendOptions = {}): void {
  const answer = answerFor(req.method ?? 'GET', req.headers, file)
  const length = Number(answer.headers['Content-Length'] ?? 0)
  const body = answer.body ? answer.span : null
  const toEnd = answer.status === 200 || (answer.status === 206 && answer.span!.end === file.size - 1)
  const t: Live = { res, progressAt: Date.now(), stalled: false, stallMs: options.stallMs ?? DEFAULT_STALL_MS }

  let fdOpen = true
  let reading = false
  let inflight = 0
  let sent = 0
  let over = false
  let readError: Error | null = null
  let pos = body ? body.start : 0
  const end = body ? body.end + 1 : 0

  const release = () => {
    if (fdOpen && !reading) {
      fdOpen = false
      closeFd(file.fd)
    }
  }
  const finish = (complete: boolean) => {
    if (over) return
    over = true
    unwatch(t)
    release()
    done({
      status: answer.status, length, sent: complete && body ? length : sent, complete, toEnd,
      failure: complete ? null : readError ?? (t.stalled ? 'stalled' : 'aborted'),
    })
  }
  // Gone while the file was being found and opened: its 'close' has been and will not come again.
  if (res.destroyed) return finish(false)
  res.once('finish', () => finish(true))
  res.once('close', () => finish(false))

  res.writeHead(answer.status, answer.headers)
  if (!body) {
    release()
    res.end()
    return
  }
  watch(t)

  const pump = () => {
    if (over || reading || inflight >= DEPTH || pos >= end) return
    reading = true
    const buf = takeBuffer()
    read(file.fd, buf, 0, Math.min(buf.length, end - pos), pos, (err, n) => {
      reading = false
      if (over || res.destroyed) {
        giveBuffer(buf)
        release()
        return
      }
      if (err || n === 0) {
        // A read error, or the file shrank under us: the promised length cannot be kept, so the connection goes.
        giveBuffer(buf)
        readError = err ?? new Error(`the file ended at byte ${pos} (shorter than when opened)`)
        res.destroy()
        return
      }
      pos += n
      inflight++
      const last = pos >= end
      res.write(n === buf.length ? buf : buf.subarray(0, n), (werr) => {
        inflight--
        // The kernel has the bytes: the buffer is free. (After an error it is left to the collector, to be safe.)
        if (werr) return
        giveBuffer(buf)
        sent += n
        t.progressAt = Date.now()
        pump()
      })
      if (last) res.end()
      else pump()
    })
  }
  pump()
}
