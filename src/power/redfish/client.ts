// A thin Redfish HTTP client: JSON over undici's fetch with the BMC's own Agent, a session (X-Auth-Token) logged in
// once and reused for every request of the driver, logged out at close; HTTP Basic when the BMC has no sessions or
// the inventory says so. It turns every failure into a PowerError that names the BMC, says what happened in one
// line, and says whether the answer proves the request was not carried out (notRun).
import { fetch, type Dispatcher } from 'undici'
import { PowerError, type PowerErrorKind } from '../errors.js'
import { temporaryError, type Vendor } from './quirks.js'

// Redfish resources are open-ended JSON documents; fields are read defensively where used.
export type Json = Record<string, unknown>

export interface RedfishResponse {
  status: number
  headers: Headers
  body: Json | null
  /** ETag header, else the body's @odata.etag: as the BMC gave it. */
  etag: string | null
  location: string | null
  /** The start of a body that is not JSON (an HTML error page), one line; null for JSON or no body. */
  snippet: string | null
}

export interface RequestOptions {
  body?: unknown
  headers?: Record<string, string>
  signal: AbortSignal
  /** Send credentials (session token or Basic); false for the service root. */
  auth?: boolean
  /** Called just before the request itself leaves (after any log-in): the caller's "may have run from now on". */
  onSend?: () => void
}

export type AuthMode = 'auto' | 'session' | 'basic'

export interface RedfishClientOptions {
  baseUrl: URL
  username: string
  password: string
  agent: Dispatcher
  /** auto: a session where the BMC has a SessionService, else Basic; session: sessions only; basic: never log in. */
  auth?: AuthMode
}

/** What an error answer was an answer to, for its classification and message. */
export interface ErrorTopic {
  /** The ResetType of a ComputerSystem.Reset. */
  resetType?: string
  /** The request changes the machine: a 5xx then may mean it was carried out, and the message says so. */
  changes?: boolean
}

const MAX_MESSAGE = 400
const MAX_DETAIL = 200
const TLS_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|ERR_SSL|RB_TLS_PIN|EPROTO/
// The other side speaks plain HTTP: OpenSSL sees an HTTP status line where a TLS record should be.
const PLAIN_HTTP_TLS = /WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|HTTP_REQUEST|UNKNOWN_PROTOCOL|RECORD_LENGTH_MISMATCH/
const NOT_CONNECTED_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL'])
const CLOSED_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'ECONNABORTED'])
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT'])

/** One line, bounded: BMC texts and OpenSSL dumps never break a table or a log line. */
export function oneLine(text: string, max = MAX_DETAIL): string {
  const flat = text.replace(/\s+/g, ' ').trim()
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat
}

/** Message ids (with their arguments) and texts of a Redfish error body (error.@Message.ExtendedInfo). */
export function redfishMessages(body: Json | null): { ids: string[]; text: string; messages: { id: string; args: string[] }[] } {
  const error = (body?.error ?? null) as Json | null
  const infos = (Array.isArray(error?.['@Message.ExtendedInfo']) ? error['@Message.ExtendedInfo'] : []) as Json[]
  // iLO 4 spells it MessageID.
  const messages = infos.map((i) => ({
    id: String(i.MessageId ?? i.MessageID ?? ''),
    args: (Array.isArray(i.MessageArgs) ? i.MessageArgs : []).map(String),
  })).filter((m) => m.id)
  const ids = messages.map((m) => m.id)
  const texts = infos.map((i) => String(i.Message ?? '')).filter(Boolean)
  if (typeof error?.message === 'string' && texts.length === 0) texts.push(error.message)
  if (typeof error?.code === 'string') ids.push(error.code)
  return { ids, text: oneLine(texts.join('; '), 300), messages }
}

function isSessionLimit(res: RedfishResponse): boolean {
  const { ids, text } = redfishMessages(res.body)
  if (ids.some((id) => /SessionLimitExceeded|RAC0218/i.test(id))) return true
  return /session/i.test(text) && /(limit|maximum|exceed|no more|exhaust|too many)/i.test(text)
}

/** Retry-After in ms: delta-seconds or an HTTP date (RFC 9110 10.2.3); null when absent or unreadable. */
export function retryAfterMs(value: string | null, now = Date.now()): number | null {
  if (!value) return null
  const trimmed = value.trim()
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000
  const at = Date.parse(trimmed)
  return Number.isFinite(at) ? Math.max(0, at - now) : null
}

function bounded(message: string): string {
  return oneLine(message, MAX_MESSAGE)
}

export class RedfishClient {
  readonly label: string
  /** Set by the driver once it knows (quirks.ts): some errors mean "try again" only from one vendor. */
  vendor: Vendor | null = null
  private token: string | null = null
  private sessionUrl: string | null = null
  private mode: 'unknown' | 'session' | 'basic'
  private rootDoc: Json | null = null
  /** The BMC answered something over this scheme: a later dropped connection is not a scheme mismatch. */
  private answered = false

  constructor(private readonly opts: RedfishClientOptions) {
    this.label = opts.baseUrl.host
    this.mode = opts.auth === 'basic' ? 'basic' : 'unknown'
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
    if (res.status !== 200 || !res.body) throw this.httpError(res, 'GET /redfish/v1/ (the service root)')
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
    o.onSend?.()
    let res = await this.raw(method, path, o)
    if (res.status === 401 && this.mode === 'session' && o.auth !== false) {
      // The session expired (BMC timeout) or was deleted: log in again, once. A 401 proves nothing ran.
      this.token = null
      this.sessionUrl = null
      this.mode = 'unknown'
      await this.login(o.signal)
      o.onSend?.()
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
    if (!hasService) return this.noSessions('it has no SessionService')
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
      throw new PowerError('session-limit', bounded(`BMC ${this.label} has no free Redfish session ` +
        `(${redfishMessages(res.body).text || `HTTP ${res.status}`}): stale sessions must time out or be deleted`),
      { details: { status: res.status }, notRun: true })
    }
    // A BMC without a working SessionService: HTTP Basic on every request.
    if (res.status === 404 || res.status === 405 || res.status === 501) return this.noSessions(`its log-in answers HTTP ${res.status}`)
    throw this.httpError(res, 'log in (POST to SessionService/Sessions)')
  }

  private noSessions(why: string): void {
    if (this.opts.auth === 'session') {
      throw new PowerError('unsupported', `BMC ${this.label} cannot do session log-in (${why}) but its auth is set to ` +
        'session; set it to basic or auto', { notRun: true })
    }
    this.mode = 'basic'
  }

  /** Deletes the session (BMCs have few; leaking them locks everyone out). Never throws. */
  async logout(signal: AbortSignal): Promise<void> {
    const url = this.sessionUrl
    const token = this.token
    this.token = null
    this.sessionUrl = null
    this.mode = this.opts.auth === 'basic' ? 'basic' : 'unknown'
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

  private headersFor(o: RequestOptions): Record<string, string> {
    // identity: with gzip, BMCs hand out weak ETags that their own If-Match then refuses (quirk identity-encoding).
    const headers: Record<string, string> = {
      Accept: 'application/json', 'Accept-Encoding': 'identity', 'OData-Version': '4.0', ...o.headers,
    }
    if (o.body !== undefined) headers['Content-Type'] = 'application/json'
    if (o.auth === false) return headers
    if (this.mode === 'session' && this.token) headers['X-Auth-Token'] = this.token
    else if (this.mode === 'basic') {
      headers.Authorization = 'Basic ' + Buffer.from(`${this.opts.username}:${this.opts.password}`).toString('base64')
    }
    return headers
  }

  private async raw(method: string, path: string, o: RequestOptions): Promise<RedfishResponse> {
    const url = this.url(path)
    const what = `${method} ${url.pathname}`
    const started = Date.now()
    let response
    let text: string
    try {
      response = await fetch(url, {
        method, headers: this.headersFor(o), signal: o.signal, dispatcher: this.opts.agent,
        body: o.body === undefined ? undefined : JSON.stringify(o.body),
      })
      text = await response.text()
    } catch (err) {
      throw this.fetchError(err, o.signal, what, Date.now() - started)
    }
    this.answered = true
    let body: Json | null = null
    let snippet: string | null = null
    if (text.trim()) {
      try {
        const parsed = JSON.parse(text) as unknown
        body = parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Json) : null
      } catch {
        snippet = oneLine(text.replace(/<[^>]*>/g, ' '), 160)
      }
    }
    const etag = response.headers.get('etag') ?? (typeof body?.['@odata.etag'] === 'string' ? body['@odata.etag'] : null)
    return { status: response.status, headers: response.headers as unknown as Headers, body, etag,
      location: response.headers.get('location'), snippet }
  }

  /** An error answer as a PowerError: its kind, whether it proves nothing ran (notRun), and how long to wait. */
  httpError(res: RedfishResponse, what: string, topic: ErrorTopic = {}): PowerError {
    const { ids, text, messages } = redfishMessages(res.body)
    const s = res.status
    const detail = text || ids.join(', ') || res.snippet || 'no details'
    const details = { status: s, messageIds: ids }
    const temporary = temporaryError({ status: s, messages, vendor: this.vendor, resetType: topic.resetType })
    const header = retryAfterMs(res.headers.get('retry-after'))
    if (temporary) {
      const wait = header ?? temporary.waitMs
      return new PowerError('busy', bounded(`BMC ${this.label} is busy and did not carry out ${what}: HTTP ${s}: ${detail}` +
        ` (retry in ${Math.round(wait / 1000)} s)`), { details: { ...details, quirk: temporary.rule.quirk }, notRun: true, retryAfterMs: wait })
    }
    if (s === 400 && /plain HTTP request was sent to HTTPS port/i.test(`${detail} ${res.snippet ?? ''}`)) {
      return new PowerError('tls', this.wantsHttps(), { details, notRun: true })
    }
    if (s >= 500 && s !== 501 && s !== 503) {
      // A server error proves nothing either way: reads may be retried, a reset is not sent again.
      const maybe = topic.changes ? ' (it may have been carried out)' : ''
      return new PowerError('protocol', bounded(`BMC ${this.label} failed to ${what}: HTTP ${s}${maybe}: ${detail}`), { details })
    }
    const kind = this.kindOf(res)
    const because = kind === 'auth' ? ' (wrong username or password, or not allowed)' : ''
    return new PowerError(kind, bounded(`BMC ${this.label} refused to ${what}: HTTP ${s}${because}: ${detail}`), {
      details, notRun: true, ...(header !== null ? { retryAfterMs: header } : {}),
    })
  }

  /** Kinds of the answers that prove the request was not carried out (4xx, 501, 503). */
  private kindOf(res: RedfishResponse): PowerErrorKind {
    const s = res.status
    if (s === 401 || s === 403) return 'auth'
    if (isSessionLimit(res)) return 'session-limit'
    if (s === 405 || s === 501) return 'unsupported'
    if (s === 429 || s === 503) return 'busy'
    return 'rejected'
  }

  private wantsHttps(): string {
    const https = new URL(this.opts.baseUrl.href)
    https.protocol = 'https:'
    return `BMC ${this.label} closed the connection on a plain-HTTP request; it probably wants https:// ` +
      `(write ${https.origin} in the BMC address)`
  }

  private fetchError(err: unknown, signal: AbortSignal, what: string, waitedMs: number): PowerError {
    if (signal.aborted) {
      return new PowerError('timeout', `BMC ${this.label} did not answer ${what} (waited ${waitedMs} ms)`, { cause: err })
    }
    const cause = (err as { cause?: unknown })?.cause ?? err
    const code = String((cause as { code?: unknown })?.code ?? '')
    const message = oneLine(cause instanceof Error ? cause.message : String(cause), 120)
    if (TLS_CODES.test(code)) return this.tlsError(err, code, message)
    // Nothing reached the BMC: no connection was made.
    if (NOT_CONNECTED_CODES.has(code)) {
      return new PowerError('unreachable', `cannot reach BMC ${this.label}: ${code}`, { cause: err, notRun: true })
    }
    if (code === 'UND_ERR_CONNECT_TIMEOUT') {
      return new PowerError('unreachable', `cannot reach BMC ${this.label}: no connection accepted in time (${code})`,
        { cause: err, notRun: true })
    }
    if (TIMEOUT_CODES.has(code)) {
      return new PowerError('timeout', `BMC ${this.label} did not answer ${what} (${code}, waited ${waitedMs} ms)`, { cause: err })
    }
    if (CLOSED_CODES.has(code) || /other side closed|socket hang up/i.test(message)) {
      // On a BMC that never answered over plain HTTP, a closed connection is a TLS port refusing plain HTTP.
      if (this.opts.baseUrl.protocol === 'http:' && !this.answered) return new PowerError('tls', this.wantsHttps(), { cause: err })
      return new PowerError('unreachable', `BMC ${this.label} closed the connection during ${what} before answering (${code || message})`,
        { cause: err })
    }
    return new PowerError('unreachable', `request ${what} to BMC ${this.label} failed: ${code || message}`, { cause: err })
  }

  /** TLS failures happen in the handshake, before any request: nothing ran. */
  private tlsError(err: unknown, code: string, message: string): PowerError {
    const options = { cause: err, details: { tlsCode: code }, notRun: true }
    if (PLAIN_HTTP_TLS.test(code) || /wrong version number|packet length too long|http request/i.test(message)) {
      const http = new URL(this.opts.baseUrl.href)
      http.protocol = 'http:'
      return new PowerError('tls', `BMC ${this.label} does not speak TLS on this port (it looks like plain HTTP); ` +
        `write ${http.origin} in the BMC address if that is intended`, options)
    }
    if (code === 'RB_TLS_PIN_MISMATCH') return new PowerError('tls', `BMC ${this.label}: ${message}`, options)
    if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(code)) {
      return new PowerError('tls', `BMC ${this.label} has a certificate rackboot does not trust (${code}: ${message}); ` +
        'give its CA, pin its sha256 fingerprint, or mark it insecure', options)
    }
    return new PowerError('tls', `TLS handshake with BMC ${this.label} failed: ${code}: ${message}`, options)
  }
}
