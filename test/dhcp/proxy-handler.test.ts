import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Registry } from 'prom-client'
import { decode, encode, type DhcpPacket } from '../../src/dhcp/codec.js'
import { createProxyHandler } from '../../src/dhcp/handlers/proxy.js'
import { createDhcpMetrics } from '../../src/dhcp/metrics.js'
import { MessageType, OptionCode, getMessageType, getServerId, getString } from '../../src/dhcp/options.js'
import type { DhcpBootEvent, DhcpBootPort } from '../../src/dhcp/ports.js'
import { decodePxeVendor, encodePxeVendor } from '../../src/dhcp/pxe-vendor.js'
import { silentLogger } from '../../src/log.js'
import { FIRMWARE, meta, request, type RequestSpec } from './packets.js'

const SERVER = '198.18.3.2'

function proxy(port?: DhcpBootPort) {
  const registry = new Registry()
  const metrics = createDhcpMetrics(registry, () => [])
  const h = createProxyHandler({
    serverId: SERVER,
    boot: {
      bootFiles: { bios: 'undionly.kpxe', uefiX64: 'ipxe.efi', uefiArm64: 'ipxe-arm64.efi' },
      archBootFiles: {},
      scriptUrl: 'http://198.18.3.2:8080/boot.ipxe',
      httpBootUrl: () => 'http://198.18.3.2:8080/ipxe.efi',
      nextServer: SERVER,
    },
    advice: { bootPort: port ?? { inspect: async () => undefined }, timeoutMs: 500, metrics, log: silentLogger() },
    log: silentLogger(),
  })
  const send = async (spec: RequestSpec, localPort = 67): Promise<DhcpPacket | string> => {
    const r = await h.handle(decode(encode(request(spec))), meta({ localPort, bootServer: localPort === 4011, source: { address: '198.18.3.50', port: 68 } }))
    if (r.kind !== 'reply') return r.reason
    return decode(encode(r.packet))
  }
  return { h, send }
}

const MAC = '52:54:00:1a:b0:01'

test('ProxyDHCP offer: no address, server id, PXEClient, boot file; BIOS gets 43 discovery control 8', async () => {
  const { send } = proxy()
  const p = (await send({ type: MessageType.Discover, mac: MAC, ...FIRMWARE.biosPxe, uuid: '8c3f5a7e-1b2d-4c6e-9f01-23456789abcd' })) as DhcpPacket
  assert.equal(getMessageType(p.options), MessageType.Offer)
  assert.equal(p.yiaddr, '0.0.0.0')
  assert.equal(getServerId(p.options), SERVER)
  assert.equal(getString(p.options, OptionCode.VendorClassIdentifier), 'PXEClient')
  assert.equal(p.file, 'undionly.kpxe')
  assert.equal(p.siaddr, SERVER)
  assert.equal(decodePxeVendor(p.options.get(OptionCode.VendorSpecific)!)?.discoveryControl, 8)
  assert.equal(p.options.has(OptionCode.IpAddressLeaseTime), false)
  assert.equal(p.options.has(OptionCode.Router), false)
  assert.equal(p.options.get(OptionCode.ClientMachineIdentifier)?.length, 17, 'option 97 echoed')
  assert.equal(p.flags & 0x8000, 0x8000)
})

test('UEFI firmware gets no option 43 in the ProxyDHCP offer (EDK2 then asks on 4011)', async () => {
  const { send } = proxy()
  const p = (await send({ type: MessageType.Discover, mac: MAC, ...FIRMWARE.ovmfPxe })) as DhcpPacket
  assert.equal(p.file, 'ipxe.efi')
  assert.equal(p.options.has(OptionCode.VendorSpecific), false)
  assert.equal(getString(p.options, OptionCode.VendorClassIdentifier), 'PXEClient')
})

test('iPXE and UEFI HTTP boot clients in proxy mode', async () => {
  const { send } = proxy()
  const ipxe = (await send({ type: MessageType.Discover, mac: MAC, ...FIRMWARE.ipxeEfi })) as DhcpPacket
  assert.equal(getString(ipxe.options, OptionCode.BootfileName), 'http://198.18.3.2:8080/boot.ipxe')
  // iPXE recognises a ProxyDHCP offer by option 60 PXEClient.
  assert.equal(getString(ipxe.options, OptionCode.VendorClassIdentifier), 'PXEClient')
  const http = (await send({ type: MessageType.Discover, mac: MAC, ...FIRMWARE.ovmfHttp })) as DhcpPacket
  assert.equal(getString(http.options, OptionCode.VendorClassIdentifier), 'HTTPClient')
  assert.equal(getString(http.options, OptionCode.BootfileName), 'http://198.18.3.2:8080/ipxe.efi')
})

test('only network-boot clients, and only DISCOVER or a REQUEST naming us, are answered on 67', async () => {
  const { send } = proxy()
  assert.equal(await send({ type: MessageType.Discover, mac: MAC, vendorClass: 'udhcp 1.35.0' }), 'not-netboot')
  assert.equal(await send({ type: MessageType.Discover, mac: MAC }), 'not-netboot')
  assert.equal(await send({ type: MessageType.Request, mac: MAC, ...FIRMWARE.biosPxe, serverId: '198.18.3.1', requestedIp: '198.18.3.77' }), 'other-server')
  const ack = (await send({ type: MessageType.Request, mac: MAC, ...FIRMWARE.biosPxe, serverId: SERVER })) as DhcpPacket
  assert.equal(getMessageType(ack.options), MessageType.Ack)
  assert.equal(ack.yiaddr, '0.0.0.0')
  assert.equal(await send({ type: MessageType.Release, mac: MAC, ...FIRMWARE.biosPxe }), 'not-for-proxy')
  assert.equal(await send({ type: MessageType.Discover, mac: MAC, vendorClass: 'PXEClient:Arch:00002:UNDI:003000', arch: 2 }), 'no-boot-file')
})

test('boot server (4011): REQUEST gets an ACK with the boot file and the boot item echoed', async () => {
  const { send } = proxy()
  const item = encodePxeVendor({ bootItem: { type: 0, layer: 0 } })
  const ack = (await send({ type: MessageType.Request, mac: MAC, ...FIRMWARE.ovmfPxe, ciaddr: '198.18.3.50', extra: [[OptionCode.VendorSpecific, item]] }, 4011)) as DhcpPacket
  assert.equal(getMessageType(ack.options), MessageType.Ack)
  assert.equal(ack.file, 'ipxe.efi')
  assert.equal(ack.siaddr, SERVER)
  assert.equal(ack.ciaddr, '198.18.3.50')
  assert.equal(getServerId(ack.options), SERVER)
  assert.deepEqual(decodePxeVendor(ack.options.get(OptionCode.VendorSpecific)!)?.bootItem, { type: 0, layer: 0 })
  const ipxe = (await send({ type: MessageType.Request, mac: MAC, ...FIRMWARE.ipxeBios, ciaddr: '198.18.3.50' }, 4011)) as DhcpPacket
  assert.equal(getString(ipxe.options, OptionCode.BootfileName), 'http://198.18.3.2:8080/boot.ipxe')
  assert.equal(await send({ type: MessageType.Discover, mac: MAC, ...FIRMWARE.ovmfPxe }, 4011), 'unexpected-message-type')
})

test('the boot port sees proxy traffic and can silence a machine', async () => {
  const seen: DhcpBootEvent[] = []
  const { send } = proxy({
    async inspect(facts, event) {
      seen.push(event)
      if (facts.mac === '52:54:00:00:00:99') return { ignore: true, reason: 'maintenance' }
      if (facts.mac === '52:54:00:00:00:98') return { bootFile: 'snponly.efi' }
      return undefined
    },
  })
  assert.equal(await send({ type: MessageType.Discover, mac: '52:54:00:00:00:99', ...FIRMWARE.ovmfPxe }), 'lifecycle-ignore')
  const p = (await send({ type: MessageType.Discover, mac: '52:54:00:00:00:98', ...FIRMWARE.ovmfPxe })) as DhcpPacket
  assert.equal(p.file, 'snponly.efi')
  assert.deepEqual(seen.map((e) => [e.message, e.reply, e.mode, e.bootFile]), [
    ['discover', 'offer', 'proxy', 'ipxe.efi'],
    ['discover', 'offer', 'proxy', 'ipxe.efi'],
  ])
})
