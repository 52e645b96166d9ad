// The page's one live connection: GET /api/v1/events read with fetch() and a stream reader (EventSource cannot
// send the bearer token). Reconnects with backoff and resumes with Last-Event-ID, so nothing is missed across a
// network blip or a server restart; views subscribe to it rather than each opening their own.
import { createSseParser } from './sse.js'

/** A stream that said nothing for this long (the server sends a comment every 15 s) is considered dead. */
const IDLE_MS = 45_000
const MAX_BACKOFF_MS = 30_000

/**
 * createEventStream({ api, onStatus(status, detail) }) → { start(), stop(), subscribe(fn) → unsubscribe, opened() }.
 * Statuses: connecting, live, reconnecting, denied, stopped. `opened()` resolves once the server has set the
 * stream's position, so a view that loads data after it misses no event in between.
 */
export function createEventStream({ api, onStatus = () => {} }) {
  const listeners = new Set()
  let controller = null
  let running = false
  /** The newest seq received (or the server's starting position): what a reconnect resumes from. */
  let cursor = null
  let retryMs = 2000
  let openedWaiters = []
  let isOpen = false

  function setOpen(open) {
    isOpen = open
    if (open) {
      for (const resolve of openedWaiters) resolve()
      openedWaiters = []
    }
  }

  function dispatch(message) {
    if (message.event === 'shutdown' || message.event === 'error') return message.event
    let event
    try {
      event = JSON.parse(message.data)
    } catch {
      return null
    }
    if (typeof event.seq === 'number') cursor = Math.max(cursor ?? 0, event.seq)
    for (const fn of [...listeners]) {
      try {
        fn(event)
      } catch (err) {
        console.warn('event listener failed', err)
      }
    }
    return null
  }

  async function readOnce(signal) {
    const headers = { accept: 'text/event-stream' }
    if (cursor !== null) headers['last-event-id'] = String(cursor)
    const res = await api.open('GET', '/events', { headers, signal })
    if (!res.ok) throw await api.failure(res)
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
    let ended = null
    const feed = createSseParser({
      onEvent: (m) => {
        ended = dispatch(m) ?? ended
      },
      onComment: (text) => {
        // "stream from seq N": where the server started us; resuming from there loses nothing even before an event.
        const m = /^stream from seq (\d+)$/.exec(text)
        if (m && cursor === null) cursor = Number(m[1])
      },
      onRetry: (ms) => {
        retryMs = Math.min(Math.max(ms, 500), MAX_BACKOFF_MS)
      },
    })
    let idle = null
    const watchdog = () => {
      clearTimeout(idle)
      idle = setTimeout(() => reader.cancel('idle').catch(() => {}), IDLE_MS)
    }
    try {
      watchdog()
      for (;;) {
        const { value, done } = await reader.read()
        if (done) return ended ?? 'closed'
        watchdog()
        if (!isOpen) {
          setOpen(true)
          onStatus('live')
        }
        feed(value)
        if (ended) {
          await reader.cancel().catch(() => {})
          return ended
        }
      }
    } finally {
      clearTimeout(idle)
    }
  }

  async function loop() {
    let failures = 0
    while (running) {
      controller = new AbortController()
      onStatus(failures === 0 && cursor === null ? 'connecting' : 'reconnecting')
      let why = ''
      try {
        why = await readOnce(controller.signal)
        failures = 0
      } catch (err) {
        if (!running || err?.name === 'AbortError') break
        if (err?.status === 401 || err?.status === 403) {
          running = false
          onStatus('denied', err)
          return
        }
        why = err?.message ?? String(err)
        failures++
      }
      setOpen(false)
      if (!running) break
      // A clean end (the server restarting) retries after the server's retry hint; failures back off 1, 2, 4… s.
      const wait = failures === 0 ? retryMs : Math.min(500 * 2 ** Math.min(failures, 6), MAX_BACKOFF_MS)
      onStatus('reconnecting', why)
      await new Promise((resolve) => setTimeout(resolve, wait * (0.8 + 0.4 * Math.random())))
    }
    onStatus('stopped')
  }

  return {
    start() {
      if (running) return
      running = true
      void loop()
    },
    stop() {
      running = false
      setOpen(false)
      controller?.abort()
    },
    subscribe(fn) {
      listeners.add(fn)
      return () => listeners.delete(fn)
    },
    opened() {
      return isOpen ? Promise.resolve() : new Promise((resolve) => openedWaiters.push(resolve))
    },
  }
}
