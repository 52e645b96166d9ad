// The API token the page signs in with: asked once, checked against /whoami, kept in localStorage until the
// user signs out (or the server refuses it).

const KEY = 'rackboot.apiToken'

export function storedToken() {
  try {
    return localStorage.getItem(KEY)
  } catch {
    return null // storage disabled: ask every time
  }
}

export function storeToken(token) {
  try {
    if (token) localStorage.setItem(KEY, token)
    else localStorage.removeItem(KEY)
  } catch {
    // storage disabled: the token lives as long as the page
  }
}

/** Scopes nest as the server's do: admin ⊇ provision ⊇ read. */
export function canWrite(scopes) {
  return scopes.includes('provision') || scopes.includes('admin')
}
