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
//
// Holes in seq (issue 16): on PostgreSQL a seq is drawn at insert but the row is seen at commit, so with several
// writers (instances, or this one's pool) seq n+1 can be read before n commits. The hub keeps a frontier, `head`: every
// seq up to it is settled, read and handed to the live streams, or a hole given up on. A read that shows a hole hands
// over the rows before it and holds back the rest (they are read again next time) until the hole fills or has been
// open `gapGraceMs`: then it is taken for a rolled-back insert or trimmed history and skipped, so no stream stalls for
// long. Streams reading the table themselves stop at the frontier and leave the rest to the hub.

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
  /**
   * How long a hole in seq holds back the events after it (ms): an insert another connection has not committed yet
   * fills it; one older than this is given up on (a rolled-back insert, trimmed history).
   */
  gapGraceMs?: number
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
  /**
   * Word that an instance (this one included) committed events, sooner than the poll finds them (PostgreSQL
   * LISTEN/NOTIFY): `wake` gets the new row's seq, or nothing when events may have gone unannounced (the listener
   * reconnected). Returns what stops it.
   */
  remoteWake?: (wake: (seq?: number | null) => void) => () => void
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
  const gapGraceMs = o.gapGraceMs ?? 2_000
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
  /**
   * The frontier: every seq up to here is settled, read and handed to the live streams, or a hole given up on (when
   * stale, it may be behind the table).
   */
  let head = 0
  /** The newest seq the hub has read (rows between head and top wait behind a hole); `since` null streams from here. */
  let top = 0
  /** When the hub first read up to each new `top`, oldest first: a seq still missing below one read gapGraceMs ago is given up on. */
  const seen: Array<{ at: number; top: number }> = []
  /** Wakes the hub when the hole holding rows back is given up on. */
  let holdTimer: NodeJS.Timeout | null = null
  let catchingUp: Promise<void> | null = null
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
          // Up to the frontier only: a row past it may have a hole below it that is yet to fill. The hub hands it over.
          let i = 0
          for (; i < rows.length && rows[i]!.seq <= before; i++) this.send(rows[i]!)
          if (i < rows.length || rows.length < pageSize) {
            // Everything up to `before` was settled before the read: seen now, even rows trimmed meanwhile.
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

  /** Notes the newest seq read, and when it was first read. */
  function observe(rows: StoredEvent[]): void {
    const last = rows[rows.length - 1]
    if (!last || last.seq <= top) return
    top = last.seq
    seen.push({ at: Date.now(), top })
  }

  /** The newest seq read gapGraceMs ago or earlier (0: none): a seq below it still missing is given up on. */
  function givenUpBelow(): number {
    const cutoff = Date.now() - gapGraceMs
    while (seen.length > 1 && seen[1]!.at <= cutoff) seen.shift()
    return seen.length > 0 && seen[0]!.at <= cutoff ? seen[0]!.top : 0
  }

  /**
   * Moves the frontier over `rows` (read after it, in seq order) up to the first hole that may still fill, and returns
   * how many rows it passed. A hole below a seq read gapGraceMs ago is given up on: its seqs were drawn before that one.
   */
  function settle(rows: StoredEvent[]): number {
    const givenUp = givenUpBelow()
    let n = 0
    for (const e of rows) {
      if (e.seq > head + 1 && e.seq > givenUp) break
      head = Math.max(head, e.seq)
      n++
    }
    return n
  }

  /** Wakes the hub when the hole below `e` is given up on, unless the hole fills (and wakes it) first. */
  function holdBack(e: StoredEvent): void {
    if (holdTimer || closed) return
    const first = seen.find((s) => s.top >= e.seq)
    const delay = first ? Math.max(0, first.at + gapGraceMs - Date.now()) + 5 : gapGraceMs
    holdTimer = setTimeout(() => {
      holdTimer = null
      if (streams.size > 0) void wake()
    }, delay)
    holdTimer.unref()
  }

  /**
   * A stale hub (no streams were open) takes up from the newest rows: every seq below them counts as settled, holes
   * among them wait as any hole (unless below a seq read gapGraceMs ago). One read however many streams open at once.
   */
  function catchUp(): Promise<void> {
    catchingUp ??= (async () => {
      try {
        const rows = await inventory.events.list({ newest: true, limit: Math.min(pageSize, 100) })
        observe(rows)
        if (rows.length > 0) head = Math.max(head, rows[0]!.seq - 1)
        settle(rows)
        stale = false
      } finally {
        catchingUp = null
      }
    })()
    return catchingUp
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
          observe(rows)
          const n = settle(rows)
          if (n > 0) {
            const settled = n === rows.length ? rows : rows.slice(0, n)
            for (const s of [...streams]) s.deliver(settled)
          }
          if (n < rows.length) {
            // Behind a hole: read again when it fills (its commit wakes the hub) or is given up on.
            holdBack(rows[n]!)
            break
          }
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
  const kick = () => {
    if (scheduled || closed || streams.size === 0) {
      if (streams.size === 0) stale = true
      return
    }
    scheduled = true
    setImmediate(() => {
      scheduled = false
      void wake()
    })
  }
  const unsubscribe = deps.bus.subscribe(kick)
  // A seq at or below the frontier was read already (this instance's own events come back this way too).
  const unwatch = deps.remoteWake?.((seq) => {
    if (typeof seq === 'number' && seq <= head && !stale) return
    kick()
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
        if (stale) await catchUp()
        // Closed while the table was read: its 'close' is past, a stream made now would never end.
        if (res.destroyed) return
        stream = new Stream(res, since ?? top, filter)
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
      if (holdTimer) clearTimeout(holdTimer)
      unsubscribe()
      unwatch?.()
      for (const s of [...streams]) {
        metrics?.dropped.inc({ reason: 'shutdown' })
        s.end('shutdown')
      }
    },
  }
}
