// `rackboot tokens list|create|revoke` through the API (admin scope), or a data directory's database with
// --data-dir: the way to make the first admin token, before the server has any.
import { TOKEN_SCOPES } from '../inventory/types.js'
import { connect } from './client.js'
import { palette, printJson, UsageError, type GlobalOptions } from './common.js'
import { formatAge, printable, renderTable } from './table.js'

type Options = GlobalOptions & { scope?: string[]; expiresDays?: string }

const local = () => import('./local/tokens.js')

/** A token as the API or the database shows it (times as ms or RFC 3339), never its secret. */
export interface TokenRow {
  id: string
  name: string
  scopes: string[]
  createdAt?: number | string | null
  lastUsedAt?: number | string | null
  expiresAt?: number | string | null
  revokedAt?: number | string | null
}

const ms = (t: number | string | null | undefined): number | null => (t === null || t === undefined ? null : typeof t === 'number' ? t : Date.parse(t))

export function printTokens(tokens: readonly TokenRow[], now = Date.now()): void {
  const p = palette()
  const status = (t: TokenRow) => (ms(t.revokedAt) ? 'revoked' : (ms(t.expiresAt) ?? Infinity) <= now ? 'expired' : 'active')
  console.log(renderTable(tokens, [
    { header: 'id', value: (t) => t.id },
    { header: 'name', value: (t) => t.name },
    { header: 'scopes', value: (t) => t.scopes.join(',') },
    { header: 'created', value: (t) => (ms(t.createdAt) ? `${formatAge(ms(t.createdAt)!, now)} ago` : null) },
    { header: 'last used', value: (t) => (ms(t.lastUsedAt) ? `${formatAge(ms(t.lastUsedAt)!, now)} ago` : 'never') },
    { header: 'status', value: status, colour: (c, t, pal) => (status(t) === 'active' ? pal.green(c) : pal.dim(c)) },
  ], { palette: p }))
}

/** The scopes and expiry the flags ask for; usage errors for anything else. */
export function tokenRequest(o: Options, now = Date.now()): { scopes: string[]; expiresAt: number | null } {
  const scopes = (o.scope ?? []).flatMap((s) => s.split(',')).filter(Boolean)
  if (scopes.length === 0) throw new UsageError(`tokens create needs at least one --scope (${TOKEN_SCOPES.join(', ')})`)
  for (const s of scopes) if (!(TOKEN_SCOPES as readonly string[]).includes(s)) throw new UsageError(`unknown scope '${s}'; one of: ${TOKEN_SCOPES.join(', ')}`)
  let expiresAt: number | null = null
  if (o.expiresDays !== undefined) {
    const days = Number(o.expiresDays)
    if (!(days > 0)) throw new UsageError('--expires-days expects a positive number')
    expiresAt = now + days * 86_400_000
  }
  return { scopes, expiresAt }
}

export function printCreated(token: TokenRow, secret: string, json: boolean | undefined): void {
  if (json) printJson({ ...token, secret })
  else {
    console.log(`token ${token.id} (${token.name}) with scopes ${token.scopes.join(', ')}`)
    console.log(`secret (shown once, keep it safe): ${secret}`)
  }
}

export async function list(o: Options): Promise<number> {
  if (o.dataDir) return (await local()).list(o)
  const api = await connect(o)
  const body = await api.get<TokenRow[] | { items: TokenRow[] }>('/tokens', { scope: 'admin' })
  const items = Array.isArray(body) ? body : body.items
  if (o.json) printJson(items)
  else printTokens(items)
  return 0
}

export async function create(name: string, o: Options): Promise<number> {
  const { scopes, expiresAt } = tokenRequest(o)
  if (o.dataDir) return (await local()).create(name, scopes, expiresAt, o)
  const api = await connect(o)
  const days = o.expiresDays === undefined ? undefined : Number(o.expiresDays)
  const { secret, ...token } = await api.post<TokenRow & { secret: string }>('/tokens', {
    name, scopes, ...(days !== undefined ? { expiresIn: Number.isInteger(days) ? `${days}d` : Math.round(days * 86_400) } : {}),
  }, { scope: 'admin' })
  void expiresAt
  printCreated(token, secret, o.json)
  return 0
}

export async function revoke(ref: string, o: Options): Promise<number> {
  if (o.dataDir) return (await local()).revoke(ref, o)
  const api = await connect(o)
  const r = await api.json<{ revoked: boolean; message: string }>('DELETE', `/tokens/${encodeURIComponent(ref)}`, { scope: 'admin' })
  console.log(printable(r.message))
  return r.revoked ? 0 : 1
}
