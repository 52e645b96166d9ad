import Type from 'typebox'
import { DISK_TYPES, type InstallDiskSelector } from './types.js'

// A profile's install-disk selector: its shape (one TypeBox schema for the inventory files and the API), its size
// grammar, and the checks both run. talos/disks.ts applies it to a machine's disks with this same size grammar, so
// what is accepted here is exactly what can be applied there.

/** Where in a value something is wrong (relative path, e.g. ['size']), and what. */
export interface ValueProblem {
  path: (string | number)[]
  message: string
}

const Glob = (what: string) => Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: `Glob (* and ?) on the disk's ${what}` }))

/**
 * `size` and `type` accept a string or an object/list: they are left open in the schema and checked by
 * `checkDiskSelector`, which names the mistake better than a failed union does.
 */
export const DiskSelectorSchema = Type.Object({
  size: Type.Optional(Type.Unsafe<InstallDiskSelector['size']>({
    description: 'Size condition: "500GB", ">= 100GB", "<= 2TiB", several joined by commas (">= 100GB, < 1TB"); or {min, max} in bytes or size strings. Units B, kB, MB, GB, TB, PB (powers of 1000), KiB, MiB, GiB, TiB, PiB',
    examples: ['>= 400GB, <= 2TB', { min: '100GB' }],
  })),
  type: Type.Optional(Type.Unsafe<InstallDiskSelector['type']>({
    description: `Disk type, or a list of them: ${DISK_TYPES.join(', ')}`,
    examples: ['nvme', ['ssd', 'nvme']],
  })),
  model: Glob('model'),
  serial: Glob('serial number'),
  name: Glob('device name (sda, nvme0n1)'),
  wwn: Glob('WWN'),
  prefer: Type.Optional(Type.Union([Type.Literal('smallest'), Type.Literal('largest')], { description: 'Which matching disk wins (default smallest)' })),
}, { additionalProperties: false, description: 'How the install disk is chosen among the disks the machine reported' })

const UNITS: Record<string, number> = {
  b: 1,
  k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12, p: 1e15, pb: 1e15,
  ki: 2 ** 10, kib: 2 ** 10, mi: 2 ** 20, mib: 2 ** 20, gi: 2 ** 30, gib: 2 ** 30, ti: 2 ** 40, tib: 2 ** 40, pi: 2 ** 50, pib: 2 ** 50,
}

/** Bytes in a size such as "512GB", "1.5 TiB" or 1000; NaN when it does not parse. */
export function parseSize(size: string | number): number {
  if (typeof size === 'number') return Number.isFinite(size) && size >= 0 ? size : Number.NaN
  if (typeof size !== 'string') return Number.NaN
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(size)
  if (!m) return Number.NaN
  const unit = m[2]!.toLowerCase()
  const factor = unit === '' ? 1 : UNITS[unit]
  return factor === undefined ? Number.NaN : Math.round(Number(m[1]) * factor)
}

export type SizeTest = (bytes: number) => boolean

/** Parses the size part of a selector into a predicate, or an error message. */
export function parseSizeCondition(spec: InstallDiskSelector['size']): SizeTest | string {
  if (spec === undefined) return () => true
  if (typeof spec === 'object' && spec !== null && !Array.isArray(spec)) {
    const extra = Object.keys(spec).filter((k) => k !== 'min' && k !== 'max')
    if (extra.length > 0) return `size bounds take min and max, not ${extra.join(', ')}`
    const min = spec.min === undefined ? 0 : parseSize(spec.min)
    const max = spec.max === undefined ? Number.POSITIVE_INFINITY : parseSize(spec.max)
    if (Number.isNaN(min) || Number.isNaN(max)) return `bad size bounds ${JSON.stringify(spec)}`
    if (min > max) return `size bounds ${JSON.stringify(spec)}: min is above max, no disk can match`
    return (b) => b >= min && b <= max
  }
  if (typeof spec !== 'string') return `size must be a condition such as ">= 100GB" or {min, max}, not ${JSON.stringify(spec)}`
  const tests: SizeTest[] = []
  for (const part of spec.split(/,|&&/).map((p) => p.trim()).filter(Boolean)) {
    const m = /^(>=|<=|==|>|<)?\s*(.+)$/.exec(part)
    const bytes = m ? parseSize(m[2]!) : Number.NaN
    if (!m || Number.isNaN(bytes)) return `bad size condition '${part}'`
    switch (m[1] ?? '==') {
      case '>=': tests.push((b) => b >= bytes); break
      case '<=': tests.push((b) => b <= bytes); break
      case '>': tests.push((b) => b > bytes); break
      case '<': tests.push((b) => b < bytes); break
      default: tests.push((b) => b === bytes)
    }
  }
  if (tests.length === 0) return `empty size condition '${spec}'`
  return (b) => tests.every((t) => t(b))
}

/** What is wrong with a selector (after its schema passed): size grammar and disk types. Empty when usable. */
export function checkDiskSelector(selector: InstallDiskSelector): ValueProblem[] {
  const problems: ValueProblem[] = []
  const size = parseSizeCondition(selector.size)
  if (typeof size === 'string') problems.push({ path: ['size'], message: size })
  const type = selector.type as unknown
  if (type !== undefined) {
    const list = Array.isArray(type) ? type : [type]
    if (list.length === 0) problems.push({ path: ['type'], message: 'an empty list of disk types matches no disk' })
    list.forEach((t, i) => {
      if (!DISK_TYPES.includes(t as never)) {
        problems.push({ path: Array.isArray(type) ? ['type', i] : ['type'], message: `unknown disk type ${JSON.stringify(t)} (one of ${DISK_TYPES.join(', ')})` })
      }
    })
  }
  return problems
}
