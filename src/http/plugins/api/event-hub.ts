import type { ServerResponse } from 'node:http'
import { Counter, Gauge, type Registry } from 'prom-client'
import type { EventBus } from '../../../events/bus.js'
import type { Inventory, StoredEvent } from '../../../inventory/index.js'
import type { Logger } from '../../../log.js'
import { eventView } from './schemas.js'
import { redactBootTokensDeep } from '../../redact.js'

// Server-sent events for controllers: the events table is the log (seq is the cursor, so a client resumes with
// `since` or Last-Event-ID), the bus only says "there is more". One hub reads new rows once and hands them to
// every stream that is caught up; a stream that is behind (resuming, or its socket is full) reads the table at its
// own pace instead. So nothing is queued per client: a slow client costs one page of memory at most, and one
// whose socket does not drain for `stallMs` is dropped (it reconnects with Last-Event-ID and loses nothing).

export interface EventStreamOptions {
  /** Comment line sent on idle streams so proxies and clients know the stream is alive. */
  heartbeatMs?: number
  /** Reading the table this often as well catches events written by other processes (the CLI). */
  pollMs?: number
  /** A stream whose socket does not drain for this long is closed. */
  stallMs?: number
  maxStreams?: number
  /** Streams one API token may hold open, so one token cannot take every stream (the web UI's among them). */
  maxStreamsPerToken?: number
  /** Rows per read. */
  pageSize?: number
}

export interface EventFilter {
  /** Exact types, or prefixes written `boot.*`. */
  types: string[] | null
  machineId: string | null
  /** Replace boot tokens in the events (a token without provision scope never sees them). */
  redactTokens?: boolean
}

export interface EventHubDeps {
  inventory: Pick<Inventory, 'events' | 'queries'>
  bus: EventBus
  /** Resolves once every bus event published so far is in the events table. */
  flush?: () => Promise<void>
  log: Logger
  registry?: Registry
  options?: EventStreamOptions
}

/** Why a stream may not be opened: every stream is taken, or this token holds its share. */
export type StreamRefusal = 'total' | 'per-token'

export interface EventHub {
  /**
   * Whether `token` (an API token id) may open another stream: null, or the bound that refuses it (counted). Call
   * `open` in the same tick as a null answer: the slot is taken when `open` starts.
   */
  admit(token: string | null): StreamRefusal | null
  /**
   * Streams to `res` (headers already written) from after `since` (null: from now) until either side closes. The
   * stream counts against `token` until `res` closes.
   */
  open(res: ServerResponse, since: number | null, filter: EventFilter, token?: string | null): Promise<void>
  /** Open streams, and those being opened. */
  count(): number
  /** Open streams of one token, and those being opened. */
  countFor(token: string): number
  readonly maxStreams: number
  readonly maxStreamsPerToken: number
  /** Ends every stream with a final `shutdown` event and stops reading. */
  close(): void
}

function matcher(filter: EventFilter): (e: StoredEvent) => boolean {
  const exact = new Set((filter.types ?? []).filter((t) => !t.endsWith('*')))
  const prefixes = (filter.types ?? []).filter((t) => t.endsWith('*')).map((t) => t.slice(0, -1))
  return (e) => {
    if (filter.machineId && e.machineId !== filter.machineId) return false
    if (!filter.types) return true
    return exact.has(e.type) || prefixes.some((p) => e.type.startsWith(p))
  }
}

export function createEventHub(deps: EventHubDeps): EventHub {
  const { inventory, log } = deps
  const o = deps.options ?? {}
  const heartbeatMs = o.heartbeatMs ?? 15_000
  const pollMs = o.pollMs ?? 1_000
  const stallMs = o.stallMs ?? 30_000
  const maxStreams = o.maxStreams ?? 1_000
  const maxStreamsPerToken = o.maxStreamsPerToken ?? 8
  const pageSize = o.pageSize ?? 500
  const metrics = deps.registry ? {
    streams: new Gauge({ name: 'rackboot_api_event_streams', help: 'Open event streams', registers: [deps.registry] }),
    buffered: new Gauge({
      name: 'rackboot_api_event_stream_buffered_bytes',
      help: 'Bytes written to event streams and not yet taken by the kernel (bounded by one page per stream)',
      registers: [deps.registry],
      collect() {
        let sum = 0
        for (const s of streams) sum += s.buffered()
        this.set(sum)
      },
    }),
    sent: new Counter({ name: 'rackboot_api_event_stream_events_total', help: 'Events written to event streams', registers: [deps.registry] }),
    dropped: new Counter({ name: 'rackboot_api_event_stream_dropped_total', help: 'Event streams closed by the server', labelNames: ['reason'] as const, registers: [deps.registry] }),
    refused: new Counter({
      name: 'rackboot_api_event_streams_refused_total',
      help: 'Event streams refused because every stream was taken (total) or the token held its share (per-token)',
      labelNames: ['reason'] as const,
      registers: [deps.registry],
    }),
  } : null

  const streams = new Set<Stream>()
  /** Streams being opened (open() awaits the table before its stream joins `streams`): they hold a slot already. */
  let opening = 0
  /** Open and opening streams by token id; an entry goes when its count reaches 0. */
  const perToken = new Map<string, number>()
  const count = () => streams.size + opening
  /** The newest seq the hub has read (or, when stale, may be behind the table). */
  let head = 0
  let stale = true
  let waking = false
  let again = false
  let closed = false

  class Stream {
    cursor: number
    live = false
    pulling = false
    ended = false
    private readonly matches: (e: StoredEvent) => boolean
    private readonly redact: boolean
    private readonly heartbeat: NodeJS.Timeout

    constructor(private readonly res: ServerResponse, since: number, filter: EventFilter) {
      this.cursor = since
      this.matches = matcher(filter)
      this.redact = filter.redactTokens ?? false
      this.heartbeat = setInterval(() => {
        if (!this.res.writableNeedDrain) this.res.write(': keepalive\n\n')
      }, heartbeatMs)
      res.on('close', () => this.end(null))
    }

    private send(e: StoredEvent): void {
      if (e.seq <= this.cursor) return
      this.cursor = e.seq
      if (!this.matches(e)) return
      this.res.write(`id: ${e.seq}\nevent: ${e.type}\ndata: ${JSON.stringify(eventView(this.redact ? redactBootTokensDeep(e) : e))}\n\n`)
      metrics?.sent.inc()
    }

    /** Waits for the socket to drain; false when the stream ended instead (stalled or closed). */
    private drained(): Promise<boolean> {
      if (!this.res.writableNeedDrain) return Promise.resolve(true)
      return new Promise((resolve) => {
        const done = (ok: boolean) => {
          clearTimeout(timer)
          this.res.off('drain', onDrain)
          this.res.off('close', onClose)
          resolve(ok)
        }
        const onDrain = () => done(true)
        const onClose = () => done(false)
        const timer = setTimeout(() => {
          done(false)
          metrics?.dropped.inc({ reason: 'stalled' })
          log.warn({ cursor: this.cursor }, 'event stream client stopped reading: closing its stream')
          // Over now, not when the socket's close comes round: the gauge agrees with the counter at once.
          this.end(null)
          this.res.destroy()
        }, stallMs)
        this.res.on('drain', onDrain)
        this.res.on('close', onClose)
      })
    }

    /** Catches up from the table at the socket's pace, then joins the hub's live delivery. */
    async pull(): Promise<void> {
      if (this.pulling || this.ended) return
      this.pulling = true
      this.live = false
      try {
        for (;;) {
          if (!(await this.drained()) || this.ended) return
          const before = head
          const rows = await inventory.events.list({ since: this.cursor, limit: pageSize })
          if (this.ended) return
          for (const e of rows) this.send(e)
          if (rows.length < pageSize) {
            // Everything up to `before` was committed before the read: seen now, even rows trimmed meanwhile.
            this.cursor = Math.max(this.cursor, before)
            if (this.cursor >= head && !this.res.writableNeedDrain) {
              this.live = true
              return
            }
          }
        }
      } catch (err) {
        log.error({ err }, 'event stream read failed')
        this.end('error')
      } finally {
        this.pulling = false
      }
    }

    buffered(): number {
      return this.res.writableLength
    }

    /** Rows the hub just read: (previous head, head]. */
    deliver(rows: StoredEvent[]): void {
      if (!this.live || this.ended) return
      for (const e of rows) this.send(e)
      if (this.res.writableNeedDrain) void this.pull()
    }

    end(finalEvent: string | null): void {
      if (this.ended) return
      this.ended = true
      clearInterval(this.heartbeat)
      streams.delete(this)
      metrics?.streams.set(streams.size)
      if (finalEvent && !this.res.destroyed) this.res.end(`event: ${finalEvent}\ndata: {}\n\n`)
    }
  }

  async function wake(): Promise<void> {
    if (waking) {
      again = true
      return
    }
    waking = true
    try {
      do {
        again = false
        if (streams.size === 0) {
          stale = true
          continue
        }
        await deps.flush?.()
        for (;;) {
          const rows = await inventory.events.list({ since: head, limit: pageSize })
          if (rows.length === 0) break
          head = rows[rows.length - 1]!.seq
          for (const s of [...streams]) s.deliver(rows)
          if (rows.length < pageSize) break
        }
      } while (again && !closed)
    } catch (err) {
      log.error({ err }, 'event hub read failed')
    } finally {
      waking = false
    }
  }

  let scheduled = false
  const unsubscribe = deps.bus.subscribe(() => {
    if (scheduled || closed || streams.size === 0) {
      if (streams.size === 0) stale = true
      return
    }
    scheduled = true
    setImmediate(() => {
      scheduled = false
      void wake()
    })
  })
  const poll = setInterval(() => {
    if (streams.size > 0) void wake()
  }, pollMs)
  poll.unref()

  return {
    maxStreams,
    maxStreamsPerToken,
    count,
    countFor: (token) => perToken.get(token) ?? 0,
    admit(token) {
      const refusal: StreamRefusal | null = count() >= maxStreams ? 'total'
        : token !== null && (perToken.get(token) ?? 0) >= maxStreamsPerToken ? 'per-token' : null
      if (refusal) metrics?.refused.inc({ reason: refusal })
      return refusal
    },
    async open(res, since, filter, token = null) {
      // The client may be gone already (it closed while the request was authenticated): nothing to hold.
      if (res.destroyed) return
      // Slots are taken before the first await, so requests arriving together cannot all pass admit().
      if (token !== null) {
        perToken.set(token, (perToken.get(token) ?? 0) + 1)
        res.once('close', () => {
          const left = (perToken.get(token) ?? 1) - 1
          if (left <= 0) perToken.delete(token)
          else perToken.set(token, left)
        })
      }
      opening++
      let stream: Stream
      try {
        if (stale) {
          head = Math.max(head, await inventory.queries.latestEventSeq())
          stale = false
        }
        // Closed while the table was read: its 'close' is past, a stream made now would never end.
        if (res.destroyed) return
        stream = new Stream(res, since ?? head, filter)
        if (closed) {
          stream.end('shutdown')
          return
        }
        streams.add(stream)
      } finally {
        opening--
      }
      metrics?.streams.set(streams.size)
      res.write(`retry: 2000\n: stream from seq ${stream.cursor}\n\n`)
      await stream.pull()
    },
    close() {
      closed = true
      clearInterval(poll)
      unsubscribe()
      for (const s of [...streams]) {
        metrics?.dropped.inc({ reason: 'shutdown' })
        s.end('shutdown')
      }
    },
  }
}
