import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { BootIso, BootIsoProvider } from '../../src/assets/virtual-media.js'
import { buildApp } from '../../src/http/index.js'
import type { Inventory } from '../../src/inventory/index.js'
import type { Lifecycle } from '../../src/lifecycle/index.js'
import { silentLogger } from '../../src/log.js'
import { createMetricsRegistry } from '../../src/metrics.js'

// The virtual media ISO is built soon after the server listens, not while it starts (the build competes for the CPU
// with the start), and a server closed before then builds nothing.

function spyProvider(): BootIsoProvider & { asked: string[] } {
  const asked: string[] = []
  return { asked, get: async (url) => (asked.push(url), Promise.reject(new Error('no ISO here')) as Promise<BootIso>) }
}

async function appWith(provider: BootIsoProvider) {
  return buildApp({
    inventory: {} as Inventory, lifecycle: { record() {} } as unknown as Lifecycle, registry: createMetricsRegistry(), log: silentLogger(),
    version: 'test', virtualMedia: { provider, serverUrl: 'http://192.0.2.1:8080' },
  })
}

test('the ISO build starts about a second after the server listens, not at ready', async (t) => {
  const provider = spyProvider()
  const app = await appWith(provider)
  t.after(() => app.close())
  await app.ready()
  assert.deepEqual(provider.asked, [], 'nothing built while the server starts')
  await app.listen({ host: '127.0.0.1', port: 0 })
  assert.deepEqual(provider.asked, [], 'nor the moment it listens')
  await new Promise((r) => setTimeout(r, 1_500))
  assert.deepEqual(provider.asked, ['http://192.0.2.1:8080'])
})

test('a server closed before then builds nothing', async () => {
  const provider = spyProvider()
  const app = await appWith(provider)
  await app.listen({ host: '127.0.0.1', port: 0 })
  await app.close()
  await new Promise((r) => setTimeout(r, 1_500))
  assert.deepEqual(provider.asked, [])
})
