import type { Machine, Profile } from '../inventory/index.js'

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
  /** The discovery agent: report hardware (or, with wipe, erase disks of a released machine). */
  | { kind: 'discovery'; wipe: boolean; reason: string }
  /** Wait in the pool. */
  | { kind: 'hold'; mode: 'retry' | 'exit'; reason: string }
  /** Talos, with this profile. */
  | { kind: 'install'; profile: Profile; reason: string }
  /** Boot from the local disk. */
  | { kind: 'local-disk'; reason: string }
  /** The machine should install but cannot: say why on its console and wait. */
  | { kind: 'blocked'; reason: string }

export function decideBoot(machine: Machine, profile: Profile | null, policy: BootPolicy): BootDecision {
  switch (machine.state) {
    case 'maintenance':
      return { kind: 'ignore', reason: 'machine is in maintenance' }
    case 'new':
      return { kind: 'discovery', wipe: false, reason: 'new machine: report hardware' }
    case 'released':
      return { kind: 'discovery', wipe: true, reason: 'released: wipe disks before returning to the pool' }
    case 'discovered':
      return { kind: 'hold', mode: policy.holdMode, reason: 'discovered: waiting to be accepted' }
    case 'ready':
      return { kind: 'hold', mode: policy.holdMode, reason: 'ready: waiting to be allocated' }
    case 'provisioning':
      if (!profile) return { kind: 'blocked', reason: 'allocated, but no profile applies to this machine' }
      if (!profile.talosVersion) return { kind: 'blocked', reason: `profile ${profile.name} names no Talos version` }
      return { kind: 'install', profile, reason: `allocated: install Talos ${profile.talosVersion} (profile ${profile.name})` }
    case 'failed':
      return { kind: 'hold', mode: 'retry', reason: 'failed: quarantined after repeated boot failures; waiting for a person to retry or replace it' }
    case 'installed':
      if (machine.alwaysPxe && profile?.talosVersion) {
        return { kind: 'install', profile, reason: 'installed, always-PXE: boot Talos from the network' }
      }
      return { kind: 'local-disk', reason: 'installed: boot from disk' }
  }
}
