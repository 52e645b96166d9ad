import { test, before, beforeEach } from 'node:test'
import assert from 'node:assert/strict'
import {
  applyMachineValues,
  applyPatches,
  createConfigLinter,
  generateConfig,
  generateSecretsBundle,
  parseConfigDocuments,
  parseSecretsBundle,
  renderMachineConfig,
  secretsBundleToYaml,
  stringifyConfigDocuments,
  type ConfigDocument,
  type MachineValues,
  type PatchInput,
  type SecretsBundle,
} from '../../src/talos/index.js'
import { deepFreeze, stringifyConfigDocumentsIncremental, writtenPlain } from '../../src/talos/documents.js'
import { clearRenderCache, configureRenderCache, DEFAULT_RENDER_CACHE_LIMITS, renderCacheStats } from '../../src/talos/render-cache.js'
import { isRackbootError } from '../../src/errors.js'

// The cached render path (render.ts, render-cache.ts, documents.ts incremental YAML, lint.ts per-document results)
// against the plain one: same text, same lint verdicts, and no entry served for inputs it was not made from.

let secretsA: SecretsBundle
let secretsB: SecretsBundle
before(async () => {
  ;[secretsA, secretsB] = await Promise.all([
    generateSecretsBundle({ talosVersion: 'v1.13.9', rsaBits: 2048 }),
    generateSecretsBundle({ talosVersion: 'v1.13.9', rsaBits: 2048 }),
  ])
})
beforeEach(() => {
  clearRenderCache()
  configureRenderCache(DEFAULT_RENDER_CACHE_LIMITS)
})

const VERSIONS = ['v1.11.6', 'v1.12.11', 'v1.13.9', 'v1.14.0-rc.1'] as const
const linter = createConfigLinter()

const baseYaml = (talosVersion: string, role: 'controlplane' | 'worker', secrets = secretsA, clusterName = 'lab') =>
  generateConfig({ secrets, clusterName, endpoint: 'https://198.18.0.5:6443', talosVersion, role }).yaml

const PATCHES: PatchInput[] = [
  { machine: { sysctls: { 'vm.nr_hugepages': '128' }, nodeLabels: { 'rackboot.io/pool': 'storm' } } },
  'machine:\n  kubelet:\n    extraArgs:\n      max-pods: "250"\n',
]

function values(i: number): MachineValues {
  return {
    hostname: `node-${i}`,
    installDisk: i % 4 === 3 ? { path: '/dev/sdb', serial: `SER-${i}` } : `/dev/nvme${i % 2}n1`,
    ...(i % 2 === 0
      ? {
          addresses: [
            { link: 'eno1', addresses: [`10.0.${i >> 8}.${i & 255}/16`, `fd00::${i.toString(16)}/64`], gateway: '10.0.0.1', mtu: 9000 },
            { mac: `3c:ec:ef:00:00:${(i & 255).toString(16).padStart(2, '0')}`, addresses: [`10.1.${i >> 8}.${i & 255}/16`] },
          ],
          nameservers: ['10.0.0.53', 'fd00::53'],
        }
      : {}),
  }
}

/** The uncached render: parse, patch, write the values, stringify (what render.ts did before it cached). */
function plainRender(base: string, talosVersion: string, profilePatches: PatchInput[], v: MachineValues): string {
  const docs = applyPatches(parseConfigDocuments(base), profilePatches)
  return stringifyConfigDocuments(applyMachineValues(docs, talosVersion, v))
}

for (const version of VERSIONS) {
  for (const role of ['controlplane', 'worker'] as const) {
    test(`${version} ${role}: the cached render writes the same text as the plain one, and lints the same`, () => {
      const base = baseYaml(version, role)
      for (let i = 0; i < 12; i++) {
        const out = renderMachineConfig({ base, talosVersion: version, profilePatches: PATCHES, values: values(i) })
        assert.equal(out.yaml, plainRender(base, version, PATCHES, values(i)), `machine ${i}`)
        assert.deepEqual(out.documents, parseConfigDocuments(out.yaml))
        // The lint of the served text (cached documents, remembered per-document results) against a full lint of
        // freshly parsed documents (nothing cached: they are not frozen).
        const cached = linter.lint(out.yaml, { talosVersion: version })
        const full = createConfigLinter().lint(parseConfigDocuments(out.yaml), { talosVersion: version })
        assert.deepEqual(cached, full, `machine ${i}`)
        if (version !== 'v1.11.6') assert.deepEqual(cached.errors, [], `machine ${i}`)
      }
      const stats = renderCacheStats()
      assert.equal(stats.prepared.entries, 1, 'one profile, prepared once')
      assert.equal(stats.rendered.entries, 12)
    })
  }
}

test('a retry is served from the cache, and a changed machine value is rendered again', () => {
  const base = baseYaml('v1.13.9', 'worker')
  const first = renderMachineConfig({ base, talosVersion: 'v1.13.9', profilePatches: PATCHES, values: values(1) })
  const again = renderMachineConfig({ base, talosVersion: 'v1.13.9', profilePatches: PATCHES, values: values(1) })
  assert.equal(again.yaml, first.yaml)
  assert.equal(renderCacheStats().rendered.hits, 1)
  const moved = renderMachineConfig({ base, talosVersion: 'v1.13.9', profilePatches: PATCHES, values: { ...values(1), installDisk: '/dev/sdz' } })
  assert.match(moved.yaml, /disk: \/dev\/sdz/)
  assert.doesNotMatch(moved.yaml, /\/dev\/nvme1n1/)
})

test('a changed profile patch, class patch, machine patch, base or Talos version is in the very next render', () => {
  const base = baseYaml('v1.13.9', 'worker')
  const v = values(5)
  const render = (over: Partial<Parameters<typeof renderMachineConfig>[0]>) =>
    renderMachineConfig({ base, talosVersion: 'v1.13.9', profilePatches: PATCHES, values: v, ...over }).yaml
  assert.match(render({}), /vm\.nr_hugepages: "128"/)
  // The profile's patch edited in place (same object, same list) between two renders.
  const patches: PatchInput[] = [{ machine: { sysctls: { 'vm.nr_hugepages': '128' } } }]
  assert.match(render({ profilePatches: patches }), /vm\.nr_hugepages: "128"/)
  ;(patches[0] as any).machine.sysctls['vm.nr_hugepages'] = '256'
  assert.match(render({ profilePatches: patches }), /vm\.nr_hugepages: "256"/)
  // The same patch moved between stages still applies; each stage's list is its own part of the key.
  assert.match(render({ profilePatches: [], classPatches: ['machine:\n  sysctls:\n    a.b: class\n'] }), /a\.b: class/)
  assert.match(render({ profilePatches: [], machinePatches: ['machine:\n  sysctls:\n    a.b: machine\n'] }), /a\.b: machine/)
  assert.doesNotMatch(render({ profilePatches: [] }), /a\.b:/)
  // Another base (another cluster's secrets), another version.
  const otherBase = baseYaml('v1.13.9', 'worker', secretsB, 'other')
  const other = renderMachineConfig({ base: otherBase, talosVersion: 'v1.13.9', profilePatches: PATCHES, values: v }).yaml
  assert.match(other, /clusterName: other/)
  assert.equal(other, plainRender(otherBase, 'v1.13.9', PATCHES, v))
  const v112 = renderMachineConfig({ base, talosVersion: 'v1.12.11', profilePatches: PATCHES, values: v }).yaml
  assert.equal(v112, plainRender(base, 'v1.12.11', PATCHES, v))
})

test('two machines of two clusters: neither config carries the other machine\'s hostname or the other cluster\'s secrets', () => {
  const a = { base: baseYaml('v1.13.9', 'worker', secretsA, 'kestrel'), talosVersion: 'v1.13.9', profilePatches: PATCHES, values: { ...values(2), hostname: 'kestrel-1' } }
  const b = { base: baseYaml('v1.13.9', 'worker', secretsB, 'osprey'), talosVersion: 'v1.13.9', profilePatches: PATCHES, values: { ...values(2), hostname: 'osprey-1' } }
  const secretsOf = (s: SecretsBundle) => [s.trustdinfo.token, s.secrets.bootstraptoken, s.cluster.id, s.cluster.secret]
  assert.notDeepEqual(secretsOf(secretsA), secretsOf(secretsB))
  for (let round = 0; round < 3; round++) {
    const ya = renderMachineConfig(a).yaml
    const yb = renderMachineConfig(b).yaml
    assert.match(ya, /hostname: kestrel-1/)
    assert.match(yb, /hostname: osprey-1/)
    assert.doesNotMatch(ya, /osprey/)
    assert.doesNotMatch(yb, /kestrel/)
    for (const s of secretsOf(secretsA)) assert.ok(ya.includes(s) && !yb.includes(s), 'A secrets only in A')
    for (const s of secretsOf(secretsB)) assert.ok(yb.includes(s) && !ya.includes(s), 'B secrets only in B')
  }
  // Same cluster, two machines: each its own hostname and disk.
  const c1 = renderMachineConfig({ ...a, values: { hostname: 'c-1', installDisk: '/dev/sda' } }).yaml
  const c2 = renderMachineConfig({ ...a, values: { hostname: 'c-2', installDisk: '/dev/sdb' } }).yaml
  assert.match(c1, /hostname: c-1/)
  assert.doesNotMatch(c1, /c-2|\/dev\/sdb/)
  assert.match(c2, /hostname: c-2/)
  assert.doesNotMatch(c2, /c-1|\/dev\/sda\b/)
})

test('a caller that changes the documents it got changes nothing cached', () => {
  const base = baseYaml('v1.13.9', 'worker')
  const input = { base, talosVersion: 'v1.13.9', profilePatches: PATCHES, values: values(3) }
  const first = renderMachineConfig(input)
  const m = first.documents.find((d) => d.version === 'v1alpha1') as any
  m.machine.install.disk = '/dev/evil'
  m.machine.sysctls['vm.nr_hugepages'] = '9999'
  const again = renderMachineConfig(input)
  assert.equal(again.yaml, first.yaml)
  assert.doesNotMatch(again.yaml, /evil|9999/)
  assert.doesNotMatch(renderMachineConfig({ ...input, values: values(4) }).yaml, /evil|9999/)
  // applyMachineValues still hands out documents of the caller's own.
  const docs = parseConfigDocuments(base)
  const out = applyMachineValues(docs, 'v1.13.9', values(3))
  ;(out[0] as any).machine.token = 'changed'
  assert.notEqual((docs[0] as any).machine.token, 'changed')
})

test('a bad per-machine value is still refused: by the renderer (hostname, disk) or by the lint of the cached path (schema)', () => {
  const base = baseYaml('v1.13.9', 'worker')
  const input = { base, talosVersion: 'v1.13.9', profilePatches: PATCHES }
  // A good machine first, so that the profile's documents and their lint results are cached.
  assert.equal(linter.lint(renderMachineConfig({ ...input, values: values(0) }).yaml, { talosVersion: 'v1.13.9' }).ok, true)
  for (const bad of [{ hostname: 'bad_host!' }, { hostname: '-x' }, { installDisk: 'sda' }, { installDisk: '/dev/' }] as MachineValues[]) {
    assert.throws(() => renderMachineConfig({ ...input, values: bad }), (e: unknown) => isRackbootError(e, 'RB_ERR_VALIDATION'), JSON.stringify(bad))
  }
  // Values the renderer writes as given and only the schema knows are wrong (machine data is JSON from the inventory).
  for (const mtu of [1500.5, '9000']) {
    const out = renderMachineConfig({ ...input, values: { ...values(0), addresses: [{ link: 'eno1', addresses: ['10.0.0.9/16'], mtu: mtu as number }] } })
    const cached = linter.lint(out.yaml, { talosVersion: 'v1.13.9' })
    assert.equal(cached.ok, false, String(mtu))
    assert.deepEqual(cached.errors.map((e) => [e.kind, e.path]), [['LinkConfig', '/mtu']])
    assert.deepEqual(cached, createConfigLinter().lint(parseConfigDocuments(out.yaml), { talosVersion: 'v1.13.9' }))
  }
  // The same frozen documents linted for another Talos version: that version's schema, not the remembered result.
  const v14 = renderMachineConfig({ ...input, base: baseYaml('v1.14.0-rc.1', 'worker'), talosVersion: 'v1.14.0-rc.1', values: values(0) }).yaml
  assert.equal(linter.lint(v14, { talosVersion: 'v1.14.0-rc.1' }).ok, true)
  const as112 = linter.lint(v14, { talosVersion: 'v1.12.11' })
  assert.deepEqual(as112, createConfigLinter().lint(parseConfigDocuments(v14), { talosVersion: 'v1.12.11' }))
  assert.equal(as112.ok, false)
})

test('the caches stay within their bounds', () => {
  configureRenderCache({ prepared: { maxEntries: 2, maxBytes: 1 << 30 }, rendered: { maxEntries: 5, maxBytes: 40_000 } })
  const bases = VERSIONS.map((v) => [v, baseYaml(v, 'worker')] as const)
  for (let i = 0; i < 40; i++) {
    const [v, base] = bases[i % bases.length]!
    renderMachineConfig({ base, talosVersion: v, profilePatches: PATCHES, values: values(i) })
    const s = renderCacheStats()
    assert.ok(s.prepared.entries <= 2 && s.rendered.entries <= 5 && s.rendered.bytes <= 40_000, JSON.stringify(s))
  }
  // Off: every render is done again, with the same result.
  configureRenderCache({ rendered: { maxEntries: 0, maxBytes: 0 } })
  const base = baseYaml('v1.13.9', 'worker')
  const a = renderMachineConfig({ base, talosVersion: 'v1.13.9', values: values(1) }).yaml
  assert.equal(renderMachineConfig({ base, talosVersion: 'v1.13.9', values: values(1) }).yaml, a)
  assert.equal(renderCacheStats().rendered.entries, 0)
})

// Random JSON-like data, with the strings YAML writers get wrong: block scalars, leading spaces, document markers,
// things that read as numbers or booleans, quotes, comments, odd line breaks, long and odd keys.
function rng(seed: number) {
  let s = seed >>> 0
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0
    return s / 2 ** 32
  }
}
const STRINGS = [
  '', ' ', 'plain', 'two words', 'a: b', '- item', '#comment', 'x #y', '"q"', "'s'", 'true', 'no', 'null', '~', '1', '0x1F', '1e3', '.inf',
  'line1\nline2', 'line1\nline2\n', 'trailing\n\n', '\nleading newline', '  indented\nnext', 'a\n  b\n', '---', '--- x', '...', 'x\n---\ny',
  'tab\there', 'cr\rlf', 'u\u2028sep', 'ünïcødé', '*alias', '&anchor', '!tag', '%dir', '@at', '`tick', '{flow}', '[seq]', 'key: {}',
  '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n', 'x'.repeat(300),
  // Plain strings the writer's text is assembled around (documents.ts writtenPlain), and its own marker.
  'node-7', 'eno1', '/dev/nvme0n1', '10.0.3.7/16', 'fd00::7/64', '10.0.0.53', 'rbslot0x', 'rbslot1x', 'a_b.c/d-e',
]
const KEYS = ['a', 'b', 'machine', 'with space', 'dotted.key', 'colon:key', 'a: {}', '- dash', '"quoted"', '1', 'true', 'x'.repeat(1100), '#', '', 'rbslot0x']

function randomValue(r: () => number, depth: number): unknown {
  const k = r()
  if (depth > 4 || k < 0.35) {
    const t = r()
    if (t < 0.6) return STRINGS[Math.floor(r() * STRINGS.length)]
    if (t < 0.75) return Math.floor(r() * 10000) - 5000
    if (t < 0.8) return r() * 100
    if (t < 0.88) return r() < 0.5
    return null
  }
  if (k < 0.55) return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1))
  const obj: Record<string, unknown> = {}
  const n = Math.floor(r() * 5)
  for (let i = 0; i < n; i++) obj[KEYS[Math.floor(r() * KEYS.length)]!] = randomValue(r, depth + 1)
  return obj
}

test('incremental YAML: the same text as the writer on random data, frozen or not, written again after changes', () => {
  const r = rng(42)
  for (let i = 0; i < 600; i++) {
    const docs = Array.from({ length: 1 + Math.floor(r() * 3) }, () => {
      const v = randomValue(r, 0)
      return (typeof v === 'object' && v !== null && !Array.isArray(v) ? v : { value: v }) as ConfigDocument
    })
    const want = stringifyConfigDocuments(docs)
    assert.equal(stringifyConfigDocumentsIncremental(docs), want, JSON.stringify(docs))
    const frozen = deepFreeze(structuredClone(docs))
    assert.equal(stringifyConfigDocumentsIncremental(frozen), want)
    assert.equal(stringifyConfigDocumentsIncremental(frozen), want, 'from the remembered text')
    // (The writer's own text reads back, except for keys over 1024 characters, which it writes in the explicit
    // `? key` form that yaml 2 cannot read back under a nested mapping: a writer limit no config reaches.)
    if (!want.includes('x'.repeat(1025))) assert.deepEqual(parseConfigDocuments(want), JSON.parse(JSON.stringify(docs)))
    // A copy-on-write change over frozen parts: the new text, not the remembered one.
    const changed = frozen.map((d) => ({ ...d, added: { nested: { v: i } } }))
    assert.equal(stringifyConfigDocumentsIncremental(changed), stringifyConfigDocuments(changed))
    // Objects that are not frozen may change between two writes: nothing of theirs is remembered.
    ;(changed[0]!.added as any).nested.v = -i
    ;(changed[0]!.added as any).more = 'x'
    assert.equal(stringifyConfigDocumentsIncremental(changed), stringifyConfigDocuments(changed))
  }
})

test('a string writtenPlain says is plain is written as it is, as a value and as a sequence item', () => {
  // Every string of up to 4 characters from an alphabet that holds YAML's number, boolean and null spellings, and
  // random longer ones: each the writer would write otherwise must be refused.
  const alphabet = ['0', '1', '9', '.', '_', '-', '+', '/', 'e', 'E', 'x', 'o', 'b', 'n', 'N', 'a', 'i', 'f', 'y', 's', 't', 'u', 'l', 'T', 'F', ':', ' ', '#']
  const words = ['true', 'True', 'TRUE', 'false', 'FALSE', 'null', 'Null', 'NULL', 'yes', 'no', 'on', 'off', 'y', 'n', 'nan', 'inf', '2001-12-14', '12:30', '0o17', '0x1f', '0b1', '1_000', '1e3', '1E+3', '.5', '5.', '-1', '+1', '08', 'Infinity', 'NaN']
  const all: string[] = [...words]
  const grow = (prefix: string, n: number): void => {
    if (prefix) all.push(prefix)
    if (n === 0) return
    for (const c of alphabet) grow(prefix + c, n - 1)
  }
  grow('', 3)
  const r = rng(7)
  for (let i = 0; i < 3000; i++) all.push(Array.from({ length: 4 + Math.floor(r() * 10) }, () => alphabet[Math.floor(r() * alphabet.length)]).join(''))
  let plain = 0
  for (const s of all) {
    if (!writtenPlain(s)) continue
    plain++
    assert.equal(stringifyConfigDocuments([{ k: s }]), `k: ${s}\n`, JSON.stringify(s))
    assert.equal(stringifyConfigDocuments([{ k: [s, { m: s }] }]), `k:\n    - ${s}\n    - m: ${s}\n`, JSON.stringify(s))
  }
  assert.ok(plain > 1000, `only ${plain} plain strings checked`)
  for (const s of ['node-00001', '/dev/nvme0n1', '10.0.0.9/16', 'eno1']) assert.equal(writtenPlain(s), true, s)
})

test('generateConfig is generated once per distinct options; callers get documents of their own', () => {
  const opts = { secrets: secretsA, clusterName: 'gen', endpoint: 'https://198.18.0.5:6443', talosVersion: 'v1.13.9', role: 'worker' as const }
  const a = generateConfig(opts)
  const b = generateConfig({ ...opts })
  assert.equal(b.yaml, a.yaml)
  ;(a.documents[0] as any).machine.token = 'changed'
  assert.notEqual((b.documents[0] as any).machine.token, 'changed')
  assert.notEqual((generateConfig(opts).documents[0] as any).machine.token, 'changed')
  assert.doesNotMatch(generateConfig(opts).yaml, /changed/)
  // Each option is part of the key: another role, endpoint, cluster's secrets or install disk is another config.
  assert.match(generateConfig({ ...opts, role: 'controlplane' }).yaml, /type: controlplane/)
  assert.match(generateConfig({ ...opts, endpoint: 'https://198.18.0.6:6443' }).yaml, /198\.18\.0\.6/)
  assert.ok(generateConfig({ ...opts, secrets: secretsB }).yaml.includes(secretsB.trustdinfo.token))
  assert.match(generateConfig({ ...opts, installDisk: '/dev/vdb' }).yaml, /disk: \/dev\/vdb/)
  assert.equal(generateConfig({ ...opts, installDisk: '/dev/vdb' }).yaml.includes(secretsA.trustdinfo.token), true)
  // A generated config as the base of a render is read from its text.
  const out = renderMachineConfig({ base: generateConfig(opts), talosVersion: 'v1.13.9', values: values(1) })
  assert.equal(out.yaml, plainRender(generateConfig(opts).yaml, 'v1.13.9', [], values(1)))
})

test('bundles read from text (as a cluster\'s fetches read them): one per text, and each config has its own cluster\'s secrets', () => {
  const textA = secretsBundleToYaml(secretsA)
  const textB = secretsBundleToYaml(secretsB)
  const a = parseSecretsBundle(textA)
  // A fresh copy of the same text (as each fetch opens it from the database) is the same bundle.
  assert.equal(parseSecretsBundle(`${textA}`.slice(0)), a)
  assert.equal(parseSecretsBundle(textA.split('').join('')), a)
  const b = parseSecretsBundle(textB)
  assert.notEqual(a, b)
  const opts = { clusterName: 'gen', endpoint: 'https://198.18.0.5:6443', talosVersion: 'v1.13.9', role: 'worker' as const }
  for (let round = 0; round < 2; round++) {
    const ya = generateConfig({ ...opts, secrets: a }).yaml
    const yb = generateConfig({ ...opts, secrets: b }).yaml
    assert.ok(ya.includes(secretsA.trustdinfo.token) && !ya.includes(secretsB.trustdinfo.token))
    assert.ok(yb.includes(secretsB.trustdinfo.token) && !yb.includes(secretsA.trustdinfo.token))
    // The same as from the generated (unfrozen) bundle, and every option still in the key.
    assert.equal(ya, generateConfig({ ...opts, secrets: secretsA }).yaml)
    assert.match(generateConfig({ ...opts, secrets: a, role: 'controlplane' }).yaml, /type: controlplane/)
    assert.match(generateConfig({ ...opts, secrets: a, endpoint: 'https://198.18.0.6:6443' }).yaml, /198\.18\.0\.6/)
    assert.match(generateConfig({ ...opts, secrets: b, installDisk: '/dev/vdb' }).yaml, /disk: \/dev\/vdb/)
    assert.doesNotMatch(generateConfig({ ...opts, secrets: b }).yaml, /disk: \/dev\/vdb/)
  }
})
