import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { X509Certificate, createPublicKey } from 'node:crypto'
import YAML from 'yaml'
import {
  CA_VALIDITY_MS,
  TALOS_API_CLIENT_CERT_VALIDITY_MS,
  TOKEN_RE,
  decodePem,
  generateSecretsBundle,
  generateToken,
  loadPrivateKey,
  parseSecretsBundle,
  secretsBundleToYaml,
  talosconfigFor,
  validateSecretsBundle,
  type SecretsBundle,
} from '../../src/talos/index.js'
import { isRackbootError } from '../../src/errors.js'

const HAVE_OPENSSL = spawnSync('openssl', ['version']).status === 0
const NOW = new Date('2026-08-20T12:00:00Z')

// One real bundle (RSA 4096 service-account key, as Talos makes it) shared by the tests below.
let bundle113: Promise<SecretsBundle> | null = null
const bundle = (): Promise<SecretsBundle> => (bundle113 ??= generateSecretsBundle({ talosVersion: 'v1.13.9', now: NOW }))

function pemBlockType(b64: string): string {
  return /-----BEGIN ([A-Z0-9 ]+)-----/.exec(decodePem(b64))?.[1] ?? ''
}

test('tokens have Talos\'s [0-9a-z]{6}.[0-9a-z]{16} format and use the whole alphabet', () => {
  const seen = new Set<string>()
  for (let i = 0; i < 300; i++) {
    const t = generateToken()
    assert.match(t, TOKEN_RE)
    for (const c of t.replace('.', '')) seen.add(c)
  }
  assert.equal(seen.size, 36)
})

test('bundle layout, key types and CA certificates follow Talos (contract 1.13)', async () => {
  const b = await bundle()
  assert.deepEqual(Object.keys(b), ['cluster', 'secrets', 'trustdinfo', 'certs'])
  assert.match(b.secrets.bootstraptoken, TOKEN_RE)
  assert.match(b.trustdinfo.token, TOKEN_RE)
  assert.notEqual(b.secrets.bootstraptoken, b.trustdinfo.token)
  assert.equal(Buffer.from(b.secrets.secretboxencryptionsecret!, 'base64').length, 32)
  assert.equal(b.secrets.aescbcencryptionsecret, undefined)
  // Before 1.14 talosctl encoded the cluster id with base64 URL encoding (padded).
  assert.match(b.cluster.id, /^[A-Za-z0-9_-]{43}=$/)
  assert.equal(Buffer.from(b.cluster.id, 'base64url').length, 32)
  assert.equal(Buffer.from(b.cluster.secret, 'base64').length, 32)

  assert.equal(pemBlockType(b.certs.etcd.key), 'EC PRIVATE KEY')
  assert.equal(pemBlockType(b.certs.k8s.key), 'EC PRIVATE KEY')
  assert.equal(pemBlockType(b.certs.k8saggregator.key), 'EC PRIVATE KEY')
  assert.equal(pemBlockType(b.certs.os.key), 'ED25519 PRIVATE KEY')
  assert.equal(pemBlockType(b.certs.k8sserviceaccount.key), 'RSA PRIVATE KEY')
  const sa = loadPrivateKey(decodePem(b.certs.k8sserviceaccount.key))
  assert.equal(sa.asymmetricKeyType, 'rsa')
  assert.equal(sa.asymmetricKeyDetails?.modulusLength, 4096)

  const expected: Record<string, { subject: string; keyType: string }> = {
    etcd: { subject: 'O=etcd', keyType: 'ec' },
    k8s: { subject: 'O=kubernetes', keyType: 'ec' },
    // siderolabs/crypto drops the CommonName of a CA: Talos's aggregator CA has an empty subject.
    k8saggregator: { subject: '', keyType: 'ec' },
    os: { subject: 'O=talos', keyType: 'ed25519' },
  }
  for (const [name, want] of Object.entries(expected)) {
    const pair = b.certs[name as 'etcd']
    const cert = new X509Certificate(decodePem(pair.crt))
    const key = loadPrivateKey(decodePem(pair.key))
    // node reports an empty subject as undefined.
    assert.equal(cert.subject ?? '', want.subject, name)
    assert.equal(cert.issuer ?? '', want.subject, name)
    assert.equal(cert.ca, true, name)
    assert.equal(key.asymmetricKeyType, want.keyType, name)
    assert.ok(cert.checkPrivateKey(key), `${name}: key matches`)
    assert.ok(cert.verify(createPublicKey(key)), `${name}: self-signed`)
    assert.equal(new Date(cert.validFrom).getTime(), NOW.getTime(), name)
    assert.equal(new Date(cert.validTo).getTime() - NOW.getTime(), CA_VALIDITY_MS, `${name}: 87600h`)
    assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'], name)
    if (want.keyType === 'ec') assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1')
  }
  assert.deepEqual(validateSecretsBundle(b), [])
})

test('version contract choices: ECDSA service-account key and aescbc for old contracts, std cluster id from 1.14', async () => {
  const old = await generateSecretsBundle({ talosVersion: 'v1.2.0', now: NOW })
  assert.equal(pemBlockType(old.certs.k8sserviceaccount.key), 'EC PRIVATE KEY')
  assert.ok(old.secrets.aescbcencryptionsecret)
  assert.equal(old.secrets.secretboxencryptionsecret, undefined)
  const v16 = await generateSecretsBundle({ talosVersion: 'v1.6.7', now: NOW })
  assert.equal(pemBlockType(v16.certs.k8sserviceaccount.key), 'EC PRIVATE KEY')
  assert.ok(v16.secrets.secretboxencryptionsecret)
  const v114 = await generateSecretsBundle({ talosVersion: 'v1.14.0', now: NOW, rsaBits: 2048 })
  assert.equal(pemBlockType(v114.certs.k8sserviceaccount.key), 'RSA PRIVATE KEY')
  assert.match(v114.cluster.id, /^[A-Za-z0-9+/]{43}=$/)
  assert.deepEqual(validateSecretsBundle(v114), [])
})

test('openssl verifies every CA and reads every key', { skip: HAVE_OPENSSL ? false : 'openssl is not installed (Debian package openssl)' }, async (t) => {
  const b = await bundle()
  const dir = mkdtempSync(join(tmpdir(), 'rackboot-secrets-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  for (const name of ['etcd', 'k8s', 'k8saggregator', 'os'] as const) {
    const crt = join(dir, `${name}.crt`)
    writeFileSync(crt, decodePem(b.certs[name].crt))
    const text = spawnSync('openssl', ['x509', '-in', crt, '-noout', '-text'], { encoding: 'utf8' })
    assert.equal(text.status, 0, text.stderr)
    assert.match(text.stdout, /CA:TRUE/)
    assert.match(text.stdout, /Digital Signature, Certificate Sign/)
    assert.match(text.stdout, name === 'os' ? /Signature Algorithm: ED25519/ : /Signature Algorithm: ecdsa-with-SHA256/)
    const verify = spawnSync('openssl', ['verify', '-CAfile', crt, crt], { encoding: 'utf8' })
    assert.equal(verify.status, 0, `${name}: ${verify.stdout}${verify.stderr}`)
    // OpenSSL reads the SEC1 and PKCS#1 labels as they are; the Ed25519 one is PKCS#8 under Talos's label.
    const key = join(dir, `${name}.key`)
    writeFileSync(key, decodePem(b.certs[name].key).replace(/ED25519 PRIVATE KEY/g, 'PRIVATE KEY'))
    const pkey = spawnSync('openssl', ['pkey', '-in', key, '-noout'], { encoding: 'utf8' })
    assert.equal(pkey.status, 0, `${name} key: ${pkey.stderr}`)
  }
  writeFileSync(join(dir, 'sa.key'), decodePem(b.certs.k8sserviceaccount.key))
  const rsa = spawnSync('openssl', ['rsa', '-in', join(dir, 'sa.key'), '-check', '-noout'], { encoding: 'utf8' })
  assert.equal(rsa.status, 0, rsa.stderr)
  assert.match(rsa.stdout, /RSA key ok/)
})

test('secrets.yaml round trip and validation of broken bundles', async () => {
  const b = await bundle()
  const text = secretsBundleToYaml(b)
  assert.match(text, /^cluster:\n {4}id: /)
  assert.match(text, /\nsecrets:\n {4}bootstraptoken: /)
  assert.match(text, /\ncerts:\n {4}etcd:\n {8}crt: /)
  assert.deepEqual(parseSecretsBundle(text), b)

  const broken = structuredClone(b) as unknown as Record<string, any>
  broken.certs.os.key = broken.certs.etcd.key
  broken.secrets.aescbcencryptionsecret = 'x'
  delete broken.trustdinfo
  broken.secrets.bootstraptoken = 'nope'
  const problems = validateSecretsBundle(broken)
  assert.deepEqual(problems.sort(), [
    'certs.os: key does not match crt',
    'only one of [secrets.secretboxencryptionsecret, secrets.aescbcencryptionsecret] is allowed',
    'secrets.bootstraptoken is required ([0-9a-z]{6}.[0-9a-z]{16})',
    'trustdinfo.token is required',
  ])
  assert.throws(() => parseSecretsBundle(YAML.stringify(broken)), (e: unknown) => isRackbootError(e, 'RB_ERR_VALIDATION') && /key does not match/.test((e as Error).message))
  assert.throws(() => parseSecretsBundle('certs: [\n'), (e: unknown) => isRackbootError(e, 'RB_ERR_VALIDATION'))
})

test('admin talosconfig: client certificate signed by the OS CA, os:admin, client auth only, 365 days', async (t) => {
  const b = await bundle()
  const at = new Date('2026-09-01T00:00:00Z')
  const { config, yaml } = await talosconfigFor(b, { contextName: 'lab', endpoints: ['198.18.0.10', '198.18.0.11'], nodes: ['198.18.0.12'], now: at })
  assert.equal(config.context, 'lab')
  const ctx = config.contexts.lab!
  assert.deepEqual(ctx.endpoints, ['198.18.0.10', '198.18.0.11'])
  assert.deepEqual(ctx.nodes, ['198.18.0.12'])
  assert.equal(ctx.ca, b.certs.os.crt)
  assert.deepEqual(YAML.parse(yaml), config)

  const ca = new X509Certificate(decodePem(b.certs.os.crt))
  const crt = new X509Certificate(decodePem(ctx.crt))
  assert.equal(crt.subject, 'O=os:admin')
  assert.equal(crt.issuer, 'O=talos')
  assert.equal(crt.ca, false)
  assert.ok(crt.checkIssued(ca))
  assert.ok(crt.verify(ca.publicKey))
  assert.deepEqual(crt.keyUsage, ['1.3.6.1.5.5.7.3.2'])
  assert.equal(new Date(crt.validTo).getTime() - at.getTime(), TALOS_API_CLIENT_CERT_VALIDITY_MS)
  const key = loadPrivateKey(decodePem(ctx.key))
  assert.equal(key.asymmetricKeyType, 'ed25519')
  assert.ok(crt.checkPrivateKey(key))

  if (!HAVE_OPENSSL) {
    t.skip('openssl is not installed (Debian package openssl)')
    return
  }
  const dir = mkdtempSync(join(tmpdir(), 'rackboot-talosconfig-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'ca.crt'), decodePem(ctx.ca))
  writeFileSync(join(dir, 'admin.crt'), decodePem(ctx.crt))
  const v = spawnSync('openssl', ['verify', '-attime', String(Math.floor(at.getTime() / 1000) + 60), '-CAfile', join(dir, 'ca.crt'), '-purpose', 'sslclient', join(dir, 'admin.crt')], { encoding: 'utf8' })
  assert.equal(v.status, 0, v.stdout + v.stderr)
  const text = spawnSync('openssl', ['x509', '-in', join(dir, 'admin.crt'), '-noout', '-text'], { encoding: 'utf8' })
  assert.match(text.stdout, /X509v3 Key Usage: critical\s+Digital Signature\n/)
  assert.match(text.stdout, /X509v3 Extended Key Usage:\s+TLS Web Client Authentication\n/)
  assert.match(text.stdout, /X509v3 Authority Key Identifier/)
  assert.doesNotMatch(text.stdout, /Basic Constraints/)
})

test('a bundle parsed from text is validated once and shared, frozen; a changed text is parsed anew', async () => {
  const text = secretsBundleToYaml(await generateSecretsBundle({ talosVersion: 'v1.13.9' }))
  const a = parseSecretsBundle(text)
  const b = parseSecretsBundle(text)
  assert.equal(a, b, 'the second parse of the same text is the first one')
  assert.ok(Object.isFrozen(a) && Object.isFrozen(a.certs) && Object.isFrozen(a.certs.os), 'callers cannot change what others get')
  const other = parseSecretsBundle(`${text}\n`)
  assert.notEqual(other, a)
  assert.deepEqual(other, a)
  assert.throws(() => parseSecretsBundle(text.replace(/crt: \S+/, 'crt: bm90IGEgY2VydA==')), /invalid secrets bundle/, 'a bad bundle is still refused')
})
