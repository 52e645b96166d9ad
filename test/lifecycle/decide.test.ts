// The boot decision per architecture: a table of (state, recorded arch, loader's claim, profile arch) → what boots.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { Arch, Machine, Profile } from '../../src/inventory/index.js'
import { archFromIpxe, decideBoot } from '../../src/lifecycle/index.js'

function machine(state: Machine['state'], arch: Arch | null, alwaysPxe = false): Machine {
  return {
    id: 'm-000000000001', name: 'm1', uuid: null, serial: null, manufacturer: null, product: null, arch, firmware: 'uefi', state,
    labels: {}, rack: null, rackUnit: null, alwaysPxe, profile: null, managedBy: null, network: null, nics: [], hardware: null,
    hardwareReportedAt: null, createdAt: 0, updatedAt: 0, stateChangedAt: 0,
  }
}

function profile(arch: Arch | null): Profile {
  return {
    name: 'p', description: null, talosVersion: 'v1.13.9', arch, schematic: null, kernelArgs: [], baseConfig: null, patches: [],
    installDisk: null, managedBy: null, createdAt: 0, updatedAt: 0,
  }
}

const policy = { holdMode: 'retry' as const }

test('loader arch claims normalise to amd64 or arm64; anything else is no claim', () => {
  const table: [string | null, Arch | null][] = [
    ['x86_64', 'amd64'], ['i386', 'amd64'], ['arm64', 'arm64'], ['aarch64', 'arm64'], ['ARM64', 'arm64'],
    ['riscv64', null], ['', null], [null, null], ['${buildarch}', null],
  ]
  for (const [claim, want] of table) assert.equal(archFromIpxe(claim), want, `claim ${claim}`)
})

test('discovery boots the arch the loader runs, else the recorded one, else amd64', () => {
  const table: [Machine['state'], Arch | null, Arch | null, Arch][] = [
    ['new', null, null, 'amd64'],
    ['new', null, 'arm64', 'arm64'],
    ['new', 'arm64', null, 'arm64'],
    // The loader is what runs: it wins over the inventory either way.
    ['new', 'arm64', 'amd64', 'amd64'],
    ['new', 'amd64', 'arm64', 'arm64'],
    ['released', 'arm64', null, 'arm64'],
    ['released', 'amd64', 'arm64', 'arm64'],
  ]
  for (const [state, recorded, claim, want] of table) {
    const d = decideBoot(machine(state, recorded), null, policy, claim)
    assert.equal(d.kind, 'discovery', `${state} ${recorded} ${claim}`)
    assert.equal(d.kind === 'discovery' && d.arch, want, `${state} recorded ${recorded}, loader ${claim}`)
  }
})

test('Talos installs the profile\'s arch, else the boot\'s; a loader of another arch than the profile is blocked', () => {
  const table: [Arch | null, Arch | null, Arch | null, Arch | 'blocked'][] = [
    // recorded, loader, profile → Talos arch
    ['arm64', null, null, 'arm64'],
    [null, 'arm64', null, 'arm64'],
    ['amd64', 'arm64', null, 'arm64'],
    [null, null, null, 'amd64'],
    ['amd64', null, 'arm64', 'arm64'],
    [null, 'arm64', 'arm64', 'arm64'],
    ['arm64', 'amd64', 'amd64', 'amd64'],
    [null, 'amd64', 'arm64', 'blocked'],
    ['arm64', 'arm64', 'amd64', 'blocked'],
  ]
  for (const [recorded, claim, profileArch, want] of table) {
    for (const m of [machine('provisioning', recorded), machine('installed', recorded, true)]) {
      const d = decideBoot(m, profile(profileArch), policy, claim)
      const got = d.kind === 'install' ? d.arch : d.kind
      assert.equal(got, want, `${m.state}: recorded ${recorded}, loader ${claim}, profile ${profileArch}`)
      if (d.kind === 'blocked') assert.match(d.reason, new RegExp(`installs ${profileArch} Talos.*loader runs ${claim}`))
    }
  }
})
