import type { DiskFacts, Machine, NicFacts } from '../inventory/index.js'
import { SIZE_UNITS } from './lexer.js'

// What a selector path can name, and how to read it from a Machine. Paths are checked against this when a
// selector is compiled, so a typo (`cpu.core`) is a parse error with a position, not a silent "no match".

export type Spec =
  | { type: 'scalar' }
  /** A size in bytes; `.gib`, `.tb`, ... convert, and a literal with a unit (256GiB) compares in bytes. */
  | { type: 'bytes' }
  /** A link speed in Mbit/s; `.gbps` converts. */
  | { type: 'mbps' }
  | { type: 'object'; fields: Readonly<Record<string, Field>> }
  /** Any key, scalar values (labels, SMBIOS strings). */
  | { type: 'map' }
  /** Any path (raw hardware facts). */
  | { type: 'raw' }
  | { type: 'collection'; item: Readonly<Record<string, Field>>; sizeField?: string }

export interface Field {
  get(parent: any): unknown
  spec: Spec
}

const scalar = (get: (p: any) => unknown): Field => ({ get, spec: { type: 'scalar' } })

const DISK_FIELDS: Record<string, Field> = {
  name: scalar((d: DiskFacts) => d.name),
  model: scalar((d: DiskFacts) => d.model),
  serial: scalar((d: DiskFacts) => d.serial),
  type: scalar((d: DiskFacts) => d.type),
  rotational: scalar((d: DiskFacts) => d.rotational),
  wwn: scalar((d: DiskFacts) => d.wwn),
  size: { get: (d: DiskFacts) => d.sizeBytes, spec: { type: 'bytes' } },
}

type NicView = NicFacts & { boot?: boolean }

const NIC_FIELDS: Record<string, Field> = {
  mac: scalar((n: NicView) => n.mac),
  name: scalar((n: NicView) => n.name),
  driver: scalar((n: NicView) => n.driver),
  link: scalar((n: NicView) => n.link),
  boot: scalar((n: NicView) => n.boot ?? false),
  speed: { get: (n: NicView) => n.speedMbps, spec: { type: 'mbps' } },
}

/** NICs as reported by the agent, marked with the inventory's boot flag; the inventory's NICs when never reported. */
function nicsOf(m: Machine): NicView[] {
  const boot = new Set(m.nics.filter((n) => n.boot).map((n) => n.mac))
  const reported = m.hardware?.nics
  if (reported && reported.length > 0) return reported.map((n) => ({ ...n, boot: boot.has(n.mac) }))
  return m.nics.map((n) => ({ mac: n.mac, ...(n.name ? { name: n.name } : {}), boot: n.boot }))
}

export const MACHINE_FIELDS: Readonly<Record<string, Field>> = {
  id: scalar((m: Machine) => m.id),
  name: scalar((m: Machine) => m.name),
  uuid: scalar((m: Machine) => m.uuid),
  serial: scalar((m: Machine) => m.serial),
  manufacturer: scalar((m: Machine) => m.manufacturer),
  product: scalar((m: Machine) => m.product),
  arch: scalar((m: Machine) => m.arch),
  firmware: scalar((m: Machine) => m.firmware),
  state: scalar((m: Machine) => m.state),
  rack: scalar((m: Machine) => m.rack),
  rackUnit: scalar((m: Machine) => m.rackUnit),
  profile: scalar((m: Machine) => m.profile),
  alwaysPxe: scalar((m: Machine) => m.alwaysPxe),
  labels: { get: (m: Machine) => m.labels, spec: { type: 'map' } },
  smbios: { get: (m: Machine) => m.hardware?.smbios, spec: { type: 'map' } },
  cpu: {
    get: (m: Machine) => m.hardware?.cpu,
    spec: {
      type: 'object',
      fields: {
        cores: scalar((c) => c?.cores),
        threads: scalar((c) => c?.threads),
        sockets: scalar((c) => c?.sockets),
        model: scalar((c) => c?.model),
      },
    },
  },
  memory: { get: (m: Machine) => m.hardware?.memory?.totalBytes, spec: { type: 'bytes' } },
  disks: { get: (m: Machine) => m.hardware?.disks ?? [], spec: { type: 'collection', item: DISK_FIELDS, sizeField: 'size' } },
  nics: { get: nicsOf, spec: { type: 'collection', item: NIC_FIELDS } },
  bmc: {
    get: (m: Machine) => m.hardware?.bmc,
    spec: { type: 'object', fields: { address: scalar((b) => b?.address), mac: scalar((b) => b?.mac) } },
  },
  hardware: { get: (m: Machine) => m.hardware ?? undefined, spec: { type: 'raw' } },
}

/** `.bytes`, `.gib`, ... on a byte value: the divisor. */
export function byteUnit(name: string): number | undefined {
  const lower = name.toLowerCase()
  return lower === 'bytes' ? 1 : SIZE_UNITS[lower]
}

export function speedUnit(name: string): number | undefined {
  const lower = name.toLowerCase()
  return lower === 'mbps' ? 1 : lower === 'gbps' ? 1000 : undefined
}
