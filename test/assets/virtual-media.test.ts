// The virtual media ISO (src/assets/virtual-media.ts) and its route (GET|HEAD /media/rackboot.iso): a hybrid El
// Torito image for BIOS and UEFI that carries the iPXE script chaining to /boot.ipxe, cached by its inputs; served
// with Range (206/416), HEAD, ETag and Last-Modified, and 503 with the reason when there is no ISO.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { buildBootIso, bootIsoScript, createBootIsoProvider, missingIsoTools, type BootIsoProvider } from '../../src/assets/virtual-media.js'
import { isRackbootError } from '../../src/errors.js'
import { buildApp } from '../../src/http/index.js'
import type { Inventory } from '../../src/inventory/index.js'
import type { Lifecycle } from '../../src/lifecycle/index.js'
import { createMetricsRegistry } from '../../src/metrics.js'

const SERVER = 'http://198.18.7.1:8080'
const IPXE_DIR = '/usr/lib/ipxe'

function tempDir(t: TestContext, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function skipWithoutTools(t: TestContext): Promise<boolean> {
  const missing = await missingIsoTools()
  if (!missing) return false
  console.error(`# SKIP: ${missing}`)
  t.skip(missing)
  return true
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

/** ISO 9660 + El Torito, read by hand: the primary volume descriptor, the boot record and the boot catalog's entries. */
function elTorito(iso: Buffer): { volumeId: string; entries: { platform: number; bootable: boolean; emulation: number; sectors: number; lba: number }[] } {
  const desc = (n: number) => iso.subarray((16 + n) * 2048, (17 + n) * 2048)
  let volumeId = ''
  let catalogLba = -1
  for (let n = 0; n < 16; n++) {
    const d = desc(n)
    assert.equal(d.subarray(1, 6).toString('ascii'), 'CD001', `volume descriptor ${n} has the ISO 9660 signature`)
    if (d[0] === 1) volumeId = d.subarray(40, 72).toString('ascii').trim()
    if (d[0] === 0 && d.subarray(7, 39).toString('ascii').replace(/\0+$/, '') === 'EL TORITO SPECIFICATION') catalogLba = d.readUInt32LE(71)
    if (d[0] === 255) break
  }
  assert.ok(catalogLba > 0, 'an El Torito boot record points at a boot catalog')
  const cat = iso.subarray(catalogLba * 2048, catalogLba * 2048 + 2048)
  assert.equal(cat[0], 1, 'validation entry')
  assert.deepEqual([cat[30], cat[31]], [0x55, 0xaa], 'validation entry key bytes')
  let sum = 0
  for (let i = 0; i < 32; i += 2) sum = (sum + cat.readUInt16LE(i)) & 0xffff
  assert.equal(sum, 0, 'validation entry checksum')
  const entry = (o: number, platform: number) => ({
    platform, bootable: cat[o] === 0x88, emulation: cat[o + 1]!, sectors: cat.readUInt16LE(o + 6), lba: cat.readUInt32LE(o + 8),
  })
  const entries = [entry(32, cat[1]!)]
  // Section headers (0x90, last one 0x91), each followed by its entries.
  for (let o = 64; o < 2048;) {
    const header = cat[o]
    if (header !== 0x90 && header !== 0x91) break
    const platform = cat[o + 1]!
    const count = cat.readUInt16LE(o + 2)
    for (let i = 0; i < count; i++) entries.push(entry(o + 32 * (i + 1), platform))
    o += 32 * (count + 1)
    if (header === 0x91) break
  }
  return { volumeId, entries }
}

function extract(iso: string, path: string, dir: string): Buffer {
  const out = join(dir, path.replace(/\//g, '_'))
  execFileSync('xorriso', ['-osirrox', 'on', '-indev', iso, '-extract', path, out], { stdio: 'ignore' })
  return readFileSync(out)
}

test('the ISO is a hybrid El Torito image: BIOS boots isolinux → ipxe.lkrn with the script as initrd, UEFI a FAT image with ipxe.efi', async (t) => {
  if (await skipWithoutTools(t)) return
  const dir = tempDir(t, 'rb-vm-iso-')
  const built = await buildBootIso({ serverUrl: SERVER, outDir: join(dir, 'cache') })
  assert.equal(built.source, 'built')
  assert.equal(built.fresh, true)
  const iso = readFileSync(built.path)
  assert.equal(iso.length, built.size)
  assert.equal(iso.length % 2048, 0)
  assert.deepEqual([iso[510], iso[511]], [0x55, 0xaa], 'an isohybrid MBR (the image also boots written to a USB stick)')

  const { volumeId, entries } = elTorito(iso)
  assert.equal(volumeId, 'RACKBOOT')
  const bios = entries.find((e) => e.platform === 0)
  const efi = entries.find((e) => e.platform === 0xef)
  assert.ok(bios?.bootable && bios.emulation === 0, `a bootable no-emulation BIOS entry: ${JSON.stringify(entries)}`)
  assert.ok(efi?.bootable && efi.emulation === 0, `a bootable no-emulation UEFI entry: ${JSON.stringify(entries)}`)
  // BIOS: the entry loads isolinux.bin (bytes 8-63 are the boot info table xorriso patches in).
  const isolinux = readFileSync('/usr/lib/ISOLINUX/isolinux.bin')
  assert.ok(iso.subarray(bios.lba * 2048 + 64, bios.lba * 2048 + isolinux.length).equals(isolinux.subarray(64)), 'the BIOS entry is isolinux.bin')
  // UEFI: the entry is a FAT image holding \EFI\BOOT\BOOTX64.EFI = Debian's ipxe.efi and \autoexec.ipxe.
  const img = iso.subarray(efi.lba * 2048, efi.lba * 2048 + efi.sectors * 512)
  assert.deepEqual([img[510], img[511]], [0x55, 0xaa])
  assert.match(img.subarray(54, 62).toString('ascii'), /^FAT1[26]/)
  const work = tempDir(t, 'rb-vm-x-')
  writeFileSync(join(work, 'efiboot.img'), img)
  const bootx64 = execFileSync('mcopy', ['-n', '-i', join(work, 'efiboot.img'), '::/EFI/BOOT/BOOTX64.EFI', '-'], { maxBuffer: 16 << 20 })
  assert.equal(sha(bootx64), sha(readFileSync(join(IPXE_DIR, 'ipxe.efi'))))
  const autoexec = execFileSync('mcopy', ['-n', '-i', join(work, 'efiboot.img'), '::/autoexec.ipxe', '-']).toString()
  assert.equal(autoexec, bootIsoScript(SERVER))

  // The files BIOS boots: isolinux.cfg → /ipxe.lkrn (Debian's) with /boot.ipxe (the script) as its initrd.
  const cfg = extract(built.path, '/isolinux.cfg', work).toString()
  assert.match(cfg, /^\s*KERNEL \/ipxe\.lkrn$/m)
  assert.match(cfg, /^\s*INITRD \/boot\.ipxe$/m)
  assert.equal(sha(extract(built.path, '/ipxe.lkrn', work)), sha(readFileSync(join(IPXE_DIR, 'ipxe.lkrn'))))
  const script = extract(built.path, '/boot.ipxe', work).toString()
  assert.equal(script, built.script)
  assert.match(script, /^#!ipxe\n/)
  const lines = script.split('\n')
  // DHCPv4 only: plain `dhcp` also waits ~13 s for IPv6 autoconfiguration where no router advertises.
  const dhcp = lines.indexOf('ifconf --configurator dhcp || goto nonet')
  const chain = lines.findIndex((l) => l.startsWith(`chain --replace --autofree ${SERVER}/boot.ipxe?mac=\${netX/mac:hexhyp}&uuid=\${uuid}&serial=\${serial:uristring}`))
  assert.ok(dhcp > 0 && chain > dhcp, `dhcp, then chain to ${SERVER}/boot.ipxe with the identity query:\n${script}`)
  assert.ok(!/https?:\/\/(?!198\.18\.7\.1:8080)/.test(script), 'the only URL in the script is the server\'s')
})

test('the ISO is cached by its inputs: rebuilt only when the script or a binary changes; concurrent calls share one build', async (t) => {
  if (await skipWithoutTools(t)) return
  const dir = tempDir(t, 'rb-vm-cache-')
  const outDir = join(dir, 'cache')
  const ipxeDir = join(dir, 'ipxe')
  mkdirSync(ipxeDir)
  for (const f of ['ipxe.lkrn', 'ipxe.efi']) copyFileSync(join(IPXE_DIR, f), join(ipxeDir, f))

  const [a, b, c] = await Promise.all([1, 2, 3].map(() => buildBootIso({ serverUrl: SERVER, outDir, ipxeDir })))
  assert.ok(a === b && b === c, 'three concurrent calls get the result of one build')
  assert.equal(a!.fresh, true)
  const isos = () => readdirSync(outDir).filter((f) => f.endsWith('.iso')).sort()
  assert.equal(isos().length, 1)
  assert.deepEqual(readdirSync(outDir).filter((f) => f.startsWith('.')), [], 'no temporary files left')

  const again = await buildBootIso({ serverUrl: SERVER, outDir, ipxeDir })
  assert.equal(again.fresh, false, 'same inputs: the cached image')
  assert.equal(again.path, a!.path)
  assert.equal(again.etag, a!.etag)
  assert.equal(statSync(again.path).mtime.getTime(), a!.mtime.getTime(), 'not rewritten')

  const other = await buildBootIso({ serverUrl: 'http://10.9.9.9', outDir, ipxeDir })
  assert.equal(other.fresh, true, 'another server URL is another script: a new image')
  assert.notEqual(other.path, a!.path)
  assert.notEqual(other.etag, a!.etag)

  // A changed binary (an ipxe package upgrade) is a new image even with the same script.
  writeFileSync(join(ipxeDir, 'ipxe.efi'), Buffer.concat([readFileSync(join(IPXE_DIR, 'ipxe.efi')), Buffer.from([0])]))
  const upgraded = await buildBootIso({ serverUrl: SERVER, outDir, ipxeDir })
  assert.equal(upgraded.fresh, true)
  assert.notEqual(upgraded.path, a!.path)
  assert.equal((await buildBootIso({ serverUrl: SERVER, outDir, ipxeDir })).fresh, false)
  assert.equal(isos().length, 3)

  // Equal inputs give equal bytes (fixed dates): a rebuild elsewhere has the same content and ETag.
  copyFileSync(join(IPXE_DIR, 'ipxe.efi'), join(ipxeDir, 'ipxe.efi'))
  const elsewhere = await buildBootIso({ serverUrl: SERVER, outDir: join(dir, 'cache2'), ipxeDir })
  assert.equal(elsewhere.etag, a!.etag)
  assert.equal(sha(readFileSync(elsewhere.path)), sha(readFileSync(a!.path)))
})

test('missing tools or files, and a build past its time, fail with the fix named and leave no temporary files', async (t) => {
  const dir = tempDir(t, 'rb-vm-missing-')
  const outDir = join(dir, 'cache')
  const noIpxe = join(dir, 'empty')
  mkdirSync(noIpxe)
  await assert.rejects(buildBootIso({ serverUrl: SERVER, outDir, ipxeDir: noIpxe }), (err: unknown) => {
    assert.ok(isRackbootError(err, 'RB_ERR_NOT_SERVABLE'), String(err))
    assert.match(err.message, /missing [^;(]*ipxe\.lkrn, [^;(]*ipxe\.efi \(Debian packages ipxe\)/, 'names what is missing and its package')
    assert.match(err.message, /virtualMedia\.iso/)
    return true
  })
  const path = process.env.PATH
  process.env.PATH = join(dir, 'no-bin')
  try {
    await assert.rejects(buildBootIso({ serverUrl: SERVER, outDir }), (err: unknown) => {
      assert.ok(isRackbootError(err, 'RB_ERR_NOT_SERVABLE'))
      assert.match(err.message, /missing xorriso, mformat, mmd, mcopy \(Debian packages xorriso mtools\)/)
      return true
    })
  } finally {
    process.env.PATH = path
  }
  await assert.rejects(buildBootIso({ serverUrl: 'http://x/${evil}', outDir }), /server URL/)
  await assert.rejects(buildBootIso({ serverUrl: 'ftp://x', outDir }), /server URL/)

  if (await missingIsoTools()) return
  await assert.rejects(buildBootIso({ serverUrl: SERVER, outDir, timeoutMs: 1 }), (err: unknown) => {
    assert.ok(isRackbootError(err, 'RB_ERR_NOT_SERVABLE'))
    assert.match(err.message, /timed out/)
    return true
  })
  assert.deepEqual(readdirSync(outDir), [], 'the timed-out build left nothing behind')
})

// ---- the route -------------------------------------------------------------------------------------------------

async function appWith(t: TestContext, provider: BootIsoProvider) {
  const registry = createMetricsRegistry()
  const app = await buildApp({
    inventory: {} as Inventory, lifecycle: { record() {} } as unknown as Lifecycle, registry, log: pino({ level: 'silent' }), version: 'test',
    virtualMedia: { provider, serverUrl: SERVER },
  })
  t.after(() => app.close())
  const count = async (status: string) =>
    Number(new RegExp(`status="${status}"} (\\d+)`).exec(await registry.getSingleMetricAsString('rackboot_http_virtual_media_requests_total'))?.[1] ?? 0)
  return { app, count }
}

test('the route serves the ISO whole, by HEAD, and by single ranges (206 with the right bytes, 416 past the end)', async (t) => {
  const dir = tempDir(t, 'rb-vm-route-')
  // A user's ISO (virtualMedia.iso) is served as is: any bytes do for the HTTP semantics.
  const file = join(dir, 'own.iso')
  const bytes = randomBytes(3 * 1024 * 1024 + 123)
  writeFileSync(file, bytes)
  const { app, count } = await appWith(t, createBootIsoProvider({ iso: file, outDir: join(dir, 'cache') }))
  const url = '/media/rackboot.iso'

  const full = await app.inject({ url })
  assert.equal(full.statusCode, 200)
  assert.equal(full.headers['content-length'], String(bytes.length))
  assert.equal(full.headers['accept-ranges'], 'bytes')
  assert.equal(full.headers['content-type'], 'application/octet-stream')
  assert.ok(full.rawPayload.equals(bytes))
  const etag = String(full.headers.etag)
  const lastModified = String(full.headers['last-modified'])
  assert.match(etag, /^W\/"/, "a user's file gets a weak ETag (size and mtime)")
  assert.equal(new Date(lastModified).getTime(), Math.floor(statSync(file).mtimeMs / 1000) * 1000)

  const head = await app.inject({ method: 'HEAD', url })
  assert.equal(head.statusCode, 200)
  assert.equal(head.headers['content-length'], String(bytes.length))
  assert.equal(head.headers.etag, etag)
  assert.equal(head.rawPayload.length, 0)

  const cases: [string, number, number][] = [
    ['bytes=0-2047', 0, 2047],
    ['bytes=32768-34815', 32768, 34815],
    ['bytes=3145728-', 3145728, bytes.length - 1],
    ['bytes=-100', bytes.length - 100, bytes.length - 1],
    [`bytes=100-${bytes.length + 5000}`, 100, bytes.length - 1], // past the end: clipped
    ['bytes=0-0', 0, 0],
  ]
  for (const [range, start, end] of cases) {
    const r = await app.inject({ url, headers: { range } })
    assert.equal(r.statusCode, 206, range)
    assert.equal(r.headers['content-range'], `bytes ${start}-${end}/${bytes.length}`, range)
    assert.equal(r.headers['content-length'], String(end - start + 1), range)
    assert.ok(r.rawPayload.equals(bytes.subarray(start, end + 1)), `${range}: the bytes of the range`)
  }
  const headRange = await app.inject({ method: 'HEAD', url, headers: { range: 'bytes=10-19' } })
  assert.equal(headRange.statusCode, 206)
  assert.equal(headRange.headers['content-length'], '10')
  assert.equal(headRange.rawPayload.length, 0)

  for (const range of [`bytes=${bytes.length}-`, `bytes=${bytes.length + 10}-${bytes.length + 20}`, 'bytes=-0']) {
    const r = await app.inject({ url, headers: { range } })
    assert.equal(r.statusCode, 416, range)
    assert.equal(r.headers['content-range'], `bytes */${bytes.length}`, range)
  }
  // What a server may ignore (RFC 9110 §14.2): not bytes, several ranges, malformed: the whole file.
  for (const range of ['items=0-1', 'bytes=0-1,5-6', 'bytes=9-3', 'bytes=abc']) {
    const r = await app.inject({ url, headers: { range } })
    assert.equal(r.statusCode, 200, range)
    assert.equal(r.rawPayload.length, bytes.length, range)
  }
  // If-Range: the same version gets the range, another the whole (new) file; a weak ETag never matches If-Range.
  assert.equal((await app.inject({ url, headers: { range: 'bytes=0-9', 'if-range': lastModified } })).statusCode, 206)
  assert.equal((await app.inject({ url, headers: { range: 'bytes=0-9', 'if-range': 'Mon, 01 Jan 2024 00:00:00 GMT' } })).statusCode, 200)
  assert.equal((await app.inject({ url, headers: { range: 'bytes=0-9', 'if-range': etag } })).statusCode, 200)
  assert.equal((await app.inject({ url, headers: { 'if-none-match': etag } })).statusCode, 304)
  assert.equal(await count('206'), cases.length + 2)
  assert.equal(await count('416'), 3)
})

test('the route serves a built ISO with a strong ETag, over a real socket, and answers 503 with the reason when none can be built', async (t) => {
  const dir = tempDir(t, 'rb-vm-route2-')
  const broken = await appWith(t, createBootIsoProvider({ outDir: join(dir, 'cache'), ipxeDir: join(dir, 'nothing-here') }))
  const r = await broken.app.inject({ url: '/media/rackboot.iso' })
  assert.equal(r.statusCode, 503)
  assert.equal(r.headers['retry-after'], '30')
  assert.equal(r.json().error, 'RB_ERR_NOT_SERVABLE')
  assert.match(r.json().message, /Debian packages .*ipxe.*virtualMedia\.iso/)
  assert.equal((await broken.app.inject({ method: 'HEAD', url: '/media/rackboot.iso' })).statusCode, 503)
  assert.equal(await broken.count('503'), 2)

  if (await skipWithoutTools(t)) return
  const { app } = await appWith(t, createBootIsoProvider({ outDir: join(dir, 'cache-ok') }))
  const base = await app.listen({ host: '127.0.0.1', port: 0 })
  const iso = await buildBootIso({ serverUrl: SERVER, outDir: join(dir, 'cache-ok') })
  const bytes = readFileSync(iso.path)
  const whole = await fetch(`${base}/media/rackboot.iso`)
  assert.equal(whole.status, 200)
  assert.equal(whole.headers.get('etag'), iso.etag)
  assert.match(iso.etag, /^"[0-9a-f]{32}"$/, 'a built image has a strong ETag')
  assert.ok(Buffer.from(await whole.arrayBuffer()).equals(bytes))
  const part = await fetch(`${base}/media/rackboot.iso`, { headers: { range: 'bytes=32768-40959', 'if-range': iso.etag } })
  assert.equal(part.status, 206)
  assert.ok(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(32768, 40960)))
  // A BMC that hangs up mid-download costs nothing: the next request is served.
  const ac = new AbortController()
  const cut = await fetch(`${base}/media/rackboot.iso`, { signal: ac.signal })
  ac.abort()
  await cut.arrayBuffer().catch(() => undefined)
  assert.equal((await fetch(`${base}/media/rackboot.iso`, { method: 'HEAD' })).status, 200)
})
