import { request, type IncomingMessage } from 'node:http'

export interface SseEvent {
  id: string | null
  event: string
  data: any
}

/** A minimal text/event-stream client over a real socket, recording what arrives. */
export interface SseClient {
  status: number
  headers: IncomingMessage['headers']
  events: SseEvent[]
  comments: string[]
  /** Resolves when `predicate` holds over what has arrived (checked on every chunk), or rejects after `ms`. */
  until(predicate: (c: SseClient) => boolean, ms?: number): Promise<void>
  ended: Promise<void>
  pause(): void
  resume(): void
  close(): void
  res: IncomingMessage
}

export function openSse(url: string, headers: Record<string, string> = {}): Promise<SseClient> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      let buffer = ''
      const waiters = new Set<() => void>()
      let endResolve!: () => void
      const client: SseClient = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        events: [],
        comments: [],
        res,
        ended: new Promise<void>((r) => (endResolve = r)),
        until(predicate, ms = 10_000) {
          if (predicate(client)) return Promise.resolve()
          return new Promise((ok, fail) => {
            const timer = setTimeout(() => {
              waiters.delete(check)
              fail(new Error(`timed out after ${ms} ms with ${client.events.length} events`))
            }, ms)
            const check = () => {
              if (!predicate(client)) return
              clearTimeout(timer)
              waiters.delete(check)
              ok()
            }
            waiters.add(check)
          })
        },
        pause: () => res.pause(),
        resume: () => res.resume(),
        close: () => req.destroy(),
      }
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        buffer += chunk
        let at: number
        while ((at = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, at)
          buffer = buffer.slice(at + 2)
          const fields: Record<string, string> = {}
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) client.comments.push(line.slice(1).trim())
            else if (line) {
              const i = line.indexOf(':')
              fields[line.slice(0, i)] = line.slice(i + 1).replace(/^ /, '')
            }
          }
          if (fields.data !== undefined) {
            client.events.push({ id: fields.id ?? null, event: fields.event ?? 'message', data: JSON.parse(fields.data) })
          }
        }
        for (const w of [...waiters]) w()
      })
      const done = () => {
        endResolve()
        for (const w of [...waiters]) w()
      }
      res.on('end', done)
      res.on('close', done)
      res.on('error', done)
      resolve(client)
    })
    req.on('error', reject)
    req.end()
  })
}
