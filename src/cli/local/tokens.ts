import type { TokenScope } from '../../inventory/index.js'
import { withContext } from '../context.js'
import { printJson, type GlobalOptions } from '../common.js'
import { printCreated, printTokens } from '../tokens.js'

// `rackboot tokens ... --data-dir DIR`: tokens in a data directory's database. `create` may make the database (the
// first admin token, before the server ever ran); list and revoke need it to exist.

export async function list(o: GlobalOptions): Promise<number> {
  return withContext(o, async ({ inventory }) => {
    const tokens = await inventory.tokens.list()
    if (o.json) printJson(tokens)
    else printTokens(tokens)
    return 0
  }, { create: false })
}

export async function create(name: string, scopes: string[], expiresAt: number | null, o: GlobalOptions): Promise<number> {
  return withContext(o, async ({ inventory }) => {
    const { token, secret } = await inventory.tokens.create({ name, scopes: scopes as TokenScope[], expiresAt }, Date.now())
    printCreated(token, secret, o.json)
    return 0
  }, { create: true })
}

export async function revoke(ref: string, o: GlobalOptions): Promise<number> {
  return withContext(o, async ({ inventory }) => {
    if (!(await inventory.tokens.revoke(ref, Date.now()))) {
      console.error(`no active token ${ref}`)
      return 1
    }
    console.log(`revoked ${ref}`)
    return 0
  }, { create: false })
}
