import assert from 'node:assert/strict'
import { test } from 'node:test'
import { decodeIpxeOptions, encodeIpxeOptions } from '../../src/dhcp/ipxe-options.js'
import { OptionCode, parseSubOptions } from '../../src/dhcp/options.js'
import { decodePxeVendor, encodePxeVendor } from '../../src/dhcp/pxe-vendor.js'
import { decodeRelayAgentInfo } from '../../src/dhcp/relay-agent.js'
import { decodeUserClass, encodeUserClass } from '../../src/dhcp/user-class.js'
import { requestFacts } from '../../src/dhcp/facts.js'
import { FIRMWARE, meta, request } from './packets.js'

test('option 77: iPXE plain form and RFC 3004 form both read', () => {
  assert.deepEqual(decodeUserClass(Buffer.from('iPXE')), ['iPXE'])
  assert.deepEqual(decodeUserClass(encodeUserClass(['iPXE', 'rack7'])), ['iPXE', 'rack7'])
  assert.deepEqual(decodeUserClass(Buffer.from([4, 0x69, 0x50, 0x58, 0x45])), ['iPXE'])
  // A length byte that runs past the end means the plain form.
  assert.deepEqual(decodeUserClass(Buffer.from([9, 0x61])), ['\ta'])
  assert.deepEqual(decodeUserClass(Buffer.alloc(0)), [])
  assert.deepEqual(decodeUserClass(Buffer.from('Tinkerbell\0')), ['Tinkerbell'])
})

test('option 43: PXE sub-options round-trip, END-terminated', () => {
  const b = encodePxeVendor({
    discoveryControl: 8,
    bootServers: [{ type: 0x8000, addresses: ['198.18.0.1', '198.18.0.2'] }],
    bootMenu: [{ type: 0x8000, description: 'rackboot' }],
    menuPrompt: { timeout: 0, prompt: 'PXE' },
    bootItem: { type: 0x8000, layer: 0 },
  })
  assert.equal(b[b.length - 1], 255)
  const d = decodePxeVendor(b)
  assert.ok(d)
  assert.equal(d.discoveryControl, 8)
  assert.deepEqual(d.bootServers, [{ type: 0x8000, addresses: ['198.18.0.1', '198.18.0.2'] }])
  assert.deepEqual(d.bootMenu, [{ type: 0x8000, description: 'rackboot' }])
  assert.deepEqual(d.menuPrompt, { timeout: 0, prompt: 'PXE' })
  assert.deepEqual(d.bootItem, { type: 0x8000, layer: 0 })
  assert.equal(decodePxeVendor(Buffer.from([6, 5, 1])), undefined)
})

test('option 82: circuit id, remote id, link selection and server id override', () => {
  const v = Buffer.from([1, 3, 0x61, 0x62, 0x63, 2, 2, 0xaa, 0xbb, 5, 4, 198, 18, 30, 0, 11, 4, 198, 18, 30, 1])
  const d = decodeRelayAgentInfo(v)
  assert.ok(d)
  assert.equal(d.circuitId?.toString(), 'abc')
  assert.equal(d.remoteId?.toString('hex'), 'aabb')
  assert.equal(d.linkSelection, '198.18.30.0')
  assert.equal(d.serverIdOverride, '198.18.30.1')
  assert.equal(decodeRelayAgentInfo(Buffer.from([1, 9, 0])), undefined)
})

test('option 175: iPXE features and no-pxedhcp', () => {
  const info = decodeIpxeOptions(Buffer.from([0x13, 1, 1, 0x14, 1, 0, 0x24, 1, 1, 235, 3, 1, 0, 0]))
  assert.ok(info)
  assert.deepEqual(info.features, ['http', 'efi'])
  assert.equal(info.version, '1.0.0')
  const b = encodeIpxeOptions({ noPxedhcp: true })
  assert.deepEqual(b, Buffer.from([176, 1, 1]))
  assert.deepEqual(parseSubOptions(b)?.get(176), Buffer.from([1]))
})

test('request facts: what each firmware in the lab says about itself', () => {
  const cases = [
    { fw: FIRMWARE.ipxeBios, arch: 0, type: 'PXEClient', ipxe: true, family: 'bios' },
    { fw: FIRMWARE.ovmfPxe, arch: 7, type: 'PXEClient', ipxe: false, family: 'uefiX64' },
    { fw: FIRMWARE.ipxeEfi, arch: 7, type: 'PXEClient', ipxe: true, family: 'uefiX64' },
    { fw: FIRMWARE.ovmfHttp, arch: 16, type: 'HTTPClient', ipxe: false, family: 'uefiX64' },
    { fw: FIRMWARE.aavmfPxe, arch: 11, type: 'PXEClient', ipxe: false, family: 'uefiArm64' },
    { fw: FIRMWARE.aavmfHttp, arch: 19, type: 'HTTPClient', ipxe: false, family: 'uefiArm64' },
  ] as const
  for (const c of cases) {
    const f = requestFacts(request({ type: 1, mac: '52:54:00:1a:b0:01', ...c.fw, uuid: '8c3f5a7e-1b2d-4c6e-9f01-23456789abcd' }), meta())
    assert.equal(f.arch?.code, c.arch)
    assert.equal(f.arch?.family, c.family)
    assert.equal(f.clientType, c.type)
    assert.equal(f.isIpxe, c.ipxe)
    assert.equal(f.isNetboot, true)
    assert.equal(f.uuid, '8c3f5a7e-1b2d-4c6e-9f01-23456789abcd')
    assert.equal(f.message, 'discover')
    assert.equal(f.undi, '3.0')
  }
})

test('request facts: arch from option 60 when option 93 is missing; plain clients are not netboot', () => {
  const f = requestFacts(request({ type: 1, mac: '02:00:00:00:00:01', vendorClass: 'PXEClient:Arch:00011:UNDI:003000' }), meta())
  assert.equal(f.arch?.code, 11)
  const plain = requestFacts(request({ type: 3, mac: '02:00:00:00:00:02', vendorClass: 'udhcp 1.35.0', ciaddr: '198.18.0.9' }), meta())
  assert.equal(plain.isNetboot, false)
  assert.equal(plain.arch, null)
  assert.equal(plain.ciaddr, '198.18.0.9')
  assert.equal(plain.giaddr, null)
  const sel = requestFacts(request({ type: 1, mac: '02:00:00:00:00:03', extra: [[OptionCode.SubnetSelection, Buffer.from([198, 18, 40, 0])]] }), meta())
  assert.equal(sel.linkSelection, '198.18.40.0')
})

test('request facts survive garbage in every structured option', () => {
  const junk = Buffer.from([255, 1, 2])
  const p = request({
    type: 1,
    mac: '02:00:00:00:00:04',
    extra: [
      [OptionCode.UserClass, junk], [OptionCode.Ipxe, junk], [OptionCode.RelayAgentInformation, junk],
      [OptionCode.ClientSystemArchitecture, Buffer.from([7])], [OptionCode.ClientMachineIdentifier, junk],
      [OptionCode.ClientNetworkInterface, junk], [OptionCode.VendorClassIdentifier, Buffer.from('PXEClient:Arch:xx')],
    ],
  })
  const f = requestFacts(p, meta())
  assert.equal(f.arch, null)
  assert.equal(f.uuid, null)
  assert.equal(f.clientType, 'PXEClient')
  assert.equal(f.isIpxe, true)
})
