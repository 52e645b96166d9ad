import { TOKEN_SCOPES, type TokenScope } from '../inventory/index.js'
import { formatAge, renderTable } from './table.js'
import { parse, printJson, UsageError, withContext } from './context.js'

export const TOKENS_USAGE = `rackboot tokens <command>

  create NAME --scope read|provision|admin [--scope ...] [--expires-days N]
  list [--json]
  revoke ID|NAME`

export async function tokensCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args
  const { values, positionals } = parse(rest, { scope: { type: 'string', multiple: true }, 'expires-days': { type: 'string' } })
  if (!sub || values.help) {
    console.log(TOKENS_USAGE)
    return sub ? 0 : 2
  }
  return withContext(values, async ({ inventory }) => {
    const now = Date.now()
    switch (sub) {
      case 'create': {
        const [name] = positionals
        if (!name) throw new UsageError('tokens create needs a NAME')
        const scopes = (values.scope ?? []).flatMap((s) => s.split(','))
        if (scopes.length === 0) throw new UsageError(`tokens create needs at least one --scope (${TOKEN_SCOPES.join(', ')})`)
        for (const s of scopes) if (!TOKEN_SCOPES.includes(s as TokenScope)) throw new UsageError(`unknown scope '${s}'; one of: ${TOKEN_SCOPES.join(', ')}`)
        let expiresAt: number | null = null
        if (values['expires-days'] !== undefined) {
          const days = Number(values['expires-days'])
          if (!(days > 0)) throw new UsageError('--expires-days expects a positive number')
          expiresAt = now + days * 86_400_000
        }
        const { token, secret } = await inventory.tokens.create({ name, scopes: scopes as TokenScope[], expiresAt }, now)
        if (values.json) printJson({ ...token, secret })
        else {
          console.log(`token ${token.id} (${token.name}) with scopes ${token.scopes.join(', ')}`)
          console.log(`secret (shown once, keep it safe): ${secret}`)
        }
        return 0
      }
      case 'list': {
        const tokens = await inventory.tokens.list()
        if (values.json) printJson(tokens)
        else console.log(renderTable(tokens, [
          { header: 'id', value: (t) => t.id },
          { header: 'name', value: (t) => t.name },
          { header: 'scopes', value: (t) => t.scopes.join(',') },
          { header: 'created', value: (t) => formatAge(t.createdAt, now) + ' ago' },
          { header: 'last used', value: (t) => (t.lastUsedAt ? formatAge(t.lastUsedAt, now) + ' ago' : 'never') },
          { header: 'status', value: (t) => (t.revokedAt ? 'revoked' : t.expiresAt && t.expiresAt <= now ? 'expired' : 'active') },
        ]))
        return 0
      }
      case 'revoke': {
        const [ref] = positionals
        if (!ref) throw new UsageError('tokens revoke needs an ID or NAME')
        if (!(await inventory.tokens.revoke(ref, now))) {
          console.error(`no active token ${ref}`)
          return 1
        }
        console.log(`revoked ${ref}`)
        return 0
      }
      default:
        throw new UsageError(`unknown tokens command '${sub}'\n\n${TOKENS_USAGE}`)
    }
  })
}
