import type { Arch, Machine, Profile } from '../inventory/index.js'

// The boot decision: what a machine boots now. Pure (no I/O, no clock reads): a table of (state, facts) → decision.

export interface BootPolicy {
  /** discovered/ready machines: an iPXE retry loop, or boot the local disk. */
  holdMode: 'retry' | 'exit'
  /** An installed machine that network-boots again (the boot service acts on reinstall and fail). */
  installedReturns?: 'disk' | 'reinstall' | 'fail'
}

export type BootDecision =
  /** Serve nothing that boots: a machine in maintenance. */
  | { kind: 'ignore'; reason: string }
  /** The discovery agent for `arch`: report hardware (or, with wipe, erase disks of a released machine). */
  | { kind: 'discovery'; wipe: boolean; arch: Arch; reason: string }
  /** Wait in the pool. */
  | { kind: 'hold'; mode: 'retry' | 'exit'; reason: string }
  /** Talos for `arch`, with this profile. */
  | { kind: 'install'; profile: Profile; arch: Arch; reason: string }
  /** Boot from the local disk. */
  | { kind: 'local-disk'; reason: string }
  /** The machine should install but cannot: say why on its console and wait. */
  | { kind: 'blocked'; reason: string }

/**
 * The arch a boot runs: what the loader says it is (iPXE's ${buildarch}, GRUB's ${grub_cpu}, normalised), since that
 * is what is running now; else the machine's recorded arch; else amd64. The claim picks only which public files to
 * boot: a machine that lies about it boots a kernel it cannot run, and nothing more.
 */
export function bootArch(machine: Pick<Machine, 'arch'>, loaderArch: Arch | null): Arch {
  return loaderArch ?? machine.arch ?? 'amd64'
}

/** Talos for this profile on this boot: the profile's arch, else the boot's; blocked when the loader runs another. */
function install(profile: Profile, machine: Machine, loaderArch: Arch | null, reason: string): BootDecision {
  if (profile.arch && loaderArch && profile.arch !== loaderArch) {
    return { kind: 'blocked', reason: `profile ${profile.name} installs ${profile.arch} Talos, but this machine's boot loader runs ${loaderArch}: give it a profile for ${loaderArch}` }
  }
  return { kind: 'install', profile, arch: profile.arch ?? bootArch(machine, loaderArch), reason }
}

/** `loaderArch`: the arch the asking loader claims (normalised), or null when it said nothing. */
export function decideBoot(machine: Machine, profile: Profile | null, policy: BootPolicy, loaderArch: Arch | null = null): BootDecision {
  switch (machine.state) {
    case 'maintenance':
      return { kind: 'ignore', reason: 'machine is in maintenance' }
    case 'new':
      return { kind: 'discovery', wipe: false, arch: bootArch(machine, loaderArch), reason: 'new machine: report hardware' }
    case 'released':
      return { kind: 'discovery', wipe: true, arch: bootArch(machine, loaderArch), reason: 'released: wipe disks before returning to the pool' }
    case 'discovered':
      return { kind: 'hold', mode: policy.holdMode, reason: 'discovered: waiting to be accepted' }
    case 'ready':
      return { kind: 'hold', mode: policy.holdMode, reason: 'ready: waiting to be allocated' }
    case 'provisioning':
      if (!profile) return { kind: 'blocked', reason: 'allocated, but no profile applies to this machine' }
      if (!profile.talosVersion) return { kind: 'blocked', reason: `profile ${profile.name} names no Talos version` }
      return install(profile, machine, loaderArch, `allocated: install Talos ${profile.talosVersion} (profile ${profile.name})`)
    case 'failed':
      return { kind: 'hold', mode: 'retry', reason: 'failed: quarantined after repeated boot failures; waiting for a person to retry or replace it' }
    case 'installed':
      if (machine.alwaysPxe && profile?.talosVersion) {
        return install(profile, machine, loaderArch, 'installed, always-PXE: boot Talos from the network')
      }
      return { kind: 'local-disk', reason: 'installed: boot from disk' }
  }
}
