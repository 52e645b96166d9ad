// The CLI's client for the server's REST API (/api/v1). Which server and token: --server/--token, then --context,
// then RACKBOOT_URL (or RACKBOOT_SERVER) and RACKBOOT_TOKEN, then the current context of the CLI configuration
// (rackboot login), then the server's own settings (cli.server, or http.listen and http.port) as before.
// Errors are one line a person can act on; the token is never printed.
import type { IncomingMessage } from 'node:http'
import { RackbootError, ErrorCodes, type ErrorCode } from '../errors.js'
import { cliConfigPath, readCliConfig, type CliContext } from './cli-config.js'
import { UsageError, type GlobalOptions } from './common.js'

export type Scope = 'read' | 'provision' | 'admin'

export interface Target {
  /** Base URL, no trailing slash. */
  server: string
  token: string | null
  /** PEM of the CA that signed the server's certificate. */
  ca: string | null
  /** Where the server came from, for messages: "--server", "RACKBOOT_URL", "context lab", "settings". */
  via: string
}

/** A server URL as given: `host:port` means http; a trailing slash is dropped. */
export function normalizeServer(url: string): string {
  const u = url.trim().replace(/\/+$/, '')
  const full = /^[a-z][a-z0-9+.-]*:\/\//i.test(u) ? u : `http://${u}`
  let parsed: URL
  try {
    parsed = new URL(full)
  } catch {
    throw new UsageError(`'${url}' is not a server URL (http://HOST:PORT or https://HOST)`)
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new UsageError(`'${url}': the server URL must be http:// or https://`)
  if (parsed.username || parsed.password) throw new UsageError('give the token with --token, not in the URL')
  return full
}

/** Picks the server and token (see the top of this file); reads the server's settings only when nothing else says. */
export async function resolveTarget(opts: GlobalOptions, env: NodeJS.ProcessEnv = process.env): Promise<Target> {
  const envServer = env.RACKBOOT_URL || env.RACKBOOT_SERVER || ''
  const envToken = env.RACKBOOT_TOKEN || ''
  const needConfig = opts.context !== undefined || (!opts.server && !envServer) || (!opts.token && !envToken)
  const path = cliConfigPath(env)
  const config = needConfig ? await readCliConfig(path) : { current: null, contexts: {} as Record<string, CliContext> }
  let named: CliContext | null = null
  if (opts.context !== undefined) {
    named = config.contexts[opts.context] ?? null
    if (!named) {
      const known = Object.keys(config.contexts)
      throw new UsageError(`no context '${opts.context}' in ${path}${known.length ? ` (there are: ${known.join(', ')})` : ' (rackboot login URL --token TOKEN --context NAME makes one)'}`)
    }
  }
  const current = config.current ? config.contexts[config.current] ?? null : null

  let server: string | null = null
  let via = ''
  let ca: string | null = null
  if (opts.server) [server, via] = [opts.server, '--server']
  else if (named) [server, via, ca] = [named.server, `context ${opts.context}`, named.ca ?? null]
  else if (envServer) [server, via] = [envServer, env.RACKBOOT_URL ? 'RACKBOOT_URL' : 'RACKBOOT_SERVER']
  else if (current) [server, via, ca] = [current.server, `context ${config.current}`, current.ca ?? null]

  let token: string | null = opts.token || (named?.token ?? null) || envToken || null
  let settingsToken: string | null = null
  if (server === null) {
    // As before rackboot login: the server this host's settings describe (rackboot.yaml, RACKBOOT_*, --set).
    const { loadSettings } = await import('../settings/index.js')
    const s = loadSettings({ ...(opts.config ? { file: opts.config } : {}), overrides: opts.set ?? [], env })
    const host = s.http.listen === '0.0.0.0' || s.http.listen === '::' || s.http.listen === '' ? '127.0.0.1' : s.http.listen.includes(':') ? `[${s.http.listen}]` : s.http.listen
    server = s.cli.server || `http://${host}:${s.http.port}`
    via = s.cli.server ? 'settings (cli.server)' : 'settings (http.listen, http.port)'
    settingsToken = s.cli.token || null
  }
  server = normalizeServer(server)
  // The current context's token goes only to the current context's server, never to one named elsewhere.
  if (!token && current?.token && normalizeServer(current.server) === server) {
    token = current.token
    ca ??= current.ca ?? null
  }
  token ??= settingsToken
  return { server, token, ca, via }
}

const NETWORK_ERRORS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'no such host',
  EAI_AGAIN: 'the name did not resolve',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ECONNRESET: 'connection reset',
  ETIMEDOUT: 'connection timed out',
  UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
  UND_ERR_SOCKET: 'connection closed',
  EPROTO: 'not a TLS server (try http://)',
}

const TLS_ERRORS = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/

/** Why a fetch failed, in words: the innermost cause's code. */
function networkReason(err: unknown): { code: string | null; reason: string } {
  let e: unknown = err
  let message = (err as Error).message
  for (let i = 0; i < 5 && e; i++) {
    if (e !== err && typeof (e as Error).message === 'string' && (e as Error).message) message = (e as Error).message
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string') {
      if (TLS_ERRORS.test(code)) return { code, reason: `TLS: ${code} (give the CA that signed the server's certificate: rackboot login URL --token TOKEN --ca FILE)` }
      return { code, reason: NETWORK_ERRORS[code] ?? code }
    }
    const errors = (e as { errors?: unknown[] }).errors
    e = Array.isArray(errors) && errors.length ? errors[0] : (e as { cause?: unknown }).cause
  }
  return { code: null, reason: message }
}

interface SendOptions {
  method: string
  headers: Record<string, string>
  signal: AbortSignal
  /** PEM of a private CA, trusted besides the system's CAs. */
  ca: string | null
}

/**
 * One request through node:http or node:https (the latter, which loads TLS, only for an https server). The
 * signal aborts it until the answer's body is read. Idle keep-alive sockets (Node's global agents) are unref'd:
 * they do not hold the process, and `--all` pages reuse one.
 */
async function send(url: string, o: SendOptions, body: string | undefined): Promise<IncomingMessage> {
  const https = url.startsWith('https:')
  const { request } = https ? await import('node:https') : await import('node:http')
  const ca = https && o.ca ? { ca: [...(await import('node:tls')).rootCertificates, o.ca] } : {}
  return new Promise((resolve, reject) => {
    const req = request(url, { method: o.method, headers: o.headers, signal: o.signal, ...ca }, resolve)
    req.on('error', reject)
    req.end(body)
  })
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | readonly string[] | null | undefined>
  body?: unknown
  /** The scope the call needs, named when the server refuses the token. Default: read for GET, provision otherwise. */
  scope?: Scope
  /** Default 30 s. */
  timeoutMs?: number
  signal?: AbortSignal
  accept?: string
}

export interface ApiErrorBody {
  error?: string
  message?: string
  details?: unknown
}

/** A refusal by the server, with its code (RB_ERR_...) and status. */
export class ApiError extends RackbootError {
  constructor(code: ErrorCode, message: string, readonly status: number, details: unknown) {
    super(code, message, { statusCode: status, details })
  }
}

export function isApiError(err: unknown, status?: number): err is ApiError {
  return err instanceof ApiError && (status === undefined || err.status === status)
}

export const DEFAULT_TIMEOUT_MS = 30_000

/**
 * The server's answer to a request. Not fetch's Response: fetch and Response are Node's bundled undici, whose
 * loading cost a one-shot command more CPU than the rest of it (`machines list` on Node 20: 0.26 CPU-s with fetch,
 * 0.14 with node:http, measured); node:http and its parser load in a few milliseconds.
 */
export interface ApiResponse {
  readonly ok: boolean
  readonly status: number
  readonly statusText: string
  /** The URL asked for. */
  readonly url: string
  /** The whole body. */
  text(): Promise<string>
  /** The body as it arrives (UTF-8), until the server ends it or the request's signal aborts. */
  chunks(): AsyncIterable<string>
}

export class ApiClient {
  constructor(readonly target: Target) {}

  get server(): string {
    return this.target.server
  }

  url(path: string, query?: RequestOptions['query']): string {
    const q = new URLSearchParams()
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v === undefined || v === null || v === false) continue
      if (Array.isArray(v)) for (const item of v) q.append(k, String(item))
      else q.set(k, String(v))
    }
    const qs = q.toString()
    return `${this.target.server}/api/v1${path}${qs ? `?${qs}` : ''}`
  }

  unreachable(reason: string): RackbootError {
    return new RackbootError('RB_ERR_INTERNAL', `cannot reach rackboot at ${this.target.server}: ${reason} (is \`rackboot serve\` running? set RACKBOOT_URL or run \`rackboot login\`)`, {
      statusCode: 503,
    })
  }

  /** The answer to a request; an ApiError for a refusal, a one-line error when the server cannot be reached. */
  async request(method: string, path: string, options: RequestOptions = {}): Promise<ApiResponse> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
    const timeout = AbortSignal.timeout(timeoutMs)
    const signal = options.signal ? AbortSignal.any([timeout, options.signal]) : timeout
    const headers: Record<string, string> = { accept: options.accept ?? 'application/json' }
    if (this.target.token) headers.authorization = `Bearer ${this.target.token}`
    const body = options.body !== undefined ? JSON.stringify(options.body) : undefined
    if (body !== undefined) headers['content-type'] = 'application/json'
    const url = this.url(path, options.query)
    /** An error while asking or while reading the answer, as one line. */
    const failure = (err: unknown): unknown => {
      if (options.signal?.aborted) return options.signal.reason
      if (timeout.aborted) {
        return new RackbootError('RB_ERR_INTERNAL', `rackboot at ${this.target.server} did not answer ${method} ${path.split('?')[0]} within ${timeoutMs / 1000} s`, { statusCode: 504 })
      }
      return this.unreachable(networkReason(err).reason)
    }
    let res: IncomingMessage
    try {
      res = await send(url, { method, headers, signal, ca: this.target.ca }, body)
    } catch (err) {
      throw failure(err)
    }
    const status = res.statusCode ?? 0
    const answer: ApiResponse = {
      ok: status >= 200 && status < 300,
      status,
      statusText: res.statusMessage ?? '',
      url,
      async text() {
        let text = ''
        try {
          for await (const chunk of answer.chunks()) text += chunk
        } catch (err) {
          throw failure(err)
        }
        return text
      },
      chunks() {
        res.setEncoding('utf8')
        return res as AsyncIterable<string>
      },
    }
    if (answer.ok) return answer
    throw await this.refusal(answer, method, options.scope ?? (method === 'GET' ? 'read' : 'provision'))
  }

  private async refusal(res: ApiResponse, method: string, scope: Scope): Promise<RackbootError> {
    const text = await res.text().catch(() => '')
    let body: ApiErrorBody = {}
    try {
      body = JSON.parse(text) as ApiErrorBody
    } catch {
      body = { message: text.trim().slice(0, 300) || res.statusText }
    }
    const message = body.message || `${res.status} ${res.statusText}`
    const code: ErrorCode = body.error && body.error in ErrorCodes ? (body.error as ErrorCode)
      : res.status === 401 ? 'RB_ERR_UNAUTHORIZED' : res.status === 403 ? 'RB_ERR_FORBIDDEN' : res.status === 404 ? 'RB_ERR_NOT_FOUND'
        : res.status === 409 ? 'RB_ERR_CONFLICT' : res.status === 400 || res.status === 422 ? 'RB_ERR_VALIDATION' : 'RB_ERR_INTERNAL'
    if (res.status === 401) {
      const how = `this needs an API token with the '${scope}' scope: run \`rackboot login ${this.target.server} --token TOKEN\` or set RACKBOOT_TOKEN`
      return new ApiError(code, this.target.token
        ? `rackboot at ${this.target.server} refused the API token: ${message} (${how})`
        : `no API token given; ${how} (\`rackboot tokens create NAME --scope ${scope} --data-dir DIR\` on the server makes one)`, 401, body.details ?? null)
    }
    if (res.status === 403) {
      const d = body.details as { required?: string } | null | undefined
      const needed = d?.required ?? scope
      return new ApiError(code, message.includes(`'${needed}'`) ? message : `${message} (this needs the '${needed}' scope)`, 403, body.details ?? null)
    }
    if (res.status === 404 && body.error === undefined) {
      return new ApiError('RB_ERR_NOT_FOUND', `rackboot at ${this.target.server} has no ${method} ${res.url.replace(this.target.server, '').split('?')[0]} (a server older than this CLI?)`, 404, null)
    }
    return new ApiError(code, message, res.status, body.details ?? null)
  }

  async json<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const res = await this.request(method, path, options)
    // Read even when empty (204): an answer left unread holds its socket, and with it the process.
    const text = await res.text()
    if (res.status === 204) return null as T
    try {
      return (text ? JSON.parse(text) : null) as T
    } catch {
      throw new RackbootError('RB_ERR_INTERNAL', `rackboot at ${this.target.server} answered ${method} ${path} with something that is not JSON`)
    }
  }

  get<T>(path: string, options: RequestOptions = {}): Promise<T> {
    return this.json<T>('GET', path, options)
  }

  post<T>(path: string, body?: unknown, options: RequestOptions = {}): Promise<T> {
    return this.json<T>('POST', path, { ...options, ...(body !== undefined ? { body } : {}) })
  }

  /**
   * Server-sent events (GET /api/v1/events) until `signal` aborts: each event's JSON to `onEvent`. Resolves false
   * when the stream could not be opened (a token without the read scope, too many streams): callers treat it as
   * optional.
   */
  async events(
    query: RequestOptions['query'],
    onEvent: (event: { type: string; machineId: string | null; message: string; data: Record<string, unknown> }) => void,
    signal: AbortSignal,
    onOpen?: () => void,
  ): Promise<boolean> {
    let res: ApiResponse
    try {
      res = await this.request('GET', '/events', { query, accept: 'text/event-stream', signal, timeoutMs: 24 * 3600_000 })
    } catch {
      return false
    }
    onOpen?.()
    let buffer = ''
    try {
      for await (const chunk of res.chunks()) {
        buffer += chunk
        let end: number
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n')
          if (!data) continue
          try {
            const event = JSON.parse(data) as { type?: string }
            if (event && typeof event.type === 'string') onEvent(event as Parameters<typeof onEvent>[0])
          } catch {
            // A line that is not an event: skipped.
          }
        }
      }
    } catch {
      // Aborted, or the server went away: the caller's request says what happened.
    }
    return true
  }
}

/** The client for the server these options name (see resolveTarget). */
export async function connect(opts: GlobalOptions, env: NodeJS.ProcessEnv = process.env): Promise<ApiClient> {
  return new ApiClient(await resolveTarget(opts, env))
}

/** `/machines/<ref>`: the server resolves the reference (id, name, MAC, SMBIOS uuid or serial). */
export function machinePath(ref: string, rest = ''): string {
  return `/machines/${encodeURIComponent(ref)}${rest}`
}
