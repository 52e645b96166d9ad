import assert from 'node:assert/strict'
import { test } from 'node:test'
import { chooseBoot, type BootFileConfig } from '../../src/dhcp/boot-file.js'
import { CLIENT_ARCHS, clientArch } from '../../src/dhcp/client-arch.js'
import { requestFacts } from '../../src/dhcp/facts.js'
import { FIRMWARE, meta, request, type RequestSpec } from './packets.js'

const config: BootFileConfig = {
  bootFiles: { bios: 'undionly.kpxe', uefiX64: 'ipxe.efi', uefiArm64: 'ipxe-arm64.efi' },
  archBootFiles: {},
  scriptUrl: 'http://198.18.0.1:8080/boot.ipxe?mac=${net0/mac}',
  httpBootUrl: (_loader, arch) => `http://198.18.0.1:8080/assets/${arch.family}/ipxe.efi`,
  nextServer: '198.18.0.1',
}

const facts = (spec: Partial<RequestSpec>) => requestFacts(request({ type: 1, mac: '52:54:00:00:00:01', ...spec }), meta())

test('boot file by option 93 for the firmware seen in the lab', () => {
  const table: [Partial<RequestSpec>, string, string][] = [
    [FIRMWARE.biosPxe, 'tftp', 'undionly.kpxe'],
    [FIRMWARE.ovmfPxe, 'tftp', 'ipxe.efi'],
    [FIRMWARE.aavmfPxe, 'tftp', 'ipxe-arm64.efi'],
    [FIRMWARE.ipxeBios, 'ipxe-script', config.scriptUrl],
    [FIRMWARE.ipxeEfi, 'ipxe-script', config.scriptUrl],
    [FIRMWARE.ovmfHttp, 'http', 'http://198.18.0.1:8080/assets/uefiX64/ipxe.efi'],
    [FIRMWARE.aavmfHttp, 'http', 'http://198.18.0.1:8080/assets/uefiArm64/ipxe.efi'],
    [{ vendorClass: 'PXEClient:Arch:00009:UNDI:003016', arch: 9 }, 'tftp', 'ipxe.efi'],
    // Old BIOS ROMs send neither option 93 nor an Arch field.
    [{ vendorClass: 'PXEClient' }, 'tftp', 'undionly.kpxe'],
  ]
  for (const [spec, kind, target] of table) {
    const c = chooseBoot(facts(spec), config)
    assert.equal(c.kind, kind, JSON.stringify(spec))
    const got = c.kind === 'tftp' ? c.file : c.kind === 'none' ? null : c.url
    assert.equal(got, target, JSON.stringify(spec))
  }
})

test('an iPXE client never gets a binary again, whatever its arch says', () => {
  for (const arch of [0, 6, 7, 9, 10, 11]) {
    const c = chooseBoot(facts({ vendorClass: `PXEClient:Arch:${String(arch).padStart(5, '0')}:UNDI:003010`, arch, userClass: ['iPXE'] }), config)
    assert.equal(c.kind, 'ipxe-script')
  }
  // Option 175 alone also marks iPXE (user class set to something else).
  const c = chooseBoot(facts({ ...FIRMWARE.ovmfPxe, userClass: ['Tinkerbell'], ipxe: true }), config)
  assert.equal(c.kind, 'ipxe-script')
  // A binary name as a machine override must not loop iPXE back into a binary.
  const o = chooseBoot(facts(FIRMWARE.ipxeEfi), config, { bootFile: 'snponly.efi' })
  assert.equal(o.kind, 'ipxe-script')
})

test('every IANA architecture gets an answer: a file, an URL, or none with a reason', () => {
  for (const [code, arch] of CLIENT_ARCHS) {
    const c = chooseBoot(facts({ vendorClass: `${arch.http ? 'HTTPClient' : 'PXEClient'}:Arch:${String(code).padStart(5, '0')}:UNDI:003000`, arch: code }), config)
    if (c.kind === 'none') assert.match(c.reason, /unsupported|no boot file/)
    else if (arch.http) assert.equal(c.kind, 'http', `arch ${code}`)
    else assert.equal(c.kind, 'tftp', `arch ${code}`)
  }
  assert.equal(CLIENT_ARCHS.size, 42)
  assert.equal(clientArch(7).name, 'x64 UEFI')
  assert.equal(clientArch(500).family, null)
})

test('settings: arch overrides before families, and families without a name are not booted', () => {
  const c = chooseBoot(facts(FIRMWARE.ovmfPxe), { ...config, archBootFiles: { '7': 'snponly.efi' } })
  assert.equal(c.kind === 'tftp' && c.file, 'snponly.efi')
  const arm32 = chooseBoot(facts({ vendorClass: 'PXEClient:Arch:00010:UNDI:003000', arch: 10 }), config)
  assert.equal(arm32.kind, 'none')
  const itanium = chooseBoot(facts({ vendorClass: 'PXEClient:Arch:00002:UNDI:003000', arch: 2 }), config)
  assert.equal(itanium.kind, 'none')
  assert.match((itanium as { reason: string }).reason, /Itanium/)
})

test('per-machine overrides: a file for PXE, an URL for iPXE and HTTP boot, next-server', () => {
  const pxe = chooseBoot(facts(FIRMWARE.ovmfPxe), config, { bootFile: 'custom.efi', nextServer: '198.18.0.9' })
  assert.deepEqual(pxe, { kind: 'tftp', file: 'custom.efi', nextServer: '198.18.0.9', reason: 'pxe: machine override' })
  const ipxe = chooseBoot(facts(FIRMWARE.ipxeBios), config, { bootFile: 'http://198.18.0.1/other.ipxe' })
  assert.equal(ipxe.kind === 'ipxe-script' && ipxe.url, 'http://198.18.0.1/other.ipxe')
  const http = chooseBoot(facts(FIRMWARE.ovmfHttp), config, { bootFile: 'http://198.18.0.1/x.efi' })
  assert.equal(http.kind === 'http' && http.url, 'http://198.18.0.1/x.efi')
})

test('clients that are not network booting get no boot file', () => {
  const c = chooseBoot(facts({ vendorClass: 'udhcp 1.35.0' }), config)
  assert.deepEqual(c, { kind: 'none', reason: 'not a network-boot client' })
})

// Issue "Clear when a boot cannot work": `none` switches a firmware off, for PXE and for UEFI HTTP boot alike.
const aavmfPxe = () => facts(FIRMWARE.aavmfPxe)
const aavmfHttp = () => facts(FIRMWARE.aavmfHttp)

test('a family set to none is not network-booted, PXE or HTTP, and the reason names the setting', () => {
  const off = { ...config, bootFiles: { ...config.bootFiles, uefiArm64: 'none' } }
  for (const f of [aavmfPxe(), aavmfHttp()]) {
    const c = chooseBoot(f, off)
    assert.equal(c.kind, 'none')
    assert.match((c as { reason: string }).reason, /^dhcp\.bootFiles\.uefiArm64 is none: ARM 64-bit UEFI( HTTP)? is not network-booted$/)
  }
  // Other firmware is untouched.
  assert.equal(chooseBoot(facts(FIRMWARE.ovmfPxe), off).kind, 'tftp')
  // iPXE (already running) still gets its script: `none` is about loaders.
  assert.equal(chooseBoot(facts(FIRMWARE.ipxeEfi), { ...config, bootFiles: { ...config.bootFiles, uefiX64: 'none' } }).kind, 'ipxe-script')
})

test('an archBootFiles code set to none switches off that code only, before its family', () => {
  const off = { ...config, archBootFiles: { '19': 'none' } }
  const http = chooseBoot(aavmfHttp(), off)
  assert.deepEqual(http, { kind: 'none', reason: 'dhcp.archBootFiles.19 is none: ARM 64-bit UEFI HTTP is not network-booted' })
  // PXE on the same machine (code 11) still boots its family's loader.
  const pxe = chooseBoot(aavmfPxe(), off)
  assert.equal(pxe.kind === 'tftp' && pxe.file, 'ipxe-arm64.efi')
  const pxeOff = chooseBoot(aavmfPxe(), { ...config, archBootFiles: { '11': 'none' } })
  assert.match((pxeOff as { reason: string }).reason, /^dhcp\.archBootFiles\.11 is none/)
})

test('UEFI HTTP boot: the code mapping first, then the family; the URL is made from that loader', () => {
  const urls: [string, string][] = []
  const c: BootFileConfig = {
    ...config,
    bootFiles: { ...config.bootFiles, uefiArm64: 'grubnetaa64.efi' },
    httpBootUrl: (loader, arch) => {
      urls.push([loader, arch.name])
      return `http://198.18.0.1:8080/assets/x/${loader}`
    },
  }
  const byFamily = chooseBoot(aavmfHttp(), c)
  assert.deepEqual(byFamily, {
    kind: 'http', url: 'http://198.18.0.1:8080/assets/x/grubnetaa64.efi', reason: 'http boot: ARM 64-bit UEFI HTTP',
    loader: 'grubnetaa64.efi', setting: 'dhcp.bootFiles.uefiArm64',
  })
  const byCode = chooseBoot(aavmfHttp(), { ...c, archBootFiles: { '19': 'grubnetaa64-http.efi' } })
  assert.equal(byCode.kind === 'http' && byCode.url, 'http://198.18.0.1:8080/assets/x/grubnetaa64-http.efi')
  assert.equal(byCode.kind === 'http' && byCode.setting, 'dhcp.archBootFiles.19')
  assert.deepEqual(urls, [['grubnetaa64.efi', 'ARM 64-bit UEFI HTTP'], ['grubnetaa64-http.efi', 'ARM 64-bit UEFI HTTP']])
  // A URL in the settings goes out as it is (a mirror), and is no loader of ours.
  const mirror = chooseBoot(aavmfHttp(), { ...c, archBootFiles: { '19': 'http://mirror.example/grub.efi' } })
  assert.deepEqual(mirror, { kind: 'http', url: 'http://mirror.example/grub.efi', reason: 'http boot: arch 19 mapping', setting: 'dhcp.archBootFiles.19' })
  // PXE choices name their setting too (for the fix in a "missing loader" message).
  const pxe = chooseBoot(aavmfPxe(), c)
  assert.equal(pxe.kind === 'tftp' && pxe.setting, 'dhcp.bootFiles.uefiArm64')
})
