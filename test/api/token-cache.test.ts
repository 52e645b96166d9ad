// The API token verification cache (src/http/auth.ts) on a real token repository: a token revoked where this
// process cannot see it (another instance, the CLI) stops working within cacheMs, whatever the traffic; steady use
// never waits for the database; concurrent requests share one lookup; clear() (an API revoke) wins over a lookup
// in flight.
import assert from 'node:assert/strict'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { createApiAuth } from '../../src/http/auth.js'
import { isRackbootError } from '../../src/errors.js'
import type { Inventory } from '../../src/inventory/index.js'
import { eachBackend } from '../support/backends.js'

const CACHE_MS = 5_000
const T0 = 1_800_000_000_000

/** An auth hook on `inventory`'s tokens with a clock the test moves, and the database lookups it made. */
function setup(inventory: Inventory) {
  let clock = T0
  const lookups: Promise<unknown>[] = []
  const auth = createApiAuth({
    now: () => clock,
    cacheMs: CACHE_MS,
    tokens: {
      verify(secret, now) {
        const p = inventory.tokens.verify(secret, now)
        lookups.push(p)
        return p
      },
    },
  })
  /** Whether a read request with `secret` at the clock's time is let through (lookups it started are awaited). */
  async function accepted(secret: string): Promise<boolean> {
    const request = { routeOptions: { config: { scope: 'read' } }, headers: { authorization: `Bearer ${secret}` } } as unknown as FastifyRequest
    const reply = { header: () => reply } as unknown as FastifyReply
    try {
      await auth.hook(request, reply)
      return true
    } catch (err) {
      if (isRackbootError(err, 'RB_ERR_UNAUTHORIZED')) return false
      throw err
    } finally {
      await Promise.all(lookups)
    }
  }
  return { auth, lookups, accepted, at: (t: number) => (clock = T0 + t) }
}

eachBackend('a token revoked elsewhere is refused within cacheMs of the revocation, used all along or not', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const { accepted, lookups, at } = setup(inv)
  const { secret } = await inv.tokens.create({ name: 'busy', scopes: ['read'] }, T0)
  const quiet = (await inv.tokens.create({ name: 'quiet', scopes: ['read'] }, T0)).secret
  assert.equal(await accepted(quiet), true)
  // `busy` is used every 250 ms; another instance revokes both at 7 s (straight in the database, no clear()).
  const revokedAt = 7_000
  let lookupsBefore = 0
  for (let ms = 0; ms <= revokedAt + CACHE_MS + 1_000; ms += 250) {
    at(ms)
    if (ms === revokedAt) {
      await inv.tokens.revoke('busy', T0 + ms)
      await inv.tokens.revoke('quiet', T0 + ms)
    }
    const ok = await accepted(secret)
    if (ms < revokedAt) assert.equal(ok, true, `refused at ${ms} ms, before the revocation`)
    if (ms < revokedAt) lookupsBefore = lookups.length
    if (ms >= revokedAt + CACHE_MS) assert.equal(ok, false, `still accepted at ${ms} ms, ${ms - revokedAt} ms after the revocation`)
  }
  // Until then, steady use (28 requests) asked the database once per half cache time, in the background: the first
  // requests of each token and refreshes at 2.5 s and 5 s.
  assert.equal(lookupsBefore, 4)
  // The token nobody used meanwhile: its entry (asked at 0) ran out long ago, it is asked again and refused.
  assert.equal(await accepted(quiet), false)
})

eachBackend('a cached token is asked again in the background past half the cache time: a revocation shows at once then', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const { accepted, lookups, at } = setup(inv)
  const { secret } = await inv.tokens.create({ name: 'cached', scopes: ['read'] }, T0)
  at(0)
  assert.equal(await accepted(secret), true)
  await inv.tokens.revoke('cached', T0 + 1)
  at(1_000)
  assert.equal(await accepted(secret), true, 'within the cache time, before half of it: the cached answer')
  assert.equal(lookups.length, 1)
  at(CACHE_MS / 2)
  assert.equal(await accepted(secret), true, 'the request that starts the background lookup does not wait for it')
  assert.equal(lookups.length, 2)
  at(CACHE_MS / 2 + 1)
  assert.equal(await accepted(secret), false, 'the background lookup found the revocation')
})

eachBackend('concurrent requests share one lookup; clear() (an API revoke) is not undone by a lookup in flight', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const { auth, accepted, lookups, at } = setup(inv)
  const { secret } = await inv.tokens.create({ name: 'shared', scopes: ['read'] }, T0)
  at(0)
  assert.deepEqual(await Promise.all(Array.from({ length: 10 }, () => accepted(secret))), Array(10).fill(true))
  assert.equal(lookups.length, 1)

  auth.clear()
  const first = accepted(secret) // a lookup goes out...
  auth.clear() // ...and the token is revoked through the API meanwhile
  await inv.tokens.revoke('shared', T0)
  // Its own answer may be either: it races the revocation (on SQLite the lookup is a read, then the use recorded).
  await first
  assert.equal(await accepted(secret), false, 'the answer of the lookup in flight was not cached')
})
