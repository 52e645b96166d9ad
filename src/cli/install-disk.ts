import type { InstallDiskSelector, Machine, Profile } from '../inventory/index.js'
import { installDiskOf } from '../talos/index.js'
import { describeDiskSelector } from './classes.js'

export { describeDiskSelector }

// What a tech wants to see next to a machine's profile: the install-disk rule and the disk it picks today.

export interface InstallDiskView {
  profile: string
  selector: InstallDiskSelector | null
  /** Device path chosen from the reported disks; null when none matches or none were reported. */
  disk: string | null
  reason: string | null
}

/** The install disk a machine gets from its profile's selector (what its Talos config will say). */
export function installDiskFor(machine: Machine, profile: Profile): InstallDiskView {
  const base = { profile: profile.name, selector: profile.installDisk }
  const choice = installDiskOf(machine, profile)
  if (!choice) return { ...base, disk: null, reason: 'chosen once the machine reports its disks' }
  return choice.ok ? { ...base, disk: choice.path, reason: null } : { ...base, disk: null, reason: choice.reason }
}

export function formatInstallDisk(view: InstallDiskView): string {
  const rule = `profile ${view.profile}: ${describeDiskSelector(view.selector)}`
  return view.disk ? `${view.disk} (${rule})` : `none: ${view.reason} (${rule})`
}
