// Client side of sink-server.ts: starts it (inside the lab's server namespace, or on the host) and collects the
// requests it prints.
import type { ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { stopChild } from '../../../src/processes.js'
import type { SinkConfig, SinkRoute } from './sink-server.js'

export type { SinkConfig, SinkResponse, SinkRoute } from './sink-server.js'

export interface SinkRequest {
  /** Epoch ms when the request was complete (compare with vm.startedAt). */
  at: number
  method: string
  url: string
  path: string
  status: number
  remote: string
  headers: Record<string, string | string[] | undefined>
  body: Buffer
  text(): string
  json<T = unknown>(): T
}

export interface Sink {
  readonly host: string
  readonly port: number
  /** http://host:port + path */
  url(path: string): string
  readonly requests: SinkRequest[]
  waitForRequest(match: { method?: string; path?: string } | ((r: SinkRequest) => boolean), timeoutMs: number): Promise<SinkRequest>
  stop(): Promise<void>
}

export interface StartSinkOptions {
  host: string
  port?: number
  files?: Record<string, string>
  routes?: SinkRoute[]
}

export async function startSinkProcess(spawn: (argv: string[]) => ChildProcess, options: StartSinkOptions): Promise<Sink> {
  const config: SinkConfig = { host: options.host, port: options.port ?? 0, files: options.files ?? {}, routes: options.routes ?? [] }
  const script = new URL('./sink-server.ts', import.meta.url).pathname
  const child = spawn([process.execPath, '--import', 'tsx', script, JSON.stringify(config)])
  const requests: SinkRequest[] = []
  const listeners = new Set<() => void>()
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sink did not start in 20 s: ${stderr}`)), 20_000)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`sink exited (${code}) before listening: ${stderr}`))
    })
    const rl = createInterface({ input: child.stdout! })
    rl.on('line', (line) => {
      let ev: Record<string, unknown>
      try {
        ev = JSON.parse(line) as Record<string, unknown>
      } catch {
        return
      }
      if (ev.event === 'listening') {
        clearTimeout(timer)
        resolve(Number(ev.port))
      } else if (ev.event === 'request') {
        const body = Buffer.from(String(ev.bodyBase64 ?? ''), 'base64')
        requests.push({
          at: Number(ev.at),
          method: String(ev.method),
          url: String(ev.url),
          path: String(ev.path),
          status: Number(ev.status),
          remote: String(ev.remote),
          headers: ev.headers as SinkRequest['headers'],
          body,
          text: () => body.toString('utf8'),
          json: <T,>() => JSON.parse(body.toString('utf8')) as T,
        })
        for (const l of [...listeners]) l()
      }
    })
  })
  const matches = (m: Parameters<Sink['waitForRequest']>[0]) => (r: SinkRequest) =>
    typeof m === 'function' ? m(r) : (!m.method || m.method === r.method) && (!m.path || m.path === r.path)
  return {
    host: options.host,
    port,
    url: (path) => `http://${options.host}:${port}${path.startsWith('/') ? path : `/${path}`}`,
    requests,
    waitForRequest(m, timeoutMs) {
      const pred = matches(m)
      const seen = requests.find(pred)
      if (seen) return Promise.resolve(seen)
      return new Promise((resolve, reject) => {
        const check = () => {
          const r = requests.find(pred)
          if (r) {
            clearTimeout(timer)
            listeners.delete(check)
            resolve(r)
          }
        }
        const timer = setTimeout(() => {
          listeners.delete(check)
          reject(new Error(`no matching request within ${timeoutMs} ms; seen: ${requests.map((r) => `${r.method} ${r.url} ${r.status}`).join(', ') || 'none'}`))
        }, timeoutMs)
        listeners.add(check)
      })
    },
    stop: () => stopChild(child, 2_000),
  }
}
