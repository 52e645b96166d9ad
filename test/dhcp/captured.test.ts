// Datagrams captured from real firmware and clients (fixtures/captured/README.md): decoded, round-tripped, and
// answered with the right boot file in both modes.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { chooseBoot } from '../../src/dhcp/boot-file.js'
import { decode, encode } from '../../src/dhcp/codec.js'
import { requestFacts } from '../../src/dhcp/facts.js'
import { createProxyHandler } from '../../src/dhcp/handlers/proxy.js'
import { createDhcpMetrics } from '../../src/dhcp/metrics.js'
import { OptionCode, getString } from '../../src/dhcp/options.js'
import { silentLogger } from '../../src/log.js'
import { Registry } from 'prom-client'
import { meta } from './packets.js'

const dir = join(import.meta.dirname, 'fixtures/captured')
const load = (name: string) => Buffer.from(readFileSync(join(dir, `${name}.hex`), 'utf8').trim(), 'hex')
const UUID = '8c3f5a7e-1b2d-4c6e-9f01-23456789abcd'

const boot = {
  bootFiles: { bios: 'undionly.kpxe', uefiX64: 'ipxe.efi', uefiArm64: 'ipxe-arm64.efi' },
  archBootFiles: {},
  scriptUrl: 'http://198.18.250.1:8080/boot.ipxe',
  httpBootUrl: () => 'http://198.18.250.1:8080/ipxe.efi',
  nextServer: '198.18.250.1',
}

const cases = [
  { name: 'ipxe-bios-discover', mac: '52:54:00:1a:b0:01', arch: 0, type: 'PXEClient', ipxe: true, uuid: UUID, boot: ['ipxe-script', boot.scriptUrl] },
  { name: 'ovmf-pxe-discover', mac: '52:54:00:1a:b0:02', arch: 7, type: 'PXEClient', ipxe: false, uuid: UUID, boot: ['tftp', 'ipxe.efi'] },
  { name: 'ovmf-http-discover', mac: '52:54:00:1a:b0:03', arch: 16, type: 'HTTPClient', ipxe: false, uuid: UUID, boot: ['http', 'http://198.18.250.1:8080/ipxe.efi'] },
  { name: 'ipxe-efi-discover', mac: '52:54:00:1a:b0:04', arch: 7, type: 'PXEClient', ipxe: true, uuid: UUID, boot: ['ipxe-script', boot.scriptUrl] },
  { name: 'udhcpc-discover', mac: '52:54:00:1a:b0:05', arch: 0, type: 'PXEClient', ipxe: false, uuid: null, boot: ['tftp', 'undionly.kpxe'] },
  { name: 'dhclient-discover', mac: '52:54:00:1a:b0:06', arch: null, type: null, ipxe: false, uuid: null, boot: ['none', null] },
] as const

test('captured firmware DISCOVERs decode to the facts the lab table lists', () => {
  for (const c of cases) {
    const f = requestFacts(decode(load(c.name)), meta())
    assert.equal(f.message, 'discover', c.name)
    assert.equal(f.mac, c.mac, c.name)
    assert.equal(f.arch?.code ?? null, c.arch, c.name)
    assert.equal(f.clientType, c.type, c.name)
    assert.equal(f.isIpxe, c.ipxe, c.name)
    assert.equal(f.uuid, c.uuid, c.name)
  }
  const ipxe = requestFacts(decode(load('ipxe-bios-discover')), meta())
  assert.deepEqual(ipxe.userClass, ['iPXE'])
  assert.ok(ipxe.ipxe?.features.includes('http'))
  assert.equal(ipxe.maxMessageSize, 1472)
})

test('captured datagrams survive decode → encode → decode unchanged', () => {
  for (const c of cases) {
    const once = decode(load(c.name))
    const twice = decode(encode(once, { maxSize: 1500 }))
    assert.deepEqual(twice, once, c.name)
  }
})

test('captured datagrams get the expected boot choice', () => {
  for (const c of cases) {
    const choice = chooseBoot(requestFacts(decode(load(c.name)), meta()), boot)
    const target = choice.kind === 'tftp' ? choice.file : choice.kind === 'none' ? null : choice.url
    assert.deepEqual([choice.kind, target], c.boot, c.name)
  }
})

test('captured datagrams through the ProxyDHCP handler: boot file for netboot clients, silence for the rest', async () => {
  const h = createProxyHandler({
    serverId: '198.18.250.1',
    boot,
    advice: { bootPort: { inspect: async () => undefined }, timeoutMs: 500, metrics: createDhcpMetrics(new Registry(), () => []), log: silentLogger() },
    log: silentLogger(),
  })
  for (const c of cases) {
    const r = await h.handle(decode(load(c.name)), meta())
    if (c.boot[0] === 'none') {
      assert.equal(r.kind, 'ignore', c.name)
      continue
    }
    assert.equal(r.kind, 'reply', c.name)
    if (r.kind !== 'reply') continue
    const p = decode(encode(r.packet, r.maxSize ? { maxSize: r.maxSize } : {}))
    assert.equal(p.yiaddr, '0.0.0.0')
    assert.equal(getString(p.options, OptionCode.BootfileName), c.boot[1], c.name)
    assert.equal(getString(p.options, OptionCode.VendorClassIdentifier), c.type, c.name)
  }
})
