// The agent report: the JSON document the discovery agent POSTs to rackboot.report= (produced by sh/collect.sh).
// The schema is what the server validates against; unknown fields are allowed so newer agents stay accepted.
import Type, { type Static } from 'typebox'

const Str = Type.String()
const Count = Type.Integer({ minimum: 0 })

export const AgentReportSchema = Type.Object({
  agentVersion: Type.String(),
  /** rackboot.machine= from the kernel command line ('' when none). */
  machineId: Str,
  smbios: Type.Object({
    uuid: Str,
    serial: Str,
    manufacturer: Str,
    product: Str,
    boardSerial: Str,
    /** Not in every report (added beside the first draft's fields). */
    chassisSerial: Type.Optional(Str),
  }),
  cpu: Type.Object({
    model: Str,
    /** Distinct physical ids. */
    sockets: Count,
    /** Distinct (physical id, core id) pairs: physical cores in the whole machine. */
    cores: Count,
    /** Logical processors. */
    threads: Count,
  }),
  /** MemTotal from /proc/meminfo: usable RAM as the kernel sees it, a little under what is installed. */
  memory: Type.Object({ totalBytes: Count }),
  disks: Type.Array(
    Type.Object({
      name: Str,
      model: Str,
      serial: Str,
      sizeBytes: Count,
      rotational: Type.Boolean(),
      type: Type.Union([Type.Literal('nvme'), Type.Literal('ssd'), Type.Literal('hdd'), Type.Literal('virtual')]),
      /** naa./eui. identifier when the disk has one, else ''. */
      wwn: Str,
    }),
  ),
  nics: Type.Array(
    Type.Object({
      name: Str,
      /** Lowercase, colon-separated. */
      mac: Str,
      driver: Str,
      link: Type.Boolean(),
      /** Absent when the driver reports no speed (virtio, link down). */
      speedMbps: Type.Optional(Count),
    }),
  ),
  /** After a wipe run (rackboot.wipe=1): the disks wiped. */
  wiped: Type.Optional(Type.Array(Str)),
  /** After a wipe run: disks that could not be wiped (absent when none). */
  wipeFailed: Type.Optional(Type.Array(Str)),
  /** Present only when the BMC's address could be read (ipmitool in the image). */
  bmc: Type.Optional(Type.Object({ address: Str, mac: Type.Optional(Str) })),
})

export type AgentReport = Static<typeof AgentReportSchema>
