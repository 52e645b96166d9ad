import type { ServerResponse } from 'node:http'
import { Counter, Gauge, type Registry } from 'prom-client'
import type { EventBus } from '../../../events/bus.js'
import type { Inventory, StoredEvent } from '../../../inventory/index.js'
import type { Logger } from '../../../log.js'
import { eventView } from './schemas.js'

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
  /** Rows per read. */
  pageSize?: number
}

export interface EventFilter {
  /** Exact types, or prefixes written `boot.*`. */
  types: string[] | null
  machineId: string | null
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

export interface EventHub {
  /** Streams to `res` (headers already written) from after `since` (null: from now) until either side closes. */
  open(res: ServerResponse, since: number | null, filter: EventFilter): Promise<void>
  count(): number
  readonly maxStreams: number
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
  } : null

  const streams = new Set<Stream>()
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
    private readonly heartbeat: NodeJS.Timeout

    constructor(private readonly res: ServerResponse, since: number, filter: EventFilter) {
      this.cursor = since
      this.matches = matcher(filter)
      this.heartbeat = setInterval(() => {
        if (!this.res.writableNeedDrain) this.res.write(': keepalive\n\n')
      }, heartbeatMs)
      res.on('close', () => this.end(null))
    }

    private send(e: StoredEvent): void {
      if (e.seq <= this.cursor) return
      this.cursor = e.seq
      if (!this.matches(e)) return
      this.res.write(`id: ${e.seq}\nevent: ${e.type}\ndata: ${JSON.stringify(eventView(e))}\n\n`)
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
    count: () => streams.size,
    async open(res, since, filter) {
      if (stale) {
        head = Math.max(head, await inventory.queries.latestEventSeq())
        stale = false
      }
      const stream = new Stream(res, since ?? head, filter)
      if (closed) {
        stream.end('shutdown')
        return
      }
      streams.add(stream)
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
