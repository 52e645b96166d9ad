// serve warms the config linter after it starts listening (issue 15): the first config of a Talos version no longer
// compiles its schema's validator (a few hundred ms) while a boot storm's machines wait.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { warmLinter } from '../../src/cli/serve.js'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { silentLogger } from '../../src/log.js'
import { createConfigLinter } from '../../src/talos/index.js'

const profile = (name: string, talosVersion: string | null) =>
  ({ name, description: null, talosVersion, arch: 'amd64' as const, schematic: null, kernelArgs: [], baseConfig: null, patches: [], installDisk: null, managedBy: null })

test('warmLinter warms each Talos version a profile or a cluster names, once; one that fails does not stop the rest', async (t) => {
  const inv = await openSqliteInventory({ file: ':memory:' })
  t.after(() => inv.close())
  await inv.profiles.put(profile('a', 'v1.13.9'), 1)
  await inv.profiles.put(profile('b', 'v1.13.9'), 1)
  await inv.profiles.put(profile('c', 'v9.9.9'), 1)
  await inv.profiles.put(profile('d', null), 1)
  await inv.clusters.create({ name: 'k', endpoint: 'https://198.18.0.10:6443', talosVersion: 'v1.12.11', kubernetesVersion: null }, 'secrets', 1)
  const warmed: string[] = []
  const linter = {
    warm(v: string) {
      warmed.push(v)
      if (v === 'v9.9.9') throw new Error('no schema')
    },
  }
  await warmLinter(inv, linter, silentLogger(), 0).done
  assert.deepEqual(warmed.sort(), ['v1.12.11', 'v1.13.9', 'v9.9.9'])

  // Stopped before its first turn: nothing is compiled.
  warmed.length = 0
  const w = warmLinter(inv, linter, silentLogger(), 0)
  w.stop()
  await w.done
  assert.deepEqual(warmed, [])
})

test('ConfigLinter.warm compiles ahead what the first lint of the version would: that lint is then a fraction of a cold one', () => {
  const config = 'version: v1alpha1\nmachine:\n  type: worker\n  install:\n    disk: /dev/sda\ncluster:\n  clusterName: c\n'
  const timed = (fn: () => void): number => {
    const t0 = performance.now()
    fn()
    return performance.now() - t0
  }
  const cold = createConfigLinter()
  const coldMs = timed(() => assert.ok(cold.lint(config, { talosVersion: 'v1.13.9' }).ok))
  const warmed = createConfigLinter()
  warmed.warm('v1.13.9')
  const warmMs = timed(() => assert.ok(warmed.lint(config, { talosVersion: 'v1.13.9' }).ok))
  // (Compiling the validator is a few hundred ms; checking this config with it, well under one.)
  assert.ok(warmMs < coldMs / 4, `first lint after warm ${warmMs.toFixed(1)} ms, without ${coldMs.toFixed(1)} ms`)
  assert.throws(() => warmed.warm('not a version'))
})
