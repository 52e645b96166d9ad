import pg from 'pg'
import { redactUrl } from './connect.js'

// LISTEN on a PostgreSQL channel over a connection of its own (a pooled connection cannot hold a LISTEN: the pool
// hands it to the next query and may close it). When the connection drops (server restart, failover, an idle
// connection killed, pg_terminate_backend) the listener connects again, waiting 250 ms, 500 ms, ... up to 10 s
// between attempts, and says so. Notifications sent while it was away are lost: after a reconnect every callback is
// called once with null, so a follower reads what it follows instead of waiting for the next notification.

/** The channel the events table's trigger notifies with each new row's seq (migration 0010). */
export const EVENTS_CHANNEL = 'rackboot_events'
/** The channel the classes' and profiles' triggers notify with the table's name (migration 0013). */
export const DEFINITIONS_CHANNEL = 'rackboot_definitions'

export interface PgListenerOptions {
  url: string
  channel: string
  warn?: (message: string) => void
  /** First wait before connecting again (ms), doubled on every failed attempt up to maxBackoffMs. */
  minBackoffMs?: number
  maxBackoffMs?: number
  /** Shown in pg_stat_activity. */
  applicationName?: string
}

export interface PgListener {
  /** Calls `callback` with each notification's payload, and with null after a reconnect. Returns what stops it. */
  onNotify(callback: (payload: string | null) => void): () => void
  /** Resolves once the LISTEN is in place (now, or after the connection in progress). */
  ready(): Promise<void>
  /** Whether the LISTEN is in place now: every notification sent from here on will be delivered. */
  listening(): boolean
  /** Stops listening and closes the connection. */
  close(): Promise<void>
}

export function listenPostgres(options: PgListenerOptions): PgListener {
  const warn = options.warn ?? (() => {})
  const minBackoff = options.minBackoffMs ?? 250
  const maxBackoff = options.maxBackoffMs ?? 10_000
  const where = redactUrl(options.url)
  const callbacks = new Set<(payload: string | null) => void>()
  const waiting: Array<() => void> = []
  let client: pg.Client | null = null
  let listening = false
  let connectedOnce = false
  let failures = 0
  let retry: NodeJS.Timeout | null = null
  let closed = false

  const dispatch = (payload: string | null) => {
    for (const cb of [...callbacks]) {
      try {
        cb(payload)
      } catch (err) {
        warn(`PostgreSQL ${where}: a ${options.channel} listener failed: ${(err as Error).message}`)
      }
    }
  }

  const connect = async (): Promise<void> => {
    retry = null
    if (closed) return
    const c = new pg.Client({
      connectionString: options.url, keepAlive: true, connectionTimeoutMillis: 10_000,
      application_name: options.applicationName ?? 'rackboot-listen',
    })
    let dropped = false
    const drop = (err?: Error) => {
      if (dropped) return
      dropped = true
      listening = false
      if (client === c) client = null
      c.removeAllListeners('notification')
      c.end().catch(() => {})
      if (closed) return
      const delay = Math.min(maxBackoff, minBackoff * 2 ** failures++)
      if (failures === 1 || delay === maxBackoff) {
        warn(`PostgreSQL ${where}: listening for ${options.channel} stopped (${err?.message ?? 'connection ended'}); trying again in ${delay} ms`)
      }
      retry = setTimeout(() => void connect(), delay)
      retry.unref()
    }
    c.on('error', drop)
    c.on('end', () => drop())
    c.on('notification', (m) => {
      if (m.channel === options.channel) dispatch(m.payload ?? '')
    })
    client = c
    try {
      await c.connect()
      await c.query(`LISTEN "${options.channel.replace(/"/g, '""')}"`)
    } catch (err) {
      drop(err as Error)
      return
    }
    if (dropped) return
    if (closed) {
      c.end().catch(() => {})
      return
    }
    listening = true
    // Back after a drop, or after failed first attempts: whatever was notified meanwhile went to nobody.
    const again = connectedOnce || failures > 0
    connectedOnce = true
    if (again) warn(`PostgreSQL ${where}: listening for ${options.channel} again`)
    failures = 0
    for (const w of waiting.splice(0)) w()
    if (again) dispatch(null)
  }
  void connect()

  return {
    onNotify(callback) {
      const cb = (payload: string | null) => callback(payload)
      callbacks.add(cb)
      return () => callbacks.delete(cb)
    },
    listening: () => listening,
    ready() {
      if (listening || closed) return Promise.resolve()
      return new Promise((resolve) => waiting.push(resolve))
    },
    async close() {
      if (closed) return
      closed = true
      callbacks.clear()
      if (retry) clearTimeout(retry)
      for (const w of waiting.splice(0)) w()
      const c = client
      client = null
      listening = false
      if (c) {
        c.removeAllListeners('notification')
        await c.end().catch(() => {})
      }
    },
  }
}

/**
 * Wakes `onEvent` when any instance commits an event, with the new row's seq (null after a reconnect: events may have
 * gone unannounced). One listening connection, opened for the first watcher and closed after the last.
 */
export function createEventWatcher(options: { url: string; warn?: (message: string) => void }): {
  watch(onEvent: (seq: number | null) => void): () => void
  /** The current listener's ready() (tests). */
  ready(): Promise<void>
  close(): Promise<void>
} {
  let current: { listener: PgListener; watchers: number } | null = null
  let closed = false
  return {
    watch(onEvent) {
      // Closed with its inventory: nothing to watch any more (and no connection to leave behind).
      if (closed) return () => {}
      current ??= {
        listener: listenPostgres({ url: options.url, channel: EVENTS_CHANNEL, applicationName: 'rackboot-events', ...(options.warn ? { warn: options.warn } : {}) }),
        watchers: 0,
      }
      const mine = current
      mine.watchers++
      const off = mine.listener.onNotify((payload) => {
        const seq = payload === null ? null : Number(payload)
        onEvent(seq !== null && Number.isSafeInteger(seq) ? seq : null)
      })
      let stopped = false
      return () => {
        if (stopped) return
        stopped = true
        off()
        if (--mine.watchers === 0 && current === mine) {
          current = null
          void mine.listener.close()
        }
      }
    },
    ready: () => current?.listener.ready() ?? Promise.resolve(),
    async close() {
      closed = true
      const c = current
      current = null
      await c?.listener.close()
    },
  }
}
