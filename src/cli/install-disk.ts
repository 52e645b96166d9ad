import type { InstallDiskSelector, Machine, Profile } from '../inventory/index.js'
import { installDiskOf } from '../talos/index.js'

// What a tech wants to see next to a machine's profile: the install-disk rule and the disk it picks today.

/** `type=nvme size=">= 400GB" prefer=smallest`; "smallest fixed disk" for no selector. */
export function describeDiskSelector(selector: InstallDiskSelector | null): string {
  if (!selector || Object.keys(selector).length === 0) return 'smallest fixed disk'
  return Object.entries(selector)
    .map(([k, v]) => {
      if (Array.isArray(v)) return `${k}=${v.join(',')}`
      if (typeof v === 'object' && v !== null) return `${k}=${[v.min ?? '', v.max ?? ''].join('..')}`
      return `${k}=${/[\s<>=,]/.test(String(v)) ? JSON.stringify(v) : v}`
    })
    .join(' ')
}

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
