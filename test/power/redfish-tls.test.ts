// Per-BMC TLS for Redfish: a self-signed certificate (made here with openssl req) is refused by default, accepted
// when its sha256 fingerprint is pinned or its certificate given as CA, refused with a wrong pin, and accepted
// without verification only with the explicit insecure flag. A certificate signed by a private CA is verified with
// that CA given per BMC, and refused without it.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { createBmcDriver, createRedfishDriver, isPowerError } from '../../src/power/index.js'
import { normalizeFingerprint } from '../../src/power/redfish/index.js'
import { have } from './fixtures/bmc-sims.js'
import { startRedfishServer } from './fixtures/redfish-server.js'

test('Redfish TLS: verify by default, pin, CA, insecure', { skip: have('openssl') ? false : 'needs openssl' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rackboot-tls-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '2', '-subj', '/CN=bmc.test',
    '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' })
  assert.equal(made.status, 0, made.stderr)
  const cert = readFileSync(join(dir, 'cert.pem'), 'utf8')
  const key = readFileSync(join(dir, 'key.pem'), 'utf8')
  const fingerprint = new X509Certificate(cert).fingerprint256 // "AB:CD:..."
  // openssl's own view of the fingerprint, to be sure the pin is computed the usual way.
  const osslFp = spawnSync('openssl', ['x509', '-noout', '-fingerprint', '-sha256', '-in', join(dir, 'cert.pem')], { encoding: 'utf8' })
  assert.equal(normalizeFingerprint(osslFp.stdout.trim().split('=')[1]!), normalizeFingerprint(fingerprint))

  const s = await startRedfishServer({ tls: { key, cert } })
  t.after(() => s.close())
  const base = { address: s.url, username: 'admin', password: 'password', timeoutMs: 5000 }

  await t.test('a self-signed certificate is refused by default', async () => {
    const d = createRedfishDriver(base)
    await assert.rejects(d.powerStatus(), (err) => {
      assert.ok(isPowerError(err, 'tls'), String(err))
      assert.match(err.message, /SELF_SIGNED|UNABLE_TO_VERIFY/)
      return true
    })
    await d.close()
  })

  await t.test('a pinned sha256 fingerprint is accepted (any spelling)', async () => {
    for (const pin of [fingerprint, fingerprint.replace(/:/g, '').toLowerCase(), `sha256:${fingerprint}`]) {
      const d = createRedfishDriver({ ...base, fingerprint: pin })
      assert.equal(await d.powerStatus(), 'off')
      await d.close()
    }
  })

  await t.test('a wrong pin is refused, even with insecure set', async () => {
    const wrong = 'AA'.repeat(32)
    const d = createRedfishDriver({ ...base, fingerprint: wrong, insecure: true })
    await assert.rejects(d.powerStatus(), (err) => {
      assert.ok(isPowerError(err, 'tls'), String(err))
      assert.match(err.message, /not the pinned one/)
      return true
    })
    await d.close()
    assert.throws(() => createRedfishDriver({ ...base, fingerprint: 'abc' }), (err) => isPowerError(err, 'invalid'))
  })

  await t.test('the certificate given as CA verifies (name checked against the IP SAN)', async () => {
    const d = createRedfishDriver({ ...base, ca: cert })
    assert.equal(await d.powerStatus(), 'off')
    await d.close()
  })

  await t.test('insecure skips verification only when asked, per BMC (inventory fields)', async () => {
    const insecure = createBmcDriver({ type: 'redfish', address: s.url, port: null, insecure: true, fingerprint: null },
      { username: 'admin', password: 'password' }, { timeoutMs: 5000 })
    assert.equal(await insecure.powerStatus(), 'off')
    await insecure.close()
    const pinned = createBmcDriver({ type: 'redfish', address: '127.0.0.1', port: s.port, insecure: false, fingerprint },
      { username: 'admin', password: 'password' }, { timeoutMs: 5000 })
    await pinned.power('on') // host + port in the inventory: https implied
    assert.equal(await pinned.powerStatus(), 'on')
    await pinned.close()
    const strict = createBmcDriver({ type: 'redfish', address: '127.0.0.1', port: s.port, insecure: false, fingerprint: null },
      { username: 'admin', password: 'password' }, { timeoutMs: 5000 })
    await assert.rejects(strict.powerStatus(), (err) => isPowerError(err, 'tls'))
    await strict.close()
  })
})

/** openssl with the arguments, which must succeed. */
function openssl(...args: string[]): void {
  const r = spawnSync('openssl', args, { encoding: 'utf8' })
  assert.equal(r.status, 0, `openssl ${args.join(' ')}: ${r.stderr}`)
}

test('Redfish TLS: a BMC certificate signed by a private CA', { skip: have('openssl') ? false : 'needs openssl' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rackboot-ca-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const f = (name: string): string => join(dir, name)
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  openssl('req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=rackboot test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign')
  openssl('req', ...ec, '-keyout', f('bmc.key'), '-out', f('bmc.csr'), '-subj', '/CN=bmc.test')
  writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n')
  openssl('x509', '-req', '-in', f('bmc.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2',
    '-extfile', f('ext.cnf'), '-out', f('bmc.pem'))
  openssl('req', '-x509', ...ec, '-keyout', f('other.key'), '-out', f('other.pem'), '-days', '2', '-subj', '/CN=another CA')
  const ca = readFileSync(f('ca.pem'), 'utf8')
  const s = await startRedfishServer({ tls: { key: readFileSync(f('bmc.key'), 'utf8'), cert: readFileSync(f('bmc.pem'), 'utf8') } })
  t.after(() => s.close())
  const base = { address: s.url, username: 'admin', password: 'password', timeoutMs: 5000 }

  await t.test('verified with the CA given for this BMC (driver option and inventory caPem)', async () => {
    const d = createRedfishDriver({ ...base, ca })
    assert.equal(await d.powerStatus(), 'off')
    await d.close()
    const fromInventory = createBmcDriver({ type: 'redfish', address: '127.0.0.1', port: s.port, insecure: false, fingerprint: null, caPem: ca },
      { username: 'admin', password: 'password' }, { timeoutMs: 5000 })
    assert.equal(await fromInventory.powerStatus(), 'off')
    await fromInventory.close()
  })

  await t.test('refused without the CA, and with another CA: one line saying what to do, nothing ran', async () => {
    for (const extra of [{}, { ca: readFileSync(f('other.pem'), 'utf8') }]) {
      const d = createRedfishDriver({ ...base, ...extra })
      await assert.rejects(d.powerStatus(), (err) => {
        assert.ok(isPowerError(err, 'tls'), String(err))
        assert.match(err.message, /^BMC 127\.0\.0\.1:\d+ has a certificate rackboot does not trust \(UNABLE_TO_VERIFY_LEAF_SIGNATURE: .*\); give its CA, pin its sha256 fingerprint, or mark it insecure$/)
        assert.equal(err.notRun, true)
        return true
      })
      await d.close()
    }
  })
})
