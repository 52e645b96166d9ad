// A thin Redfish HTTP client: JSON over undici's fetch with the BMC's own Agent, a session (X-Auth-Token) logged in
// once and reused for every request of the driver, logged out at close; HTTP Basic when the BMC has no sessions.
import { fetch, type Dispatcher } from 'undici'
import { PowerError, type PowerErrorKind } from '../errors.js'

// Redfish resources are open-ended JSON documents; fields are read defensively where used.
export type Json = Record<string, unknown>

export interface RedfishResponse {
  status: number
  headers: Headers
  body: Json | null
  /** ETag header, else the body's @odata.etag. */
  etag: string | null
  location: string | null
}

export interface RequestOptions {
  body?: unknown
  headers?: Record<string, string>
  signal: AbortSignal
  /** Send credentials (session token or Basic); false for the service root. */
  auth?: boolean
}

export interface RedfishClientOptions {
  baseUrl: URL
  username: string
  password: string
  agent: Dispatcher
}

const TLS_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|ERR_SSL|RB_TLS_PIN|EPROTO/
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET',
  'EPIPE', 'UND_ERR_SOCKET'])
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT'])

/** Message ids and texts of a Redfish error body (error.@Message.ExtendedInfo), for error messages and checks. */
export function redfishMessages(body: Json | null): { ids: string[]; text: string } {
  const error = (body?.error ?? null) as Json | null
  const infos = (Array.isArray(error?.['@Message.ExtendedInfo']) ? error['@Message.ExtendedInfo'] : []) as Json[]
  const ids = infos.map((i) => String(i.MessageId ?? '')).filter(Boolean)
  const texts = infos.map((i) => String(i.Message ?? '')).filter(Boolean)
  if (typeof error?.message === 'string' && texts.length === 0) texts.push(error.message)
  if (typeof error?.code === 'string') ids.push(error.code)
  return { ids, text: texts.join('; ').slice(0, 300) }
}

function isSessionLimit(res: RedfishResponse): boolean {
  const { ids, text } = redfishMessages(res.body)
  if (ids.some((id) => /SessionLimitExceeded|RAC0218/i.test(id))) return true
  return /session/i.test(text) && /(limit|maximum|exceed|no more|exhaust|too many)/i.test(text)
}

export class RedfishClient {
  readonly label: string
  private token: string | null = null
  private sessionUrl: string | null = null
  private mode: 'unknown' | 'session' | 'basic' = 'unknown'
  private rootDoc: Json | null = null

  constructor(private readonly opts: RedfishClientOptions) {
    this.label = opts.baseUrl.host
  }

  /** Resolves a path or URL the BMC gave against the BMC's origin; refuses other origins (no token leaks). */
  url(pathOrUrl: string): URL {
    const u = new URL(pathOrUrl, this.opts.baseUrl)
    if (u.origin !== this.opts.baseUrl.origin) {
      throw new PowerError('protocol', `BMC ${this.label} pointed to another origin (${u.origin}); not following`)
    }
    return u
  }

  async root(signal: AbortSignal): Promise<Json> {
    if (this.rootDoc) return this.rootDoc
    const res = await this.raw('GET', '/redfish/v1/', { signal, auth: false })
    if (res.status !== 200 || !res.body) throw this.httpError(res, 'read the service root')
    this.rootDoc = res.body
    return res.body
  }

  /** A request that must succeed (2xx); 401 on a reused session logs in again once. */
  async request(method: string, path: string, o: RequestOptions): Promise<RedfishResponse> {
    const res = await this.send(method, path, o)
    if (res.status >= 200 && res.status < 300) return res
    throw this.httpError(res, `${method} ${new URL(path, this.opts.baseUrl).pathname}`)
  }

  /** Like request, but hands back any status for the caller to judge. */
  async send(method: string, path: string, o: RequestOptions): Promise<RedfishResponse> {
    if (o.auth !== false) await this.login(o.signal)
    let res = await this.raw(method, path, o)
    if (res.status === 401 && this.mode === 'session' && o.auth !== false) {
      // The session expired (BMC timeout) or was deleted: log in again, once.
      this.token = null
      this.sessionUrl = null
      this.mode = 'unknown'
      await this.login(o.signal)
      res = await this.raw(method, path, o)
    }
    return res
  }

  async login(signal: AbortSignal): Promise<void> {
    if (this.mode !== 'unknown') return
    const root = await this.root(signal)
    const links = (root.Links ?? {}) as Json
    const sessionsRef = ((links.Sessions ?? {}) as Json)['@odata.id']
    const hasService = typeof sessionsRef === 'string' || root.SessionService !== undefined
    if (!hasService) {
      this.mode = 'basic'
      return
    }
    const sessionsPath = typeof sessionsRef === 'string' ? sessionsRef : '/redfish/v1/SessionService/Sessions'
    const res = await this.raw('POST', sessionsPath, {
      signal, auth: false, body: { UserName: this.opts.username, Password: this.opts.password },
    })
    if (res.status === 201 || res.status === 200) {
      const token = res.headers.get('x-auth-token')
      if (!token) throw new PowerError('protocol', `BMC ${this.label} created a session without an X-Auth-Token`)
      this.token = token
      const where = res.location ?? (typeof res.body?.['@odata.id'] === 'string' ? res.body['@odata.id'] : null)
      this.sessionUrl = where ? this.url(where).href : null
      this.mode = 'session'
      return
    }
    if (isSessionLimit(res)) {
      throw new PowerError('session-limit', `BMC ${this.label} has no free Redfish session ` +
        `(${redfishMessages(res.body).text || `HTTP ${res.status}`}): stale sessions must time out or be deleted`,
      { details: { status: res.status } })
    }
    if (res.status === 404 || res.status === 405 || res.status === 501) {
      this.mode = 'basic' // a BMC without a working SessionService: HTTP Basic on every request
      return
    }
    throw this.httpError(res, 'log in')
  }

  /** Deletes the session (BMCs have few; leaking them locks everyone out). Never throws. */
  async logout(signal: AbortSignal): Promise<void> {
    const url = this.sessionUrl
    const token = this.token
    this.token = null
    this.sessionUrl = null
    this.mode = 'unknown'
    if (!url || !token) return
    try {
      await this.raw('DELETE', url, { signal, auth: false, headers: { 'X-Auth-Token': token } })
    } catch {
      // The session times out on the BMC.
    }
  }

  get hasSession(): boolean {
    return this.token !== null
  }

  private async raw(method: string, path: string, o: RequestOptions): Promise<RedfishResponse> {
    const url = this.url(path)
    const headers: Record<string, string> = { Accept: 'application/json', 'OData-Version': '4.0', ...o.headers }
    if (o.body !== undefined) headers['Content-Type'] = 'application/json'
    if (o.auth !== false) {
      if (this.mode === 'session' && this.token) headers['X-Auth-Token'] = this.token
      else if (this.mode === 'basic') {
        headers.Authorization = 'Basic ' + Buffer.from(`${this.opts.username}:${this.opts.password}`).toString('base64')
      }
    }
    let response
    try {
      response = await fetch(url, {
        method, headers, signal: o.signal, dispatcher: this.opts.agent,
        body: o.body === undefined ? undefined : JSON.stringify(o.body),
      })
    } catch (err) {
      throw this.fetchError(err, o.signal, `${method} ${url.pathname}`)
    }
    let text: string
    try {
      text = await response.text()
    } catch (err) {
      throw this.fetchError(err, o.signal, `${method} ${url.pathname}`)
    }
    let body: Json | null = null
    if (text.trim()) {
      try {
        const parsed = JSON.parse(text) as unknown
        body = parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Json) : null
      } catch {
        body = null
      }
    }
    const etag = response.headers.get('etag') ?? (typeof body?.['@odata.etag'] === 'string' ? body['@odata.etag'] : null)
    return { status: response.status, headers: response.headers as unknown as Headers, body, etag,
      location: response.headers.get('location') }
  }

  httpError(res: RedfishResponse, what: string): PowerError {
    const { ids, text } = redfishMessages(res.body)
    const s = res.status
    let kind: PowerErrorKind = 'rejected'
    if (s === 401 || s === 403) kind = 'auth'
    else if (isSessionLimit(res)) kind = 'session-limit'
    else if (s === 405 || s === 501) kind = 'unsupported'
    else if (s === 429 || s === 503 || s === 502 || s === 504) kind = 'busy'
    else if (s >= 500) kind = 'busy'
    const detail = text || ids.join(', ') || 'no details'
    const because = kind === 'auth' ? ' (wrong username or password, or not allowed)' : ''
    return new PowerError(kind, `BMC ${this.label} refused to ${what}: HTTP ${s}${because}: ${detail}`, {
      details: { status: s, messageIds: ids },
    })
  }

  private fetchError(err: unknown, signal: AbortSignal, what: string): PowerError {
    if (signal.aborted) {
      return new PowerError('timeout', `no answer from BMC ${this.label} for ${what} in time`, { cause: err })
    }
    const cause = (err as { cause?: unknown })?.cause ?? err
    const code = String((cause as { code?: unknown })?.code ?? '')
    const message = cause instanceof Error ? cause.message : String(cause)
    if (TLS_CODES.test(code)) {
      return new PowerError('tls', `TLS to BMC ${this.label} failed: ${code}: ${message}`, { cause: err, details: { tlsCode: code } })
    }
    if (TIMEOUT_CODES.has(code)) {
      return new PowerError('timeout', `no answer from BMC ${this.label} for ${what} (${code})`, { cause: err })
    }
    if (UNREACHABLE_CODES.has(code)) {
      return new PowerError('unreachable', `cannot reach BMC ${this.label}: ${code}`, { cause: err })
    }
    return new PowerError('unreachable', `request to BMC ${this.label} failed: ${code || message}`, { cause: err })
  }
}
