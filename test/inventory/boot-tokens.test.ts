import assert from 'node:assert/strict'
import { eachBackend } from '../support/backends.js'

// consume() honours a token with one conditional UPDATE that returns the row; a refusal reads the row for its reason.

const NOW = 1_700_000_000_000

eachBackend('boot tokens: consume binds to the first address, counts uses, and says why it refuses', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const m = await inv.machines.create({ name: 'bt', state: 'provisioning' }, NOW)
  const issue = (ttlMs = 60_000) => inv.bootTokens.issue({ machineId: m.id, purpose: 'config', clientIp: '198.18.0.9', ttlMs, machineState: 'provisioning' }, NOW)
  const secret = await issue()
  const first = await inv.bootTokens.consume(secret, 'config', '198.18.0.9', 2, NOW + 1)
  assert.ok(first.ok)
  assert.deepEqual({ ...first.token }, {
    machineId: m.id, purpose: 'config', clientIp: '198.18.0.9', issuedAt: NOW, expiresAt: NOW + 60_000, usedAt: NOW + 1,
    machineState: 'provisioning', fetchIp: '198.18.0.9', uses: 1,
  })
  const other = await inv.bootTokens.consume(secret, 'config', '198.18.0.10', 2, NOW + 2)
  assert.ok(!other.ok && other.reason === 'other-address' && other.token?.fetchIp === '198.18.0.9')
  assert.equal((await inv.bootTokens.check(secret, 'config', NOW + 2)).token?.uses, 1, 'a refusal uses nothing')
  const second = await inv.bootTokens.consume(secret, 'config', '198.18.0.9', 2, NOW + 3)
  assert.ok(second.ok && second.token.uses === 2 && second.token.usedAt === NOW + 1, 'the first use time stays')
  const third = await inv.bootTokens.consume(secret, 'config', '198.18.0.9', 2, NOW + 4)
  assert.ok(!third.ok && third.reason === 'used-up' && third.token?.uses === 2)

  const wrong = await inv.bootTokens.consume(await issue(), 'agent', '198.18.0.9', 5, NOW)
  assert.ok(!wrong.ok && wrong.reason === 'wrong-purpose' && wrong.token === null)
  const expiring = await issue(10)
  const expired = await inv.bootTokens.consume(expiring, 'config', '198.18.0.9', 5, NOW + 10)
  assert.ok(!expired.ok && expired.reason === 'expired')
  const voided = await issue()
  await issue()
  const v = await inv.bootTokens.consume(voided, 'config', '198.18.0.9', 5, NOW)
  assert.ok(!v.ok && v.reason === 'void')
  for (const bad of ['x'.repeat(32), '${uuid}']) {
    const u = await inv.bootTokens.consume(bad, 'config', '198.18.0.9', 5, NOW)
    assert.ok(!u.ok && u.reason === 'unknown' && u.token === null)
  }
})
