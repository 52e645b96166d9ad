import { test } from 'node:test'
import assert from 'node:assert/strict'
import YAML from 'yaml'
import { generateSecretsBundle, parseSecretsBundle, secretsBundleToYaml } from '../../src/talos/index.js'
import { apiSetup } from './support/app.js'

const PROFILE = { talosVersion: 'v1.13.9', arch: 'amd64', kernelArgs: ['console=ttyS0'], patches: [{ machine: { kubelet: { extraArgs: { 'rotate-server-certificates': 'true' } } } }] }

test('profiles: create, read, replace, refuse bad ones, delete unless a class uses them', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  const admin = s.auth('admin')
  let r = await s.app.inject({ method: 'POST', url: '/api/v1/profiles', headers: admin, payload: { name: 'worker-113', ...PROFILE } })
  assert.equal(r.statusCode, 201, r.body)
  assert.equal(r.headers.location, '/api/v1/profiles/worker-113')
  assert.equal(r.json().talosVersion, 'v1.13.9')
  assert.equal(r.json().baseConfig, null)
  assert.equal((await s.app.inject({ method: 'POST', url: '/api/v1/profiles', headers: admin, payload: { name: 'worker-113' } })).statusCode, 409)
  assert.equal((await s.app.inject({ method: 'POST', url: '/api/v1/profiles', headers: s.auth('provision'), payload: { name: 'x' } })).statusCode, 403)
  r = await s.app.inject({ url: '/api/v1/profiles/worker-113', headers: s.auth('read') })
  assert.deepEqual(r.json().patches, PROFILE.patches)
  r = await s.app.inject({ method: 'PUT', url: '/api/v1/profiles/worker-113', headers: admin, payload: { talosVersion: 'v1.12.11' } })
  assert.equal(r.statusCode, 200)
  assert.equal(r.json().talosVersion, 'v1.12.11')
  assert.deepEqual(r.json().patches, [], 'PUT replaces the whole profile')
  for (const [payload, why] of [
    [{ talosVersion: 'latest' }, /not a Talos version/],
    [{ patches: [[{ op: 'jump', path: '/x' }]] }, /op/],
    [{ baseConfig: 'version: [unclosed' }, /baseConfig/],
    [{ schematic: 'abc' }, /schematic/],
    [{ colour: 'red' }, /additional/],
  ] as const) {
    const bad = await s.app.inject({ method: 'PUT', url: '/api/v1/profiles/worker-113', headers: admin, payload })
    assert.equal(bad.statusCode, 400, JSON.stringify(payload))
    assert.equal(bad.json().error, 'RB_ERR_VALIDATION')
    assert.match(bad.body, why)
  }
  assert.equal((await s.app.inject({ method: 'PUT', url: '/api/v1/profiles/bad%20name', headers: admin, payload: {} })).statusCode, 400)
  await s.inventory.classes.put({ name: 'uses-it', description: null, selectors: [], profile: 'worker-113', patches: [], managedBy: null }, 1)
  r = await s.app.inject({ method: 'DELETE', url: '/api/v1/profiles/worker-113', headers: admin })
  assert.equal(r.statusCode, 409)
  assert.deepEqual(r.json().details, { classes: ['uses-it'] })
  await s.inventory.classes.delete('uses-it')
  assert.equal((await s.app.inject({ method: 'DELETE', url: '/api/v1/profiles/worker-113', headers: admin })).statusCode, 204)
  assert.equal((await s.app.inject({ method: 'DELETE', url: '/api/v1/profiles/worker-113', headers: admin })).statusCode, 404)
  assert.deepEqual((await s.app.inject({ url: '/api/v1/profiles', headers: s.auth('read') })).json(), { items: [] })
})

test('profiles: installDisk is stored, returned and replaced with the profile; a bad selector is a 400 naming its field', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  const admin = s.auth('admin')
  const selector = { type: ['ssd', 'nvme'], size: '>= 400GB, <= 2TB', model: 'Micron_*', prefer: 'largest' }
  let r = await s.app.inject({ method: 'POST', url: '/api/v1/profiles', headers: admin, payload: { name: 'nvme-first', ...PROFILE, installDisk: selector } })
  assert.equal(r.statusCode, 201, r.body)
  assert.deepEqual(r.json().installDisk, selector)
  assert.deepEqual((await s.inventory.profiles.get('nvme-first'))?.installDisk, selector)
  r = await s.app.inject({ url: '/api/v1/profiles/nvme-first', headers: s.auth('read') })
  assert.deepEqual(r.json().installDisk, selector)
  assert.deepEqual((await s.app.inject({ url: '/api/v1/profiles', headers: s.auth('read') })).json().items[0].installDisk, selector)
  const bounds = { size: { min: '100GB', max: 2e12 }, type: 'nvme' }
  r = await s.app.inject({ method: 'PUT', url: '/api/v1/profiles/nvme-first', headers: admin, payload: { talosVersion: 'v1.13.9', installDisk: bounds } })
  assert.equal(r.statusCode, 200, r.body)
  assert.deepEqual(r.json().installDisk, bounds)
  r = await s.app.inject({ method: 'PUT', url: '/api/v1/profiles/nvme-first', headers: admin, payload: { talosVersion: 'v1.13.9' } })
  assert.equal(r.json().installDisk, null, 'PUT replaces the whole profile')
  r = await s.app.inject({ method: 'PUT', url: '/api/v1/profiles/nvme-first', headers: admin, payload: { installDisk: { type: 'hdd' } } })
  assert.deepEqual(r.json().installDisk, { type: 'hdd' })
  r = await s.app.inject({ method: 'PUT', url: '/api/v1/profiles/nvme-first', headers: admin, payload: { installDisk: null } })
  assert.equal(r.statusCode, 200)
  assert.equal(r.json().installDisk, null)

  for (const [installDisk, why] of [
    [{ size: '>= lots' }, /^installDisk\.size: bad size condition '>= lots'$/],
    [{ size: { min: '2TB', max: '1TB' } }, /^installDisk\.size: .*min is above max/],
    [{ size: 12 }, /^installDisk\.size: size must be a condition/],
    [{ type: 'spinning-rust' }, /^installDisk\.type: unknown disk type "spinning-rust" \(one of nvme, ssd, hdd, virtual, other\)$/],
    [{ type: ['ssd', 'tape'] }, /^installDisk\.type\[1\]: unknown disk type "tape"/],
    [{ type: 'tape', size: 'big' }, /^installDisk\.size: bad size condition 'big' \(and 1 more\)$/],
    [{ prefer: 'fastest' }, /prefer/],
    [{ model: '' }, /model/],
    [{ colour: 'red' }, /additional/],
    ['nvme', /installDisk/],
  ] as const) {
    const bad = await s.app.inject({ method: 'PUT', url: '/api/v1/profiles/nvme-first', headers: admin, payload: { installDisk } })
    assert.equal(bad.statusCode, 400, JSON.stringify(installDisk))
    assert.equal(bad.json().error, 'RB_ERR_VALIDATION')
    assert.match(bad.json().message, why)
  }
  assert.equal((await s.inventory.profiles.get('nvme-first'))?.installDisk, null, 'a refused PUT changes nothing')
})

test('classes: selectors are checked (with the position of a mistake), the profile must exist', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  const admin = s.auth('admin')
  await s.app.inject({ method: 'POST', url: '/api/v1/profiles', headers: admin, payload: { name: 'w', ...PROFILE } })
  const body = { selectors: ['cpu.cores >= 32', 'disks[type=nvme].count >= 2'], profile: 'w', description: 'NVMe workers' }
  let r = await s.app.inject({ method: 'POST', url: '/api/v1/classes', headers: admin, payload: { name: 'nvme-workers', ...body } })
  assert.equal(r.statusCode, 201, r.body)
  assert.deepEqual(r.json().selectors, body.selectors)
  assert.equal(r.json().managedBy, null)
  r = await s.app.inject({ method: 'PUT', url: '/api/v1/classes/nvme-workers', headers: admin, payload: { ...body, selectors: ['cpu.cores >= 32', 'disks[type=nvme].cnt >= 2'] } })
  assert.equal(r.statusCode, 400)
  assert.equal(r.json().details.index, 1)
  assert.equal(r.json().details.position, 17)
  assert.match(r.json().message, /^selectors\[1\]: selector/)
  r = await s.app.inject({ method: 'PUT', url: '/api/v1/classes/nvme-workers', headers: admin, payload: { ...body, profile: 'nope' } })
  assert.equal(r.statusCode, 422)
  assert.equal((await s.app.inject({ method: 'PUT', url: '/api/v1/classes/nvme-workers', headers: admin, payload: { profile: 'w' } })).statusCode, 400, 'selectors are required')
  r = await s.app.inject({ method: 'PUT', url: '/api/v1/classes/any', headers: admin, payload: { selectors: [] } })
  assert.equal(r.statusCode, 200)
  const list = (await s.app.inject({ url: '/api/v1/classes', headers: s.auth('read') })).json()
  assert.deepEqual(list.items.map((c: any) => c.name), ['any', 'nvme-workers'])
  assert.equal((await s.app.inject({ url: '/api/v1/classes/nvme-workers', headers: s.auth('read') })).json().description, 'NVMe workers')
  assert.equal((await s.app.inject({ method: 'DELETE', url: '/api/v1/classes/any', headers: s.auth('provision') })).statusCode, 403)
  assert.equal((await s.app.inject({ method: 'DELETE', url: '/api/v1/classes/any', headers: admin })).statusCode, 204)
  assert.equal((await s.app.inject({ url: '/api/v1/classes/any', headers: s.auth('read') })).statusCode, 404)
})

test('clusters: created with generated or adopted secrets, never returned; the admin talosconfig on its own route', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  const admin = s.auth('admin')
  // Generated (RSA 4096 service-account key, as talosctl does: takes a moment).
  let r = await s.app.inject({ method: 'POST', url: '/api/v1/clusters', headers: admin, payload: { name: 'edge-1', endpoint: 'https://198.18.0.10:6443', talosVersion: 'v1.13.9' } })
  assert.equal(r.statusCode, 201, r.body)
  assert.deepEqual(Object.keys(r.json()).sort(), ['createdAt', 'endpoint', 'kubernetesVersion', 'machines', 'name', 'talosVersion', 'updatedAt'])
  const stored = parseSecretsBundle((await s.inventory.clusters.secrets('edge-1'))!)
  assert.match(stored.secrets.bootstraptoken, /^[0-9a-z]{6}\.[0-9a-z]{16}$/)
  // Sealed at rest: the row holds no PEM or token.
  const row = await s.inventory.db.selectFrom('clusters' as any).selectAll().executeTakeFirstOrThrow() as any
  assert.match(row.secrets_sealed, /^v1:/)
  assert.ok(!row.secrets_sealed.includes(stored.secrets.bootstraptoken))
  // Adopted.
  const bundle = await generateSecretsBundle({ talosVersion: 'v1.12.11', rsaBits: 2048 })
  r = await s.app.inject({ method: 'POST', url: '/api/v1/clusters', headers: admin, payload: { name: 'lab', endpoint: 'https://lab.example:6443', talosVersion: 'v1.12.11', kubernetesVersion: '1.35.4', secrets: secretsBundleToYaml(bundle) } })
  assert.equal(r.statusCode, 201, r.body)
  assert.equal(parseSecretsBundle((await s.inventory.clusters.secrets('lab'))!).cluster.secret, bundle.cluster.secret)
  assert.equal((await s.app.inject({ method: 'POST', url: '/api/v1/clusters', headers: admin, payload: { name: 'lab', endpoint: 'https://x:6443', talosVersion: 'v1.12.11' } })).statusCode, 409)
  for (const payload of [
    { name: 'bad', endpoint: 'http://x:6443', talosVersion: 'v1.13.9' },
    { name: 'bad', endpoint: 'https://x:6443', talosVersion: 'v1.9.0', secrets: secretsBundleToYaml(bundle) },
    { name: 'bad', endpoint: 'https://x:6443', talosVersion: 'v1.13.9', secrets: 'cluster: {}' },
  ]) {
    const bad = await s.app.inject({ method: 'POST', url: '/api/v1/clusters', headers: admin, payload })
    assert.equal(bad.statusCode, 400, `${JSON.stringify(payload).slice(0, 80)}: ${bad.body}`)
  }
  assert.equal((await s.app.inject({ method: 'POST', url: '/api/v1/clusters', headers: s.auth('provision'), payload: { name: 'x', endpoint: 'https://x:6443', talosVersion: 'v1.13.9' } })).statusCode, 403)

  const list = await s.app.inject({ url: '/api/v1/clusters', headers: s.auth('read') })
  assert.deepEqual(list.json().items.map((c: any) => [c.name, c.kubernetesVersion, c.machines]), [['edge-1', null, 0], ['lab', '1.35.4', 0]])
  assert.doesNotMatch(list.body, /BEGIN|bootstraptoken|secret/)
  const one = await s.app.inject({ url: '/api/v1/clusters/lab', headers: s.auth('read') })
  assert.equal(one.json().endpoint, 'https://lab.example:6443')

  assert.equal((await s.app.inject({ url: '/api/v1/clusters/lab/talosconfig', headers: s.auth('read') })).statusCode, 403)
  const tc = await s.app.inject({ url: '/api/v1/clusters/lab/talosconfig?endpoint=198.18.0.11&endpoint=198.18.0.12', headers: admin })
  assert.equal(tc.statusCode, 200)
  assert.match(String(tc.headers['content-type']), /application\/yaml/)
  const config = YAML.parse(tc.body)
  assert.equal(config.context, 'lab')
  assert.deepEqual(config.contexts.lab.endpoints, ['198.18.0.11', '198.18.0.12'])
  assert.equal(config.contexts.lab.ca, bundle.certs.os.crt)
  const dflt = YAML.parse((await s.app.inject({ url: '/api/v1/clusters/lab/talosconfig', headers: admin })).body)
  assert.deepEqual(dflt.contexts.lab.endpoints, ['lab.example'])
  assert.equal((await s.app.inject({ url: '/api/v1/clusters/nope/talosconfig', headers: admin })).statusCode, 404)

  assert.equal((await s.app.inject({ method: 'DELETE', url: '/api/v1/clusters/edge-1', headers: admin })).statusCode, 204)
  assert.equal((await s.app.inject({ url: '/api/v1/clusters/edge-1', headers: s.auth('read') })).statusCode, 404)
})
