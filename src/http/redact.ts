import { effectiveScopes } from './auth.js'
import type { ApiToken } from '../inventory/index.js'

// Boot tokens (an agent's report token, a Talos config token) are as good as the config they fetch while they
// last, and they travel in places a read-only API user can see: the kernel command line Talos logs
// ("talos.config=http://…/talos/config?t=…", "rackboot.token=…"), Talos's own errors about a config fetch, and
// the timeline events that quote them. Those readers get "[redacted]" instead; provision and admin tokens, which
// can start installs themselves, see the lines as they are.

export const REDACTED = '[redacted]'

/**
 * A token value after one of its names: `?t=` or `&t=` (the config URL, also percent-encoded inside another URL),
 * `rackboot.token=` (the agent's kernel argument). One pass, no nested quantifier: linear in the text's length.
 */
const BOOT_TOKEN = /([?&]t=|%3[Ff]t%3[Dd]|%26t%3[Dd]|\brackboot\.token=)[A-Za-z0-9_-]+/g

/** The text with every boot token value replaced by [redacted]. */
export function redactBootTokens(text: string): string {
  return text.replace(BOOT_TOKEN, `$1${REDACTED}`)
}

/** Field names whose value is a token itself, whatever it looks like. */
const TOKEN_KEY = /^(?:token|agentToken|configToken|bootToken|t)$/

/** A JSON value (timeline event data) with boot tokens redacted in every string, and in fields named for a token. */
export function redactBootTokensDeep<T>(value: T, depth = 0): T {
  if (typeof value === 'string') return redactBootTokens(value) as T
  if (depth > 32 || value === null || typeof value !== 'object') return value
  if (Array.isArray(value)) return value.map((v) => redactBootTokensDeep(v, depth + 1)) as T
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    out[k] = TOKEN_KEY.test(k) && typeof v === 'string' ? REDACTED : redactBootTokensDeep(v, depth + 1)
  }
  return out as T
}

/** Whether a request's API token may see boot tokens: provision (or admin) scope; read alone may not. */
export function seesBootTokens(token: Pick<ApiToken, 'scopes'> | undefined): boolean {
  return token !== undefined && effectiveScopes(token.scopes).has('provision')
}
