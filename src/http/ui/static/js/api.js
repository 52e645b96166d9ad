// The only way the page talks to rackboot: /api/v1 with the user's bearer token.

export const API = '/api/v1'

/** An API answer that is not 2xx, with the API's error code and message ({error, message, details}). */
export class ApiError extends Error {
  constructor(status, code, message, details = null) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.code = code
    this.details = details
  }

  /** What to tell a tech, in one sentence that says what to do about it. */
  get advice() {
    if (this.status === 401) return `Your API token was refused: ${this.message}. Sign in again with a valid token.`
    if (this.status === 403) return `Not allowed: ${this.message}. Sign in with a token that has this scope (rackboot tokens create NAME --scope provision).`
    if (this.status === 0) return `Cannot reach rackboot: ${this.message}`
    return this.message
  }
}

/** Query string from an object; arrays repeat the key, empty values are left out. */
export function queryString(query = {}) {
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query)) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (v !== undefined && v !== null && v !== '') params.append(key, String(v))
    }
  }
  const s = params.toString()
  return s ? `?${s}` : ''
}

/**
 * createApi({ token: () => string|null, onUnauthorized(err) }): { get, post, patch, open }.
 * get/post/patch resolve to the JSON body or throw ApiError; `open` returns the raw Response (for streams).
 */
export function createApi({ token, onUnauthorized = () => {} }) {
  async function open(method, path, { query, body, headers = {}, signal } = {}) {
    const h = { accept: 'application/json', ...headers }
    const t = token()
    if (t) h.authorization = `Bearer ${t}`
    if (body !== undefined) h['content-type'] = 'application/json'
    try {
      return await fetch(`${API}${path}${queryString(query)}`, {
        method, headers: h, signal, cache: 'no-store',
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      })
    } catch (err) {
      if (err?.name === 'AbortError') throw err
      throw new ApiError(0, 'RB_ERR_NETWORK', err?.message ?? 'network error')
    }
  }

  /** Turns a non-2xx response into an ApiError (and signs the page out on 401). */
  async function failure(res) {
    let body = null
    try {
      body = await res.json()
    } catch {
      // not JSON: the status line says enough
    }
    const err = new ApiError(res.status, body?.error ?? `HTTP_${res.status}`, body?.message ?? `${res.status} ${res.statusText}`, body?.details ?? null)
    if (res.status === 401) onUnauthorized(err)
    return err
  }

  async function call(method, path, options) {
    const res = await open(method, path, options)
    if (!res.ok) throw await failure(res)
    if (res.status === 204) return null
    return res.json()
  }

  return {
    open,
    failure,
    get: (path, query, options = {}) => call('GET', path, { ...options, query }),
    post: (path, body, options = {}) => call('POST', path, { ...options, body }),
    patch: (path, body, options = {}) => call('PATCH', path, { ...options, body }),
  }
}
