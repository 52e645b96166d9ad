import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { X509Certificate, generateKeyPairSync } from 'node:crypto'
import { createServer, connect, type TLSSocket } from 'node:tls'
import * as der from '../../src/talos/asn1.js'
import { createCertificate, certificateParts, encodeName, toDer } from '../../src/talos/x509.js'
import { generateKey, loadPrivateKey, privateKeyToPem } from '../../src/talos/keys.js'

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

function openssl(args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('openssl', args, { input, encoding: 'utf8' })
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' }
}
const HAVE_OPENSSL = spawnSync('openssl', ['version']).status === 0

test('DER lengths: short form below 128, long form above', () => {
  assert.equal(hex(der.encodeLength(0)), '00')
  assert.equal(hex(der.encodeLength(127)), '7f')
  assert.equal(hex(der.encodeLength(128)), '8180')
  assert.equal(hex(der.encodeLength(255)), '81ff')
  assert.equal(hex(der.encodeLength(256)), '820100')
  assert.equal(hex(der.encodeLength(65536)), '83010000')
  assert.throws(() => der.encodeLength(-1))
  const long = der.octetString(Buffer.alloc(300, 1))
  assert.equal(hex(long.subarray(0, 4)), '0482012c')
  assert.equal(long.length, 304)
})

test('DER integers are minimal two\'s complement', () => {
  assert.equal(hex(der.integer(0)), '020100')
  assert.equal(hex(der.integer(127)), '02017f')
  assert.equal(hex(der.integer(128)), '02020080')
  assert.equal(hex(der.integer(256)), '02020100')
  assert.equal(hex(der.integer(2n ** 64n)), '0209010000000000000000')
  assert.equal(hex(der.integer(Buffer.from([0, 0, 0x7f]))), '02017f')
  assert.equal(hex(der.integer(Buffer.from([0xff]))), '020200ff')
  assert.throws(() => der.integer(-1))
})

test('DER OIDs, strings, times and bit strings', () => {
  assert.equal(hex(der.oid('1.2.840.10045.2.1')), '06072a8648ce3d0201')
  assert.equal(hex(der.oid('1.3.101.112')), '06032b6570')
  assert.equal(hex(der.oid('2.5.29.15')), '0603551d0f')
  assert.equal(der.decodeOid(der.oid('1.2.840.113549.1.1.11').subarray(2)), '1.2.840.113549.1.1.11')
  assert.throws(() => der.oid('3.1'))
  assert.throws(() => der.oid('1.40'))
  assert.equal(hex(der.printableString('etcd')), '130465746364')
  assert.throws(() => der.printableString('a_b'))
  assert.equal(der.directoryString('ünï')[0], der.Tag.UTF8_STRING)
  assert.equal(der.directoryString('os:admin')[0], der.Tag.PRINTABLE_STRING)
  assert.equal(Buffer.from(der.utcTime(new Date('2023-10-12T10:46:09.999Z')).subarray(2)).toString(), '231012104609Z')
  assert.equal(der.x509Time(new Date('2049-12-31T23:59:59Z'))[0], der.Tag.UTC_TIME)
  assert.equal(Buffer.from(der.x509Time(new Date('2050-01-01T00:00:00Z')).subarray(2)).toString(), '20500101000000Z')
  // KeyUsage digitalSignature|keyCertSign is 03 02 02 84, as Go and the Talos fixtures encode it.
  assert.equal(hex(der.namedBits([0, 5])), '03020284')
  assert.equal(hex(der.namedBits([0])), '03020780')
  assert.equal(hex(der.namedBits([8])), '0303070080')
  assert.equal(hex(der.bitString(Buffer.alloc(0))), '030100')
  // SET OF sorts its members.
  assert.equal(hex(der.setOf(der.integer(2), der.integer(1))), '3106020101020102')
})

test('DER reader walks what the writer wrote', () => {
  const buf = der.sequence(der.integer(5), der.explicit(3, der.octetString(Buffer.from('hi'))), der.nullValue())
  const root = der.readElement(buf)
  assert.equal(root.tag, 0x30)
  const kids = der.children(buf, root)
  assert.deepEqual(kids.map((k) => k.tag), [0x02, 0xa3, 0x05])
  assert.throws(() => der.readElement(Buffer.from([0x30, 0x05, 0x00])), /past the end/)
})

test('openssl parses a structure built by the writer', { skip: HAVE_OPENSSL ? false : 'openssl is not installed (Debian package openssl)' }, () => {
  const buf = der.sequence(der.oid('2.5.4.10'), der.printableString('talos'), der.integer(2n ** 80n), der.boolean(true))
  const r = spawnSync('openssl', ['asn1parse', '-inform', 'DER'], { input: buf, encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  assert.match(r.stdout, /OBJECT\s+:organizationName/)
  assert.match(r.stdout, /PRINTABLESTRING\s+:talos/)
  assert.match(r.stdout, /INTEGER\s+:0100000000000000000000/)
  assert.match(r.stdout, /BOOLEAN\s+:255/)
})

test('names encode in Go\'s attribute order', () => {
  assert.equal(hex(encodeName({})), '3000')
  // SEQUENCE { SET { SEQUENCE { organizationName, PrintableString "talos" } } }
  assert.equal(hex(encodeName({ organization: ['talos'] })), '3010310e300c060355040a130574616c6f73')
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const now = new Date()
  const pem = createCertificate({
    template: { subject: { organization: ['talos'], commonName: 'x' }, notBefore: now, notAfter: new Date(now.getTime() + 3600_000), isCA: true, keyUsage: ['keyCertSign'], extKeyUsage: [] },
    publicKey,
    privateKey,
  })
  assert.equal(new X509Certificate(pem).subject, 'O=talos\nCN=x')
})

for (const algorithm of ['ecdsa-p256', 'ed25519', 'rsa'] as const) {
  test(`self-signed ${algorithm} CA verifies with node and openssl`, async (t) => {
    const { privateKey, publicKey } = await generateKey(algorithm, { rsaBits: 2048 })
    const notBefore = new Date('2026-01-02T03:04:05Z')
    const notAfter = new Date('2036-01-02T03:04:05Z')
    const pem = createCertificate({
      template: {
        subject: { organization: ['etcd'] },
        notBefore,
        notAfter,
        isCA: true,
        keyUsage: ['digitalSignature', 'keyCertSign'],
        extKeyUsage: ['serverAuth', 'clientAuth'],
        serialNumber: 0x1234567890abcdefn,
      },
      publicKey,
      privateKey,
    })
    const cert = new X509Certificate(pem)
    assert.equal(cert.ca, true)
    assert.equal(cert.subject, 'O=etcd')
    assert.equal(cert.issuer, 'O=etcd')
    assert.equal(cert.serialNumber.toUpperCase(), '1234567890ABCDEF')
    assert.equal(new Date(cert.validFrom).toISOString(), notBefore.toISOString())
    assert.equal(new Date(cert.validTo).toISOString(), notAfter.toISOString())
    assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'])
    assert.ok(cert.verify(publicKey), 'self-signature verifies')
    assert.ok(cert.checkPrivateKey(privateKey))
    assert.equal(certificateParts(pem).subjectKeyId?.length, 20)
    // Talos's private key PEM labels round-trip through the loader.
    const keyPem = privateKeyToPem(privateKey)
    assert.match(keyPem, algorithm === 'ecdsa-p256' ? /BEGIN EC PRIVATE KEY/ : algorithm === 'rsa' ? /BEGIN RSA PRIVATE KEY/ : /BEGIN ED25519 PRIVATE KEY/)
    assert.ok(cert.checkPrivateKey(loadPrivateKey(keyPem)))

    if (!HAVE_OPENSSL) {
      t.skip('openssl is not installed (Debian package openssl)')
      return
    }
    const dir = mkdtempSync(join(tmpdir(), 'rackboot-x509-'))
    t.after(() => rmSync(dir, { recursive: true, force: true }))
    const file = join(dir, 'ca.pem')
    writeFileSync(file, pem)
    const text = openssl(['x509', '-in', file, '-noout', '-text'])
    assert.equal(text.status, 0, text.stderr)
    assert.match(text.stdout, /Version: 3 \(0x2\)/)
    assert.match(text.stdout, /X509v3 Key Usage: critical\s+Digital Signature, Certificate Sign/)
    assert.match(text.stdout, /X509v3 Extended Key Usage:\s+TLS Web Server Authentication, TLS Web Client Authentication/)
    assert.match(text.stdout, /X509v3 Basic Constraints: critical\s+CA:TRUE/)
    assert.match(text.stdout, /X509v3 Subject Key Identifier/)
    assert.doesNotMatch(text.stdout, /Authority Key Identifier/)
    assert.match(text.stdout, /Not Before: Jan  2 03:04:05 2026 GMT/)
    const verify = openssl(['verify', '-CAfile', file, file])
    assert.equal(verify.status, 0, verify.stderr + verify.stdout)
    assert.match(verify.stdout, /OK/)
  })
}

test('a certificate past 2049 uses GeneralizedTime and still verifies', { skip: HAVE_OPENSSL ? false : 'openssl is not installed' }, (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const pem = createCertificate({
    template: { subject: { organization: ['x'] }, notBefore: new Date('2049-06-01T00:00:00Z'), notAfter: new Date('2059-06-01T00:00:00Z'), isCA: true, keyUsage: ['keyCertSign'], extKeyUsage: [] },
    publicKey,
    privateKey,
  })
  const d = toDer(pem)
  assert.ok(d.includes(Buffer.from('20590601000000Z')))
  const dir = mkdtempSync(join(tmpdir(), 'rackboot-x509-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'c.pem'), pem)
  const out = openssl(['x509', '-in', join(dir, 'c.pem'), '-noout', '-enddate'])
  assert.match(out.stdout, /notAfter=Jun  1 00:00:00 2059 GMT/)
})

test('leaf certificates from a CA: client and server certs work in a real mutual-TLS handshake', async (t) => {
  const ca = await generateKey('ed25519')
  const now = new Date(Date.now() - 60_000)
  const later = new Date(now.getTime() + 86_400_000)
  const caPem = createCertificate({
    template: { subject: { organization: ['talos'] }, notBefore: now, notAfter: later, isCA: true, keyUsage: ['digitalSignature', 'keyCertSign'], extKeyUsage: ['serverAuth', 'clientAuth'] },
    publicKey: ca.publicKey,
    privateKey: ca.privateKey,
  })
  const issuer = { certificate: caPem, privateKey: ca.privateKey }
  const server = await generateKey('ecdsa-p256')
  const serverPem = createCertificate({
    template: { subject: { commonName: 'localhost' }, notBefore: now, notAfter: later, isCA: false, keyUsage: ['digitalSignature'], extKeyUsage: ['serverAuth'] },
    publicKey: server.publicKey,
    issuer,
  })
  const client = await generateKey('ed25519')
  const clientPem = createCertificate({
    template: { subject: { organization: ['os:admin'] }, notBefore: now, notAfter: later, isCA: false, keyUsage: ['digitalSignature'], extKeyUsage: ['clientAuth'] },
    publicKey: client.publicKey,
    issuer,
  })
  const clientCert = new X509Certificate(clientPem)
  assert.equal(clientCert.ca, false)
  assert.ok(clientCert.checkIssued(new X509Certificate(caPem)))
  assert.ok(clientCert.verify(ca.publicKey))
  // Authority Key Identifier is the CA's Subject Key Identifier.
  const akid = certificateParts(caPem).subjectKeyId!
  assert.ok(toDer(clientPem).includes(akid))

  // Server certificate without a SAN: skip hostname checks, keep chain verification on both sides.
  const srv = createServer({
    key: privateKeyToPem(server.privateKey),
    cert: serverPem,
    ca: caPem,
    requestCert: true,
    rejectUnauthorized: true,
  }, (socket) => {
    const peer = (socket as TLSSocket).getPeerCertificate()
    socket.end(`hello ${peer.subject?.O ?? ''}`)
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  t.after(() => srv.close())
  const port = (srv.address() as { port: number }).port
  const reply = await new Promise<string>((resolve, reject) => {
    const sock = connect({
      host: '127.0.0.1',
      port,
      ca: caPem,
      // OpenSSL does not know Talos's "ED25519 PRIVATE KEY" label; hand TLS the PKCS#8 form.
      key: client.privateKey.export({ type: 'pkcs8', format: 'pem' }),
      cert: clientPem,
      checkServerIdentity: () => undefined,
    })
    let data = ''
    sock.on('data', (d) => (data += d))
    sock.on('end', () => resolve(data))
    sock.on('error', reject)
  })
  assert.equal(reply, 'hello os:admin')

  if (!HAVE_OPENSSL) return
  const dir = mkdtempSync(join(tmpdir(), 'rackboot-x509-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'ca.pem'), caPem)
  writeFileSync(join(dir, 'client.pem'), clientPem)
  const v = openssl(['verify', '-CAfile', join(dir, 'ca.pem'), '-purpose', 'sslclient', join(dir, 'client.pem')])
  assert.equal(v.status, 0, v.stderr + v.stdout)
  const wrongPurpose = openssl(['verify', '-CAfile', join(dir, 'ca.pem'), '-purpose', 'sslserver', join(dir, 'client.pem')])
  assert.notEqual(wrongPurpose.status, 0, 'a client-only certificate must not pass as a server certificate')
})

test('certificate creation refuses impossible input', async () => {
  const { privateKey, publicKey } = await generateKey('ed25519')
  const now = new Date()
  assert.throws(() => createCertificate({
    template: { subject: {}, notBefore: now, notAfter: now, isCA: true, keyUsage: [], extKeyUsage: [] },
    publicKey,
    privateKey,
  }), /notAfter/)
  assert.throws(() => createCertificate({
    template: { subject: {}, notBefore: now, notAfter: new Date(now.getTime() + 1000), isCA: true, keyUsage: [], extKeyUsage: [] },
    publicKey,
  }), /private key/)
  assert.throws(() => certificateParts('not a pem'), /CERTIFICATE/)
})
