import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import {
  createLoaderPresence, isGrubImage, loaderFetchCommand, loaderLocation, missingLoaderMessage, offeredLoaders,
} from '../../src/assets/loaders.js'
import { bootFileProblems } from '../../src/assets/readiness.js'
import { loadSettings } from '../../src/settings/index.js'

// Issue "Clear when a boot cannot work": where each loader lives (iPXE under ipxe/, GRUB under grub/), which ones
// network boot offers (not those set to `none`), and what /healthz says is missing, with the fix.

function assetsDir(t: { after(fn: () => void): void }, files: string[] = []): string {
  const dir = mkdtempSync(join(tmpdir(), 'rb-loaders-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  for (const f of files) {
    mkdirSync(join(dir, f, '..'), { recursive: true })
    writeFileSync(join(dir, f), 'x')
  }
  return dir
}

const DEFAULTS = { bootFiles: { bios: 'undionly.kpxe', uefiX64: 'ipxe.efi', uefiArm64: 'grubnetaa64.efi' }, archBootFiles: {} }

test('loader location: GRUB images under grub/, everything else under ipxe/, and the command that fetches each', () => {
  assert.equal(loaderLocation('grubnetaa64.efi'), 'grub/grubnetaa64.efi')
  assert.equal(loaderLocation('/grubnetx64.efi'), 'grub/grubnetx64.efi')
  assert.equal(loaderLocation('grub/grubnetaa64.efi'), 'grub/grubnetaa64.efi')
  assert.equal(loaderLocation('GRUBNETAA64.EFI'), 'grub/GRUBNETAA64.EFI')
  assert.equal(loaderLocation('ipxe.efi'), 'ipxe/ipxe.efi')
  assert.equal(loaderLocation('/undionly.kpxe'), 'ipxe/undionly.kpxe')
  assert.equal(loaderLocation('efi\\snponly.efi'), 'ipxe/efi/snponly.efi')
  assert.equal(isGrubImage('grub.cfg'), false)
  assert.equal(isGrubImage('grub/x86_64-efi/command.lst'), false)
  assert.equal(loaderFetchCommand('grubnetaa64.efi'), 'rackboot assets fetch grub')
  assert.equal(loaderFetchCommand('snponly.efi'), 'rackboot assets fetch ipxe')
})

test('offered loaders: families and code mappings, not those set to none, not URLs', () => {
  const offered = offeredLoaders({
    bootFiles: { ...DEFAULTS.bootFiles, bios: 'none', uefiIa32: 'ipxe32.efi' },
    archBootFiles: { '7': 'snponly.efi', '19': 'none', '16': 'http://mirror.example/ipxe.efi' },
  })
  assert.deepEqual(offered, [
    { setting: 'dhcp.bootFiles.uefiX64', file: 'ipxe.efi', cpu: 'amd64' },
    { setting: 'dhcp.bootFiles.uefiArm64', file: 'grubnetaa64.efi', cpu: 'arm64' },
    { setting: 'dhcp.bootFiles.uefiIa32', file: 'ipxe32.efi', cpu: 'other' },
    { setting: 'dhcp.archBootFiles.7', file: 'snponly.efi', cpu: 'amd64' },
  ])
  assert.equal(
    missingLoaderMessage('/srv/assets', offered[1]!),
    'dhcp.bootFiles.uefiArm64 names grubnetaa64.efi, which is not on this server (grub/grubnetaa64.efi under /srv/assets): ' +
      'run rackboot assets fetch grub, or set dhcp.bootFiles.uefiArm64: none to stop network-booting that firmware',
  )
})

test('settings accept none for a family and for an option 93 code', () => {
  const s = loadSettings({ cwd: tmpdir(), env: {}, overrides: ['dhcp.bootFiles.uefiArm64=none', 'dhcp.archBootFiles.19=none'] })
  assert.equal(s.dhcp.bootFiles.uefiArm64, 'none')
  assert.equal(s.dhcp.archBootFiles['19'], 'none')
  assert.deepEqual(offeredLoaders(s.dhcp).map((l) => l.file), ['undionly.kpxe', 'ipxe.efi'])
})

test('presence is a cached stat: a file that appears is seen within the ttl, not per call', (t) => {
  const dir = assetsDir(t)
  let now = 0
  const present = createLoaderPresence({ assetsDir: dir, ttlMs: 5000, now: () => now })
  assert.equal(present('grubnetaa64.efi'), false)
  mkdirSync(join(dir, 'grub'))
  writeFileSync(join(dir, 'grub', 'grubnetaa64.efi'), 'x')
  now = 4999
  assert.equal(present('grubnetaa64.efi'), false, 'still the cached answer')
  now = 5000
  assert.equal(present('grubnetaa64.efi'), true)
  // Only where TFTP and /assets serve it from counts: iPXE's loaders in ipxe/, not at the top.
  writeFileSync(join(dir, 'ipxe.efi'), 'x')
  assert.equal(present('ipxe.efi'), false)
})

const noProfiles = async () => []

test('/healthz lines: missing iPXE and GRUB loaders with their fetch, the arm64 agent only when arm64 is served', async (t) => {
  const dir = assetsDir(t, ['agent/vmlinuz', 'agent/agent.img'])
  const lines = await bootFileProblems({ assetsDir: dir, loaders: offeredLoaders(DEFAULTS), profiles: noProfiles })
  assert.deepEqual(lines, [
    'iPXE loaders missing (ipxe/undionly.kpxe, ipxe/ipxe.efi): run rackboot assets fetch ipxe, or set dhcp.bootFiles.bios: none, dhcp.bootFiles.uefiX64: none to stop network-booting that firmware',
    'GRUB loaders missing (grub/grubnetaa64.efi): run rackboot assets fetch grub, or set dhcp.bootFiles.uefiArm64: none to stop network-booting that firmware',
    'arm64 discovery agent missing (agent/arm64/vmlinuz, agent/arm64/agent.img): run rackboot assets build agent --arch arm64, or set dhcp.bootFiles.uefiArm64: none to stop network-booting arm64',
  ])
  // arm64 switched off: neither its loader nor its agent is asked for.
  const off = await bootFileProblems({ assetsDir: dir, loaders: offeredLoaders({ ...DEFAULTS, bootFiles: { ...DEFAULTS.bootFiles, uefiArm64: 'none' } }), profiles: noProfiles })
  assert.deepEqual(off, [lines[0]])
})

test('/healthz lines: nothing when every offered loader and agent is in place', async (t) => {
  const dir = assetsDir(t, [
    'ipxe/undionly.kpxe', 'ipxe/ipxe.efi', 'grub/grubnetaa64.efi', 'agent/vmlinuz', 'agent/agent.img', 'agent/arm64/vmlinuz', 'agent/arm64/agent.img',
  ])
  assert.deepEqual(await bootFileProblems({ assetsDir: dir, loaders: offeredLoaders(DEFAULTS), profiles: noProfiles }), [])
  // The GRUB image in ipxe/ instead of grub/ is not where it is served from.
  const wrong = assetsDir(t, ['ipxe/undionly.kpxe', 'ipxe/ipxe.efi', 'ipxe/grubnetaa64.efi', 'agent/vmlinuz', 'agent/agent.img', 'agent/arm64/vmlinuz', 'agent/arm64/agent.img'])
  assert.match((await bootFileProblems({ assetsDir: wrong, loaders: offeredLoaders(DEFAULTS), profiles: noProfiles }))[0]!, /^GRUB loaders missing \(grub\/grubnetaa64\.efi\)/)
})
