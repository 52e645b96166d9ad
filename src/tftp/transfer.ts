// One read transfer: the sender's state machine (RFC 1350 lock-step, RFC 7440 windows), with the clock and the
// socket injected so it runs in unit tests without timers or sockets. No I/O of its own besides content reads.
import { encodeError, ErrorCode, packetize } from './packet.js'
import { bufferContent, readPackets, type TftpContent } from './source.js'

export interface TransferClock {
  now(): number
  setTimer(fn: () => void, ms: number): unknown
  clearTimer(handle: unknown): void
}

export const systemClock: TransferClock = {
  now: () => performance.now(),
  setTimer: (fn, ms) => setTimeout(fn, ms),
  clearTimer: (handle) => clearTimeout(handle as NodeJS.Timeout),
}

/**
 * no-ack: the client never acknowledged anything and the transfer gave up early (unackedRetries); evicted: the server
 * ended such a transfer to make room for a new request (see server.ts).
 */
export type TransferOutcome = 'complete' | 'client-error' | 'timeout' | 'no-ack' | 'read-error' | 'cancelled' | 'evicted'

export interface TransferResult {
  ok: boolean
  /** The client ended the transfer with an ERROR packet (e.g. OVMF's tsize probe, "User aborted the transfer"). */
  aborted: boolean
  outcome: TransferOutcome
  error?: string
  /** Payload bytes the client acknowledged: the whole content when ok. */
  bytes: number
  /** Payload bytes put on the wire, retransmissions included. */
  bytesSent: number
  blocksSent: number
  /** DATA (or OACK) packets sent again, after a timeout or a partial window ACK. */
  retransmissions: number
  duplicateAcks: number
  staleAcks: number
  /** Times sending had to wait for a content read (read-ahead fell behind). */
  readWaits: number
}

export interface TransferConfig {
  content: TftpContent
  blksize: number
  windowsize: number
  /** First retransmission timeout. */
  timeoutMs: number
  /** Double the timeout after each retransmission (not when the client fixed it with RFC 2349 timeout). */
  backoff: boolean
  /** Upper bound for the backed-off timeout. */
  maxTimeoutMs?: number
  maxRetries: number
  /**
   * Retransmissions before the client has acknowledged anything (capped by maxRetries). Unset: as after the first
   * ACK. Set: until that ACK the timeout neither backs off nor exceeds unackedTimeoutMs, and giving up ends the
   * transfer as 'no-ack' without an ERROR. A sender that never answers (a flood, or a spoofed source) then holds its
   * slot for about unackedTimeoutMs * (unackedRetries + 1), not the minute of a backed-off maxRetries.
   */
  unackedRetries?: number
  /**
   * Upper bound for the timeout until the first ACK (default timeoutMs), so a client-chosen RFC 2349 timeout of
   * 255 s cannot hold a slot for minutes without ever answering.
   */
  unackedTimeoutMs?: number
  /** The OACK to send first, or null to start with DATA 1. */
  oack: Buffer | null
  send(packet: Buffer): void
  onFinish(result: TransferResult): void
  clock?: TransferClock
  /** Bytes read from the content at once (rounded to whole blocks). */
  chunkBytes?: number
  /** The content already cut into DATA packets (packet-cache.ts): nothing is read during the transfer. */
  packets?: readonly Buffer[]
  /**
   * Windowed transfers only (windowsize > 1, backoff on): adapt to the client. See "Windows that fit the client"
   * below. Unset: every window goes out in one burst and the timeout after an ACK is timeoutMs.
   */
  adaptive?: AdaptiveOptions
}

/**
 * Windows that fit the client. A window is sent back to back, and a client whose socket buffer holds fewer blocks
 * (atftp with the default 208 KiB SO_RCVBUF keeps ~12 of 8 KiB, ~3 of 64 KiB) loses the window's tail every time;
 * it cannot tell (nothing more arrives), so each window then waited out a whole retransmission timeout (1 s):
 * windowsize 16 at blksize 8192 ran at 0.5 MiB/s on loopback. So, as TCP does:
 * - after an ACK (or the OACK's) the timeout follows the measured round trip (RFC 6298: SRTT + 4 RTTVAR, Karn's
 *   rule: no sample from a window that held retransmissions), between minTimeoutMs and 4 times that (never above
 *   timeoutMs). Such early retransmissions do not count against maxRetries (they are retries only once the
 *   timeout is back at timeoutMs), so a client that has gone away is given up on no sooner than before;
 * - a partial ACK says how many blocks reached the client back to back; from then on a window goes out in bursts
 *   of fewer than that, a short pause apart (the client reads meanwhile). Clean windows let the burst grow back
 *   slowly.
 */
export interface AdaptiveOptions {
  /** Floor of the round-trip timeout. */
  minTimeoutMs: number
  /** Runs `fn` after the pause between bursts (default: a 1 ms timer). */
  defer?: (fn: () => void) => void
}

/**
 * The pause between bursts: a timer's millisecond, not just a turn of the loop. A client that holds only part of a
 * window needs to run to read the rest of its socket buffer empty, and on a busy machine a turn of the loop (tens of
 * microseconds) is not enough for it to be scheduled: windows at blksize 8192 kept losing their tail.
 */
const defaultPause = (fn: () => void): void => void setTimeout(fn, 1)

/** Clean windows before the burst grows by one block again. */
const BURST_GROW_WINDOWS = 32

// Up to four chunks live per transfer (one being sent, read-ahead, one kept for a rewind): 64 KiB keeps 500
// concurrent transfers near 128 MiB at worst.
const DEFAULT_CHUNK_BYTES = 64 * 1024
const EMPTY = Buffer.alloc(0)

/**
 * Content cut into ready-to-send DATA packets, one chunk (many blocks) per read. Each chunk is one allocation and
 * its packets are views into it, so sending a block allocates nothing and retransmitting it costs no read.
 */
export class BlockStore {
  /** Number of the final block; Infinity until a short read finds the end of content of unknown size. */
  last: number
  /** Total payload bytes, once known. */
  total: number | null
  readonly chunkBlocks: number
  private readonly chunks = new Map<number, Buffer[]>()
  private readonly loads = new Map<number, Promise<void>>()
  private curIndex = -1
  private cur: Buffer[] | undefined
  private releasedBelow = 0

  constructor(
    private readonly content: TftpContent,
    private readonly blksize: number,
    chunkBytes: number,
    /** Every packet, ready: then there are no chunks to load. */
    private readonly all: readonly Buffer[] | null = null,
  ) {
    this.chunkBlocks = Math.max(1, Math.min(4096, Math.floor(chunkBytes / blksize)))
    this.total = content.size
    this.last = all ? all.length : content.size === null ? Infinity : Math.floor(content.size / blksize) + 1
  }

  chunkOf(block: number): number {
    return Math.floor((block - 1) / this.chunkBlocks)
  }

  get(block: number): Buffer | undefined {
    if (this.all) return this.all[block - 1]
    const k = Math.floor((block - 1) / this.chunkBlocks)
    if (k !== this.curIndex) {
      const c = this.chunks.get(k)
      if (c === undefined) return undefined
      this.curIndex = k
      this.cur = c
    }
    return this.cur![(block - 1) % this.chunkBlocks]
  }

  /** Loads chunk `k`; concurrent calls share one read, and a failed read stays failed. */
  load(k: number): Promise<void> {
    let p = this.loads.get(k)
    if (p === undefined) {
      p = this.read(k)
      this.loads.set(k, p)
      p.catch(() => {}) // surfaced by whoever awaits it; a prefetch alone must not raise an unhandled rejection
    }
    return p
  }

  /** Starts loading the chunk holding `block` if it is not there yet. */
  prefetch(block: number): void {
    if (this.all || block > this.last) return
    const k = this.chunkOf(block)
    if (!this.chunks.has(k) && !this.loads.has(k)) void this.load(k)
  }

  /** Forgets every chunk whose blocks are all acknowledged. */
  release(acked: number): void {
    if (this.all) return
    const below = Math.floor(acked / this.chunkBlocks) // chunks 0..below-1 end at or before `acked`
    if (below <= this.releasedBelow) return // the common case: nothing new to forget
    this.releasedBelow = below
    for (const k of this.chunks.keys()) {
      if (k < below) {
        this.chunks.delete(k)
        this.loads.delete(k)
        if (k === this.curIndex) {
          this.curIndex = -1
          this.cur = undefined
        }
      }
    }
  }

  private async read(k: number): Promise<void> {
    const C = this.chunkBlocks
    const bs = this.blksize
    const first = k * C + 1
    if (first > this.last) return
    const offset = (first - 1) * bs
    const full = C * bs
    const size = this.content.size
    const want = size === null ? full : Math.max(0, Math.min(full, size - offset))
    if (size !== null && this.content.readInto) {
      // Known size, a file: read straight into the packets.
      this.chunks.set(k, await readPackets(this.content, offset, want, bs, first, Math.min(C, this.last - first + 1)))
      return
    }
    let data = want > 0 ? await this.content.read(offset, want) : EMPTY
    if (data.length > want) data = data.subarray(0, want)
    if (size !== null && data.length !== want) {
      throw new Error(`short read at offset ${offset}: ${data.length} of ${want} bytes (content changed?)`)
    }
    // Read-ahead can run past the end of content of unknown size: only the earliest end found counts.
    if (size === null && data.length < full && first + Math.floor(data.length / bs) < this.last) {
      this.last = first + Math.floor(data.length / bs)
      this.total = offset + data.length
    }
    if (first > this.last) return
    const count = Math.min(C, this.last - first + 1)
    const packets = packetize(data, bs, first, count)
    this.chunks.set(k, packets)
  }
}

export class Transfer {
  private phase: 'idle' | 'oack' | 'data' | 'done' = 'idle'
  private acked = 0
  private sentMax = 0
  private gen = 0
  private retries = 0
  /** Any ACK that moved the transfer on (of the OACK or of a block) has arrived. */
  private everAcked = false
  private timeout: number
  private deadline = 0
  private timer: unknown = null
  private timerAt = 0
  private readonly store: BlockStore
  private readonly clock: TransferClock
  private readonly maxTimeout: number
  private stats = { bytesSent: 0, blocksSent: 0, retransmissions: 0, duplicateAcks: 0, staleAcks: 0, readWaits: 0 }
  private readonly adaptive: AdaptiveOptions | null
  /** The window last pumped: its first block, when it went out, and whether it was all first transmissions. */
  private windowStart = 1
  private windowSentAt = 0
  private windowClean = false
  private srtt = -1
  private rttvar = 0
  /** Blocks sent back to back before a pause (adaptive only; the whole window until a loss). */
  private burst: number
  private cleanWindows = 0

  constructor(private readonly cfg: TransferConfig) {
    this.clock = cfg.clock ?? systemClock
    this.timeout = cfg.unackedRetries === undefined ? cfg.timeoutMs : Math.min(cfg.timeoutMs, cfg.unackedTimeoutMs ?? cfg.timeoutMs)
    this.maxTimeout = Math.max(cfg.timeoutMs, cfg.maxTimeoutMs ?? 8000)
    this.store = new BlockStore(cfg.content, cfg.blksize, cfg.chunkBytes ?? DEFAULT_CHUNK_BYTES, cfg.packets ?? null)
    this.adaptive = cfg.adaptive && cfg.windowsize > 1 && cfg.backoff ? cfg.adaptive : null
    this.burst = cfg.windowsize
  }

  get finished(): boolean {
    return this.phase === 'done'
  }

  /**
   * True until the client acknowledges anything (the OACK or a block): a repeated RRQ from the same port then is a
   * retransmission, and the server may evict the transfer when full.
   */
  get awaitingFirstAck(): boolean {
    return this.phase !== 'done' && !this.everAcked
  }

  start(): void {
    if (this.phase !== 'idle') return
    this.store.prefetch(1)
    if (this.cfg.oack !== null) {
      this.phase = 'oack'
      // The OACK's round trip is the first sample, so a loss in the first window already costs little.
      this.windowSentAt = this.clock.now()
      this.windowClean = true
      this.cfg.send(this.cfg.oack)
      this.arm()
    } else {
      this.phase = 'data'
      this.pump(1)
    }
  }

  /** An ACK from the client's TID, block number as on the wire (16 bits). */
  handleAck(wireBlock: number): void {
    if (this.phase === 'oack') {
      if (wireBlock !== 0) {
        this.stats.staleAcks++
        return
      }
      this.phase = 'data'
      if (this.adaptive && this.windowClean) this.sampleRtt()
      this.progress()
      this.pump(1)
      return
    }
    if (this.phase !== 'data') return
    // Map the 16-bit number onto the one block in (acked, acked + 65535] it can mean; the window is far smaller
    // than half that space, so anything past what was sent is an old ACK from before a rollover.
    const delta = (wireBlock - this.acked) & 0xffff
    if (delta === 0) {
      // A repeated ACK: the timer, not the duplicate, decides on retransmission (no sorcerer's apprentice).
      this.stats.duplicateAcks++
      return
    }
    const block = this.acked + delta
    if (block > this.sentMax) {
      this.stats.staleAcks++
      return
    }
    if (this.adaptive) this.adapt(block)
    this.acked = block
    this.progress()
    if (block >= this.store.last) {
      this.finish({ ok: true, aborted: false, outcome: 'complete' })
      return
    }
    this.store.release(block)
    // The end of a window and a partial ACK are handled alike: send the window after the acknowledged block.
    // After a partial ACK that resends what was lost (RFC 7440 section 4).
    this.pump(block + 1)
  }

  /** An ERROR from the client: the transfer ends (a normal event for a tsize probe). */
  handleError(code: number, message: string): void {
    if (this.phase === 'done') return
    this.finish({
      ok: false,
      aborted: true,
      outcome: 'client-error',
      error: `client sent error ${code}${message ? `: ${message}` : ''}`,
    })
  }

  /** Ends the transfer from this side, telling the client why unless `notify` is false. */
  cancel(message: string, notify = true, outcome: 'cancelled' | 'evicted' = 'cancelled'): void {
    if (this.phase === 'done') return
    if (notify) this.cfg.send(encodeError(ErrorCode.NOT_DEFINED, message))
    this.finish({ ok: false, aborted: false, outcome, error: message })
  }

  private progress(): void {
    this.everAcked = true
    this.retries = 0
    this.timeout = this.adaptive && this.srtt >= 0 ? this.rto() : this.cfg.timeoutMs
  }

  private rto(): number {
    // At most 4 floors: one slow round trip (a client descheduled for 100 ms) must not leave every later lost tail
    // waiting a second; a client that answered windows in milliseconds and then says nothing for that long has most
    // likely lost the tail, and an early resend costs only a window.
    const floor = this.adaptive!.minTimeoutMs
    return Math.min(this.cfg.timeoutMs, 4 * floor, Math.max(floor, this.srtt + 4 * this.rttvar))
  }

  /** An ACK that moves the transfer on to `block`: a round-trip sample, and the burst the client can take. */
  private adapt(block: number): void {
    const windowEnd = Math.min(this.windowStart + this.cfg.windowsize - 1, this.store.last)
    if (this.windowClean && block >= this.windowStart) this.sampleRtt()
    if (block < this.sentMax) {
      // Sent past what the client has: it got block - acked in a row and lost the next one.
      const got = block - this.acked
      this.burst = Math.max(1, Math.min(this.burst, got) - 1)
      this.cleanWindows = 0
    } else if (block >= windowEnd && this.windowClean && this.burst < this.cfg.windowsize && ++this.cleanWindows >= BURST_GROW_WINDOWS) {
      this.burst++
      this.cleanWindows = 0
    }
  }

  /** RFC 6298: a round trip from the window (or OACK) sent last to now. */
  private sampleRtt(): void {
    const r = this.clock.now() - this.windowSentAt
    if (this.srtt < 0) {
      this.srtt = r
      this.rttvar = r / 2
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - r)
      this.srtt = 0.875 * this.srtt + 0.125 * r
    }
  }

  private pump(from: number): void {
    const gen = ++this.gen
    this.windowStart = from
    this.windowSentAt = this.clock.now()
    this.windowClean = from > this.sentMax
    this.sendRange(from, from + this.cfg.windowsize - 1, gen)
  }

  private sendRange(from: number, end: number, gen: number): void {
    const store = this.store
    let n = from
    // A burst smaller than the window (adaptive, after a loss): the rest goes out once the loop has turned.
    const burstEnd = this.adaptive && this.burst < this.cfg.windowsize ? from + this.burst - 1 : Infinity
    while (n <= end && n <= store.last) {
      if (n > burstEnd) {
        const rest = n
        ;(this.adaptive!.defer ?? defaultPause)(() => {
          if (gen === this.gen && this.phase === 'data') this.sendRange(rest, end, gen)
        })
        this.arm()
        return
      }
      const packet = store.get(n)
      if (packet === undefined) {
        this.stats.readWaits++
        this.arm()
        store.load(store.chunkOf(n)).then(
          () => {
            if (gen !== this.gen || this.phase !== 'data') return
            // A loaded chunk that still lacks the block would loop here forever: fail instead.
            if (n <= store.last && store.get(n) === undefined) return this.failRead(new Error(`block ${n} missing after its read`))
            this.sendRange(n, end, gen)
          },
          (err: unknown) => this.failRead(err),
        )
        return
      }
      if (n <= this.sentMax) this.stats.retransmissions++
      else this.sentMax = n
      this.stats.blocksSent++
      this.stats.bytesSent += packet.length - 4
      this.cfg.send(packet)
      n++
    }
    // Keep one to two chunks of read-ahead, so the next window rarely waits for the disk or a busy thread pool.
    store.prefetch(end + 1)
    store.prefetch(end + store.chunkBlocks)
    store.prefetch(end + 2 * store.chunkBlocks)
    this.arm()
  }

  private arm(): void {
    this.deadline = this.clock.now() + this.timeout
    // One lazily re-armed timer per transfer instead of a clear/set per block: it only moves when the deadline
    // comes earlier than it would fire (after a backed-off timeout resets).
    if (this.timer !== null && this.deadline < this.timerAt) {
      this.clock.clearTimer(this.timer)
      this.timer = null
    }
    if (this.timer === null) {
      this.timerAt = this.deadline
      this.timer = this.clock.setTimer(this.onTimer, this.timeout)
    }
  }

  private readonly onTimer = (): void => {
    this.timer = null
    if (this.phase === 'done' || this.phase === 'idle') return
    const now = this.clock.now()
    if (now < this.deadline) {
      this.timerAt = this.deadline
      this.timer = this.clock.setTimer(this.onTimer, this.deadline - now)
      return
    }
    // Below timeoutMs a timeout is the round-trip timer's early one (adaptive): not yet a retry.
    const early = this.adaptive !== null && this.everAcked && this.timeout < this.cfg.timeoutMs
    if (!early) this.retries++
    const unacked = !this.everAcked && this.cfg.unackedRetries !== undefined
    if (unacked && this.retries > Math.min(this.cfg.unackedRetries!, this.cfg.maxRetries)) {
      // No ERROR: the peer never showed it is listening, and answering a possibly spoofed source helps nobody. A
      // real client whose packets were lost sends its RRQ again.
      this.finish({ ok: false, aborted: false, outcome: 'no-ack', error: `no acknowledgement after ${this.retries - 1} retransmissions` })
      return
    }
    if (this.retries > this.cfg.maxRetries) {
      const message = `timed out after ${this.cfg.maxRetries} retransmissions`
      this.cfg.send(encodeError(ErrorCode.NOT_DEFINED, message))
      this.finish({ ok: false, aborted: false, outcome: 'timeout', error: message })
      return
    }
    if (early) this.timeout = Math.min(this.timeout * 2, this.cfg.timeoutMs)
    else if (this.cfg.backoff && !unacked) this.timeout = Math.min(this.timeout * 2, this.maxTimeout)
    if (this.phase === 'oack') {
      this.stats.retransmissions++
      this.windowClean = false // Karn: no sample from a repeated OACK
      this.cfg.send(this.cfg.oack!)
      this.arm()
    } else {
      this.pump(this.acked + 1)
    }
  }

  private failRead(err: unknown): void {
    if (this.phase === 'done') return
    const message = err instanceof Error ? err.message : String(err)
    this.cfg.send(encodeError(ErrorCode.NOT_DEFINED, 'read error'))
    this.finish({ ok: false, aborted: false, outcome: 'read-error', error: `read error: ${message}` })
  }

  private finish(r: Pick<TransferResult, 'ok' | 'aborted' | 'outcome' | 'error'>): void {
    if (this.phase === 'done') return
    this.phase = 'done'
    this.gen++
    if (this.timer !== null) {
      this.clock.clearTimer(this.timer)
      this.timer = null
    }
    const total = this.store.total
    const bytes = Math.min(this.acked * this.cfg.blksize, total ?? Infinity)
    const result: TransferResult = { ...r, bytes, ...this.stats }
    if (result.error === undefined) delete result.error
    this.cfg.onFinish(result)
  }
}

/** RFC 1350 netascii, from local (LF) text: LF becomes CR LF, a bare CR becomes CR NUL. */
export function toNetascii(input: Buffer): Buffer {
  let extra = 0
  for (let i = 0; i < input.length; i++) if (input[i] === 0x0a || input[i] === 0x0d) extra++
  if (extra === 0) return input
  const out = Buffer.allocUnsafe(input.length + extra)
  let o = 0
  for (let i = 0; i < input.length; i++) {
    const c = input[i]!
    if (c === 0x0a) {
      out[o++] = 0x0d
      out[o++] = 0x0a
    } else if (c === 0x0d) {
      out[o++] = 0x0d
      out[o++] = 0x00
    } else out[o++] = c
  }
  return out
}

/** Netascii content is converted whole in memory (its size changes), so it is limited in size. */
export const MAX_NETASCII_BYTES = 4 * 1024 * 1024

export async function netasciiContent(content: TftpContent, maxBytes = MAX_NETASCII_BYTES): Promise<TftpContent | { tooLarge: true }> {
  if (content.size !== null && content.size > maxBytes) return { tooLarge: true }
  const parts: Buffer[] = []
  let total = 0
  for (;;) {
    const want = content.size !== null ? content.size - total : 64 * 1024
    if (want <= 0) break
    const part = await content.read(total, want)
    parts.push(part)
    total += part.length
    if (total > maxBytes) return { tooLarge: true }
    if (part.length < want) break
  }
  const converted = bufferContent(toNetascii(Buffer.concat(parts)))
  return { ...converted, close: () => content.close() }
}

