import { parseSizeCondition, type SizeTest } from '../inventory/disk-selector.js'
import type { DiskFacts, Machine, Profile } from '../inventory/types.js'

// The size grammar is the inventory's, so a selector the inventory accepted is one this module can apply.
export { parseSize, parseSizeCondition } from '../inventory/disk-selector.js'

// Choosing the install disk from the disks a machine reported, by a selector in the spirit of Talos's
// machine.install.diskSelector (size comparisons, type, model/serial globs), made deterministic: among the disks
// that match, the smallest (or largest) wins, then the lowest device name in natural order, then the serial.

export type DiskKind = 'nvme' | 'ssd' | 'hdd' | 'virtual' | 'other'

export interface DiskSelector {
  /**
   * Size condition(s): "500GB", ">= 100GB", "<= 2TiB", or several joined by commas (">= 100GB, < 1TB");
   * or bounds in bytes / size strings. Units: B, kB/KB, MB, GB, TB, PB (powers of 1000), KiB, MiB, GiB, TiB, PiB.
   */
  size?: string | { min?: number | string; max?: number | string }
  /** Disk type(s); inferred from the device name and `rotational` when the report has no type. */
  type?: DiskKind | readonly DiskKind[]
  /** Glob (`*`, `?`) on the model. */
  model?: string
  /** Glob on the serial number. */
  serial?: string
  /** Glob on the device name (sda, nvme0n1). */
  name?: string
  /** Glob on the WWN. */
  wwn?: string
  /** Which matching disk wins; default smallest (keep big disks for data). */
  prefer?: 'smallest' | 'largest'
}

export type DiskChoice =
  | { ok: true; disk: DiskFacts; path: string; candidates: number }
  | { ok: false; reason: string; rejected: Array<{ name: string; reason: string }> }

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')
  return new RegExp(`^${body}$`)
}

/** The disk's type as reported, else inferred (nvme* names are NVMe; rotational tells hdd from ssd). */
export function diskKind(disk: DiskFacts): DiskKind | null {
  if (disk.type) return disk.type
  const name = disk.name.replace(/^\/dev\//, '')
  if (name.startsWith('nvme')) return 'nvme'
  if (name.startsWith('vd') || name.startsWith('xvd')) return 'virtual'
  if (disk.rotational === true) return 'hdd'
  if (disk.rotational === false) return 'ssd'
  return null
}

export function diskPath(disk: DiskFacts): string {
  return disk.name.startsWith('/dev/') ? disk.name : `/dev/${disk.name}`
}

// Block devices that are never an install target.
const NOT_A_DISK = /^(loop|ram|zram|sr|fd|nbd|md)\d+$|^dm-\d+$/

/** Natural order: sda < sdb < sdaa, nvme2n1 < nvme10n1. */
function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true }) || (a < b ? -1 : a > b ? 1 : 0)
}

function rejectReason(disk: DiskFacts, selector: DiskSelector, sizeTest: SizeTest): string | null {
  const extra = disk as DiskFacts & { removable?: unknown; readonly?: unknown; cdrom?: unknown; transport?: unknown }
  const name = disk.name.replace(/^\/dev\//, '')
  if (NOT_A_DISK.test(name)) return 'not a disk'
  if (extra.removable === true || extra.transport === 'usb') return 'removable'
  if (extra.cdrom === true) return 'cd-rom'
  if (extra.readonly === true) return 'read-only'
  if (!(disk.sizeBytes > 0)) return 'no size reported'
  if (!sizeTest(disk.sizeBytes)) return `size ${disk.sizeBytes} does not match ${JSON.stringify(selector.size)}`
  if (selector.type !== undefined) {
    const want = typeof selector.type === 'string' ? [selector.type] : selector.type
    const kind = diskKind(disk)
    if (!kind || !want.includes(kind)) return `type ${kind ?? 'unknown'} is not ${want.join('/')}`
  }
  const globs: Array<[keyof DiskSelector, string | undefined]> = [
    ['model', disk.model],
    ['serial', disk.serial],
    ['name', name],
    ['wwn', disk.wwn],
  ]
  for (const [field, value] of globs) {
    const pattern = selector[field]
    if (typeof pattern !== 'string') continue
    if (value === undefined || !globToRegExp(pattern).test(value)) return `${field} ${value ?? '(none)'} does not match '${pattern}'`
  }
  return null
}

/**
 * The install disk a machine gets from its profile's selector (what its Talos config says, what allocation checks),
 * or null while it has reported no disks: then the base config's install disk stands.
 */
export function installDiskOf(machine: Pick<Machine, 'hardware'>, profile: Pick<Profile, 'installDisk'>): DiskChoice | null {
  const disks = machine.hardware?.disks ?? []
  return disks.length > 0 ? chooseInstallDisk(disks, profile.installDisk ?? {}) : null
}

/** Picks the install disk. Always the same answer for the same disks, in any order. */
export function chooseInstallDisk(disks: readonly DiskFacts[], selector: DiskSelector = {}): DiskChoice {
  const sizeTest = parseSizeCondition(selector.size)
  if (typeof sizeTest === 'string') return { ok: false, reason: sizeTest, rejected: [] }
  const rejected: Array<{ name: string; reason: string }> = []
  const candidates: DiskFacts[] = []
  for (const disk of disks) {
    const reason = rejectReason(disk, selector, sizeTest)
    if (reason) rejected.push({ name: disk.name, reason })
    else candidates.push(disk)
  }
  if (candidates.length === 0) {
    return { ok: false, reason: disks.length === 0 ? 'no disks reported' : 'no disk matches the selector', rejected }
  }
  const sign = selector.prefer === 'largest' ? -1 : 1
  candidates.sort(
    (a, b) =>
      sign * (a.sizeBytes - b.sizeBytes) ||
      naturalCompare(a.name, b.name) ||
      naturalCompare(a.serial ?? '', b.serial ?? ''),
  )
  const disk = candidates[0]!
  return { ok: true, disk, path: diskPath(disk), candidates: candidates.length }
}
